"""runtime.gemm against a float64 numpy reference: shapes, strides, paths, epilogue, safety."""
from __future__ import annotations

import ctypes
import dataclasses
import itertools
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llvmlite import ir

from runtime import engine, gemm
from runtime.codegen import c64, counted_loop
from runtime.gemm_ir import FINISH_TYPE

DTYPES = ("float32", "float64")
EDGE_SIZES = (1, 3, 7, 17, 63, 65, 129, 255, 257)


def variants(dtype: str) -> dict[str, gemm.GemmConfig]:
    """The host config, one forced through tiny blocks (every loop runs several times,
    several KC blocks accumulate), the host blocks forced down the packed path (row-major
    operands too, which the host reads in place at these sizes) and one forced down the
    direct (unpacked) path."""
    cfg = gemm.gemm_config(dtype)
    return {
        "host": cfg,
        "tiny": dataclasses.replace(cfg, mc=2 * cfg.mr, kc=8, nc=2 * cfg.nr, a_packed_kc=8,
                                    a_packed_nc=2 * cfg.nr, direct_b_bytes=0),
        "tiny_odd": dataclasses.replace(cfg, mc=3 * cfg.mr, kc=5, nc=3 * cfg.nr, a_packed_kc=7,
                                        a_packed_nc=cfg.nr, direct_b_bytes=0),
        "packed": dataclasses.replace(cfg, direct_b_bytes=0),
        "direct": dataclasses.replace(cfg, direct_b_bytes=1 << 62, kc=1 << 62),
    }


@pytest.fixture(scope="module")
def kernels() -> dict[tuple[str, str], gemm.GemmKernel]:
    return {(d, name): gemm.GemmKernel(cfg)
            for d in DTYPES for name, cfg in variants(d).items()}


def reference_check(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """|c - a@b| within a K-scaled rounding bound of float64 a@b."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    eps = np.finfo(c.dtype).eps
    bound = 2 * (a.shape[1] + 2) * eps * (np.abs(a64) @ np.abs(b64)) + 1e-30
    err = np.abs(c.astype(np.float64) - a64 @ b64)
    assert c.shape == (a.shape[0], b.shape[1])
    assert np.all(err <= bound), f"max error {err.max()} vs bound {bound.max()}"


def operand(rng: np.random.Generator, shape: tuple[int, int], dtype: str,
            layout: str) -> np.ndarray:
    """A (rows, cols) operand as a C array, a transposed view or a strided view."""
    r, c = shape
    if layout == "T":
        return rng.standard_normal((c, r)).astype(dtype).T
    if layout == "strided":
        return rng.standard_normal((r, 2 * c + 1)).astype(dtype)[:, 1::2]
    if layout == "strided_T":
        return rng.standard_normal((2 * c, r + 3)).astype(dtype)[::2, 3:].T
    return rng.standard_normal((r, c)).astype(dtype)


LAYOUTS = ("C", "T", "strided", "strided_T")


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 300), n=st.integers(1, 300), k=st.integers(1, 300),
       dtype=st.sampled_from(DTYPES),
       variant=st.sampled_from(("host", "tiny", "packed", "direct")),
       la=st.sampled_from(LAYOUTS), lb=st.sampled_from(LAYOUTS), seed=st.integers(0, 99))
def test_random_shapes(kernels, m, n, k, dtype, variant, la, lb, seed):
    rng = np.random.default_rng(seed)
    a, b = operand(rng, (m, k), dtype, la), operand(rng, (k, n), dtype, lb)
    reference_check(kernels[dtype, variant](a, b), a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", ("host", "tiny", "tiny_odd", "packed", "direct"))
def test_edge_sizes(kernels, dtype, variant):
    rng = np.random.default_rng(1)
    sizes = EDGE_SIZES
    combos = {(s, s, s) for s in sizes} | {(s, sizes[-1 - i], sizes[(i + 4) % 9])
                                           for i, s in enumerate(sizes)}
    for m, n, k in sorted(combos):
        for la, lb in (("C", "C"), ("T", "strided")):
            a, b = operand(rng, (m, k), dtype, la), operand(rng, (k, n), dtype, lb)
            reference_check(kernels[dtype, variant](a, b), a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", ("host", "tiny", "direct"))
def test_every_edge_width(kernels, dtype, variant):
    """Each column remainder (the narrow edge kernels of one to NR/W - 1 vectors, and the
    full-width edge), with full-height and short row tiles, C read back over K blocks."""
    rng = np.random.default_rng(5)
    nr = kernels[dtype, variant].config.nr
    for n in list(range(1, nr + 2)) + [2 * nr + 5]:
        for m in (6, 13):
            a, b = operand(rng, (m, 19), dtype, "C"), operand(rng, (19, n), dtype, "C")
            reference_check(kernels[dtype, variant](a, b), a, b)


def test_matmul_runner_and_empty_k():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_allclose(gemm.matmul(a, a.T), a @ a.T)
    assert gemm.matmul(a.astype(np.float64), a.T).dtype == np.float64
    np.testing.assert_array_equal(gemm.matmul(np.ones((3, 0)), np.ones((0, 5))), 0)
    assert gemm.matmul(np.ones((0, 4)), np.ones((4, 5))).shape == (0, 5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_no_writes_outside_c_or_scratch(dtype):
    """C is a view inside a guarded buffer; scratch is exactly scratch_bytes long + guard."""
    cfg = variants(dtype)["tiny"]
    kern = gemm.GemmKernel(cfg)
    rng = np.random.default_rng(2)
    for m, n, k in ((13, 37, 21), (1, 1, 1), (65, 7, 30)):
        a, b = operand(rng, (m, k), dtype, "C"), operand(rng, (k, n), dtype, "C")
        big = np.full((m + 2, n + 9), 7.0, dtype)
        c = big[1:-1, 4:4 + n]
        nbytes = gemm.scratch_bytes(cfg, m, n, k)
        assert nbytes % 64 == 0
        scratch = kern.scratch(nbytes + 256)
        scratch[nbytes:] = 0xAB
        kern(a, b, out=c)
        reference_check(c, a, b)
        c[...] = 7.0
        assert np.all(big == 7.0)
        assert np.all(scratch[nbytes:nbytes + 256] == 0xAB)


def plan_cases(cfg: gemm.GemmConfig) -> list[tuple[tuple[int, int, int], str, str]]:
    """(m, n, k), A layout, B layout: together every path, packing and tile kind of `plan`
    on this host (sizes follow its tiles and limits)."""
    nr, wide = cfg.nr, cfg.nr + 6
    return [((64, nr, 64), "C", "C"), ((64, wide, 64), "C", "C"), ((64, wide, 64), "T", "C"),
            ((64, nr, 64), "C", "T"), ((100, wide, cfg.a_packed_kc), "T", "T"),
            ((30, wide, 50), "strided", "T"), ((40, 2 * nr, cfg.kc + 1), "C", "C"),
            ((40, wide, 30), "T", "strided"), ((50, max(1, cfg.lanes // 2), 30), "C", "C")]


@pytest.mark.parametrize("dtype", DTYPES)
def test_plan_matches_what_the_kernel_packs(kernels, dtype):
    """gemm.plan mirrors choices the kernel makes at run time; what it packs shows in
    scratch: nothing when it reads A and B in place, B's block (or edge panel) when B is
    packed, then the A block in the layout the plan names."""
    kern = kernels[dtype, "host"]
    cfg, es = kern.config, kern.config.itemsize
    rng = np.random.default_rng(3)
    seen = set()
    for (m, n, k), la, lb in plan_cases(cfg):
        a, b = operand(rng, (m, k), dtype, la), operand(rng, (k, n), dtype, lb)
        plan = gemm.plan(cfg, m, n, k, tuple(x // es for x in a.strides),
                         tuple(x // es for x in b.strides))
        scratch = kern.scratch(gemm.scratch_bytes(cfg, m, n, k))
        scratch[...] = 0xAB
        reference_check(kern(a, b), a, b)
        b_block = (k * cfg.nr * es if plan.direct else  # an edge panel, or a block
                   gemm.b_block_bytes(cfg, n, k, a_packed=plan.a_packing != "none"))
        assert np.any(scratch[:b_block] != 0xAB) == (not plan.direct or n % cfg.nr != 0), plan
        packed_a = scratch[b_block:].view(dtype)
        if plan.a_packing == "none":
            assert np.all(scratch[b_block:] == 0xAB), plan
        elif plan.a_packing == "rows":  # one block: A row-major, k contiguous
            np.testing.assert_array_equal(packed_a[:m * k].reshape(m, k), a)
        else:  # MR-row panels, k-major, the last rows repeated as padding
            panels = -(-m // cfg.mr)
            rows = packed_a[:panels * k * cfg.mr].reshape(panels, k, cfg.mr).transpose(0, 2, 1)
            np.testing.assert_array_equal(rows.reshape(-1, k)[:m], a)
        seen.add((plan.direct, plan.a_packing, plan.b_packing, plan.narrow))
    assert {d for d, *_ in seen} == {True, False}
    assert {a for _, a, _, _ in seen} == {"none", "rows", "panels"}
    assert {b for *_, b, _ in seen} == {"none", "rows", "transposes", "elements"}
    assert {narrow for *_, narrow in seen} == {True, False}


@pytest.mark.parametrize("dtype", DTYPES)
def test_plan_text_names_blocks_and_tiles(dtype):
    cfg = gemm.gemm_config(dtype)
    mr, nr, w = cfg.mr, cfg.nr, cfg.lanes

    def text(m, n, k, a_strides, b_strides):
        return "\n".join(gemm.plan(cfg, m, n, k, a_strides, b_strides).lines())

    packed = text(1000, 1000, 1000, (1, 1000), (1000, 1))
    assert f"blocks mc={cfg.mc} kc={cfg.a_packed_kc} nc={cfg.a_packed_nc}" in packed
    in_place = text(1000, 1000, 2 * cfg.kc, (2 * cfg.kc, 1), (1000, 1))
    assert f"blocks mc={cfg.mc} kc={cfg.kc} nc={cfg.nc}" in in_place
    assert "(2 K blocks: the first stores C" in in_place
    uneven = text(1000, 1000, 2 * cfg.kc + 8, (2 * cfg.kc + 8, 1), (1000, 1))
    assert f"step {(2 * cfg.kc + 10) // 3}:   (3 K blocks" in uneven  # even, not kc, kc, 8
    assert f"{mr}x{nr} tile" in packed and "register transposes" in packed
    short = text(mr - 1, nr, 8, (8, 1), (nr, 1))  # only one short row tile runs
    assert short.startswith("schedule: direct") and "for ir" not in short
    assert f"the last {mr - 1} rows: {mr - 1}x{nr} tiles" in short
    tall = text(3 * mr + 2, 2 * nr, 64, (64, 1), (2 * nr, 1))  # 2 rows join the last MR
    assert f"the last {mr + 2} rows: {mr + 2}x{nr // 2} tiles" in tall
    strided = text(3 * mr + 2, 2 * nr, 64, (128, 2), (1, 64))  # packed, A in MR-row panels
    assert "the last 2 rows: 2x" in strided
    head = text(cfg.narrow_mr + mr + 1, w, 64, (64, 1), (w, 1))  # a one-vector-wide C
    assert f"for ir step {cfg.narrow_mr}: {cfg.narrow_mr}x{w} tile" in head
    assert f"the last {w} columns: {mr}x{w} tiles" in head and "the last 1 rows" in head
    assert gemm.plan(cfg, 0, 5, 5, (5, 1), (5, 1)).lines() == ["schedule: none (C is empty)"]


def relu_finish(dtype: str) -> engine.NativeModule:
    """A `finish` callback (runtime/gemm_ir.py) that applies relu to its strip and counts,
    in the record's int64 array [record[1]] of row stride record[2], each element of C it
    was handed."""
    t, i64 = (ir.FloatType() if dtype == "float32" else ir.DoubleType()), ir.IntType(64)
    module = ir.Module("relu_finish")
    module.triple = engine.host().triple
    fn = ir.Function(module, FINISH_TYPE, "relu_finish")
    strip, rs, row, col, rows, cols, epi = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    counts = b.load(b.gep(epi, [c64(1)], source_etype=i64), typ=ir.PointerType())
    stride = b.load(b.gep(epi, [c64(2)], source_etype=i64), typ=i64)
    with counted_loop(b, 0, rows) as i, counted_loop(b, 0, cols) as j:
        at = b.gep(strip, [b.add(b.mul(i, rs), j)], source_etype=t)
        x = b.load(at, typ=t)
        b.store(b.select(b.fcmp_ordered(">", x, ir.Constant(t, 0)), x, ir.Constant(t, 0)), at)
        seen = b.gep(counts, [b.add(b.mul(b.add(row, i), stride), b.add(col, j))],
                     source_etype=i64)
        b.store(b.add(b.load(seen, typ=i64), c64(1)), seen)
    b.ret_void()
    return engine.compile_llvm(str(module), pipeline="light")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", ("tiny", "tiny_odd", "packed", "direct"))
def test_epilogue_finishes_each_final_element_once(kernels, dtype, variant):
    """Several KC blocks with negative partial sums: relu must see only the final sum, and
    the strips handed to `finish` must cover C exactly once, at their own rows and columns,
    whatever path and packing the layouts take."""
    finish = relu_finish(dtype)
    kern = kernels[(dtype, variant)]
    rng = np.random.default_rng(3)
    for (m, n, k), la, lb in itertools.product(
            ((17, 65, 50), (6, 64, 9), (1, 3, 200), (40, 130, 7), (53, 5, 40), (70, 150, 33),
             (31, 5, 9)),  # (31, 5): narrow strips, then an MR-row strip, then the last rows
            ("C", "T", "strided"), ("C", "T")):
        a, b = operand(rng, (m, k), dtype, la), operand(rng, (k, n), dtype, lb)
        counts = np.zeros((m, n), np.int64)
        record = (ctypes.c_int64 * 3)(finish.address("relu_finish"), counts.ctypes.data, n)
        c = kern(a, b, epi=ctypes.addressof(record))
        ref = np.maximum(a.astype(np.float64) @ b.astype(np.float64), 0)
        np.testing.assert_allclose(c, ref, atol=1e-4 * k)
        np.testing.assert_array_equal(counts, 1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_accumulate(dtype):
    cfg = dataclasses.replace(variants(dtype)["tiny"], accumulate=True)
    kern = gemm.GemmKernel(cfg)
    rng = np.random.default_rng(4)
    for m, n in ((23, 70), (50, 5)):  # (50, 5): the tall one-vector tiles, masked
        a, b = operand(rng, (m, 19), dtype, "C"), operand(rng, (19, n), dtype, "C")
        c0 = rng.standard_normal((m, n)).astype(dtype)
        c = kern(a, b, out=c0.copy())
        np.testing.assert_allclose(c, c0 + a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("vector_bytes", (16, 32, 64))
def test_config_per_vector_width(vector_bytes):
    h = engine.host()
    fake = dataclasses.replace(h, vector_bytes=vector_bytes)
    for dtype in DTYPES:
        cfg = gemm.gemm_config(dtype, fake, caches=(32 << 10, 512 << 10, 8 << 20))
        lanes = vector_bytes // cfg.itemsize
        assert cfg.nr % lanes == 0 and cfg.mc % cfg.mr == 0
        assert cfg.nc % cfg.nr == 0 and cfg.a_packed_nc % cfg.nr == 0
        accumulators = cfg.mr * cfg.nr // lanes
        assert accumulators <= (24 if vector_bytes == 64 else 12)
        assert cfg.narrow_mr <= (24 if vector_bytes == 64 else 12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_hot_loops_do_not_spill(kernels, dtype):
    """Every FMA loop keeps its accumulators in registers under the light pipeline."""
    asm = kernels[dtype, "host"].module.assembly()
    fma_blocks = [blk for blk in re.split(r"\n(?=\.LBB\S+:)", asm) if "vfmadd" in blk]
    assert fma_blocks
    for blk in fma_blocks:
        vector_stack = [line for line in blk.splitlines()
                        if re.search(r"[xyz]mm", line) and re.search(r"\(%r[sb]p\)", line)]
        assert not vector_stack, vector_stack


@pytest.mark.parametrize("vector_bytes", (16, 32))
@pytest.mark.parametrize("dtype", DTYPES)
def test_narrower_vector_configs_run(vector_bytes, dtype):
    """The configs chosen for SSE / AVX2 hosts compute correctly and stay in that width."""
    h = engine.host()
    if vector_bytes > h.vector_bytes:
        pytest.skip("host lacks this vector width")
    cfg = gemm.gemm_config(dtype, dataclasses.replace(h, vector_bytes=vector_bytes))
    kern = gemm.GemmKernel(cfg)
    assert "zmm" not in kern.module.assembly()
    rng = np.random.default_rng(5)
    for m, n, k in ((37, 41, 300), (100, 90, 80), (5, 3, 2), (130, 20, 260)):
        for la, lb in (("C", "C"), ("T", "T")):
            a, b = operand(rng, (m, k), dtype, la), operand(rng, (k, n), dtype, lb)
            reference_check(kern(a, b), a, b)

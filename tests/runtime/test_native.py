"""The native backend against the reference interpreter: random programs, every elementwise
op at odd sizes, the fusion the design promises, and the executable's calling contract."""
from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ir
import jit
import passes
import runtime
from ir import loops
from runtime import codegen
from runtime.elementwise import EMITTERS
from runtime.vecmath import MAX_ULP
from tests.strategies import accepted_dtypes, arguments, programs

FLOAT_TOLERANCE = {"f32": dict(rtol=2e-5, atol=2e-6), "f64": dict(rtol=1e-12, atol=1e-13)}


def compile_native(fn: ir.Function) -> runtime.NativeExecutable:
    program = loops.verify(passes.lower(passes.optimize(fn)))
    return runtime.compile_program(program)


def assert_matches(fn: ir.Function, args: list[np.ndarray], got: list[np.ndarray]) -> None:
    want = ir.interpret(fn, args)
    assert len(got) == len(want)
    # A float64 result computed from float32 values carries float32 rounding (a float32
    # sigmoid cast to float64 is 1 ulp of float32 away from the reference's).
    types = [p.type for p in fn.params] + [op.result.type for op in fn.ops]
    through_f32 = any(t.dtype.name == "f32" for t in types)
    for g, w, r in zip(got, want, fn.results):
        assert g.shape == w.shape and g.dtype == w.dtype, (g.dtype, g.shape, r.type)
        if r.type.dtype.is_float:
            tolerance = FLOAT_TOLERANCE["f32" if through_f32 else r.type.dtype.name]
            # sums are reassociated: allow for their length
            scale = max(1.0, float(np.sqrt(max((a.size for a in args), default=1))))
            np.testing.assert_allclose(g, w, rtol=tolerance["rtol"] * scale,
                                       atol=tolerance["atol"] * scale, equal_nan=True)
        else:
            np.testing.assert_array_equal(g, w)


def test_every_elementwise_op_has_a_native_body():
    elementwise = {n for n, d in ir.REGISTRY.items() if d.kind == "elementwise"}
    assert elementwise - set(EMITTERS) == set()
    assert set(EMITTERS) - elementwise == set()


FUZZ_EXAMPLES = int(os.environ.get("TENSORJIT_FUZZ_EXAMPLES", 60))


def check_random_program(data, **config) -> None:
    fn = data.draw(programs(max_ops=6, **config), label="program")
    args = data.draw(arguments(fn, special=True), label="args")
    assert_matches(fn, args, compile_native(fn)(args))


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(data=st.data())
def test_random_programs_match_the_interpreter(data):
    check_random_program(data, max_dim=9)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(data=st.data())
def test_random_programs_with_long_rows_match_the_interpreter(data):
    """Rows up to 80: the 4W-lane main loop and its reductions run (the test above stops at 9,
    inside one masked vector)."""
    check_random_program(data, max_dim=80, max_rank=2)


@pytest.mark.parametrize("size", [1, 7, 9, 17, 1023])
@pytest.mark.parametrize("name", sorted(n for n, d in ir.REGISTRY.items()
                                        if d.kind == "elementwise" and d.arity))
def test_elementwise_ops_at_odd_sizes(name, size):
    rng = np.random.default_rng(size)
    for dtype_name in accepted_dtypes(name):
        dtype = ir.DTYPES[dtype_name]
        b = ir.Builder(name)
        arity = ir.REGISTRY[name].arity
        if name == "where":
            params = [b.param(ir.TensorType(ir.bool_, (size,)), "c")] + [
                b.param(ir.TensorType(dtype, (size,)), f"x{i}") for i in range(2)]
        else:
            params = [b.param(ir.TensorType(dtype, (size,)), f"x{i}") for i in range(arity)]
        attrs = {"dtype": ir.f64 if dtype != ir.f64 else ir.f32} if name == "cast" else {}
        fn = b.build([b.emit(name, *params, **attrs)])
        args = []
        for p in fn.params:
            if p.type.dtype.is_float:
                x = rng.uniform(0.1 if name in ("log", "sqrt", "pow") else -30, 30, size)
            elif p.type.dtype.is_int:
                x = rng.integers(0 if name == "pow" else -9, 4 if name == "pow" else 9, size)
            else:
                x = rng.random(size) < 0.5
            args.append(x.astype(p.type.dtype.numpy))
        got = compile_native(fn)(args)
        want = ir.interpret(fn, args)[0]
        if want.dtype.kind == "f":
            bound = MAX_ULP.get((name if name != "logistic" else "logistic", dtype_name), 0.5)
            pow_slack = 64 if name == "pow" else 1  # exp(y log x): the error grows with |y log x|
            spacing = np.spacing(np.abs(want).astype(want.dtype))
            err = np.abs(got[0].astype(np.float64) - want) / np.maximum(spacing, np.finfo(want.dtype).tiny)
            assert np.nanmax(err, initial=0) <= (bound + 0.5) * pow_slack, (name, dtype_name)
        else:
            np.testing.assert_array_equal(got[0], want)


def _kernels(fn, *args) -> int:
    return jit.jit(fn).lower(*args).compile().stats["kernels"]


def test_fusion_makes_one_kernel_of_elementwise_chains_and_their_reduction():
    a = np.ones(1000, np.float32)
    assert _kernels(lambda a, b, c: jit.sigmoid(a * b + c) * 2, a, a, a) == 1
    assert _kernels(lambda a, b, c: jit.sum(jit.sigmoid(a * b + c)), a, a, a) == 1


def test_profiled_executables_count_ticks_per_kernel():
    x = np.ones((8, 8), np.float32)
    traced = jit.make_ir(lambda x: jit.sum(jit.sigmoid(x @ x)))(x)
    program = loops.verify(passes.lower(passes.optimize(traced)))
    profiled = runtime.NativeExecutable(program, profile=True)
    assert profiled.kernel_ticks() == [0] * len(program.kernels)
    assert_matches(traced, [x], profiled([x]))
    assert all(t > 0 for t in profiled.kernel_ticks())
    with pytest.raises(ValueError, match="profile=True"):
        runtime.NativeExecutable(program).kernel_ticks()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_row_tails_of_every_length(dtype):
    """Rows of 1 to 2W+1 elements end in one masked vector: each stage's loads, stores,
    row reductions and column accumulation must touch exactly the row's elements. Longer
    rows accumulate in the main loop's <4W> vectors first."""
    def f(x, flags):
        rows = jit.sum(x, axis=1) + jit.max(x * 2, axis=1)
        scaled = jit.where(flags, x - jit.max(x, axis=1, keepdims=True), x)
        y = x * 3 - 1  # kept in a row temp from the max's stage to the next
        centred = y - jit.max(y, axis=1, keepdims=True)
        return rows, scaled, jit.sum(scaled, axis=0), jit.min(x), centred

    rng = np.random.default_rng(7)
    for n in [*range(1, 35), 63, 64, 65, 70]:  # and past the main loop's 4 vectors of float32
        x = rng.integers(-50, 50, (5, n)).astype(dtype)
        flags = rng.random((5, n)) < 0.5
        traced = jit.make_ir(f)(x, flags)
        assert_matches(traced, [x, flags], compile_native(traced)([x, flags]))


def test_no_row_tail_is_a_masked_store_of_one_lane():
    """A tail of one element is a scalar store: LLVM 22's x86 backend stores a narrowing
    cast's single masked lane at its wide width (i64 -> i32: 8 bytes), which overflowed the
    output of a row's last element (llvm/llvm-project#179489)."""
    def f(x):
        return (x * x).astype(np.int32)

    for n in range(1, 20):
        x = np.arange(3 * n, dtype=np.int64).reshape(3, n) - n
        lowered = jit.jit(f).lower(x)
        stores = [line for line in lowered.as_text("llvm").splitlines()
                  if "call void @llvm.masked.store" in line]
        assert all(line.count("i1 true") > 1 for line in stores), (n, stores)
        np.testing.assert_array_equal(lowered.compile()(x), f(x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_max_and_min_propagate_nan_from_every_lane(dtype):
    """The horizontal max and min (a tree of vector halves) against numpy: a NaN anywhere
    in a row, in the main loop's copies or the tail, makes the row's result NaN."""
    def f(x):
        return jit.max(x, axis=1), jit.min(x, axis=1)

    rng = np.random.default_rng(3)
    for n in (1, 7, 16, 17, 64, 70):
        x = rng.choice(np.array([-np.inf, -2.5, -0.0, 0.0, 1.0, 3.0, np.inf], dtype), (n + 1, n))
        x[np.arange(n), np.arange(n)] = np.nan  # row i has its NaN in lane i; the last row none
        got_max, got_min = jit.jit(f)(x)
        np.testing.assert_array_equal(got_max.numpy(), x.max(axis=1))
        np.testing.assert_array_equal(got_min.numpy(), x.min(axis=1))


def test_max_and_min_sign_a_tie_of_zeros_as_ieee_orders_them():
    """-0 < +0 in maximum, minimum and their reductions, natively and in the reference (numpy
    returns either zero of a tie, by the order it compares them in)."""
    def f(x, y):
        return jit.maximum(x, y), jit.minimum(x, y), jit.max(x, axis=1), jit.min(x, axis=1)

    x = np.array([[-0.0, 0.0, -0.0], [-0.0, -0.0, -0.0], [0.0, 0.0, -0.0]] * 6, np.float32)
    y = np.array([[0.0, -0.0, -0.0], [0.0, -0.0, 0.0], [0.0, -0.0, -0.0]] * 6, np.float32)
    want = ([[0, 0, 1], [0, 1, 0], [0, 0, 1]] * 6, [[1, 1, 1], [1, 1, 1], [0, 1, 1]] * 6,
            [0, 1, 0] * 6, [1, 1, 1] * 6)
    traced = jit.make_ir(f)(x, y)
    for got in (ir.interpret(traced, [x, y]), compile_native(traced)([x, y])):
        for g, signs in zip(got, want):
            np.testing.assert_array_equal(np.signbit(g), np.array(signs, bool))


def test_sign_of_either_zero_is_positive_zero_as_in_numpy():
    fn = ir.parse("func @f(%x: f32[6]) -> f32[6] {\n  %0 = sign %x : f32[6]\n  return %0\n}")
    x = np.array([-0.0, 0.0, -2.0, 3.0, np.nan, -np.inf], np.float32)
    for got in (ir.interpret(fn, [x])[0], compile_native(fn)([x])[0]):
        np.testing.assert_array_equal(got, np.sign(x))
        np.testing.assert_array_equal(np.signbit(got), np.signbit(np.sign(x)))


def test_a_row_temp_is_read_and_written_whole_in_the_masked_tail():
    """Only the input's load and the output's store of a 10-element row are masked: the row
    temp between the stages (64 bytes of the arena, its own) is a plain vector, so the next
    stage's load is served from the store buffer."""
    def f(x):
        y = x * 3 - 1
        return y - jit.max(y, axis=1, keepdims=True)

    x = np.arange(50, dtype=np.float32).reshape(5, 10)
    lowered = jit.jit(f).lower(x)
    assert "temp" in lowered.as_text("loops")
    calls = [line for line in lowered.as_text("llvm").splitlines() if "call" in line]
    assert sum("llvm.masked.load" in line for line in calls) == 1
    assert sum("llvm.masked.store" in line for line in calls) == 1
    y = x * 3 - 1
    np.testing.assert_array_equal(lowered.compile()(x), y - y.max(axis=1, keepdims=True))


def test_ops_reading_the_same_buffer_share_one_kernel():
    # sigmoid's forward value and its derivative s(x) * s(-x) both read the matmul's output:
    # one pass over it, not one per use.
    a = np.ones((16, 16), np.float32)
    f = jit.value_and_grad(lambda a, b: jit.sum(jit.sigmoid(a @ b)), argnums=(0, 1))
    program = jit.jit(f).lower(a, a).entry.compiled().program
    loop_kernels = [k for k in program.kernels if not isinstance(k, loops.MatmulKernel)]
    assert len(loop_kernels) == 1
    assert len(program.kernels) == 4


def test_row_softmax_is_one_kernel_with_at_most_two_passes_reading_its_input():
    x = np.ones((64, 100), np.float32)
    lowered = jit.jit(jit.softmax).lower(x)
    program = lowered.entry.compiled().program
    (kernel,) = program.kernels
    reads_of_x = sum(1 for stage in kernel.stages for e in stage.exprs
                     if e.op == "load" and e.attr("access").buffer == "x")
    assert reads_of_x <= 2
    assert "vector" in lowered.as_text("loops") or "stage" in lowered.as_text("loops")


def test_loops_stage_shows_each_matmul_schedule():
    small, large = np.ones((64, 64), np.float32), np.ones((700, 700), np.float32)
    text = jit.jit(lambda a, b: (a @ b, b.T @ a)).lower(small, small).as_text("loops")
    assert text.count("schedule: direct") == 2
    text = jit.jit(lambda a: a @ a).lower(large).as_text("loops")
    assert "schedule: packed, blocks mc=" in text and "tile (" in text


@pytest.mark.parametrize("shape, perm", [((1, 2, 2), (0, 2, 1)), ((3, 4, 5), (2, 0, 1)),
                                         ((4, 6), (1, 0))])
def test_a_reshape_of_a_transposed_computed_value_regroups_the_copy(shape, perm):
    """A computed value, transposed, then reshaped across the transposed axes: the reshape
    needs a contiguous copy of the transposed view and must then apply to that copy (it read
    the copy with the transposed view's strides, past its end, before)."""
    def f(x):
        return jit.transpose(jit.abs(x + 1), perm).reshape(-1)

    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) - 5
    traced = jit.make_ir(f)(x)
    got = compile_native(traced)([x])
    np.testing.assert_array_equal(got[0], np.abs(x + 1).transpose(perm).reshape(-1))


def test_gradient_programs_run_natively_and_match_the_interpreter():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 5, 7)), rng.standard_normal((7, 3))

    def f(a, b):
        return jit.sum(jit.log_softmax(jit.tanh(a) @ b, axis=-1) * jit.sigmoid(a.sum(axis=2, keepdims=True)))

    traced = jit.make_ir(jit.grad(f, argnums=(0, 1)))(a, b)
    compiled = jit.jit(jit.grad(f, argnums=(0, 1))).lower(a, b).compile()
    assert compiled.stats["backend"] == "native"
    assert_matches(traced, [a, b], compile_native(traced)([a, b]))


def test_inputs_of_another_layout_or_dtype_are_converted_once():
    f = jit.jit(lambda x: x * 2)
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    f(x)
    np.testing.assert_array_equal(f(x.T.copy().T).numpy(), x * 2)
    np.testing.assert_array_equal(f(np.asfortranarray(x)).numpy(), x * 2)


def test_outputs_are_fresh_arrays_owned_by_the_caller():
    f = jit.jit(lambda x: x + 1)
    x = np.zeros(4, np.float32)
    first, second = f(x).numpy(), f(x).numpy()
    first[0] = 100
    assert second[0] == 1


def test_concurrent_calls_of_one_executable_do_not_share_scratch_results():
    f = jit.jit(lambda x: jit.softmax(x * 2))
    inputs = [np.random.default_rng(i).standard_normal((32, 40)) for i in range(4)]
    expected = [f(x).numpy() for x in inputs]
    errors = []

    def worker(i):
        for _ in range(50):
            if not np.array_equal(f(inputs[i]).numpy(), expected[i]):
                errors.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_loop_verifier_rejects_an_out_of_bounds_access():
    fn = jit.make_ir(lambda x: x * 2)(np.ones(8, np.float32))
    program = passes.lower(fn)
    (kernel,) = program.kernels
    stage = kernel.stages[0]
    store = stage.stores[0]
    bad = loops.Store(store.expr, loops.Access(store.access.buffer, 1, store.access.strides))
    broken = loops.Program(program.name, program.buffers, (loops.LoopKernel(
        kernel.name, kernel.outer, kernel.slots,
        (loops.Stage(stage.shape, stage.exprs, (bad,), stage.reductions),), kernel.computes),),
        program.inputs, program.outputs, program.constants, program.scratch_bytes)
    with pytest.raises(loops.LoopVerifyError, match="elements 1..8"):
        loops.verify(broken)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", [(512, 3, 512), (513, 17, 521), (300, 64, 1000)])
def test_bias_and_activation_run_in_the_matmul_epilogue(m, k, n, dtype):
    rng = np.random.default_rng(m)
    x, w = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    row_bias, column_bias = rng.standard_normal(n), rng.standard_normal((m, 1))
    other = rng.standard_normal((n, m))  # read transposed, lane by lane
    keep = rng.random((m, n)) < 0.5  # a bool operand

    def f(x, w, row_bias, column_bias, other, keep):
        y = jit.tanh(jit.relu(x @ w + row_bias) * column_bias + other.T)
        return jit.where(keep, y, -y)

    args = [a.astype(dtype) for a in (x, w, row_bias, column_bias, other)] + [keep]
    compiled = jit.jit(f).lower(*args).compile()
    assert compiled.stats["kernels"] == 1
    y = np.tanh(np.maximum(x @ w + row_bias, 0) * column_bias + other.T)
    tolerance = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(compiled(*args).numpy(), np.where(keep, y, -y), rtol=tolerance,
                               atol=tolerance * np.sqrt(k))


# Epilogue steps: (jit form, numpy form) on the product y and the operands of `epilogue_args`.
EPILOGUE_STEPS = {
    "row bias": (lambda y, o: y + o[0], lambda y, o: y + o[0]),
    "column scale": (lambda y, o: y * o[1], lambda y, o: y * o[1]),
    "minus other.T": (lambda y, o: y - o[2].T, lambda y, o: y - o[2].T),
    "masked": (lambda y, o: jit.where(o[3], y, -y), lambda y, o: np.where(o[3], y, -y)),
    "relu": (lambda y, o: jit.relu(y), lambda y, o: np.maximum(y, 0)),
    "tanh": (lambda y, o: jit.tanh(y), lambda y, o: np.tanh(y)),
    "halved": (lambda y, o: y * 0.5, lambda y, o: y * 0.5),
}


def epilogue_args(rng, m: int, k: int, n: int, dtype) -> list:
    """x, w, then the operands the steps read: a row bias, a column scale, an n x m array
    read transposed, a bool mask."""
    shapes = ((m, k), (k, n), (n,), (m, 1), (n, m))
    return [rng.standard_normal(s).astype(dtype) for s in shapes] + [rng.random((m, n)) < 0.5]


@settings(max_examples=25, deadline=None)
@given(m=st.integers(256, 300), n=st.integers(256, 300), k=st.integers(1, 40),
       dtype=st.sampled_from([np.float32, np.float64]),
       steps=st.lists(st.sampled_from(sorted(EPILOGUE_STEPS)), min_size=1, max_size=5))
def test_random_epilogues_match_numpy(m, n, k, dtype, steps):
    """Chains of elementwise steps after a product of >= 2^16 elements run as its epilogue,
    at every edge of the GEMM's strips, and agree with numpy."""
    args = epilogue_args(np.random.default_rng(m * n + k), m, k, n, dtype)

    def f(x, w, *operands):
        y = x @ w
        for step in steps:
            y = EPILOGUE_STEPS[step][0](y, operands)
        return y

    compiled = jit.jit(f).lower(*args).compile()
    assert compiled.stats["kernels"] == 1
    want = args[0].astype(np.float64) @ args[1]
    for step in steps:
        want = EPILOGUE_STEPS[step][1](want, [a.astype(np.float64) if a.dtype != bool else a
                                              for a in args[2:]])
    tolerance = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(compiled(*args).numpy(), want, rtol=tolerance,
                               atol=tolerance * np.sqrt(k) * np.abs(want).max())


def test_a_product_used_twice_is_stored_before_its_epilogue_would_change_it():
    x = np.random.default_rng(1).standard_normal((512, 512)).astype(np.float32)
    f = jit.jit(lambda x: (jit.relu(x @ x), x @ x * 2))
    relu, doubled = (t.numpy() for t in f(x))
    product = x.astype(np.float64) @ x
    np.testing.assert_allclose(relu, np.maximum(product, 0), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(doubled, product * 2, rtol=1e-4, atol=1e-3)


def _streamed_elements(bytes_per_element: int) -> int:
    """An odd element count just past the size from which a kernel moving this many bytes
    per element (its inputs and outputs together) streams its outputs."""
    return codegen.streaming_bytes() // bytes_per_element + 37


needs_streaming = pytest.mark.skipif(not codegen.is_x86(), reason="streaming stores: x86 only")


@needs_streaming
def test_a_big_elementwise_kernel_streams_its_output_and_a_small_one_does_not():
    f = jit.jit(lambda a, b, c: jit.sigmoid(a * b + c) * 2)
    big, small = (np.ones(n, np.float32) for n in (_streamed_elements(16), 1000))
    streamed = f.lower(big, big, big).as_text("llvm")
    assert "!nontemporal" in streamed and "llvm.x86.sse.sfence" in streamed
    cached = f.lower(small, small, small).as_text("llvm")
    assert "!nontemporal" not in cached and "sfence" not in cached


@needs_streaming
@pytest.mark.parametrize("offset", [0, 1, 5, 16])
def test_streamed_outputs_are_bit_identical_to_cached_stores(offset):
    """The streamed kernel (lead-in, streamed blocks, tails) against the same kernel on pieces
    too small to stream. With an offset, the streamed stage writes behind `offset` elements of
    the output, so its lead-in to a cache line runs for a different number of elements."""
    f = jit.jit(lambda a, b, c: jit.sigmoid(a * b + c) * 2)
    behind = jit.jit(lambda head, a, b, c: jit.concatenate([head, f(a, b, c)]))
    n = _streamed_elements(8)  # the copy behind the head moves 8 bytes per element
    rng = np.random.default_rng(offset)
    head, a, b, c = (rng.standard_normal(size).astype(np.float32) for size in (offset, n, n, n))
    pieces = [f(a[i:i + 4099], b[i:i + 4099], c[i:i + 4099]).numpy() for i in range(0, n, 4099)]
    if offset == 0:
        assert "!nontemporal" in f.lower(a, b, c).as_text("llvm")
        streamed = f(a, b, c).numpy()
    else:
        assert "!nontemporal" in behind.lower(head, a, b, c).as_text("llvm")
        streamed = behind(head, a, b, c).numpy()
    np.testing.assert_array_equal(streamed[:offset], head)
    np.testing.assert_array_equal(streamed[offset:].view(np.uint32),
                                  np.concatenate(pieces).view(np.uint32))


def _concatenated(a, b):  # the second stage writes into the output at an odd offset
    return jit.concatenate([jit.sigmoid(a) * 2, jit.tanh(b)])


def _row_softmax(a, b):  # the division stage streams each odd-length row from its own offset
    return jit.softmax(a * b, axis=-1)


def _compared(a, b):  # bool output: one byte per element
    return a * b > 0.5


@needs_streaming
@pytest.mark.parametrize("fn,shape,dtype", [
    (_concatenated, (_streamed_elements(16) + 3,), np.float32),
    (_row_softmax, (_streamed_elements(12) // 1027 + 1, 1027), np.float32),
    (_row_softmax, (_streamed_elements(24) // 515 + 1, 515), np.float64),
    (_compared, (_streamed_elements(9),), np.float32),
])
def test_streamed_stages_match_the_interpreter(fn, shape, dtype):
    rng = np.random.default_rng(len(shape))
    args = [rng.standard_normal(shape).astype(dtype) for _ in range(2)]
    traced = jit.make_ir(fn)(*args)
    compiled = compile_native(traced)
    assert "!nontemporal" in jit.jit(fn).lower(*args).as_text("llvm")
    assert_matches(traced, args, compiled(args))

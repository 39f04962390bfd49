"""Native GEMM without BLAS: C[M,N] = A[M,K] @ B[K,N] (or C += with `accumulate`).

Entry point emitted for each config (strides in elements, sizes at run time):

    void name(ptr A, i64 rsa, i64 csa, ptr B, i64 rsb, i64 csb,
              ptr C, i64 rsc, i64 M, i64 N, i64 K, ptr scratch, ptr epi)

A[i,k] is A[i*rsa + k*csa], B[k,j] is B[k*rsb + j*csb] (so transposed operands need no copy),
C[i,j] is C[i*rsc + j]. C must not overlap A or B. `scratch` is 64-byte aligned and holds
`scratch_bytes(config, M, N, K)` bytes. C is never read before it is written unless
`accumulate`, so it need not be zeroed. `epi` is null or an epilogue record whose callback
finishes each row strip of C once it holds its final products (gemm_ir.py).

Design (PERF-NOTES 1): jc(NC) -> pc(KC) -> pack B -> ic(MC) -> [pack A] -> ir(MR) -> jr(NR) ->
MR x NR register tile of explicit <W x T> llvm.fma chains, each tile's C rows prefetched before
its microkernel. K runs in even blocks of at most KC: the first stores and later ones
accumulate (the epilogue finishes the last); edge columns go through a stack tile, computed by
a kernel only as many vectors wide as they need; the last M % MR rows join the last MR in one
row of tiles of exact height and half the width (with A in MR-row panels: exact-height kernels
of their own). A C block one vector wide (N=10: a classifier head) is computed in tiles of
`narrow_mr` rows (24 with AVX-512), stored with masks. A with unit column stride is never
packed (its micro-panel stays in L1 while jr sweeps the packed B block in L2); when B (rows
contiguous) is within `direct_b_bytes` (4/5 of L2 with AVX-512) and K <= kc, A and B are read
in place, in one K block (only B's last N % NR columns are copied, to a padded panel). The tile
loops live in one internal function `name.block` (A rows x packed-or-in-place B columns over
one K block) that both paths call. `plan` says which path and packing a shape and layout get
(the loops stage prints it under each matmul). Threads: hand each one a row range (offset A and
C, pass its M; `finish` then needs the offset too, as it reads epilogue operands at absolute
rows) or, sharing packed B, a range of the ic loop (`emit_packed(m_lo, m_hi)`).

Measured on Zen5 (znver5, 1 thread, GFLOP/s kernel-only, numpy/OpenBLAS SkylakeX ~180-245,
shared noisy VM, interleaved medians; FMA peak ~265):
- Tiles: 6x64 (24 zmm) best; 12x32 / 14x32 equal at n >= 512, 10-15% slower at n=64
  (row edge); 8x48 and 4x64 worse at n >= 128. Direct path 6x64 at n=64: 240-265.
- Loop order ir -> jr (A panel in L1, B block kc x nc in L2): +5-10% at n=2048 over
  BLIS jr -> ir, whose kc x 64 B micro-panel does not fit L1. k-unroll 1 vs 2: no difference.
- Blocks, A read in place: kc=1024, nc=128 (A rows read as 4 KiB streams, C read back once
  at K=2048) against kc=256, nc=768: 2048^2 0.97 -> 1.01-1.05x numpy, 1024^2 1.04 -> 1.05-1.06x
  (three interleaved runs), float64 kc=512: 1024^2 1.19 -> 1.21x. A packed (x.T @ ct) is
  packed again for every nc columns (kc=1024, nc=128 costs it 20-25%): kc=128, nc=1024
  against kc=256, nc=768: 1024^2 0.99-1.02 -> 1.05-1.09x, 2048^2 0.97 -> 0.99-1.00x; float64
  (nc=512) 512^2 1.16 -> 1.27x, 1024^2 1.13 -> 1.18x.
- Not packing row-major A: n=512 231 -> 238. Direct (unpacked) path beats packing up to
  n=256 (250 vs 224) and at 512 (244 vs 238, but its 1 MB B exceeds `direct_b_bytes`:
  not enabled).
- A = x.T on the direct path, read in place: copying it to MR-row panels first (vector
  copies, the whole A or each micro-panel before its tiles) was slower: 256^3 126 -> 135 us,
  784x128x256 191 -> 201 us (interleaved). Prefetching B ahead in the first row panel, where
  B comes from L3 (MLP step, x @ w1): no change beyond noise.
- Remainder rows: each row of tiles streams the B block from L2 (~26 B a cycle here), so a
  row of 2-4 rows alone cost as much as a full one (x@784x256: 2 rows 7.8 us, 4 rows 8.3, 6
  rows 9.6). Joined to the last full row as 8x32 (10x32) tiles: 128x784x256 217 -> 204 us,
  MLP step 683 -> 664-669 us, example 2 at 256 397-401 -> 394-397 us (kernel ticks).
- One-vector-wide C (128x256 @ 256x10): 6-row tiles 85-99 GFLOP/s, 24-row tiles 130-137
  (numpy 104); only with LLVM's loop strength reduction off (runtime/engine.py).
- Result vs numpy (`python -m benchmarks` at 068f28b, whole calls): n=64 1.17x, 128 1.21x,
  256 1.09x, 512 1.04x, 1024 1.05x, 2048 1.04x; float64 256 1.28x, 1024 1.23x. IR ~6.7k
  lines (f32), light-pipeline compile ~0.15 s (0.11 before the tall remainder rows).
"""
from __future__ import annotations

import ctypes
import functools
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from llvmlite import ir

from runtime import engine
from runtime.gemm_ir import ARG_NAMES, GemmEmitter

ITEMSIZE = {"float32": 4, "float64": 8}


@dataclass(frozen=True)
class GemmConfig:
    """Compile-time shape of one GEMM kernel; sizes stay run-time arguments."""

    dtype: str            # "float32" or "float64"
    vector_bytes: int     # 16 / 32 / 64: SSE, AVX2, AVX-512
    mr: int               # register tile rows
    nr: int               # register tile columns, a multiple of the vector lanes
    mc: int               # rows of an A block on the packed path (multiple of mr and
                          # narrow_mr); sizes the packed-A buffer
    kc: int               # depth of a block with A read in place (its MR x kc panel in L1)
    nc: int               # columns of the packed B block (multiple of nr), kept in L2
    a_packed_kc: int      # kc and nc when A is packed: shallower, wider B blocks, as A is
    a_packed_nc: int      # packed again for every nc columns
    direct_b_bytes: int   # a B (rows contiguous) up to this size is read in place, in one
                          # K block if K <= kc
    narrow_mr: int        # register tile rows when C's block is one vector wide
    k_unroll: int = 1
    accumulate: bool = False  # C += A @ B instead of C = A @ B

    @property
    def itemsize(self) -> int:
        return ITEMSIZE[self.dtype]

    @property
    def lanes(self) -> int:
        """Elements of one vector register."""
        return self.vector_bytes // self.itemsize


def cache_sizes() -> tuple[int, int, int]:
    """Per-core L1d, L2 and the shared L3 in bytes (Linux sysfs; conservative defaults)."""
    sizes = {1: 32 << 10, 2: 512 << 10, 3: 8 << 20}
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            text = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        if kind != "Instruction" and text[-1:] in "KM":
            sizes[level] = int(text[:-1]) << (10 if text[-1] == "K" else 20)
    return sizes[1], sizes[2], sizes[3]


# Register tiles measured best per vector width and dtype (see the module docstring).
_TILES = {
    (64, "float32"): (6, 64), (64, "float64"): (6, 32),
    (32, "float32"): (6, 16), (32, "float64"): (6, 8),
    (16, "float32"): (6, 8), (16, "float64"): (6, 4),
}


def gemm_config(dtype: str, host: engine.HostTarget | None = None,
                caches: tuple[int, int, int] | None = None) -> GemmConfig:
    """Parameters for `dtype` on `host` (default: this machine) from its vector width and caches."""
    host = host or engine.host()
    l1, l2, _ = caches or cache_sizes()
    es = ITEMSIZE[dtype]
    vb = min(host.vector_bytes, 64)
    mr, nr = _TILES[(vb, dtype)]
    # A read in place: each row of its MR x kc micro-panel a 4 KiB stream, long enough for the
    # prefetchers, the panel within 3/4 of L1; the kc x nc B block half of L2. Zen4 (32 KiB
    # L1), against the panel in half of L1 (kc=680 f32, 336 f64), times numpy's, interleaved:
    # 2048^2 1.03-1.04 -> 1.05-1.14x, 1024^2 1.05 -> 1.07x, float64 1024^2 1.03 -> 1.07x.
    # Zen5's 48 KiB L1 gave these blocks either way.
    kc = min(4096 // es, l1 * 3 // 4 // (mr * es)) // 8 * 8
    nc = max(nr, (l2 // 2) // (kc * es) // nr * nr)
    # A packed (A = x.T or strided): A is packed again for every nc columns, so B's block
    # is as wide as half of L2 holds at a shallow kc.
    a_packed_kc = 128
    a_packed_nc = max(nr, (l2 // 2) // (a_packed_kc * es) // nr * nr)
    mc = max(mr, 240 // mr * mr)  # the ic step; bounds the packed-A buffer
    # Reading B in place, if it stays in L2 across A's micro-panels, saves its packing pass
    # (Zen5, AVX-512: a B of 512-800 KB: 128x784 @ 784x256 241 -> 256 GFLOP/s, 64x784x256
    # 226 -> 260; a 1 MB B ties or loses: 512^2 248 -> 234). AVX2's 6x16 tiles gained only
    # up to 128^3 (64 KB of B).
    direct_b_bytes = l2 * 4 // 5 if vb == 64 else min(l2, 64 << 10)
    # One vector of columns: 24 rows with AVX-512's 32 registers, else 12.
    narrow_mr = 4 * mr if vb == 64 else 2 * mr
    return GemmConfig(dtype, vb, mr, nr, mc, kc, nc, a_packed_kc, a_packed_nc, direct_b_bytes,
                      narrow_mr)


@functools.cache
def _data_layout() -> str:
    return str(engine.target_machine().target_data)


def gemm_llvm_ir(config: GemmConfig, name: str) -> str:
    """LLVM IR text of a module defining `name` (see the module docstring for the signature)."""
    module = ir.Module(name=name)
    module.triple = engine.host().triple
    module.data_layout = _data_layout()
    GemmEmitter(config, module, name).emit_body()
    text = str(module)
    attrs = engine.function_attributes()
    if config.vector_bytes == 64:
        # Keep <16 x float> whole even if the CPU's tuning prefers 256-bit vectors.
        attrs += ' "min-legal-vector-width"="512"'
    text = re.sub(r"^(define .*\))$", r"\1 #0", text, flags=re.MULTILINE)
    return text + f"\nattributes #0 = {{ nounwind {attrs} }}\n"


def reads_in_place(config: GemmConfig, N: int, K: int) -> bool:
    """Whether B (if its rows are contiguous) and A are read without packing."""
    return K * N * config.itemsize <= config.direct_b_bytes and K <= config.kc


def scratch_bytes(config: GemmConfig, M: int, N: int, K: int) -> int:
    """Bytes of packing workspace the kernel uses for these sizes (B block, then A block;
    read in place, only B's K x NR edge panel). The strides are not known here: room for
    either blocking."""
    b_block = max(K * config.nr if reads_in_place(config, N, K) else 0,
                  b_block_bytes(config, N, K, a_packed=False),
                  b_block_bytes(config, N, K, a_packed=True))
    mc = min(config.mc, _round_up(M, config.mr))
    return max(64, b_block + _round_up(mc * min(config.a_packed_kc, K) * config.itemsize, 64))


def k_step(kc: int, k: int) -> int:
    """The depth of each K block: K split evenly into as few blocks as `kc` allows, so that
    no thin last block re-reads and re-writes C for little work (K=2048, kc=680: 3 blocks of
    683, not 680, 680, 680 and 8)."""
    return _ceil_div(k, _ceil_div(k, kc)) if k > 0 else kc


def blocks(config: GemmConfig, a_packed: bool) -> tuple[int, int, int]:
    """(mc, kc, nc) of the packed path, which depend on whether A is packed too."""
    if a_packed:
        return config.mc, config.a_packed_kc, config.a_packed_nc
    return config.mc, config.kc, config.nc


def b_block_bytes(config: GemmConfig, N: int, K: int, a_packed: bool) -> int:
    """Bytes of the packed B block (64-byte multiple): the A block follows it in scratch."""
    _, kc, nc = blocks(config, a_packed)
    return _round_up(min(kc, K) * min(nc, _round_up(N, config.nr)) * config.itemsize, 64)


def _ceil_div(x: int, d: int) -> int:
    return -(-x // d)


def _round_up(x: int, m: int) -> int:
    return _ceil_div(x, m) * m


@dataclass(frozen=True)
class GemmPlan:
    """What the kernel of `config` does for one shape and layout. The kernel decides at run
    time, from the sizes and strides (one compiled kernel serves every shape); `plan` mirrors
    those decisions so the loops stage can show the schedule and tests can check it."""

    config: GemmConfig
    m: int
    n: int
    k: int
    direct: bool    # A and B read in place, one K block
    a_packing: str  # "none", "rows" (register transposes: A = x.T) or "panels" (MR-row)
    b_packing: str  # "none", "rows", "transposes" (B = w.T) or "elements"
    narrow: bool    # C one vector wide: tiles of narrow_mr rows

    def lines(self) -> list[str]:
        """The schedule as an indented loop nest (the loops stage prints it under the kernel).
        Row tiles are described per block of `mc` rows, a multiple of both tile heights."""
        cfg = self.config
        if self.m <= 0 or self.n <= 0:
            return ["schedule: none (C is empty)"]
        edge = self.n % cfg.nr
        a = {"none": "read in place", "rows": "copied to rows by register transposes",
             "panels": f"packed in {cfg.mr}-row panels"}[self.a_packing]
        if self.direct:
            kc, rows, indent = self.k, self.m, "  "
            b = ("copied to one padded panel" if self.n < cfg.nr else
                 "read in place" + (f", its last {edge} columns copied to a padded panel"
                                    if edge else ""))
            lines = [f"schedule: direct (B {self.k}x{self.n} within {cfg.direct_b_bytes >> 10}"
                     f" KiB of L2, K <= {cfg.kc}): A {a}; B {b}"]
        else:
            mc, kc_blocks, nc = blocks(cfg, self.a_packing != "none")
            kc_step = k_step(kc_blocks, self.k)
            k_blocks = max(1, _ceil_div(self.k, kc_step))
            kc, rows, indent = min(kc_step, self.k), min(mc, self.m), "        "
            b = {"rows": "rows copied", "elements": "element copies",
                 "transposes": "register transposes" + (
                     f", the last {edge} columns by element copies" if edge else "")
                 }[self.b_packing if self.n >= cfg.nr else "elements"]
            lines = [f"schedule: packed, blocks mc={mc} kc={kc_blocks} nc={nc}",
                     f"  for jc in [0, {self.n}) step {nc}:",
                     f"    for pc in [0, {self.k}) step {kc_step}:" + (
                         f"   ({k_blocks} K blocks: the first stores C, the rest add to it)"
                         if k_blocks > 1 else ""),
                     f"      B[pc:+{kc}, jc:+{min(nc, self.n)}] -> {cfg.nr}-column panels"
                     f" ({b})",
                     f"      for ic in [0, {self.m}) step {mc}: A block {a}"]
        return lines + [indent + line for line in self._tile_lines(rows, kc)]

    def _tile_lines(self, rows: int, kc: int) -> list[str]:
        """The register tiles of a block of `rows` rows (the last block's remainders)."""
        cfg, w = self.config, self.config.lanes
        vector, nv = f"<{w} x f{8 * cfg.itemsize}>", cfg.nr // w
        lines = []
        if self.narrow and rows >= cfg.narrow_mr:
            lines.append(f"for ir step {cfg.narrow_mr}: {cfg.narrow_mr}x{w} tile (1 {vector} "
                         f"a row, {self.n} columns stored), k in [0, {kc})")
        left = (self.m - 1) % rows + 1  # rows of the last block
        if self.narrow:
            left %= cfg.narrow_mr
        edge = self.n % cfg.nr
        vectors = _ceil_div(edge, w)
        narrow_edge = 0 < vectors < nv
        if (rows if not self.narrow else left) >= cfg.mr:
            wide_columns = self.n - edge if narrow_edge else self.n
            if wide_columns:
                lines.append(f"for ir step {cfg.mr}, jr step {cfg.nr}: {cfg.mr}x{cfg.nr} tile "
                             f"({nv} {vector} a row), k in [0, {kc})")
            if narrow_edge:
                lines.append(f"the last {edge} columns: {cfg.mr}x{vectors * w} tiles "
                             f"({vectors} {vector} a row)")
            elif edge:
                lines.append(f"the last {edge} columns: through a stack tile")
        short = left % cfg.mr
        if short and left >= cfg.mr and not self.narrow and self.a_packing != "panels":
            tall, half = cfg.mr + short, nv // 2
            lines.append(f"the last {tall} rows: {tall}x{half * w} tiles ({half} {vector} a "
                         f"row), in place of {cfg.mr}x{cfg.nr} and {short}x{cfg.nr}")
        elif short:
            lines.append(f"the last {short} rows: {short}x{cfg.nr} tiles ({nv} {vector} a row"
                         + (", edge columns through a stack tile)" if edge else ")"))
        return lines


def plan(config: GemmConfig, m: int, n: int, k: int, a_strides: tuple[int, int],
         b_strides: tuple[int, int]) -> GemmPlan:
    """The schedule the kernel runs for C[m,n] = A[m,k] @ B[k,n] with these (row, column)
    strides in elements: the choices `GemmEmitter.emit_body` and `emit_packed` make."""
    (rsa, csa), (rsb, csb) = a_strides, b_strides
    direct = reads_in_place(config, n, k) and csb == 1
    a_packing = "none" if direct or csa == 1 else "rows" if rsa == 1 else "panels"
    b_packing = ("none" if direct else "rows" if csb == 1 else
                 "transposes" if rsb == 1 else "elements")
    narrow = n <= config.lanes < config.nr and a_packing != "panels"
    return GemmPlan(config, m, n, k, direct, a_packing, b_packing, narrow)


_ARGTYPES = [ctypes.c_void_p if n in ("A", "B", "C", "scratch", "epi") else ctypes.c_int64
             for n in ARG_NAMES]


class GemmKernel:
    """One compiled GEMM plus a numpy-facing call (used by tests and benchmarks)."""

    def __init__(self, config: GemmConfig):
        self.config = config
        self.name = f"tj_gemm_{config.dtype[5:]}"
        self.module = engine.compile_llvm(gemm_llvm_ir(config, self.name), pipeline="light")
        self.fn = ctypes.CFUNCTYPE(None, *_ARGTYPES)(self.module.address(self.name))
        self._local = threading.local()

    def scratch(self, nbytes: int) -> np.ndarray:
        """A per-thread 64-byte-aligned workspace, grown on demand."""
        buf = getattr(self._local, "buf", None)
        if buf is None or buf.size < nbytes:
            raw = np.empty(nbytes + 64, np.uint8)
            off = -raw.ctypes.data % 64
            buf = raw[off:off + nbytes]
            self._local.buf = buf
        return buf

    def __call__(self, a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None,
                 epi: int | None = None) -> np.ndarray:
        """a @ b into `out` (a new array if None); `epi`: the address of an epilogue record
        (runtime/gemm_ir.py)."""
        dt = np.dtype(self.config.dtype)
        a, b = (_strided(x, dt) for x in (a, b))
        (m, k), (k2, n) = a.shape, b.shape
        if k != k2:
            raise ValueError(f"matmul shapes {a.shape} and {b.shape} do not match")
        if out is None:
            out = np.empty((m, n), dt)
        if out.shape != (m, n) or out.dtype != dt:
            raise ValueError(f"out must be {(m, n)} {dt}, not {out.shape} {out.dtype}")
        if out.size == 0:
            return out
        if n > 1 and out.strides[1] != dt.itemsize:
            raise ValueError("out rows must be contiguous")
        scratch = self.scratch(scratch_bytes(self.config, m, n, k))
        es = dt.itemsize
        self.fn(a.ctypes.data, a.strides[0] // es, a.strides[1] // es,
                b.ctypes.data, b.strides[0] // es, b.strides[1] // es,
                out.ctypes.data, out.strides[0] // es, m, n, k, scratch.ctypes.data, epi)
        return out


def _strided(x: np.ndarray, dt: np.dtype) -> np.ndarray:
    """x as dt with element-multiple strides (views pass through uncopied)."""
    x = np.asarray(x, dt)
    if x.ndim != 2:
        raise ValueError("gemm operands must be 2-D")
    if any(s % dt.itemsize for s in x.strides):
        x = np.ascontiguousarray(x)
    return x


_kernels: dict[GemmConfig, GemmKernel] = {}


def kernel_for(config: GemmConfig) -> GemmKernel:
    """The cached kernel of a config, compiled on first use."""
    kern = _kernels.get(config)
    if kern is None:
        kern = _kernels[config] = GemmKernel(config)
    return kern


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b for 2-D float32/float64 arrays through the native kernel of their dtype."""
    dtype = np.result_type(a, b)
    if dtype not in (np.float32, np.float64):
        dtype = np.dtype(np.float64)
    return kernel_for(gemm_config(np.dtype(dtype).name))(a, b)


__all__ = ["GemmConfig", "GemmKernel", "GemmPlan", "cache_sizes", "gemm_config",
           "gemm_llvm_ir", "kernel_for", "matmul", "plan", "scratch_bytes"]

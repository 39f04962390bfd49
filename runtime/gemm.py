"""Native GEMM without BLAS: C[M,N] = A[M,K] @ B[K,N] (or C += with `accumulate`).

Entry point emitted for each config (strides in elements, sizes at run time):

    void name(ptr A, i64 rsa, i64 csa, ptr B, i64 rsb, i64 csb,
              ptr C, i64 rsc, i64 M, i64 N, i64 K, ptr scratch)

A[i,k] is A[i*rsa + k*csa], B[k,j] is B[k*rsb + j*csb] (so transposed operands need no copy),
C[i,j] is C[i*rsc + j]. C must not overlap A or B. `scratch` is 64-byte aligned and holds
`scratch_bytes(config, M, N, K)` bytes. C is never read before it is written unless
`accumulate`, so it need not be zeroed.

Design (PERF-NOTES 1): Goto/BLIS nest jc(NC) -> pc(KC) -> pack B -> ic(MC) -> pack A ->
jr(NR) -> ir(MR) -> MR x NR register tile of explicit <W x T> FMA chains. The first KC block
stores, later ones accumulate; the epilogue runs on the last. Edge tiles go through a stack
tile. Small problems with contiguous B rows skip packing and read A and B in place.
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
from runtime.gemm_ir import ARG_NAMES, Epilogue, GemmEmitter

ITEMSIZE = {"float32": 4, "float64": 8}


@dataclass(frozen=True)
class GemmConfig:
    """Compile-time shape of one GEMM kernel; sizes stay run-time arguments."""

    dtype: str            # "float32" or "float64"
    vector_bytes: int     # 16 / 32 / 64: SSE, AVX2, AVX-512
    mr: int               # register tile rows
    nr: int               # register tile columns, a multiple of the vector lanes
    mc: int               # rows of the packed A block (multiple of mr), sized for L2
    kc: int               # depth of a packed block, sized so micro-panels stay in L1
    nc: int               # columns of the packed B block (multiple of nr), sized for L3
    direct_max: int       # M*N*K up to which B-row-contiguous problems skip packing
    k_unroll: int = 1
    ir_outer: bool = False    # register-tile loop order inside a packed block
    accumulate: bool = False  # C += A @ B instead of C = A @ B

    @property
    def itemsize(self) -> int:
        return ITEMSIZE[self.dtype]


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
    l1, l2, l3 = caches or cache_sizes()
    es = ITEMSIZE[dtype]
    vb = min(host.vector_bytes, 64)
    mr, nr = _TILES[(vb, dtype)]
    # B micro-panel (kc x nr) plus A micro-panel (kc x mr) in about half of L1.
    kc = max(64, min(512, (l1 // 2) // ((mr + nr) * es) // 16 * 16 * 2))
    # A block (mc x kc) in about half of L2.
    mc = max(mr, min(l2 // 2 // (kc * es), 1024) // mr * mr)
    # B block (kc x nc) in a quarter of L3.
    nc = max(nr, min(l3 // 4 // (kc * es), 8192) // nr * nr)
    return GemmConfig(dtype, vb, mr, nr, mc, kc, nc, direct_max=160 ** 3)


@functools.cache
def _data_layout() -> str:
    return str(engine.target_machine().target_data)


def gemm_llvm_ir(config: GemmConfig, name: str, epilogue: Epilogue | None = None) -> str:
    """LLVM IR text of a module defining `name` (see the module docstring for the signature)."""
    module = ir.Module(name=name)
    module.triple = engine.host().triple
    module.data_layout = _data_layout()
    GemmEmitter(config, module, name, epilogue).emit_body()
    text = str(module)
    attrs = engine.function_attributes()
    if config.vector_bytes == 64:
        # Keep <16 x float> whole even if the CPU's tuning prefers 256-bit vectors.
        attrs += ' "min-legal-vector-width"="512"'
    text = re.sub(rf'(define void @"{re.escape(name)}"\(.*\))', r"\1 #0", text)
    return text + f"\nattributes #0 = {{ nounwind {attrs} }}\n"


def scratch_bytes(config: GemmConfig, M: int, N: int, K: int) -> int:
    """Bytes of packing workspace the kernel uses for these sizes (B block, then A block)."""
    def up(x: int, m: int) -> int:
        return -(-x // m) * m
    kc = min(config.kc, K)
    nc = min(config.nc, up(N, config.nr))
    mc = min(config.mc, up(M, config.mr))
    return max(64, up(kc * nc * config.itemsize, 64) + up(mc * kc * config.itemsize, 64))


_ARGTYPES = [ctypes.c_void_p if n in ("A", "B", "C", "scratch") else ctypes.c_int64
             for n in ARG_NAMES]


class GemmKernel:
    """One compiled GEMM plus a numpy-facing call (used by tests and benchmarks)."""

    def __init__(self, config: GemmConfig, epilogue: Epilogue | None = None,
                 name: str | None = None):
        self.config = config
        self.name = name or f"tj_gemm_{config.dtype[5:]}"
        self.module = engine.compile_llvm(gemm_llvm_ir(config, self.name, epilogue),
                                          pipeline="light")
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

    def __call__(self, a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None
                 ) -> np.ndarray:
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
                out.ctypes.data, out.strides[0] // es, m, n, k, scratch.ctypes.data)
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
    """The cached kernel (no epilogue) of a config, compiled on first use."""
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


__all__ = ["GemmConfig", "GemmKernel", "cache_sizes", "gemm_config", "gemm_llvm_ir",
           "kernel_for", "matmul", "scratch_bytes"]

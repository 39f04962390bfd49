"""Native executables: a loop program compiled through LLVM, called on numpy arrays.

The entry (runtime/entry.py) takes the input arrays and returns fresh outputs, handed to the
caller as they are; inputs are used in place when they are C-contiguous and of the right
dtype, else converted once here. Each executable owns its scratch arena and GEMM workspace.
"""
from __future__ import annotations

import ctypes
import dataclasses
import functools
import threading
import time
from typing import Sequence

import llvmlite.binding as llvm
import numpy as np

from ir.loops import ARENA_ALIGN, MatmulKernel, Program
from ir.loops import to_text as loops_text
from runtime import disk_cache, engine, entry, gemm, pyabi

ALIGN = ARENA_ALIGN  # of the scratch arena (the loop IR's contract) and the GEMM workspace
METH_FASTCALL = 0x0080


class _MethodDef(ctypes.Structure):
    _fields_ = [("ml_name", ctypes.c_char_p), ("ml_meth", ctypes.c_void_p),
                ("ml_flags", ctypes.c_int), ("ml_doc", ctypes.c_char_p)]


_new_builtin = ctypes.pythonapi.PyCFunction_NewEx
_new_builtin.restype = ctypes.py_object
_new_builtin.argtypes = [ctypes.POINTER(_MethodDef), ctypes.py_object, ctypes.py_object]


def builtin(address: int, name: str, self: object = None) -> tuple[object, _MethodDef]:
    """A METH_FASTCALL builtin around native code, passed `self`; keep the returned definition
    alive."""
    definition = _MethodDef(name.encode(), address, METH_FASTCALL, None)
    return _new_builtin(ctypes.byref(definition), self, None), definition


_gemm_modules: dict[str, engine.NativeModule] = {}
_gemm_lock = threading.Lock()


@functools.cache
def _host_gemm_config(dtype: str) -> gemm.GemmConfig:
    return gemm.gemm_config(dtype)  # reads the cache sizes from sysfs: once, not per kernel


def _gemm_config(kernel: MatmulKernel) -> gemm.GemmConfig:
    return _host_gemm_config("float32" if kernel.dtype.name == "f32" else "float64")


def gemm_schedule(kernel: MatmulKernel) -> list[str]:
    """What the host's GEMM does for this kernel's shape and strides (the loops stage)."""
    a, b = kernel.a, kernel.b
    return gemm.plan(_gemm_config(kernel), kernel.m, kernel.n, kernel.k, (a.rows, a.cols),
                     (b.rows, b.cols)).lines()


def gemm_symbol(kernel: MatmulKernel) -> str:
    """Compile (once per process per dtype, through the disk cache) the GEMM a matmul kernel
    calls, and make its symbol visible to MCJIT."""
    name = f"tj_gemm_{kernel.dtype.name}"
    with _gemm_lock:
        if name not in _gemm_modules:
            config = _gemm_config(kernel)
            store = disk_cache.entry(repr(("gemm", name, config, "light")), f"GEMM {name}")
            module = engine.compile_cached(lambda: gemm.gemm_llvm_ir(config, name), "light",
                                           store)
            llvm.add_symbol(name, module.address(name))
            _gemm_modules[name] = module
    return name


def _program_source(program: Program, gemm_names: dict[str, str]) -> str:
    """What determines a program's machine code: the loop program (not its name, which is no
    part of the code; its constants by shape and dtype only, their data reaches the code
    through the entry's `self`) and the GEMM symbols."""
    constants = tuple((name, array.shape, array.dtype.str) for name, array in program.constants)
    anonymous = dataclasses.replace(program, name="", constants=constants)
    return repr(("program", "light", anonymous, sorted(gemm_names.items())))


def aligned_empty(nbytes: int) -> np.ndarray:
    raw = np.empty(nbytes + ALIGN, dtype=np.uint8)
    start = (-raw.ctypes.data) % ALIGN
    return raw[start:start + nbytes]


def _gemm_scratch_bytes(program: Program) -> int:
    sizes = [gemm.scratch_bytes(_gemm_config(k), k.m, k.n, k.k)
             for k in program.kernels if isinstance(k, MatmulKernel)]
    return max(sizes, default=0)


class NativeExecutable:
    """A compiled program. `entry(*arrays)` is the fast call (runtime/entry.py): the outputs
    as a tuple, or NotImplemented when an argument is not an ndarray of exactly the
    parameter's dtype and shape, C-contiguous; calling the executable converts such arguments."""

    def __init__(self, program: Program, profile: bool = False):
        """`profile`: count each kernel's time-stamp-counter ticks (`kernel_ticks`); such an
        executable is not written to or read from the disk cache."""
        start = time.perf_counter()
        self.program = program
        names = {k.name: gemm_symbol(k) for k in program.kernels if isinstance(k, MatmulKernel)}
        pyabi.export_symbols()
        store = None if profile else disk_cache.entry(_program_source(program, names),
                                                      f"program @{program.name}")
        self.module = engine.compile_cached(
            lambda: entry.emit_program(program, names, profile), "light", store)
        self._ticks = (None if not profile else (ctypes.c_int64 * len(program.kernels))
                       .from_address(self.module.address(entry.KERNEL_TICKS, variable=True)))
        gemm_bytes = _gemm_scratch_bytes(program)
        scratch = [aligned_empty(max(program.scratch_bytes, ALIGN)),
                   aligned_empty(max(gemm_bytes, ALIGN))]
        self.entry, self._entry_definition = builtin(
            self.module.address(entry.ENTRY), program.name, entry.entry_self(program, scratch))
        self._inputs = [(program.buffer(n).shape, np.dtype(program.buffer(n).dtype.numpy))
                        for n in program.inputs]
        self.stats = {"compile_seconds": time.perf_counter() - start,
                      "kernels": len(program.kernels),
                      "scratch_bytes": program.scratch_bytes + gemm_bytes,
                      "backend": "native",
                      "cache": self.module.cache}  # the program's code: "hit", "miss" or "off"

    def kernel_ticks(self) -> list[int]:
        """Time-stamp-counter ticks spent in each kernel over all calls so far (profiling
        executables only)."""
        if self._ticks is None:
            raise ValueError("compiled without profile=True: no kernel counters")
        return list(self._ticks)

    def __call__(self, arrays: Sequence) -> list[np.ndarray]:
        """Run on any array-likes of the parameters' shapes; each is converted (once) to the
        parameter's dtype and a C-contiguous layout when it is not that already."""
        outputs = self.entry(*arrays)
        if outputs is NotImplemented:
            outputs = self.entry(*self._conform(arrays))
        return list(outputs)

    def _conform(self, arrays: Sequence) -> list[np.ndarray]:
        if len(arrays) != len(self._inputs):
            raise ValueError(f"expected {len(self._inputs)} inputs, got {len(arrays)}")
        conformed = []
        for array, (shape, dtype) in zip(arrays, self._inputs):
            array = np.require(np.asarray(array, dtype=dtype), dtype, "CA")
            if array.shape != shape:
                raise ValueError(f"expected an input of shape {shape}, got {array.shape}")
            conformed.append(array if array.dtype is dtype else array.view(dtype))
        return conformed

    def stage_text(self, stage: str) -> str:
        if stage == "loops":
            return loops_text(self.program, engine.host().vector_bytes, gemm_schedule)
        if stage == "llvm":
            return self.module.optimized_ir
        if stage == "asm":
            return self.module.assembly()
        raise ValueError(f"unknown stage {stage!r}")


def compile_program(program: Program) -> NativeExecutable:
    return NativeExecutable(program)

"""Native executables: a loop program compiled through LLVM, called on numpy arrays.

The entry receives one tuple: the inputs, fresh output arrays, the program's constants, its
scratch arena and the GEMM workspace. Outputs are allocated per call and handed to the caller
as they are; inputs are used in place when they are C-contiguous and of the right dtype.
"""
from __future__ import annotations

import ctypes
import threading
import time
from typing import Sequence

import llvmlite.binding as llvm
import numpy as np

from ir.loops import MatmulKernel, Program
from ir.loops import to_text as loops_text
from runtime import codegen_matmul, engine, entry, gemm

# An ndarray's data pointer follows the object header (PyArrayObject_fields); the header's
# size is read from the running interpreter, not hard-coded.
ARRAY_DATA_OFFSET = object.__basicsize__
ALIGN = 64
METH_FASTCALL = 0x0080


class _MethodDef(ctypes.Structure):
    _fields_ = [("ml_name", ctypes.c_char_p), ("ml_meth", ctypes.c_void_p),
                ("ml_flags", ctypes.c_int), ("ml_doc", ctypes.c_char_p)]


_new_builtin = ctypes.pythonapi.PyCFunction_NewEx
_new_builtin.restype = ctypes.py_object
_new_builtin.argtypes = [ctypes.POINTER(_MethodDef), ctypes.py_object, ctypes.py_object]


def _export_python_symbols() -> None:
    """Let generated code call the few CPython functions the entry needs."""
    for name in ("PyEval_SaveThread", "PyEval_RestoreThread", "Py_IncRef"):
        llvm.add_symbol(name, ctypes.cast(getattr(ctypes.pythonapi, name), ctypes.c_void_p).value)
    llvm.add_symbol("_Py_NoneStruct", id(None))


def builtin(address: int, name: str) -> tuple[object, _MethodDef]:
    """A METH_FASTCALL builtin around native code; keep the returned definition alive."""
    definition = _MethodDef(name.encode(), address, METH_FASTCALL, None)
    return _new_builtin(ctypes.byref(definition), None, None), definition


_gemm_modules: dict[str, engine.NativeModule] = {}
_gemm_lock = threading.Lock()


def _gemm_config(kernel: MatmulKernel) -> gemm.GemmConfig:
    return gemm.gemm_config("float32" if kernel.dtype.name == "f32" else "float64")


def _epilogue_key(kernel: MatmulKernel) -> tuple:
    """What makes two epilogues the same code: their expressions, with buffers numbered."""
    position = {name: i for i, name in enumerate(kernel.epilogue_buffers)}

    def attr(k, v):
        if k == "access":
            return position[v.buffer], v.offset, v.strides
        return v.name if hasattr(v, "numpy") else v

    exprs = tuple((e.op, e.args, e.dtype.name, tuple((k, attr(k, v)) for k, v in e.attrs))
                  for e in kernel.epilogue.exprs)
    return exprs, kernel.epilogue.stores[0].expr


def gemm_symbol(kernel: MatmulKernel, dtypes: dict) -> str:
    """Compile (once per process per dtype and epilogue) the GEMM a matmul kernel calls, and
    make its symbol visible to MCJIT."""
    key = (kernel.dtype.name,) + (_epilogue_key(kernel) if kernel.epilogue else ())
    name = f"tj_gemm_{kernel.dtype.name}" + (
        f"_e{abs(hash(key)):x}" if kernel.epilogue else "")
    with _gemm_lock:
        if name not in _gemm_modules:
            epilogue = (codegen_matmul.epilogue_emitter(kernel, dtypes) if kernel.epilogue
                        else None)
            text = gemm.gemm_llvm_ir(_gemm_config(kernel), name, epilogue)
            module = engine.compile_llvm(text, pipeline="light")
            llvm.add_symbol(name, module.address(name))
            _gemm_modules[name] = module
    return name


def aligned_empty(nbytes: int) -> np.ndarray:
    raw = np.empty(nbytes + ALIGN, dtype=np.uint8)
    start = (-raw.ctypes.data) % ALIGN
    return raw[start:start + nbytes]


def _gemm_scratch_bytes(program: Program) -> int:
    sizes = [gemm.scratch_bytes(_gemm_config(k), k.m, k.n, k.k)
             for k in program.kernels if isinstance(k, MatmulKernel)]
    return max(sizes, default=0)


class NativeExecutable:
    def __init__(self, program: Program):
        start = time.perf_counter()
        self.program = program
        dtypes = {b.name: b.dtype for b in program.buffers}
        names = {k.name: gemm_symbol(k, dtypes)
                 for k in program.kernels if isinstance(k, MatmulKernel)}
        _export_python_symbols()
        text = entry.emit_program(program, names, ARRAY_DATA_OFFSET)
        self.module = engine.compile_llvm(text, pipeline="light")
        self._entry, self._entry_definition = builtin(self.module.address("entry"), program.name)
        self._inputs = [(program.buffer(n).shape, program.buffer(n).dtype.numpy,
                         np.empty(program.buffer(n).shape, program.buffer(n).dtype.numpy).strides)
                        for n in program.inputs]
        self._strides = [strides for _, _, strides in self._inputs]
        self._outputs = [(program.buffer(n).shape, program.buffer(n).dtype.numpy)
                         for n in program.outputs]
        gemm_bytes = _gemm_scratch_bytes(program)
        self._fixed = [np.ascontiguousarray(a) for _, a in program.constants]
        self._fixed += [aligned_empty(max(program.scratch_bytes, ALIGN)),
                        aligned_empty(max(gemm_bytes, ALIGN))]
        self._lock = threading.Lock() if program.scratch_bytes or gemm_bytes else None
        self.stats = {"compile_seconds": time.perf_counter() - start,
                      "kernels": len(program.kernels),
                      "scratch_bytes": program.scratch_bytes + gemm_bytes,
                      "backend": "native"}

    def __call__(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run on any array-likes: each is converted (once) to the parameter's C-contiguous
        dtype when it is not that already."""
        items = []
        for array, (shape, dtype, strides) in zip(arrays, self._inputs):
            if type(array) is not np.ndarray or array.shape != shape or array.strides != strides \
                    or array.dtype != dtype:
                array = np.ascontiguousarray(array, dtype=dtype)
                if array.shape != shape:
                    raise ValueError(f"expected an input of shape {shape}, got {array.shape}")
            items.append(array)
        return self.run_exact(items)

    def run_exact(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run on ndarrays of exactly the parameters' shapes and dtypes (the caller's
        promise); only their layout is checked."""
        for array, strides in zip(arrays, self._strides):
            if array.strides != strides:
                return self(arrays)
        outputs = [np.empty(shape, dtype) for shape, dtype in self._outputs]
        if self._lock is None:
            self._entry(*arrays, *outputs, *self._fixed)
        else:
            with self._lock:  # the scratch is shared by all calls of this executable
                self._entry(*arrays, *outputs, *self._fixed)
        return outputs

    def stage_text(self, stage: str) -> str:
        if stage == "loops":
            return loops_text(self.program, engine.host().vector_bytes)
        if stage == "llvm":
            return self.module.optimized_ir
        if stage == "asm":
            return self.module.assembly()
        raise ValueError(f"unknown stage {stage!r}")


def compile_program(program: Program) -> NativeExecutable:
    return NativeExecutable(program)

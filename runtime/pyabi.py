"""What generated code may assume about CPython and numpy objects in this process.

The native entry (runtime/entry.py) reads ndarray fields and calls a few C functions itself,
which is what makes a call cost about a tenth of a microsecond. The offsets follow numpy's
public struct (PyArrayObject_fields: data, nd, dimensions, strides, base, descr, flags after
the object header) and, with the reference count it reads to reuse an output array nobody
holds, are checked once against probe arrays, so a numpy or Python with another layout fails
loudly here instead of letting native code read the wrong memory.
"""
from __future__ import annotations

import ctypes
import functools
import sys

import llvmlite.binding as llvm
import numpy as np

HEADER = object.__basicsize__
REFCOUNT = 0            # ob_refcnt, the object header's first field
ARRAY_DATA = HEADER
ARRAY_NDIM = HEADER + 8
ARRAY_DIMS = HEADER + 16
ARRAY_DESCR = HEADER + 40
ARRAY_FLAGS = HEADER + 48
TUPLE_ITEMS = tuple.__basicsize__
C_CONTIGUOUS = 0x0001   # NPY_ARRAY_C_CONTIGUOUS
ALIGNED = 0x0100        # NPY_ARRAY_ALIGNED
OWNDATA = 0x0004        # NPY_ARRAY_OWNDATA
WRITEABLE = 0x0400      # NPY_ARRAY_WRITEABLE
_PYARRAY_EMPTY = 184    # PyArray_Empty's slot in numpy's C API table (stable since numpy 1.0)

# The CPython functions the entry calls, by their exported names.
_PYTHON_FUNCTIONS = ("PyEval_SaveThread", "PyEval_RestoreThread", "Py_IncRef", "Py_DecRef",
                     "PyTuple_New", "PyTuple_SetItem", "PyList_GetItem", "PyList_SetItem")


def _read(address: int, ctype) -> int:
    return ctype.from_address(address).value


def _numpy_api_table() -> int:
    try:
        capsule = np._core._multiarray_umath._ARRAY_API
    except AttributeError:  # numpy 1.x
        capsule = np.core.multiarray._ARRAY_API
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return get(capsule, None)


def _check_array_layout(array_empty: int) -> None:
    probe = np.empty((3, 5), np.float32)[:, ::2]
    base = id(probe)
    dims = _read(base + ARRAY_DIMS, ctypes.c_void_p)
    flags = _read(base + ARRAY_FLAGS, ctypes.c_int)
    made = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_int, ctypes.POINTER(ctypes.c_ssize_t),
                             ctypes.c_void_p, ctypes.c_int)(array_empty)
    descr = np.dtype(np.float64)
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(descr))  # PyArray_Empty steals a reference
    empty = made(2, (ctypes.c_ssize_t * 2)(4, 7), id(descr), 0)
    if (_read(base + ARRAY_DATA, ctypes.c_void_p) != probe.ctypes.data
            or _read(base + ARRAY_NDIM, ctypes.c_int) != 2
            or [_read(dims + 8 * i, ctypes.c_ssize_t) for i in range(2)] != [3, 3]
            or _read(base + ARRAY_DESCR, ctypes.c_void_p) != id(probe.dtype)
            or bool(flags & C_CONTIGUOUS) or not flags & ALIGNED
            or not isinstance(empty, np.ndarray) or empty.shape != (4, 7)
            or empty.dtype is not descr
            or _read(id(empty) + ARRAY_FLAGS, ctypes.c_int) & (OWNDATA | WRITEABLE)
            != OWNDATA | WRITEABLE
            or _read(id(empty) + REFCOUNT, ctypes.c_ssize_t) != sys.getrefcount(empty) - 1):
        raise ImportError(f"numpy {np.__version__} lays out its arrays differently from what "
                          f"tensorjit's native entry reads (runtime/pyabi.py)")


@functools.cache
def export_symbols() -> None:
    """Make the CPython and numpy objects and functions the entry uses visible to LLVM's JIT,
    after checking the array layout the entry relies on."""
    api = _numpy_api_table()
    array_empty = _read(api + 8 * _PYARRAY_EMPTY, ctypes.c_void_p)
    _check_array_layout(array_empty)
    for name in _PYTHON_FUNCTIONS:
        llvm.add_symbol(name, ctypes.cast(getattr(ctypes.pythonapi, name), ctypes.c_void_p).value)
    llvm.add_symbol("_Py_NotImplementedStruct", id(NotImplemented))
    llvm.add_symbol("_Py_NoneStruct", id(None))
    llvm.add_symbol("PyArray_Type", id(np.ndarray))
    llvm.add_symbol("PyArray_Empty", array_empty)
    llvm.add_symbol("sched_yield", ctypes.cast(ctypes.CDLL(None).sched_yield, ctypes.c_void_p).value)

"""The interpreter as an executable, for `TENSORJIT_BACKEND=interpreter` (debugging, and a
reference for the native backend). Same interface as `runtime.native.NativeExecutable`."""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from ir import Function, interpret


class InterpretedExecutable:
    def __init__(self, fn: Function):
        start = time.perf_counter()
        self.fn = fn
        self.stats = {"compile_seconds": time.perf_counter() - start, "kernels": 0,
                      "scratch_bytes": 0, "backend": "interpreter"}

    def __call__(self, arrays: Sequence) -> list[np.ndarray]:
        if len(arrays) != len(self.fn.params):
            raise ValueError(f"expected {len(self.fn.params)} inputs, got {len(arrays)}")
        return interpret(self.fn, [np.asarray(a, dtype=p.type.dtype.numpy)
                                   for a, p in zip(arrays, self.fn.params)])

    def entry(self, *arrays: np.ndarray) -> tuple | type(NotImplemented):
        """The native entry's contract: NotImplemented unless every argument is an ndarray of
        exactly its parameter's dtype and shape."""
        if len(arrays) != len(self.fn.params) or any(
                type(a) is not np.ndarray or a.dtype != p.type.dtype.numpy or a.shape != p.type.shape
                for a, p in zip(arrays, self.fn.params)):
            return NotImplemented
        return tuple(interpret(self.fn, list(arrays)))

    def stage_text(self, stage: str) -> str:
        raise ValueError(f"stage {stage!r} needs the native backend (TENSORJIT_BACKEND is "
                         f"'interpreter')")

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

    def __call__(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        return interpret(self.fn, [np.asarray(a, dtype=p.type.dtype.numpy)
                                   for a, p in zip(arrays, self.fn.params)])

    run_exact = __call__

    def stage_text(self, stage: str) -> str:
        raise ValueError(f"stage {stage!r} needs the native backend (TENSORJIT_BACKEND is "
                         f"'interpreter')")

"""Executables: a compiled IR function that runs on numpy arrays, with its compile stats.

Until the native backend lands, an executable runs the reference interpreter; its interface
(`__call__(arrays) -> arrays`, `stats`, `stage_text`) is what the jit layer relies on.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ir import Function, interpret, to_text


@dataclass
class Executable:
    fn: Function
    run: Callable[[Sequence[np.ndarray]], list[np.ndarray]]
    stats: dict = field(default_factory=dict)
    stages: dict[str, str] = field(default_factory=dict)

    def __call__(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self.run(arrays)

    def stage_text(self, stage: str) -> str:
        if stage not in self.stages:
            raise ValueError(f"stage {stage!r} is not available for this executable (it has "
                             f"{sorted(self.stages) or 'none'}); the native backend provides "
                             f"'loops', 'llvm' and 'asm'")
        return self.stages[stage]


def compile_function(fn: Function) -> Executable:
    start = time.perf_counter()
    executable = Executable(fn, lambda arrays: interpret(fn, arrays))
    executable.stats.update(compile_seconds=time.perf_counter() - start, kernels=0,
                            scratch_bytes=0, backend="interpreter")
    return executable


_cache: dict[str, Executable] = {}
_cache_lock = threading.Lock()


def compile_cached(fn: Function) -> Executable:
    """`compile_function`, memoised on the function's text (one entry per distinct program)."""
    key = to_text(fn)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    executable = compile_function(fn)
    with _cache_lock:
        return _cache.setdefault(key, executable)

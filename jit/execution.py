"""Running traced IR on concrete arrays: optimize, compile (cached on the program), execute."""
from __future__ import annotations

from typing import Sequence

import numpy as np

import passes
import runtime
from ir import Function, to_text

_optimized: dict[str, runtime.Executable] = {}


def executable_for(fn: Function) -> runtime.Executable:
    """The compiled form of a traced function, optimized once per distinct program text."""
    key = to_text(fn)
    hit = _optimized.get(key)
    if hit is None:
        hit = _optimized.setdefault(key, runtime.compile_cached(passes.optimize(fn)))
    return hit


def execute(fn: Function, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    return executable_for(fn)(arrays)

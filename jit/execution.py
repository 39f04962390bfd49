"""Running traced IR on concrete arrays: optimize, lower, compile once per program, execute.

`executable_for` is the one cache of compiled programs, keyed by the traced program's text
(constants included, source locations not), so a program compiles once per process however it is reached:
a jitted call, a `grad` on concrete inputs, or an eager `backward()`. It keeps the most
recently used `CACHE_ENTRIES` programs, so a long run of ever-new graphs (eager training with
changing shapes) holds flat memory; a jitted function also holds its own signatures' programs.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Sequence

import numpy as np

import passes
import runtime
from ir import Function, loops, to_text

CACHE_ENTRIES = 256
_cache: OrderedDict[str, object] = OrderedDict()
_lock = threading.Lock()


def compile_traced(fn: Function):
    optimized = passes.optimize(fn)
    if os.environ.get("TENSORJIT_BACKEND") == "interpreter":
        return runtime.InterpretedExecutable(optimized)
    # Always (0.15 ms for the MLP step): an access outside its buffer is then a compile
    # error naming the kernel, never a silent read or write of other memory at run time.
    program = loops.verify(passes.lower(optimized))
    executable = runtime.compile_program(program)
    if os.environ.get("TENSORJIT_DUMP"):  # the LLVM text is made again for it: a hit has none
        passes.dump(fn.name, "loops", loops.to_text(program))
        passes.dump(fn.name, "llvm", executable.stage_text("llvm"))
    return executable


def executable_for(fn: Function):
    key = to_text(fn, locations=False)
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
    if hit is None:
        hit = compile_traced(fn)
        with _lock:
            hit = _cache.setdefault(key, hit)
            while len(_cache) > CACHE_ENTRIES:
                _cache.popitem(last=False)
    return hit


def execute(fn: Function, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    return executable_for(fn)(arrays)

"""Tracing: turning Python calls on Tensors into IR.

A `Trace` owns a Builder. Traces nest (`grad` inside `jit`, `grad(grad(f))`): each op goes to
the innermost trace among its operands, and a tensor of an outer trace used inside an inner
one is captured as an extra parameter of the inner function, so inner functions stay closed
and can be inlined, differentiated or compiled on their own. Concrete tensors used in a trace
become `constant` ops (as in JAX: closed-over arrays are baked in).
"""
from __future__ import annotations

import linecache
import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from ir import Builder, Location, Value

if TYPE_CHECKING:
    from jit.tensor import Tensor


class TracerError(TypeError):
    """Python needed a concrete value where the value is only known when the program runs."""


_OWN_DIRS = tuple(str(Path(__file__).resolve().parent.parent / pkg) + os.sep
                  for pkg in ("jit", "ir", "passes", "runtime"))
_display_names: dict[str, str] = {}


def _display_name(filename: str) -> str:
    name = _display_names.get(filename)
    if name is None:
        try:
            rel = os.path.relpath(filename)
            name = filename if rel.startswith("..") else rel
        except ValueError:
            name = filename
        _display_names[filename] = name
    return name


def user_frame():
    """The innermost stack frame outside tensorjit's own packages."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_OWN_DIRS):
        frame = frame.f_back
    return frame


def user_location() -> Location | None:
    frame = user_frame()
    if frame is None:
        return None
    return Location(_display_name(frame.f_code.co_filename), frame.f_lineno)


def concretization_error(construct: str, tensor: "Tensor") -> TracerError:
    """The error for Python control flow (or a conversion) on a traced value."""
    frame = user_frame()
    where, source = "", ""
    if frame is not None:
        where = f" at {_display_name(frame.f_code.co_filename)}:{frame.f_lineno}"
        line = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
        source = f"\n    {line}" if line else ""
    return TracerError(
        f"{construct} needs a concrete value, but this {tensor._value.type} tensor is traced "
        f"(inside jit or grad){where}:{source}\n"
        f"Python control flow cannot depend on a traced value. Use jit.where(cond, a, b) to "
        f"choose per element, or pass the argument as static with "
        f"jit(f, static_argnums=(i,)) so that its value is known when tracing.")


class Trace:
    def __init__(self, name: str, level: int):
        self.builder = Builder(name)
        self.level = level
        self.active = True
        self.captured: list["Tensor"] = []        # outer-trace tensors, in parameter order
        self._capture_params: dict[int, Value] = {}

    def capture(self, outer: "Tensor") -> Value:
        """A parameter of this trace standing for a tensor of an outer trace."""
        key = id(outer)
        if key not in self._capture_params:
            self._capture_params[key] = self.builder.param(outer._value.type, "captured")
            self.captured.append(outer)
        return self._capture_params[key]


_state = threading.local()


def _stack() -> list[Trace]:
    if not hasattr(_state, "traces"):
        _state.traces = []
    return _state.traces


@contextmanager
def new_trace(name: str) -> Iterator[Trace]:
    stack = _stack()
    trace = Trace(name, len(stack))
    stack.append(trace)
    try:
        yield trace
    finally:
        trace.active = False
        stack.pop()


def innermost(tensors) -> Trace | None:
    """The deepest trace that any of `tensors` belongs to (None: all are concrete)."""
    best = None
    for t in tensors:
        trace = getattr(t, "_trace", None)
        if trace is None:
            continue
        if not trace.active:
            raise TracerError(f"a traced {t._value.type} value escaped the jit or grad call "
                              f"that made it (was it stored in a global or on an object?); "
                              f"return it from the function instead")
        if best is None or trace.level > best.level:
            best = trace
    return best

"""The reference interpreter: runs a function op by op with numpy.

It is the oracle for every later stage (passes, native code, gradients), so it does nothing
clever: each op's registered reference, then a check that the result has the op's type.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ir.core import Function, Literal, Op, Value
from ir.registry import REGISTRY


def run_op(op: Op, args: Sequence[np.ndarray]) -> np.ndarray:
    """One op on numpy inputs, returning a C-contiguous array of exactly the op's type."""
    with np.errstate(all="ignore"):
        out = REGISTRY[op.name].reference(*args, **op.attrs)
    out = np.asarray(out, dtype=op.type.dtype.numpy)
    if not out.flags.c_contiguous or not out.flags.writeable:
        out = out.copy()
    if out.shape != op.type.shape:
        raise AssertionError(f"reference of {op.name} gave shape {out.shape}, "
                             f"type rule says {op.type}")
    return out


def literal_array(lit: Literal) -> np.ndarray:
    return np.array(lit.value, dtype=lit.dtype.numpy)


def interpret(fn: Function, args: Sequence[np.ndarray]) -> list[np.ndarray]:
    if len(args) != len(fn.params):
        raise TypeError(f"@{fn.name} takes {len(fn.params)} arguments, got {len(args)}")
    env: dict[str, np.ndarray] = {}
    for p, a in zip(fn.params, args):
        a = np.asarray(a)
        if a.shape != p.type.shape or a.dtype != p.type.dtype.numpy:
            raise TypeError(f"@{fn.name}: argument {p} expects {p.type}, got "
                            f"{a.dtype}{list(a.shape)}")
        env[p.name] = a
    for op in fn.ops:
        inputs = [env[o.name] if isinstance(o, Value) else literal_array(o) for o in op.operands]
        env[op.result.name] = run_op(op, inputs)
    return [env[r.name] for r in fn.results]

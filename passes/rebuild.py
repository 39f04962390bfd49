"""The one way passes make a new function: replay the old one's ops through a Builder.

Replaying re-runs every type rule and renumbers values in order, so each pass's output is
well-typed and prints canonically.
"""
from __future__ import annotations

from typing import Callable, Optional

from ir import Builder, Function, Literal, Op, Operand, Value

# rewrite(builder, op, mapped operands) -> a replacement of the op's type, or None to keep it
Rewrite = Callable[[Builder, Op, tuple[Operand, ...]], Optional[Operand]]


def rebuild(fn: Function, rewrite: Rewrite | None = None,
            keep: Callable[[Op], bool] | None = None) -> Function:
    b = Builder(fn.name)
    env: dict[str, Operand] = {p.name: b.param(p.type, p.name) for p in fn.params}
    for op in fn.ops:
        if keep is not None and not keep(op):
            continue
        operands = tuple(env[o.name] if isinstance(o, Value) else o for o in op.operands)
        with b.location(op.loc):
            new = rewrite(b, op, operands) if rewrite is not None else None
            if new is None:
                new = b.emit(op.name, *operands, **op.attrs)
        if new.type != op.type:
            raise AssertionError(f"rewrite of {op.name} changed its type: {op.type} -> {new.type}")
        env[op.result.name] = new
    return b.build([_as_value(b, env[r.name]) for r in fn.results])


def _as_value(b: Builder, operand: Operand) -> Value:
    """A result must be a Value: a folded literal result is materialised as a 0-d tensor."""
    if isinstance(operand, Literal):
        return b.full((), operand.value, operand.dtype)
    return operand

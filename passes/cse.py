"""Common subexpression elimination: an op equal to an earlier one (same name, operands and
attributes) reuses the earlier result. Every op is pure, so this is always sound."""
from __future__ import annotations

from ir import Builder, Function, Op, Operand, Value
from passes.rebuild import rebuild


def cse(fn: Function) -> Function:
    seen: dict[tuple, Operand] = {}

    def reuse(b: Builder, op: Op, operands: tuple[Operand, ...]) -> Operand | None:
        key = (op.name, tuple(o.name if isinstance(o, Value) else o for o in operands),
               op.attr_key())
        if key in seen:
            return seen[key]
        seen[key] = b.emit(op.name, *operands, **op.attrs)
        return seen[key]

    return rebuild(fn, reuse)

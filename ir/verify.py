"""`verify` re-checks a function: SSA form, and every op against its type rule."""
from __future__ import annotations

from ir.core import Function, Literal, Value
from ir.registry import REGISTRY
from ir.text import format_op


class VerifyError(ValueError):
    """A function breaks an IR invariant; the message names the op and what is wrong."""


def verify(fn: Function) -> Function:
    """Return `fn` unchanged when it is well formed, else raise VerifyError."""
    defined: dict[str, Value] = {}

    def define(value: Value, where: str) -> None:
        if value.name in defined:
            raise VerifyError(f"{where}: value {value} is defined twice")
        defined[value.name] = value

    for p in fn.params:
        define(p, f"@{fn.name} parameters")
    for op in fn.ops:
        for o in op.operands:
            if not isinstance(o, (Value, Literal)):  # checked first: the op cannot be printed
                raise VerifyError(f"`{op.result} = {op.name} ...`: operand {o!r} is neither a "
                                  f"value nor a literal")
        where = f"`{format_op(op)}`"
        if op.name not in REGISTRY:
            raise VerifyError(f"{where}: unknown op {op.name!r}")
        for o in op.operands:
            if isinstance(o, Value) and defined.get(o.name) != o:
                raise VerifyError(f"{where}: operand {o} is not defined before it is used "
                                  f"(or has another type there)")
        definition = REGISTRY[op.name]
        expected = set(definition.attrs)
        if set(op.attrs) != expected:
            raise VerifyError(f"{where}: expected attributes {sorted(expected)}, "
                              f"got {sorted(op.attrs)}")
        try:
            rule_type = definition.type_rule(op.operands, op.attrs)
        except (ValueError, TypeError, KeyError) as err:
            raise VerifyError(f"{where}: {err}") from None
        if rule_type != op.type:
            raise VerifyError(f"{where}: the type rule gives {rule_type}, the op says {op.type}")
        define(op.result, where)
    for r in fn.results:
        if defined.get(r.name) != r:
            raise VerifyError(f"@{fn.name} returns {r}, which is not defined")
    return fn

"""The op registry: one `OpDef` per IR op holds everything every stage needs to know about it.

An op is defined once (in `ir/ops/`): its name, its kind, its type rule, its numpy reference
semantics and its derivative written as IR through the builder. Stages that need more (the
native lowering of an elementwise body) key their tables by the op's name, and a test checks
that every registered op of a kind has what that kind needs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from ir.core import Operand, TensorType, Value

if TYPE_CHECKING:
    from ir.builder import Builder

KINDS = ("elementwise", "reduce", "layout", "contraction", "source")

TypeRule = Callable[[Sequence[Operand], Mapping[str, Any]], TensorType]
Reference = Callable[..., np.ndarray]
# vjp(builder, operands, out, ct, attrs) -> one cotangent (or None for "no gradient") per operand
VJPRule = Callable[["Builder", Sequence[Operand], Value, Value, Mapping[str, Any]],
                   Sequence["Value | None"]]


@dataclass(frozen=True)
class OpDef:
    name: str
    kind: str
    type_rule: TypeRule
    reference: Reference
    vjp: VJPRule | None      # None: the op has no derivative (its outputs carry no gradient)
    arity: int | None        # None: variadic
    attrs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"op {self.name}: unknown kind {self.kind!r}")


REGISTRY: dict[str, OpDef] = {}


def register(opdef: OpDef) -> OpDef:
    if opdef.name in REGISTRY:
        raise ValueError(f"op {opdef.name!r} is defined twice")
    REGISTRY[opdef.name] = opdef
    return opdef


def opdef(name: str) -> OpDef:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown op {name!r}") from None


class OpTypeError(ValueError):
    """An op was given operands or attributes its type rule rejects."""

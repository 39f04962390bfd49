"""Local algebra: constant folding and identities, each a small named rule.

A rule looks at one op (with its operands already rewritten) and returns a replacement of the
same type, or None. Rules never change results, NaN and infinity included: `x * 0 -> 0` is
not a rule, because `inf * 0` is NaN.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np

from ir import Builder, Function, Literal, Op, Operand, Value
from ir.interpreter import literal_array, run_op
from passes.rebuild import rebuild

Rule = Callable[[Builder, Op, tuple[Operand, ...]], Optional[Operand]]


def _is(operand: Operand, value: float) -> bool:
    return isinstance(operand, Literal) and operand.value == value


def fold_literals(b, op, xs):
    """An elementwise op on literals only -> the literal it computes."""
    if op.type.shape == () and xs and all(isinstance(x, Literal) for x in xs):
        value = run_op(op, [literal_array(x) for x in xs])
        return Literal(value.item(), op.type.dtype)
    return None


def scalar_constant(b, op, xs):
    """a 0-d constant -> its literal"""
    if op.name == "constant" and op.type.shape == ():
        return Literal(op.attrs["value"].array.item(), op.type.dtype)
    return None


def _is_additive_identity(operand: Operand, negated: bool = False) -> bool:
    """0 for integers; for floats only -0.0 (+0.0 for subtraction): -0.0 + 0.0 is +0.0."""
    if not _is(operand, 0):
        return False
    return not operand.dtype.is_float or (math.copysign(1.0, operand.value) > 0) == negated


def add_zero(b, op, xs):
    """x + 0 -> x, 0 + x -> x, x - 0 -> x (floats: only the sign-preserving zero)"""
    if op.name in ("add", "sub") and _is_additive_identity(xs[1], op.name == "sub") \
            and xs[0].type == op.type:
        return xs[0]
    if op.name == "add" and _is_additive_identity(xs[0]) and xs[1].type == op.type:
        return xs[1]
    return None


def mul_one(b, op, xs):
    """x * 1 -> x, 1 * x -> x, x / 1 -> x, x ** 1 -> x"""
    if op.name in ("mul", "div", "pow") and _is(xs[1], 1) and xs[0].type == op.type:
        return xs[0]
    if op.name == "mul" and _is(xs[0], 1) and xs[1].type == op.type:
        return xs[1]
    return None


def mul_minus_one(b, op, xs):
    """x * -1 -> -x"""
    if op.name == "mul" and _is(xs[1], -1) and xs[0].type == op.type:
        return b.neg(xs[0])
    return None


def square(b, op, xs):
    """x ** 2 -> x * x"""
    if op.name == "pow" and _is(xs[1], 2) and isinstance(xs[0], Value):
        return b.mul(xs[0], xs[0])
    return None


def double_negation(b, op, xs):
    """-(-x) -> x"""
    inner = b.producer(xs[0]) if op.name == "neg" else None
    return inner.operands[0] if inner is not None and inner.name == "neg" else None


def add_negation(b, op, xs):
    """x + (-y) -> x - y, x - (-y) -> x + y"""
    if op.name not in ("add", "sub"):
        return None
    inner = b.producer(xs[1])
    if inner is None or inner.name != "neg":
        return None
    return b.emit("sub" if op.name == "add" else "add", xs[0], inner.operands[0])


def same_type_layout(b, op, xs):
    """reshape, broadcast_to, cast, transpose or reduction that changes nothing -> its operand
    (not a float reduce_sum over no axes: like numpy's, it adds +0.0, so -0.0 becomes 0.0)"""
    trivial = (op.name in ("reshape", "broadcast_to", "cast")
               or op.name == "transpose" and op.attrs["perm"] == tuple(range(op.type.ndim))
               or op.name in ("reduce_max", "reduce_min") and not op.attrs["axes"]
               or op.name == "reduce_sum" and not op.attrs["axes"] and not op.type.dtype.is_float)
    if trivial and isinstance(xs[0], Value) and xs[0].type == op.type:
        return xs[0]
    return None


def layout_chain(b, op, xs):
    """reshape(reshape x) -> reshape x; broadcast_to(broadcast_to x) -> broadcast_to x"""
    inner = b.producer(xs[0]) if op.name in ("reshape", "broadcast_to") else None
    if inner is not None and inner.name == op.name:
        return b.emit(op.name, inner.operands[0], **op.attrs)
    return None


def transpose_chain(b, op, xs):
    """transpose(transpose x, p), q -> transpose x, p∘q"""
    inner = b.producer(xs[0]) if op.name == "transpose" else None
    if inner is not None and inner.name == "transpose":
        perm = tuple(inner.attrs["perm"][i] for i in op.attrs["perm"])
        return b.transpose(inner.operands[0], perm=perm)
    return None


def where_same(b, op, xs):
    """where(c, x, x) -> x"""
    if op.name == "where" and xs[1] == xs[2] and xs[1].type == op.type:
        return xs[1]
    return None


def whole_slice(b, op, xs):
    """a slice that takes every element in order -> its operand"""
    if op.name == "slice" and xs[0].type == op.type and all(s == 1 for s in op.attrs["steps"]):
        return xs[0]
    return None


RULES: tuple[Rule, ...] = (fold_literals, scalar_constant, add_zero, mul_one, mul_minus_one, square,
                           double_negation, add_negation, same_type_layout, layout_chain,
                           transpose_chain, where_same, whole_slice)


def simplify(fn: Function, rules: tuple[Rule, ...] = RULES) -> Function:
    def apply_rules(b: Builder, op: Op, xs: tuple[Operand, ...]) -> Operand | None:
        for rule in rules:
            with np.errstate(all="ignore"):
                new = rule(b, op, xs)
            if new is not None:
                return new
        return None

    return rebuild(fn, apply_rules)

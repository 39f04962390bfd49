"""Local algebra: constant folding and identities, each a small named rule.

A rule looks at one op (with its operands already rewritten) and returns a replacement of the
same type, or None. Rules never change results, NaN and infinity included: `x * 0 -> 0` is
not a rule, because `inf * 0` is NaN.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np

from ir import REGISTRY, Builder, Function, Literal, Op, Operand, TensorType, Value
from ir.interpreter import literal_array, run_op
from passes.rebuild import rebuild

Rule = Callable[[Builder, Op, tuple[Operand, ...]], Optional[Operand]]


def _splat(b: Builder, operand: Operand) -> Literal | None:
    """The literal that fills `operand`: a literal, or a layout op of one (`broadcast_to 1.0`)."""
    if isinstance(operand, Literal):
        return operand
    op = b.producer(operand)
    if op is not None and op.name in _LAYOUT and isinstance(op.operands[0], Literal):
        return op.operands[0]
    return None


_LAYOUT = ("broadcast_to", "reshape", "transpose")


def _is(b: Builder, operand: Operand, value: float) -> bool:
    """`operand` is `value` everywhere (a literal or a splat of one)."""
    lit = _splat(b, operand)
    return lit is not None and lit.value == value


def fold_literals(b, op, xs):
    """An elementwise op on literals only -> the literal it computes."""
    if op.type.shape == () and xs and all(isinstance(x, Literal) for x in xs):
        value = run_op(op, [literal_array(x) for x in xs])
        return Literal(value.item(), op.type.dtype)
    return None


def fold_splats(b, op, xs):
    """An elementwise op on splats only -> the splat of the literal it computes."""
    splats = [_splat(b, x) for x in xs]
    if (REGISTRY[op.name].kind != "elementwise" or not xs or None in splats
            or all(isinstance(x, Literal) for x in xs)):
        return None
    scalar_op = Op(op.name, tuple(splats), op.attrs, Value("scalar", TensorType(op.type.dtype, ())))
    value = run_op(scalar_op, [literal_array(s) for s in splats])
    return b.full(op.type.shape, value.item(), op.type.dtype)


def splat_layout(b, op, xs):
    """reshape, transpose or broadcast_to of a splat -> broadcast_to of its literal"""
    if op.name not in _LAYOUT or isinstance(xs[0], Literal) and op.name == "broadcast_to":
        return None
    lit = _splat(b, xs[0])
    return None if lit is None else b.broadcast_to(lit, shape=op.type.shape)


def scalar_constant(b, op, xs):
    """a 0-d constant -> its literal"""
    if op.name == "constant" and op.type.shape == ():
        return Literal(op.attrs["value"].array.item(), op.type.dtype)
    return None


def _is_additive_identity(b: Builder, operand: Operand, negated: bool = False) -> bool:
    """0 for integers; for floats only -0.0 (+0.0 for subtraction): -0.0 + 0.0 is +0.0."""
    lit = _splat(b, operand)
    if lit is None or lit.value != 0:
        return False
    return not lit.dtype.is_float or (math.copysign(1.0, lit.value) > 0) == negated


def add_zero(b, op, xs):
    """x + 0 -> x, 0 + x -> x, x - 0 -> x (floats: only the sign-preserving zero)"""
    if op.name in ("add", "sub") and _is_additive_identity(b, xs[1], op.name == "sub") \
            and xs[0].type == op.type:
        return xs[0]
    if op.name == "add" and _is_additive_identity(b, xs[0]) and xs[1].type == op.type:
        return xs[1]
    return None


def mul_one(b, op, xs):
    """x * 1 -> x, 1 * x -> x, x / 1 -> x, x ** 1 -> x"""
    if op.name in ("mul", "div", "pow") and _is(b, xs[1], 1) and xs[0].type == op.type:
        return xs[0]
    if op.name == "mul" and _is(b, xs[0], 1) and xs[1].type == op.type:
        return xs[1]
    return None


def mul_minus_one(b, op, xs):
    """x * -1 -> -x"""
    if op.name == "mul" and _is(b, xs[1], -1) and xs[0].type == op.type:
        return b.neg(xs[0])
    return None


def square(b, op, xs):
    """x ** 2 -> x * x"""
    if op.name == "pow" and _is(b, xs[1], 2) and isinstance(xs[0], Value):
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


def where_constant(b, op, xs):
    """where(true, x, y) -> x, where(false, x, y) -> y"""
    cond = _splat(b, xs[0]) if op.name == "where" else None
    if cond is None:
        return None
    chosen = xs[1] if cond.value else xs[2]
    if isinstance(chosen, Literal):
        return b.full(op.type.shape, chosen.value, chosen.dtype) if op.type.shape else chosen
    return chosen


def whole_slice(b, op, xs):
    """a slice that takes every element in order -> its operand"""
    if op.name == "slice" and xs[0].type == op.type and all(s == 1 for s in op.attrs["steps"]):
        return xs[0]
    return None


RULES: tuple[Rule, ...] = (fold_literals, fold_splats, scalar_constant, add_zero, mul_one,
                           mul_minus_one, square, double_negation, add_negation, same_type_layout,
                           splat_layout, layout_chain, transpose_chain, where_same, where_constant,
                           whole_slice)

MAX_ROUNDS = 8


def simplify(fn: Function, rules: tuple[Rule, ...] = RULES) -> Function:
    """Apply the rules op by op, in rounds, until a round changes nothing: an op a rule emits
    (the composed transpose of `transpose_chain`) gets simplified in the next round."""
    def apply_rules(b: Builder, op: Op, xs: tuple[Operand, ...]) -> Operand | None:
        for rule in rules:
            with np.errstate(all="ignore"):
                new = rule(b, op, xs)
            if new is not None:
                return new
        return None

    for _ in range(MAX_ROUNDS):
        new = rebuild(fn, apply_rules)
        if new == fn:
            break
        fn = new
    return fn

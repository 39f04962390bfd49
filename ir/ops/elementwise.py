"""Elementwise ops: same-shape operands (literals broadcast), one result element per element.

Each definition holds the type rule, the numpy reference and the derivative. Derivatives are
chosen to stay accurate where the textbook form cancels (`logistic`, `tanh`).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ir.core import Literal, TensorType, Value, bool_, dtype_of
from ir.registry import OpDef, OpTypeError, register


def _describe(operands) -> str:
    return ", ".join(str(o.type) if isinstance(o, Value) else repr(o.value) for o in operands)


def elementwise_type(name: str, operands, *, accepts: str = "any", result: str = "same"):
    """Type rule shared by every elementwise op.

    accepts: "any", "numeric" (no bool) or "float"; result: "same" or "bool".
    `where` has its own condition operand and passes only its data operands here.
    """
    shapes = {o.type.shape for o in operands if isinstance(o, Value)}
    if len(shapes) > 1:
        raise OpTypeError(f"{name}: operand shapes differ: {_describe(operands)}")
    dtypes = {o.type.dtype for o in operands}
    if len(dtypes) != 1:
        raise OpTypeError(f"{name}: operand dtypes differ: {_describe(operands)}")
    (dtype,) = dtypes
    if accepts == "float" and not dtype.is_float:
        raise OpTypeError(f"{name}: expected floating-point operands, got {_describe(operands)}")
    if accepts == "numeric" and dtype.is_bool:
        raise OpTypeError(f"{name}: expected numeric operands, got {_describe(operands)}")
    shape = shapes.pop() if shapes else ()
    return TensorType(bool_ if result == "bool" else dtype, shape)


def _in_f64(fn: Callable) -> Callable:
    """Reference semantics of a transcendental: computed in float64, rounded once to the dtype."""
    def reference(*xs):
        return fn(*(np.asarray(x, dtype=np.float64) for x in xs))
    return reference


def _extremum(fn: Callable, negative_zero_wins: bool) -> Callable:
    """numpy's maximum or minimum, with a tie of zeros signed as IEEE 754-2019 orders them
    (-0 < +0) and the native code's llvm.maximum/minimum compute it; numpy returns either."""
    def reference(x, y):
        result = fn(x, y)
        if result.dtype.kind != "f":
            return result
        signs = (np.signbit(x) | np.signbit(y)) if negative_zero_wins else \
            (np.signbit(x) & np.signbit(y))
        tie = (x == 0) & (y == 0)
        return np.where(tie, np.where(signs, -0.0, 0.0), result).astype(result.dtype)
    return reference


def _power(x, y):
    """C99 pow, which the native code calls. numpy's loops turn an exponent of 0.5 into a
    square root, which differs from pow at -inf (NaN, not +inf) and -0 (-0, not +0)."""
    result = np.power(x, y)
    if result.dtype.kind != "f":
        return result
    x, y = np.broadcast_arrays(x, y)
    sqrt_differs = (y == 0.5) & ((x == -np.inf) | (x == 0))
    return np.where(sqrt_differs, np.where(x == 0, 0.0, np.inf).astype(result.dtype), result)


def _cast(x, dtype):
    """numpy's astype, except float -> integer, which saturates and sends NaN to 0 (as the
    native code's fptosi.sat, XLA and Rust do; C leaves it undefined, numpy on x86 gives the
    most negative integer)."""
    x, target = np.asarray(x), dtype_of(dtype).numpy
    if x.dtype.kind != "f" or target.kind not in "iu":
        return x.astype(target)
    info = np.iinfo(target)
    wide = np.nan_to_num(x.astype(np.float64), nan=0.0)
    high, low = wide >= float(info.max) + 1, wide < info.min  # both bounds exact in float64
    in_range = np.where(high | low, 0, wide).astype(target)
    return np.where(high, info.max, np.where(low, info.min, in_range)).astype(target)


def _logistic(x):
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _define(name: str, arity: int, reference, vjp, *, accepts: str = "any",
            result: str = "same") -> None:
    def rule(operands, attrs):
        if len(operands) != arity:
            raise OpTypeError(f"{name}: expected {arity} operands, got {len(operands)}")
        return elementwise_type(name, operands, accepts=accepts, result=result)
    register(OpDef(name, "elementwise", rule, reference, vjp, arity))


def _active(x) -> bool:
    return isinstance(x, Value) and x.type.dtype.is_float


# Derivatives: vjp(b, operands, out, ct, attrs) -> one cotangent per operand.

def _add_vjp(b, ops, out, ct, attrs):
    return ct, ct


def _sub_vjp(b, ops, out, ct, attrs):
    return ct, b.neg(ct)


def _mul_vjp(b, ops, out, ct, attrs):
    x, y = ops
    return (b.mul(ct, y) if _active(x) else None), (b.mul(ct, x) if _active(y) else None)


def _div_vjp(b, ops, out, ct, attrs):
    x, y = ops
    ct_x = b.div(ct, y)
    return ct_x, (b.neg(b.mul(ct_x, out)) if _active(y) else None)


def _pow_vjp(b, ops, out, ct, attrs):
    x, y = ops
    ct_x = ct_y = None
    if _active(x):
        # y * x**(y-1), written so that y == 0 gives 0 rather than 0 * inf.
        if isinstance(y, Literal):
            ct_x = b.mul(ct, b.mul(b.pow(x, y.value - 1), y.value)) if y.value != 0 else None
        else:
            y_minus_1 = b.where(b.eq(y, 0), 1, b.sub(y, 1))
            ct_x = b.mul(ct, b.mul(y, b.pow(x, y_minus_1)))
    if _active(y) and isinstance(x, Literal):
        # a constant base (`2.0 ** y`): log(x) is a number; 0 ** y has derivative 0
        if x.value != 0:
            with np.errstate(all="ignore"):
                log_x = float(np.log(np.float64(x.value)))
            ct_y = b.mul(ct, b.mul(out, log_x))
    elif _active(y):
        is_zero = b.eq(x, 0)
        safe_log = b.log(b.where(is_zero, 1, x))
        ct_y = b.mul(ct, b.where(is_zero, 0, b.mul(out, safe_log)))
    return ct_x, ct_y


def _extremum_vjp(strict: str):
    """maximum/minimum: the winner takes the cotangent; a tie splits it equally (as JAX does)."""
    def vjp(b, ops, out, ct, attrs):
        x, y = ops
        ct_x = b.where(b.emit(strict, x, y), ct, b.where(b.eq(x, y), b.mul(ct, 0.5), 0))
        return ct_x, b.sub(ct, ct_x)
    return vjp


def _neg_vjp(b, ops, out, ct, attrs):
    return (b.neg(ct),)


def _exp_vjp(b, ops, out, ct, attrs):
    return (b.mul(ct, out),)


def _log_vjp(b, ops, out, ct, attrs):
    return (b.div(ct, ops[0]),)


def _sqrt_vjp(b, ops, out, ct, attrs):
    return (b.div(b.mul(ct, 0.5), out),)


def _abs_vjp(b, ops, out, ct, attrs):
    return (b.mul(ct, b.sign(ops[0])),)


def _tanh_vjp(b, ops, out, ct, attrs):
    # 1 - tanh^2 rounds to 0 once |x| > 9 in f32; 4 s(2x) s(-2x) keeps the tiny true value.
    two_x = b.mul(ops[0], 2)
    d = b.mul(b.mul(b.logistic(two_x), b.logistic(b.neg(two_x))), 4)
    return (b.mul(ct, d),)


def _logistic_vjp(b, ops, out, ct, attrs):
    # s(x) * s(-x) instead of s * (1 - s): exact where s saturates to 1 in floating point.
    return (b.mul(ct, b.mul(out, b.logistic(b.neg(ops[0])))),)


def _where_vjp(b, ops, out, ct, attrs):
    cond, x, y = ops
    return (None, b.where(cond, ct, 0) if _active(x) else None,
            b.where(cond, 0, ct) if _active(y) else None)


def _where_rule(operands, attrs):
    if len(operands) != 3:
        raise OpTypeError(f"where: expected 3 operands, got {len(operands)}")
    if not operands[0].type.dtype.is_bool:
        raise OpTypeError(f"where: the condition must be bool, got {operands[0].type}")
    shapes = {o.type.shape for o in operands if isinstance(o, Value)}
    if len(shapes) > 1:
        raise OpTypeError(f"where: operand shapes differ: {_describe(operands)}")
    dtype = elementwise_type("where", operands[1:]).dtype
    return TensorType(dtype, shapes.pop() if shapes else ())


_define("add", 2, np.add, _add_vjp)
_define("sub", 2, np.subtract, _sub_vjp, accepts="numeric")
_define("mul", 2, np.multiply, _mul_vjp)
_define("div", 2, np.divide, _div_vjp, accepts="float")
_define("pow", 2, _power, _pow_vjp, accepts="numeric")
_define("maximum", 2, _extremum(np.maximum, False), _extremum_vjp("gt"))
_define("minimum", 2, _extremum(np.minimum, True), _extremum_vjp("lt"))
for _name, _ref in (("lt", np.less), ("le", np.less_equal), ("gt", np.greater),
                    ("ge", np.greater_equal), ("eq", np.equal), ("ne", np.not_equal)):
    _define(_name, 2, _ref, None, result="bool")
_define("neg", 1, np.negative, _neg_vjp, accepts="numeric")
_define("abs", 1, np.abs, _abs_vjp, accepts="numeric")
_define("sign", 1, np.sign, None, accepts="numeric")
_define("exp", 1, _in_f64(np.exp), _exp_vjp, accepts="float")
_define("log", 1, _in_f64(np.log), _log_vjp, accepts="float")
_define("sqrt", 1, _in_f64(np.sqrt), _sqrt_vjp, accepts="float")
_define("tanh", 1, _in_f64(np.tanh), _tanh_vjp, accepts="float")
_define("logistic", 1, _in_f64(_logistic), _logistic_vjp, accepts="float")
_define("stop_gradient", 1, np.array, None)
register(OpDef("where", "elementwise", _where_rule, np.where, _where_vjp, 3))


def _cast_rule(operands, attrs):
    if len(operands) != 1:
        raise OpTypeError(f"cast: expected 1 operand, got {len(operands)}")
    return TensorType(dtype_of(attrs["dtype"]), operands[0].type.shape)


def _cast_vjp(b, ops, out, ct, attrs):
    return (b.cast_to(ct, ops[0].type.dtype) if _active(ops[0]) else None,)


register(OpDef("cast", "elementwise", _cast_rule,
               _cast, _cast_vjp, 1,
               ("dtype",)))

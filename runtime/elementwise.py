"""The per-element body of every elementwise op, as LLVM IR on scalars or vectors.

One table, `EMITTERS`, keyed by the op's IR name; a test checks that every registered
elementwise op has an entry. Each emitter works unchanged on `T` and `<W x T>` values, so the
vector loop and its scalar tail share it. Booleans are `i1` here (`i8` only in memory).
Arithmetic is plain IEEE (no fast-math), so results match the reference op for op; the
transcendentals come from `runtime.vecmath` with their stated ULP bounds.
"""
from __future__ import annotations

from typing import Callable, Sequence

from llvmlite import ir

from ir import DType, f32, f64
from runtime import vecmath

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
SCALAR_TYPES = {"f32": ir.FloatType(), "f64": ir.DoubleType(), "i32": I32, "i64": I64,
                "bool": I1}


def llvm_type(dtype: DType, lanes: int = 1) -> ir.Type:
    scalar = SCALAR_TYPES[dtype.name]
    return scalar if lanes == 1 else ir.VectorType(scalar, lanes)


def constant(dtype: DType, value, lanes: int = 1) -> ir.Constant:
    if dtype.is_float:
        value = float(dtype.numpy.type(value))  # exactly representable, as LLVM requires
    elif dtype.is_bool:
        value = int(bool(value))
    else:
        value = int(value)
    scalar = ir.Constant(SCALAR_TYPES[dtype.name], value)
    return scalar if lanes == 1 else ir.Constant(llvm_type(dtype, lanes), [scalar] * lanes)


def lanes_of(value: ir.Value) -> int:
    return value.type.count if isinstance(value.type, ir.VectorType) else 1


def type_suffix(ty: ir.Type) -> str:
    """LLVM's name for a type in an overloaded intrinsic's name (`f32`, `v16f32`, `i64`)."""
    element = ty.element if isinstance(ty, ir.VectorType) else ty
    scalar = {"float": "f32", "double": "f64"}.get(str(element), str(element))
    return f"v{ty.count}{scalar}" if isinstance(ty, ir.VectorType) else scalar


def intrinsic(b: ir.IRBuilder, name: str, args: Sequence[ir.Value], ret: ir.Type | None = None,
              overload: ir.Type | None = None, fastmath: tuple[str, ...] = ()) -> ir.Value:
    """Call `llvm.<name>.<suffixes>`, declaring it in the module on first use.

    The name is overloaded on the first argument's type; an intrinsic that also names its
    result type (`fptosi.sat`) gets that first.
    """
    arg_type = overload or args[0].type
    suffix = type_suffix(arg_type)
    if ret is not None and ret != arg_type and overload is None:
        suffix = f"{type_suffix(ret)}.{suffix}"
    full = f"llvm.{name}.{suffix}"
    fn = b.module.globals.get(full)
    if fn is None:
        fn = ir.Function(b.module, ir.FunctionType(ret or arg_type, [a.type for a in args]), full)
    return b.call(fn, list(args), fastmath=fastmath)


class Ctx:
    """What an emitter may need besides its operands."""

    def __init__(self, b: ir.IRBuilder, in_dtypes: Sequence[DType], out: DType, attrs: dict,
                 literals: dict[int, object]):
        self.b, self.in_dtypes, self.out, self.attrs, self.literals = (
            b, in_dtypes, out, attrs, literals)

    def const(self, value, dtype: DType | None = None, like: ir.Value | None = None) -> ir.Value:
        lanes = lanes_of(like) if like is not None else 1
        return constant(dtype or self.in_dtypes[0], value, lanes)


Emitter = Callable[[Ctx, list], ir.Value]


def _arith(float_op: str, int_op: str, bool_op: str) -> Emitter:
    def emit(c: Ctx, xs):
        kind = c.in_dtypes[0]
        name = float_op if kind.is_float else bool_op if kind.is_bool else int_op
        return getattr(c.b, name)(*xs)
    return emit


def _compare(op: str) -> Emitter:
    def emit(c: Ctx, xs):
        kind = c.in_dtypes[0]
        if kind.is_float:
            return (c.b.fcmp_unordered if op == "!=" else c.b.fcmp_ordered)(op, *xs)
        return (c.b.icmp_unsigned if kind.is_bool else c.b.icmp_signed)(op, *xs)
    return emit


def _extremum(name: str, pick: str) -> Emitter:
    def emit(c: Ctx, xs):
        kind = c.in_dtypes[0]
        if kind.is_float:
            return intrinsic(c.b, name, xs)  # NaN-propagating, like numpy
        if kind.is_bool:
            return c.b.or_(*xs) if name == "maximum" else c.b.and_(*xs)
        return c.b.select(c.b.icmp_signed(pick, *xs), *xs)
    return emit


def _neg(c: Ctx, xs):
    return c.b.fneg(xs[0]) if c.in_dtypes[0].is_float else c.b.neg(xs[0])


def _abs(c: Ctx, xs):
    (x,) = xs
    if c.in_dtypes[0].is_float:
        return intrinsic(c.b, "fabs", xs)
    return c.b.select(c.b.icmp_signed("<", x, c.const(0, like=x)), c.b.neg(x), x)


def _sign(c: Ctx, xs):
    (x,) = xs
    zero, one, minus = (c.const(v, like=x) for v in (0, 1, -1))
    if c.in_dtypes[0].is_float:
        # x + 0.0 is +0 for either zero (numpy's sign(-0.0) is 0.0) and keeps NaN
        inner = c.b.select(c.b.fcmp_ordered("<", x, zero), minus, c.b.fadd(x, zero))
        return c.b.select(c.b.fcmp_ordered(">", x, zero), one, inner)
    inner = c.b.select(c.b.icmp_signed("<", x, zero), minus, zero)
    return c.b.select(c.b.icmp_signed(">", x, zero), one, inner)


def _pow(c: Ctx, xs):
    x, y = xs
    exponent = c.literals.get(1)
    float_base = c.in_dtypes[0].is_float
    if exponent is not None and float(exponent).is_integer() \
            and (0 <= exponent <= 4 or float_base and -4 <= exponent < 0):
        return _small_integer_power(c, x, int(exponent))
    return _general_power(c, x, y)


def _small_integer_power(c: Ctx, x, n: int):
    """x ** n for a literal |n| <= 4 by multiplication, as exact as numpy's."""
    if n == 0:
        return c.const(1, like=x)
    mul = c.b.fmul if c.in_dtypes[0].is_float else c.b.mul
    result = x
    for _ in range(abs(n) - 1):
        result = mul(result, x)
    return c.b.fdiv(c.const(1, like=x), result) if n < 0 else result


def _general_power(c: Ctx, x, y):
    """x ** y with numpy's special cases. float32: exp(y * log|x|) in float64, vectorized, with
    the sign fixed, rounded once (float64 carries the error |y log x| amplifies). float64 and
    integers: libm's `pow` per lane, which is exact where the result is, and integers are
    rounded to nearest (a negative integer exponent, an error in numpy, gives the rounded
    reciprocal)."""
    b, kind, lanes = c.b, c.in_dtypes[0], lanes_of(x)
    wide = llvm_type(f64, lanes)
    if kind == f32:
        return b.fptrunc(_power_f64(b, b.fpext(x, wide), b.fpext(y, wide), lanes), x.type)
    if kind == f64:
        return _per_lane_pow(b, x, y, lanes)
    result = _per_lane_pow(b, b.sitofp(x, wide), b.sitofp(y, wide), lanes)
    return intrinsic(b, "fptosi.sat", [intrinsic(b, "rint", [result])], llvm_type(kind, lanes))


def _power_f64(b: ir.IRBuilder, xd, yd, lanes: int):
    def d(value: float) -> ir.Constant:
        return constant(f64, value, lanes)

    magnitude = vecmath.emit_exp(b, b.fmul(yd, vecmath.emit_log(b, intrinsic(b, "fabs", [xd]))))
    is_integer = b.fcmp_ordered("==", intrinsic(b, "floor", [yd]), yd)
    is_odd = b.and_(is_integer, b.fcmp_ordered("!=", b.frem(yd, d(2.0)), d(0.0)))
    # An odd integer exponent keeps the base's sign (-0.0 included); C99: a negative finite
    # base needs an integer exponent, -inf takes any.
    signed = b.select(is_odd, intrinsic(b, "copysign", [magnitude, xd]), magnitude)
    real = b.or_(is_integer, b.fcmp_ordered("==", xd, d(float("-inf"))))
    result = b.select(b.and_(b.fcmp_ordered("<", xd, d(0.0)), b.not_(real)),
                      d(float("nan")), signed)
    minus_one_to_inf = b.and_(b.fcmp_ordered("==", xd, d(-1.0)),
                              b.fcmp_ordered("==", intrinsic(b, "fabs", [yd]), d(float("inf"))))
    one = b.or_(b.or_(b.fcmp_ordered("==", yd, d(0.0)), b.fcmp_ordered("==", xd, d(1.0))),
                minus_one_to_inf)
    return b.select(one, d(1.0), result)


def _per_lane_pow(b: ir.IRBuilder, x, y, lanes: int):
    double = ir.DoubleType()
    pow_fn = b.module.globals.get("pow") or ir.Function(
        b.module, ir.FunctionType(double, [double, double]), "pow")
    if lanes == 1:
        return b.call(pow_fn, [x, y])
    result = ir.Constant(x.type, ir.Undefined)
    for lane in range(lanes):
        at = ir.Constant(I32, lane)
        value = b.call(pow_fn, [b.extract_element(x, at), b.extract_element(y, at)])
        result = b.insert_element(result, value, at)
    return result


def _cast(c: Ctx, xs):
    (x,) = xs
    b, src, dst = c.b, c.in_dtypes[0], c.out
    lanes = lanes_of(x)
    target = llvm_type(dst, lanes)
    if src == dst:
        return x
    if dst.is_bool:
        zero = constant(src, 0, lanes)
        return b.fcmp_unordered("!=", x, zero) if src.is_float else b.icmp_signed("!=", x, zero)
    if src.is_bool:
        return b.uitofp(x, target) if dst.is_float else b.zext(x, target)
    if src.is_float and dst.is_float:
        return b.fptrunc(x, target) if src.itemsize > dst.itemsize else b.fpext(x, target)
    if src.is_float:
        return intrinsic(b, "fptosi.sat", [x], target)  # NaN -> 0, saturating, never poison
    if dst.is_float:
        return b.sitofp(x, target)
    return b.trunc(x, target) if src.itemsize > dst.itemsize else b.sext(x, target)


EMITTERS: dict[str, Emitter] = {
    "add": _arith("fadd", "add", "or_"),
    "sub": _arith("fsub", "sub", "xor"),
    "mul": _arith("fmul", "mul", "and_"),
    "div": lambda c, xs: c.b.fdiv(*xs),
    "pow": _pow,
    "maximum": _extremum("maximum", ">"),
    "minimum": _extremum("minimum", "<"),
    "lt": _compare("<"), "le": _compare("<="), "gt": _compare(">"),
    "ge": _compare(">="), "eq": _compare("=="), "ne": _compare("!="),
    "neg": _neg,
    "abs": _abs,
    "sign": _sign,
    "exp": lambda c, xs: vecmath.emit_exp(c.b, xs[0]),
    "log": lambda c, xs: vecmath.emit_log(c.b, xs[0]),
    "sqrt": lambda c, xs: intrinsic(c.b, "sqrt", xs),
    "tanh": lambda c, xs: vecmath.emit_tanh(c.b, xs[0]),
    "logistic": lambda c, xs: vecmath.emit_logistic(c.b, xs[0]),
    "stop_gradient": lambda c, xs: xs[0],
    "where": lambda c, xs: c.b.select(*xs),
    "cast": _cast,
}

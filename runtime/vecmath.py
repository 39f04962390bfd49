"""Vectorised exp, log, tanh and logistic, emitted inline as LLVM IR.

Why not `llvm.exp.*` / libm: LLVM scalarises vector exp into one libm call per lane
(about 0.4 Gelem/s, PERF-NOTES section 2). These emitters produce straight-line code made of
FMAs, selects, bitcasts and integer shifts, so it works for a scalar or a vector of any width
and can sit inside a vectorised loop body. On AVX-512 hosts, vectors of 128 or 256 bits or a
multiple of 512 scale by 2**n with one vscalef (per register) instead of eight generic
instructions; results are bit-identical.

Each function takes a `float`/`double` scalar or a `<N x float>`/`<N x double>` vector and
returns a value of the same type. Coefficients are minimax (Remez) fits made offline.

Measured max error in ULP of the correctly rounded result; `MAX_ULP` holds the bounds the
tests enforce. f32: all 2**32 inputs against numpy float64. f64: 8e7 inputs (random bit
patterns, full-range and hard-range sweeps) against numpy's 80-bit long double.

| function | f32 (exhaustive) | f64 (sampled) | method |
|----------|------|------|--------|
| exp      | 1.009 | 1.037 | Cody-Waite; 1 + r + r*r*P(r), degree 6 / 11; 2**n in two factors |
| log      | 0.840 | 0.846 | fdlibm: s = f/(2+f), f - hfsq + s*(hfsq + R), degree 3 / 7 in s*s |
| tanh     | 1.421 | 1.425 | odd polynomial below 0.5625, else 1 - 2/(exp(2|x|)+1) |
| logistic | 2.402 | 2.431 | e = exp(-|x|) once, then 1/(1+e) or e/(1+e) |

f32 exp on <16 x float> runs at about 10 Gelem/s on one Zen5 core (numpy np.exp: 3.1), see
benchmarks/vecmath_probe.py.
"""
from __future__ import annotations

import math

import llvmlite.ir as ir
import numpy as np

from runtime import engine

# f32: the exhaustive maxima rounded up; f64: the sampled maxima plus a small margin.
MAX_ULP: dict[tuple[str, str], float] = {
    ("exp", "f32"): 1.01, ("exp", "f64"): 1.1,
    ("log", "f32"): 0.85, ("log", "f64"): 0.9,
    ("tanh", "f32"): 1.43, ("tanh", "f64"): 1.5,
    ("logistic", "f32"): 2.41, ("logistic", "f64"): 2.5,
}

# exp(r) = 1 + r + r*r*P(r) on |r| <= ln2/2; P coefficients from r**0 up.
_EXP_POLY = {
    32: (0.49999994, 0.16666521, 0.04166839, 0.008368718, 0.0013814667),
    64: (0.5000000000000011, 0.16666666666666413, 0.04166666666653013, 0.008333333333494342,
         0.001388888894363796, 0.0001984126950689758, 2.4801493090196904e-05,
         2.75575860384122e-06, 2.763025167450247e-07, 2.5000183630996318e-08),
}
# log(1+f) = 2*atanh(s) = 2s + s*z*P(z), s = f/(2+f), z = s*s <= (3-2*sqrt2)**2.
_LOG_POLY = {
    32: (0.66666776, 0.39977536, 0.29871863),
    64: (0.6666666666666734, 0.3999999999941432, 0.28571428742474636, 0.2222219856350598,
         0.18183564865763893, 0.15314035855438984, 0.147961052644887),
}
# tanh(x) = x + x**3*P(x*x) for |x| < _TANH_SMALL.
_TANH_POLY = {
    32: (-0.33333313, 0.13332452, -0.053837396, 0.021007316, -0.0061796033),
    64: (-0.33333333333333276, 0.13333333333323125, -0.05396825396171896, 0.021869488327123775,
         -0.008863231634737217, 0.0035920822257826013, -0.0014554794885196242,
         0.000588183028637756, -0.00023271466908239197, 8.235874973464706e-05,
         -1.8902644154902822e-05),
}
_TANH_SMALL = 0.5625
# ln2 = hi + lo with hi short enough that n*hi is exact for every n the exp clamp allows.
_LN2 = {32: (0.693145751953125, 1.428606765330187e-06),
        64: (0.6931471803691238, 1.9082149292705877e-10)}
# Clamp for exp's argument: below lo the result rounds to 0, above hi to inf.
_EXP_RANGE = {32: (-104.0, 89.0), 64: (-746.0, 710.0)}


class _Emit:
    """Constants, bit views and intrinsic calls for one float type (scalar or vector)."""

    def __init__(self, b: ir.IRBuilder, ty: ir.Type):
        self.b = b
        self.ty = ty
        self.lanes = ty.count if isinstance(ty, ir.VectorType) else 0
        elem = ty.element if self.lanes else ty
        if isinstance(elem, ir.DoubleType):
            self.bits, self.mant, self.bias = 64, 52, 1023
        elif isinstance(elem, ir.FloatType):
            self.bits, self.mant, self.bias = 32, 23, 127
        else:
            raise TypeError(f"vecmath needs float or double (or vectors of them), got {ty}")
        self.ity = self._like(ir.IntType(self.bits))
        # Adding 1.5 * 2**mant rounds to an integer kept in the low mantissa bits.
        self.shifter = 1.5 * 2.0 ** self.mant

    def _like(self, elem: ir.Type) -> ir.Type:
        return ir.VectorType(elem, self.lanes) if self.lanes else elem

    def _splat(self, ty: ir.Type, v) -> ir.Constant:
        return ir.Constant(ty, [v] * self.lanes) if self.lanes else ir.Constant(ty, v)

    def c(self, v: float) -> ir.Constant:
        # llvmlite needs exactly representable literals: round to float32 first for f32.
        return self._splat(self.ty, float(np.float32(v)) if self.bits == 32 else float(v))

    def ci(self, v: int) -> ir.Constant:
        v &= (1 << self.bits) - 1  # two's complement, as the IR parser wants
        return self._splat(self.ity, v - (1 << self.bits) if v >> (self.bits - 1) else v)

    def as_int(self, v: ir.Value) -> ir.Value:
        return self.b.bitcast(v, self.ity)

    def as_float(self, v: ir.Value) -> ir.Value:
        return self.b.bitcast(v, self.ty)

    def intrinsic(self, name: str, *args: ir.Value) -> ir.Value:
        # llvmlite's declare_intrinsic cannot name vector overloads, so mangle here.
        suffix = f"f{self.bits}" if not self.lanes else f"v{self.lanes}f{self.bits}"
        full = f"{name}.{suffix}"
        module = self.b.module
        fn = module.globals.get(full)
        if fn is None:
            fn = ir.Function(module, ir.FunctionType(self.ty, [self.ty] * len(args)), full)
        return self.b.call(fn, args)

    def fma(self, a: ir.Value, x: ir.Value, y: ir.Value) -> ir.Value:
        return self.intrinsic("llvm.fma", a, x, y)

    def horner(self, x: ir.Value, coeffs) -> ir.Value:
        acc = self.c(coeffs[-1])
        for k in reversed(coeffs[:-1]):
            acc = self.fma(acc, x, self.c(k))
        return acc

    def lt(self, a: ir.Value, v: float) -> ir.Value:
        return self.b.fcmp_ordered("<", a, self.c(v))

    def clamp(self, x: ir.Value, lo: float, hi: float) -> ir.Value:
        # Ordered compares leave NaN untouched (maps to vminps/vmaxps with NaN in the right slot).
        x = self.b.select(self.b.fcmp_ordered(">", x, self.c(hi)), self.c(hi), x)
        return self.b.select(self.lt(x, lo), self.c(lo), x)


def _per_512_bits(e: _Emit, op, *vectors: ir.Value) -> ir.Value:
    """op(emit, *chunks) on each 512-bit chunk of vectors wider than that, joined again (the
    code generator's wide loop bodies; LLVM splits them into registers anyway, and the
    shuffles vanish with that split)."""
    b, k = e.b, 512 // e.bits
    if e.lanes * e.bits <= 512:
        return op(e, *vectors)
    chunk = _Emit(b, ir.VectorType(e.ty.element, k))
    parts = []
    for start in range(0, e.lanes, k):
        lanes = ir.Constant(ir.VectorType(ir.IntType(32), k), list(range(start, start + k)))
        parts.append(op(chunk, *(b.shuffle_vector(v, ir.Constant(v.type, ir.Undefined), lanes)
                                 for v in vectors)))
    while len(parts) > 1:
        width = 2 * parts[0].type.count
        lanes = ir.Constant(ir.VectorType(ir.IntType(32), width), list(range(width)))
        parts = [b.shuffle_vector(x, y, lanes) for x, y in zip(parts[::2], parts[1::2])]
    return parts[0]


def _avx512_sizes(e: _Emit) -> bool:
    """Whether this host has AVX-512 instructions for e's type: 128/256/512-bit vectors (with
    AVX512VL below 512), or multiples of 512 bits split by _per_512_bits."""
    h = engine.host()
    size = e.lanes * e.bits
    if size < 512:
        return size in (128, 256) and h.has("avx512f") and h.has("avx512vl")
    return size % 512 == 0 and h.has("avx512f")


def _scalef_512(c: _Emit, p: ir.Value, n: ir.Value) -> ir.Value:
    """llvm.x86.avx512.mask.scalef on all lanes of a 128/256/512-bit vector (the 512-bit form
    also takes a rounding mode: 4, the current one)."""
    size = c.lanes * c.bits
    mask = ir.Constant(ir.IntType(max(8, c.lanes)), -1)
    rounding = [ir.Constant(ir.IntType(32), 4)] if size == 512 else []
    name = f"llvm.x86.avx512.mask.scalef.{'ps' if c.bits == 32 else 'pd'}.{size}"
    args = [p, n, p, mask] + rounding  # masked-off lanes (there are none) would keep p
    fn = c.b.module.globals.get(name)
    if fn is None:
        fn = ir.Function(c.b.module, ir.FunctionType(c.ty, [a.type for a in args]), name)
    return c.b.call(fn, args)


def _scalef(e: _Emit, p: ir.Value, n: ir.Value) -> ir.Value | None:
    """p * 2**n by AVX-512 vscalef, one instruction with IEEE overflow and subnormal rounding
    instead of eight (exp 7.1 -> 9.8 Gelem/s). None where the host or the width lacks it."""
    if not _avx512_sizes(e):
        return None
    return _per_512_bits(e, _scalef_512, p, n)


def _exp(e: _Emit, x: ir.Value) -> ir.Value:
    b = e.b
    ln2hi, ln2lo = _LN2[e.bits]
    x = e.clamp(x, *_EXP_RANGE[e.bits])
    z = e.fma(x, e.c(1 / math.log(2)), e.c(e.shifter))
    n = b.fsub(z, e.c(e.shifter))  # round(x / ln2), exact
    r = e.fma(n, e.c(-ln2hi), x)
    r = e.fma(n, e.c(-ln2lo), r)
    p = b.fadd(e.fma(b.fmul(r, r), e.horner(r, _EXP_POLY[e.bits]), r), e.c(1.0))
    scaled = _scalef(e, p, n)
    if scaled is not None:
        return scaled
    # 2**n as 2**h * 2**(n-h), h = round(n/2): both factors stay normal over the clamped range,
    # so huge n gives inf and very negative n a correctly rounded subnormal.
    zh = e.fma(n, e.c(0.5), e.c(e.shifter))
    n_bits = b.shl(e.as_int(z), e.ci(e.mant))  # n << mant; the shifter's bits shift out
    h_bits = b.shl(e.as_int(zh), e.ci(e.mant))
    one = e.ci(e.bias << e.mant)
    s1 = e.as_float(b.add(h_bits, one))
    s2 = e.as_float(b.add(b.sub(n_bits, h_bits), one))
    return b.fmul(b.fmul(p, s1), s2)


def _log(e: _Emit, x: ir.Value) -> ir.Value:
    b = e.b
    ln2hi, ln2lo = _LN2[e.bits]
    mant_mask = (1 << e.mant) - 1
    one_bits = e.bias << e.mant
    sub_shift = e.mant + 2
    # Subnormals: scale into the normal range and remember the extra exponent.
    sub = e.lt(x, 2.0 ** (1 - e.bias))
    xs = b.select(sub, b.fmul(x, e.c(2.0 ** sub_shift)), x)
    # x = 2**k * m with m in [sqrt(1/2), sqrt(2)): offset the bits so the exponent field is k+bias.
    sqrt_half_bits = int(np.array(math.sqrt(0.5), dtype=f"f{e.bits // 8}").view(f"i{e.bits // 8}"))
    u = b.add(e.as_int(xs), e.ci(one_bits - sqrt_half_bits))
    exp_field = b.and_(u, e.ci(~mant_mask))
    m = e.as_float(b.add(b.sub(e.as_int(xs), exp_field), e.ci(one_bits)))
    # k as a float without sitofp (i64 -> f64 has no AVX2 instruction): exponent bits into 2**mant.
    kbits = b.or_(b.lshr(u, e.ci(e.mant)), e.ci(one_bits + (e.mant << e.mant)))
    two_mant = 2.0 ** e.mant + e.bias
    k = b.fsub(e.as_float(kbits), b.select(sub, e.c(two_mant + sub_shift), e.c(two_mant)))
    # log(1+f) = f - (hfsq - s*(hfsq + R)) with s = f/(2+f), R = s*s*P(s*s)  (fdlibm).
    f = b.fsub(m, e.c(1.0))
    s = b.fdiv(f, b.fadd(f, e.c(2.0)))
    zz = b.fmul(s, s)
    big_r = b.fmul(zz, e.horner(zz, _LOG_POLY[e.bits]))
    hfsq = b.fmul(b.fmul(f, f), e.c(0.5))
    t = e.fma(s, b.fadd(hfsq, big_r), b.fmul(k, e.c(ln2lo)))
    y = e.fma(k, e.c(ln2hi), b.fsub(f, b.fsub(hfsq, t)))
    # Special inputs: NaN and +inf return themselves, negatives NaN, zeros -inf.
    y = b.select(b.fcmp_unordered("==", x, e.c(math.inf)), x, y)
    y = b.select(e.lt(x, 0.0), e.c(math.nan), y)
    return b.select(b.fcmp_ordered("==", x, e.c(0.0)), e.c(-math.inf), y)


def _tanh(e: _Emit, x: ir.Value) -> ir.Value:
    b = e.b
    ax = e.intrinsic("llvm.fabs", x)
    # Small |x|: odd polynomial, no cancellation. Both forms work on |x|; copysign puts the sign
    # back, which also gives tanh(-0) = -0.
    t = b.fmul(ax, ax)
    small = e.fma(b.fmul(ax, t), e.horner(t, _TANH_POLY[e.bits]), ax)
    # Larger |x|: 1 - 2/(exp(2|x|) + 1); exp overflow to inf saturates at exactly 1; NaN passes.
    big = b.fsub(e.c(1.0), b.fdiv(e.c(2.0), b.fadd(_exp(e, b.fadd(ax, ax)), e.c(1.0))))
    mag = b.select(e.lt(ax, _TANH_SMALL), small, big)
    return e.intrinsic("llvm.copysign", mag, x)


def _logistic(e: _Emit, x: ir.Value) -> ir.Value:
    b = e.b
    # One exp of -|x| (never overflows): 1/(1+e) for x >= 0, e/(1+e) for x < 0 keeps the
    # relative accuracy of tiny results. NaN propagates through e.
    ex = _exp(e, b.fneg(e.intrinsic("llvm.fabs", x)))
    num = b.select(e.lt(x, 0.0), ex, e.c(1.0))
    return b.fdiv(num, b.fadd(ex, e.c(1.0)))


def emit_exp(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """exp(x): inf on overflow, subnormals and 0 on underflow, NaN passes through."""
    return _exp(_Emit(b, x.type), x)


def emit_log(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """Natural log: subnormals handled, log(+-0) = -inf, log(x<0) = NaN, log(inf) = inf."""
    return _log(_Emit(b, x.type), x)


def emit_tanh(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """tanh(x): exact sign and tiny-argument behaviour, saturates at +-1, NaN passes."""
    return _tanh(_Emit(b, x.type), x)


def emit_logistic(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """Sigmoid 1/(1+exp(-x)), relatively accurate also for tiny results at very negative x."""
    return _logistic(_Emit(b, x.type), x)

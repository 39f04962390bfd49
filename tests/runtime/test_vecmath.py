"""runtime.vecmath: accuracy (ULP) over dense sweeps, special values, and lane/width agreement.

Each function is compiled into a loop kernel `void k(ptr in, ptr out, i64 n)` that applies it
to <W x T> vectors and then to scalars for the tail, and run on numpy arrays.
"""
from __future__ import annotations

import ctypes
import math

import llvmlite.ir as ir
import numpy as np
import pytest

from runtime import engine, vecmath

FUNCS = ("exp", "log", "tanh", "logistic")
# The widest: the code generator's main-loop vectors, several registers wide.
WIDTHS = {"f32": (1, 4, 8, 16, 64), "f64": (1, 2, 4, 8, 32)}
NP = {"f32": np.float32, "f64": np.float64}
EMIT = {f: getattr(vecmath, f"emit_{f}") for f in FUNCS}


def ulp_error(y: np.ndarray, ref: np.ndarray, dtype) -> np.ndarray:
    """|y - ref| in units of the last place of `dtype` at ref (ref in a wider type).

    Results equal to ref rounded to dtype count 0, so do matching infs and NaNs; any other
    disagreement about inf/NaN counts inf.
    """
    fi = np.finfo(dtype)
    p = fi.nmant + 1
    with np.errstate(over="ignore", invalid="ignore"):
        same = (y == ref.astype(dtype)) | (np.isnan(y) & np.isnan(ref))
        _, e = np.frexp(ref)  # ref in [2**(e-1), 2**e)
        e = np.where(ref == 0, fi.minexp, e)  # frexp(0) gives e = 0; 0's ULP is the subnormal one
        ulp = np.ldexp(np.ones_like(ref), np.maximum(e - p, fi.minexp - p + 1))
        err = np.abs(y.astype(ref.dtype) - ref) / ulp
    err[same] = 0.0
    err[np.isnan(err)] = np.inf
    return err


def test_ulp_error_helper():
    one = np.float32(1.0)
    y = np.array([one, np.nextafter(one, np.float32(2)), np.nextafter(one, np.float32(0)),
                  np.float32(np.inf), np.float32(np.nan), np.float32(3e38), np.float32(1e-45)])
    ref = np.array([1.0, 1.0, 1.0, 1e39, np.nan, np.inf, 0.0])
    assert ulp_error(y, ref, np.float32).tolist() == [0.0, 1.0, 0.5, 0.0, 0.0, np.inf, 1.0]
    sub = np.array([np.float32(2.0 ** -149)])
    assert ulp_error(sub, np.array([2.0 ** -149 * 1.75]), np.float32)[0] == 0.75


def _ref_logistic(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x < 0, e, 1) / (1 + e)


REF = {"exp": np.exp, "log": np.log, "tanh": np.tanh, "logistic": _ref_logistic}


def reference(func: str, x: np.ndarray, dt: str) -> np.ndarray:
    """float64 reference for f32, 80-bit long double for f64."""
    wide = np.float64 if dt == "f32" else np.longdouble
    with np.errstate(all="ignore"):
        return REF[func](x.astype(wide))


def _build_kernel(module: ir.Module, name: str, func: str, dt: str, width: int) -> None:
    i64, ptr = ir.IntType(64), ir.PointerType()
    fty = ir.FloatType() if dt == "f32" else ir.DoubleType()
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [ptr, ptr, i64]), name)
    src, dst, n = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))

    def loop(start: ir.Value, step: int, ty: ir.Type, tag: str) -> ir.Value:
        pre = b.block
        head, body, done = (fn.append_basic_block(tag + s) for s in ("head", "body", "done"))
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(i64)
        i.add_incoming(start, pre)
        b.cbranch(b.icmp_signed("<=", b.add(i, ir.Constant(i64, step)), n), body, done)
        b.position_at_end(body)
        x = b.load(b.gep(src, [i], source_etype=fty), typ=ty, align=4)
        b.store(EMIT[func](b, x), b.gep(dst, [i], source_etype=fty), align=4)
        i.add_incoming(b.add(i, ir.Constant(i64, step)), b.block)
        b.branch(head)
        b.position_at_end(done)
        return i

    start = ir.Constant(i64, 0)
    if width > 1:
        start = loop(start, width, ir.VectorType(fty, width), "vec")
    loop(start, 1, fty, "tail")
    b.ret_void()


class Kernels:
    """All functions x dtypes x widths in one native module; call as kernels(func, dt, w, x)."""

    def __init__(self, widths_by_dtype: dict[str, tuple[int, ...]] = WIDTHS):
        module = ir.Module()
        module.triple = engine.host().triple
        self.names = {}
        for func in FUNCS:
            for dt, widths in widths_by_dtype.items():
                for w in widths:
                    name = f"{func}_{dt}_{w}"
                    _build_kernel(module, name, func, dt, w)
                    self.names[func, dt, w] = name
        attrs = f"\nattributes #0 = {{ {engine.function_attributes()} }}\n"
        self.native = engine.compile_llvm(str(module).replace(") {", ") #0 {") + attrs, "O3")
        proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
        self.fns = {k: proto(self.native.address(n)) for k, n in self.names.items()}

    def __call__(self, func: str, dt: str, width: int, x) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=NP[dt])
        y = np.empty_like(x)
        self.fns[func, dt, width](x.ctypes.data, y.ctypes.data, x.size)
        return y


@pytest.fixture(scope="module")
def kernels() -> Kernels:
    return Kernels()


def sweep(func: str, dt: str) -> np.ndarray:
    """Dense inputs: a stride through every bit pattern plus uniform runs over the hard ranges."""
    rng = np.random.default_rng(1234)
    n = 400_000
    if dt == "f32":
        everything = (np.arange(0, 1 << 32, 2039, dtype=np.uint64) + 7).astype(np.uint32).view(np.float32)
        hi_lim, lo_lim, over = 89.0, -104.0, 88.72
    else:
        everything = rng.integers(0, 1 << 64, 1_500_000, dtype=np.uint64).view(np.float64)
        hi_lim, lo_lim, over = 710.0, -746.0, 709.78
    u = rng.uniform
    ranges = {
        "exp": [u(lo_lim, hi_lim, n), u(-1, 1, n), u(lo_lim, lo_lim + 40, n), u(over - 1, over + 0.1, n)],
        "log": [u(0.5, 2, n), u(0.999, 1.001, n), np.exp(u(lo_lim, over, n))],
        "tanh": [u(-10, 10, n), u(0.5, 0.65, n), u(-0.6, 0.6, n), np.exp(u(-745, 3, n))],
        "logistic": [u(lo_lim - 2, 40, n), u(-12, 12, n), -np.exp(u(-20, 6.6, n))],
    }[func]
    return np.concatenate([everything.astype(NP[dt])] + [r.astype(NP[dt]) for r in ranges])


@pytest.mark.parametrize("dt", ["f32", "f64"])
@pytest.mark.parametrize("func", FUNCS)
def test_max_ulp(kernels, func, dt):
    if dt == "f64" and np.finfo(np.longdouble).nmant < 60:
        pytest.skip("needs an extended-precision long double for the f64 reference")
    x = sweep(func, dt)
    err = ulp_error(kernels(func, dt, WIDTHS[dt][-1], x), reference(func, x, dt), NP[dt])
    worst = int(np.argmax(err))
    assert err[worst] <= vecmath.MAX_ULP[func, dt], f"{func}({x[worst]!r}) is {err[worst]} ULP off"
    # The sweep really exercises the rounding (a bound met only by luck would sit near 0).
    assert err.max() > 0.5 * vecmath.MAX_ULP[func, dt]


@pytest.mark.parametrize("dt", ["f32", "f64"])
@pytest.mark.parametrize("func", FUNCS)
def test_all_widths_and_tail_agree(kernels, func, dt):
    # Odd length so every vector width also runs its scalar tail.
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.uniform(-800, 800, 3001), rng.standard_normal(3001),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-310, 1e-40]]).astype(NP[dt])
    results = [kernels(func, dt, w, x) for w in WIDTHS[dt]]
    for w, y in zip(WIDTHS[dt][1:], results[1:]):
        np.testing.assert_array_equal(y.view(f"u{y.itemsize}"), results[0].view(f"u{y.itemsize}"), err_msg=f"width {w}")


def test_portable_code_matches_avx512(kernels, monkeypatch):
    """Vector widths use vscalef on AVX-512 hosts; the portable code must agree bit for bit."""
    monkeypatch.setattr(vecmath, "_avx512_sizes", lambda e: False)
    generic = Kernels({dt: widths[-1:] for dt, widths in WIDTHS.items()})
    rng = np.random.default_rng(3)
    for dt, lim in (("f32", 110.0), ("f64", 760.0)):
        x = np.concatenate([rng.uniform(-lim, lim, 20_000), [np.inf, -np.inf, np.nan]]).astype(NP[dt])
        for func in FUNCS:
            w = WIDTHS[dt][-1]
            np.testing.assert_array_equal(generic(func, dt, w, x), kernels(func, dt, w, x), err_msg=func)


def _exact(kernels, func, dt, cases):
    x = np.array([c[0] for c in cases], dtype=NP[dt])
    want = np.array([c[1] for c in cases], dtype=NP[dt])
    for w in WIDTHS[dt]:
        got = kernels(func, dt, w, x)
        np.testing.assert_array_equal(got, want, err_msg=f"{func} {dt} width {w} inputs {x}")
        zero = want == 0
        np.testing.assert_array_equal(np.signbit(got[zero]), np.signbit(want[zero]), err_msg="signed 0")


@pytest.mark.parametrize("dt", ["f32", "f64"])
def test_exp_special_values(kernels, dt):
    t = NP[dt]
    fi = np.finfo(t)
    tiny = fi.smallest_subnormal
    _exact(kernels, "exp", dt, [
        (0.0, 1.0), (-0.0, 1.0), (tiny, 1.0), (-tiny, 1.0), (np.inf, np.inf), (-np.inf, 0.0),
        (np.nan, np.nan), (1e30, np.inf), (-1e30, 0.0), (1000.0, np.inf), (-1000.0, 0.0),
    ])
    # Inputs either side of the overflow threshold log(max) and the underflow one log(tiny/2).
    over = np.longdouble(np.log(np.longdouble(fi.max)))
    under = np.longdouble(np.log(np.longdouble(tiny) / 2))
    big, small = t(over), t(under)
    big = np.nextafter(big, t(-np.inf)) if big > over else big
    small = np.nextafter(small, t(np.inf)) if small < under else small
    x = np.array([big, np.nextafter(big, t(np.inf)), small, np.nextafter(small, t(-np.inf))], dtype=t)
    want = reference("exp", x, dt)
    with np.errstate(over="ignore"):
        assert np.isfinite(want[0].astype(t)) and np.isinf(want[1].astype(t))
    for w in WIDTHS[dt]:
        y = kernels("exp", dt, w, x)
        assert np.isinf(y[1]) and y[3] == 0.0
        assert ulp_error(y[[0, 2]], want[[0, 2]], t).max() <= vecmath.MAX_ULP["exp", dt]
    # Subnormal results come out within the bound too.
    sub = np.linspace(float(under), math.log(fi.smallest_normal), 50_001).astype(t)
    err = ulp_error(kernels("exp", dt, 1, sub), reference("exp", sub, dt), t)
    assert err.max() <= vecmath.MAX_ULP["exp", dt]


@pytest.mark.parametrize("dt", ["f32", "f64"])
def test_log_special_values(kernels, dt):
    fi = np.finfo(NP[dt])
    _exact(kernels, "log", dt, [
        (0.0, -np.inf), (-0.0, -np.inf), (1.0, 0.0), (np.inf, np.inf), (-np.inf, np.nan),
        (-1.0, np.nan), (-fi.smallest_subnormal, np.nan), (np.nan, np.nan),
    ])
    x = np.array([fi.smallest_subnormal, fi.smallest_normal, fi.max, 2.0, 0.5], dtype=NP[dt])
    err = ulp_error(kernels("log", dt, WIDTHS[dt][-1], x), reference("log", x, dt), NP[dt])
    assert err.max() <= vecmath.MAX_ULP["log", dt]


@pytest.mark.parametrize("dt", ["f32", "f64"])
def test_tanh_special_values(kernels, dt):
    fi = np.finfo(NP[dt])
    _exact(kernels, "tanh", dt, [
        (0.0, 0.0), (-0.0, -0.0), (fi.smallest_subnormal, fi.smallest_subnormal),
        (-fi.smallest_subnormal, -fi.smallest_subnormal), (1e-20, 1e-20), (-1e-20, -1e-20),
        (25.0, 1.0), (-25.0, -1.0), (1e30, 1.0), (-fi.max, -1.0), (np.inf, 1.0), (-np.inf, -1.0),
        (np.nan, np.nan),
    ])
    # Around the switch between the polynomial and the exp form.
    x = np.linspace(0.5, 0.65, 100_001).astype(NP[dt])
    x = np.concatenate([x, -x])
    err = ulp_error(kernels("tanh", dt, 1, x), reference("tanh", x, dt), NP[dt])
    assert err.max() <= vecmath.MAX_ULP["tanh", dt]


@pytest.mark.parametrize("dt", ["f32", "f64"])
def test_logistic_special_values(kernels, dt):
    fi = np.finfo(NP[dt])
    _exact(kernels, "logistic", dt, [
        (0.0, 0.5), (-0.0, 0.5), (np.inf, 1.0), (-np.inf, 0.0), (np.nan, np.nan), (200.0, 1.0),
        (1e30, 1.0), (-1e30, 0.0), (-fi.max, 0.0), (fi.smallest_subnormal, 0.5),
    ])
    # The saturated negative side keeps relative accuracy: logistic(x) ~ exp(x), down into
    # subnormal results.
    x = np.array([-30.0, -80.0, -100.0, -103.0, -700.0, -740.0], dtype=NP[dt])
    got = kernels("logistic", dt, WIDTHS[dt][-1], x)
    want = reference("logistic", x, dt)
    assert ulp_error(got, want, NP[dt]).max() <= vecmath.MAX_ULP["logistic", dt]
    assert abs(got[0] / 9.357622968839299e-14 - 1) < 2 * fi.eps  # exp(-30)/(1+exp(-30))


def test_straight_line_code_without_libm():
    """The emitters add no blocks and call only single-instruction intrinsics (no libm)."""
    module = ir.Module()
    for ty in (ir.FloatType(), ir.VectorType(ir.DoubleType(), 4)):
        fn = ir.Function(module, ir.FunctionType(ty, [ty]), f"f{len(module.functions)}")
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        v = fn.args[0]
        for emit in EMIT.values():
            v = emit(b, v)
            assert v.type == ty
        b.ret(v)
        assert len(fn.blocks) == 1
    text = str(module)
    called = {line.split("@")[1].split("(")[0].strip('"') for line in text.splitlines() if " call " in line}
    allowed = ("llvm.fma.", "llvm.fabs.", "llvm.copysign.", "llvm.x86.avx512.mask.scalef.")
    assert called and all(name.startswith(allowed) for name in called), called
    assert " br " not in text


def test_rejects_non_float_types():
    module = ir.Module()
    fn = ir.Function(module, ir.FunctionType(ir.IntType(32), [ir.IntType(32)]), "f")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    with pytest.raises(TypeError):
        vecmath.emit_exp(b, fn.args[0])


def test_max_ulp_table_covers_interface():
    assert set(vecmath.MAX_ULP) == {(f, dt) for f in FUNCS for dt in ("f32", "f64")}

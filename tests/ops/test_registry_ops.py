"""One table over every registered op: type rule vs numpy reference vs an independent numpy
oracle, and each derivative against float64 finite differences (first and second order).

`TABLE` must name every op in `ir.REGISTRY`; a new op fails `test_table_covers_the_registry`
until it has a row here (and a recipe in tests/strategies.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import ir
import jit
from ir import Function, Literal, Value
from ir.interpreter import literal_array, run_op
from jit.tensor import Tensor, bind
from tests.strategies import ALL_DTYPES, accepted_dtypes, arguments, missing_recipes, programs


# Oracles: independent numpy formulations of each op ----------------------------------------------

def _f64(fn):
    return lambda *xs: fn(*(np.asarray(x, np.float64) for x in xs))


def _take(x, starts, sizes, steps):
    for axis, (start, size, step) in enumerate(zip(starts, sizes, steps)):
        x = np.take(x, start + step * np.arange(size), axis=axis)
    return x


def _scatter(x, shape, starts, steps):
    out = np.zeros(shape, x.dtype)
    index = np.ix_(*(start + step * np.arange(n)
                     for start, step, n in zip(starts, steps, x.shape)))
    out[index] = x
    return out


def _wide(x):
    return x.astype(np.float64 if x.dtype.kind == "f" else np.int64)


def _iota(shape, axis, dtype):
    return np.indices(shape)[axis].astype(dtype.numpy)


def _sum(x, axes):
    return np.add.reduce(_wide(x), axis=axes).astype(x.dtype)


def _matmul(x, y):
    return np.einsum("...ij,...jk->...ik", _wide(x), _wide(y)).astype(x.dtype)


# Domains: move finite-difference inputs away from kinks, poles and ties ---------------------------

def _away_from_zero(*positions):
    def domain(values, rng):
        return [np.sign(v) * (0.3 + np.abs(v)) + (np.asarray(v) == 0) * 0.5
                if i in positions else v for i, v in enumerate(values)]
    return domain


def _positive(*positions):
    def domain(values, rng):
        return [0.3 + np.abs(v) if i in positions else v for i, v in enumerate(values)]
    return domain


def _pow_domain(values, rng):
    x, y = values
    return [0.3 + np.abs(x), np.clip(y, -2.5, 2.5)]


def _c_pow(x, y):
    """C99 pow, which the native code calls: numpy's float_power computes it in float64;
    np.power turns an exponent of 0.5 into a square root (NaN at -inf, not +inf)."""
    return np.float_power(x, y) if np.result_type(x, y).kind == "f" else np.power(x, y)


def _no_ties(values, rng):
    """maximum/minimum: the tensor operand sits 0.2 .. 1.2 above or below the other."""
    x, y = (np.asarray(v, np.float64) for v in values)
    shape = np.broadcast_shapes(x.shape, y.shape)
    gap = rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 1.2, shape)
    return [x, x + gap] if y.ndim >= x.ndim else [y + gap, y]


def _distinct(values, rng):
    """reduce_max/min: distinct elements at least 0.3 apart."""
    (x,) = values
    return [(rng.permutation(np.size(x)) * 0.3 + rng.uniform(-1, 1)).reshape(np.shape(x))]


@dataclass(frozen=True)
class Case:
    oracle: Callable
    order: int                        # 0: no derivative; 2: first and second order checked
    domain: Callable | None = None    # (operand values, rng) -> values where differences are smooth


TABLE: dict[str, Case] = {
    "add": Case(np.add, 2),
    "sub": Case(np.subtract, 2),
    "mul": Case(np.multiply, 2),
    "div": Case(np.true_divide, 2, _away_from_zero(1)),
    "pow": Case(_c_pow, 2, _pow_domain),
    "maximum": Case(np.maximum, 2, _no_ties),
    "minimum": Case(np.minimum, 2, _no_ties),
    "lt": Case(np.less, 0),
    "le": Case(np.less_equal, 0),
    "gt": Case(np.greater, 0),
    "ge": Case(np.greater_equal, 0),
    "eq": Case(np.equal, 0),
    "ne": Case(np.not_equal, 0),
    "neg": Case(lambda x: 0 - x if x.dtype.kind == "i" else -x, 2),
    "abs": Case(lambda x: np.where(x < 0, -x, x), 2, _away_from_zero(0)),
    "sign": Case(lambda x: np.where(x != x, x, (x > 0).astype(x.dtype) - (x < 0).astype(x.dtype)),
                 0),
    "exp": Case(_f64(np.exp), 2),
    "log": Case(_f64(np.log), 2, _positive(0)),
    "sqrt": Case(_f64(np.sqrt), 2, _positive(0)),
    "tanh": Case(_f64(np.tanh), 2),
    "logistic": Case(_f64(lambda x: 1 / (1 + np.exp(-x))), 2),
    "stop_gradient": Case(lambda x: x.copy(), 0),
    "where": Case(lambda c, x, y: np.choose(c.astype(int), [y, x]), 2),
    "cast": Case(lambda x, dtype: x.astype(dtype.numpy), 2),
    "reduce_sum": Case(_sum, 2),
    "reduce_max": Case(lambda x, axes: np.maximum.reduce(x, axis=axes), 2, _distinct),
    "reduce_min": Case(lambda x, axes: np.minimum.reduce(x, axis=axes), 2, _distinct),
    "reshape": Case(lambda x, shape: x.ravel().reshape(shape), 2),
    "transpose": Case(lambda x, perm: np.moveaxis(x, perm, range(x.ndim)), 2),
    "broadcast_to": Case(lambda x, shape: x * np.ones(shape, x.dtype) if x.dtype != bool
                         else np.logical_and(x, np.ones(shape, bool)), 2),
    "slice": Case(_take, 2),
    "slice_scatter": Case(_scatter, 2),
    "concatenate": Case(lambda *xs, axis: np.concatenate(xs, axis), 2),
    "matmul": Case(_matmul, 2),
    "constant": Case(lambda value: value.array, 0),
    "iota": Case(_iota, 0),
}

OPS = sorted(ir.REGISTRY)
DIFFERENTIABLE = [n for n in OPS if TABLE[n].order > 0]


def test_table_covers_the_registry():
    assert sorted(TABLE) == OPS, "add a row to TABLE for every registered op"
    assert missing_recipes() == [], "tests/strategies.py has no recipe for these ops"
    for name, case in TABLE.items():
        assert (case.order > 0) == (ir.REGISTRY[name].vjp is not None), name


# Type rule vs reference vs oracle --------------------------------------------------------------------

def _operands_of_last_op(fn: Function, args) -> tuple[ir.Op, list[np.ndarray]]:
    """The last op of `fn` and the numpy values of its operands (ops before it interpreted)."""
    op = fn.ops[-1]
    values = [o for o in op.operands if isinstance(o, Value)]
    env_fn = Function(fn.name, fn.params, fn.ops[:-1], tuple(values))
    computed = dict(zip((v.name for v in values), ir.interpret(env_fn, args)))
    return op, [computed[o.name] if isinstance(o, Value) else literal_array(o)
                for o in op.operands]


def _assert_matches(out: np.ndarray, expected: np.ndarray) -> None:
    expected = np.asarray(expected)
    assert out.shape == expected.shape
    if out.dtype.kind == "f":
        tiny = np.finfo(out.dtype).tiny
        rtol = 2e-6 if out.dtype == np.float32 else 1e-13
        np.testing.assert_allclose(out, expected.astype(out.dtype), rtol=rtol, atol=tiny,
                                   equal_nan=True)
    else:
        np.testing.assert_array_equal(out, expected)


def _dtype_cases() -> list[tuple[str, tuple[str, ...]]]:
    """(op, the dtypes its program may use): each dtype an op accepts, one at a time; casts
    between every pair."""
    cases = []
    for name in OPS:
        definition = ir.REGISTRY[name]
        if name == "cast":
            cases += [(name, (a, b)) for i, a in enumerate(ALL_DTYPES) for b in ALL_DTYPES[i:]]
            continue
        if definition.kind == "elementwise" and name != "where":
            dtypes = accepted_dtypes(name)
        elif name in ("reduce_sum", "reduce_max", "reduce_min", "matmul", "iota"):
            dtypes = tuple(d for d in ALL_DTYPES if d != "bool")
        else:
            dtypes = ALL_DTYPES
        cases += [(name, (d,)) for d in dtypes]
    return cases


@pytest.mark.parametrize("name,dtypes", _dtype_cases(),
                         ids=[f"{n}-{'-'.join(d)}" for n, d in _dtype_cases()])
@settings(max_examples=12)
@given(data=st.data())
def test_type_rule_reference_and_oracle_agree(name, dtypes, data):
    fn = data.draw(programs(ops=[name], max_ops=1, min_dim=data.draw(st.sampled_from([0, 1])),
                            dtypes=dtypes, locations=False), label="program")
    assume(fn.ops and fn.ops[-1].name == name)
    op = fn.ops[-1]
    undefined_cast = name == "cast" and not op.attrs["dtype"].is_float
    args = data.draw(arguments(fn, special=not undefined_cast), label="args")
    op, inputs = _operands_of_last_op(fn, args)
    raw = np.asarray(ir.REGISTRY[name].reference(*inputs, **op.attrs))
    # the type rule's shape exactly, its dtype up to rounding (transcendentals compute in f64)
    assert raw.shape == op.type.shape
    assert raw.dtype.kind == op.type.dtype.numpy.kind
    out = run_op(op, inputs)
    assert out.dtype == op.type.dtype.numpy
    with np.errstate(all="ignore"):
        expected = TABLE[name].oracle(*inputs, **op.attrs)
    _assert_matches(out, expected)


BINARY = [n for n in OPS if ir.REGISTRY[n].kind == "elementwise" and ir.REGISTRY[n].arity == 2]


@st.composite
def broadcast_pair(draw, max_rank=3):
    """(shape, a shape that numpy broadcasts to it)."""
    shape = tuple(draw(st.lists(st.integers(1, 3), max_size=max_rank)))
    lead = draw(st.integers(0, len(shape)))
    small = tuple(1 if draw(st.booleans()) else n for n in shape[lead:])
    return shape, small


@pytest.mark.parametrize("name", BINARY)
@settings(max_examples=15)
@given(shapes=broadcast_pair(), swap=st.booleans(), dtype=st.sampled_from(["f32", "f64", "i32"]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_binary_ops_with_an_explicitly_broadcast_operand(name, shapes, swap, dtype, seed):
    """`op(x, broadcast_to(y))` in IR is numpy's broadcasting `op(x, y)`."""
    shape, small = shapes
    dtype = ir.DTYPES[dtype]
    assume(dtype.name in accepted_dtypes(name))
    b = ir.Builder("f")
    x = b.param(ir.TensorType(dtype, shape), "x")
    y = b.param(ir.TensorType(dtype, small), "y")
    wide = b.broadcast_to(y, shape=shape)
    out = b.emit(name, *((wide, x) if swap else (x, wide)))
    rng = np.random.default_rng(seed)
    xa = (rng.uniform(0.5, 3, shape) if dtype.is_float else rng.integers(0, 4, shape))
    ya = (rng.uniform(0.5, 3, small) if dtype.is_float else rng.integers(0, 4, small))
    xa, ya = xa.astype(dtype.numpy), ya.astype(dtype.numpy)
    (got,) = ir.interpret(ir.verify(b.build([out])), [xa, ya])
    with np.errstate(all="ignore"):
        expected = TABLE[name].oracle(*((ya, xa) if swap else (xa, ya)))
    _assert_matches(got, expected)


# Derivatives ------------------------------------------------------------------------------------

def _draw_differentiable_op(data, name: str, dtype: str):
    """A one-op program on `dtype` parameters whose result is floating point."""
    dtypes = (dtype, "bool") if name == "where" else (dtype,)
    fn = data.draw(programs(ops=[name], max_ops=1, max_dim=3, dtypes=dtypes,
                            special_literals=False, locations=False), label="program")
    assume(len(fn.ops) == 1 and fn.ops[0].name == name)
    op = fn.ops[0]
    values = [o for o in op.operands if isinstance(o, Value)]
    assume(op.type.dtype.is_float and any(v.type.dtype.is_float for v in values))
    if TABLE[name].domain is not None:
        assume(len({v.name for v in values}) == len(values))  # a domain is set per operand
    return fn, op


def _inputs(data, fn: Function, op: ir.Op, dtype) -> tuple[list, ir.Op]:
    """Values for the parameters, moved into the op's smooth domain (literals too)."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1), label="seed"))
    by_name = {p.name: (rng.uniform(-2, 2, p.type.shape) if p.type.dtype.is_float
                        else rng.uniform(size=p.type.shape) < 0.5) for p in fn.params}
    values = [by_name[o.name] if isinstance(o, Value)
              else np.clip(o.value, -3, 3) if o.dtype.is_float else o.value
              for o in op.operands]
    if TABLE[op.name].domain is not None:
        values = TABLE[op.name].domain(values, rng)
    operands = []
    for o, v in zip(op.operands, values):
        if isinstance(o, Value):
            by_name[o.name] = np.asarray(v).astype(o.type.dtype.numpy)
            operands.append(o)
        else:
            operands.append(Literal(np.asarray(v).item(), o.dtype))
    op = ir.Op(op.name, tuple(operands), op.attrs, op.result)
    args = [by_name[p.name].astype(dtype) if p.type.dtype.is_float else by_name[p.name]
            for p in fn.params]
    return args, op


def as_python_fn(op: ir.Op, params, widen: bool = False) -> Callable:
    """`f(*params)` applying `op` through jit's `bind` (so it traces and differentiates);
    float literals become Python scalars that take the operands' dtype. `widen` turns an
    f32 dtype attribute (a cast's target) into f64, for float64 reference differences."""
    index = {p.name: i for i, p in enumerate(params)}
    attrs = {k: ir.f64 if widen and v == ir.f32 else v for k, v in op.attrs.items()}

    def f(*args):
        args = [a if isinstance(a, Tensor) else Tensor(np.asarray(a)) for a in args]
        operands = [args[index[o.name]] if isinstance(o, Value)
                    else o if o.dtype.is_bool else o.value for o in op.operands]
        return bind(op.name, *operands, **attrs)
    return f


@pytest.mark.parametrize("name", DIFFERENTIABLE)
@settings(max_examples=15)
@given(data=st.data())
def test_gradient_float64_first_and_second_order(name, data):
    """check_grads(order=2) checks first order, then the gradient of a random contraction
    of the first-order vjp (so every second derivative takes part)."""
    fn, op = _draw_differentiable_op(data, name, "f64")
    args, op = _inputs(data, fn, op, np.float64)
    jit.check_grads(as_python_fn(op, fn.params), args, order=TABLE[name].order)


def _numeric_vjp_f64(f, args, ct, eps=1e-6):
    """Central differences of <ct, f(args)> in float64, one element at a time."""
    grads = []
    for i, a in enumerate(args):
        if a.dtype.kind != "f":
            grads.append(None)
            continue
        base = a.astype(np.float64)
        g = np.zeros_like(base)
        for k in range(base.size):
            step = np.zeros(base.size)
            step[k] = eps
            step = step.reshape(base.shape)

            def at(sign):
                moved = [x.astype(np.float64) if x.dtype.kind == "f" else x for x in args]
                moved[i] = base + sign * step
                return float(np.sum(ct * f(*moved).numpy().astype(np.float64)))
            g.flat[k] = (at(1) - at(-1)) / (2 * eps)
        grads.append(g)
    return grads


@pytest.mark.parametrize("name", DIFFERENTIABLE)
@settings(max_examples=10)
@given(data=st.data())
def test_gradient_float32(name, data):
    """Reverse mode run in float32 against float64 differences, to float32 accuracy."""
    fn, op = _draw_differentiable_op(data, name, "f32")
    args, op = _inputs(data, fn, op, np.float32)
    f = as_python_fn(op, fn.params)
    out, pullback = jit.vjp(f, *args)
    assert out.dtype == np.float32
    ct = np.random.default_rng(0).standard_normal(out.shape).astype(np.float32)
    analytic = pullback(Tensor(ct))
    numeric = _numeric_vjp_f64(as_python_fn(op, fn.params, widen=True), args,
                               ct.astype(np.float64))
    for a, g, n in zip(args, analytic, numeric):
        if n is None:
            continue
        assert g.dtype == a.dtype
        scale = max(1.0, float(np.max(np.abs(n), initial=0)))
        np.testing.assert_allclose(g.numpy(), n, rtol=2e-3, atol=2e-3 * scale)


@pytest.mark.parametrize("source,target", [("f32", "f64"), ("f64", "f32")])
def test_gradient_of_casts_between_float_widths(source, target):
    b = ir.Builder("f")
    x = b.param(ir.TensorType(ir.DTYPES[source], (3,)), "x")
    out = b.cast(x, dtype=ir.DTYPES[target])
    fn = b.build([out])
    f = as_python_fn(fn.ops[0], fn.params)
    arg = np.array([0.5, -1.25, 3.0], ir.DTYPES[source].numpy)
    value, pullback = jit.vjp(f, arg)
    assert value.dtype == ir.DTYPES[target].numpy
    (g,) = pullback(Tensor(np.array([1.0, 2.0, -3.0], ir.DTYPES[target].numpy)))
    assert g.dtype == ir.DTYPES[source].numpy
    np.testing.assert_array_equal(g.numpy(), [1.0, 2.0, -3.0])


# Ops without a derivative ------------------------------------------------------------------------

def test_ops_without_a_derivative_carry_no_gradient():
    """stop_gradient blocks; sign and comparisons are locally constant; integer casts end
    the gradient path, so each function's gradient is exactly the part that flows around."""
    def f(x):
        s = bind("stop_gradient", x)
        sign = bind("sign", x)
        back = bind("cast", bind("cast", x, dtype=ir.i32), dtype=ir.f64)
        return ((s * x) + sign * x + back * x + jit.where(x > 0, x, 0.0)).sum()

    x = np.array([1.5, -2.5, 0.5])
    g = jit.grad(f)(x)
    expected = x + np.sign(x) + np.trunc(x) + (x > 0)
    np.testing.assert_allclose(g.numpy(), expected)


@pytest.mark.parametrize("name", [n for n in OPS if TABLE[n].order == 0
                                  and ir.REGISTRY[n].kind == "elementwise"])
def test_gradient_through_a_non_differentiable_op_is_zero(name):
    arity = ir.REGISTRY[name].arity

    def g(x):
        out = bind(name, *([x] * arity))
        out = out if out.dtype.kind == "f" else bind("cast", out, dtype=ir.f64)
        return out.sum()

    np.testing.assert_array_equal(jit.grad(g)(np.array([1.0, -2.0])).numpy(), [0.0, 0.0])


def test_a_wrong_derivative_is_caught(monkeypatch):
    """The harness above has teeth: exp with derivative 2*exp fails check_grads."""
    import dataclasses
    wrong = dataclasses.replace(ir.REGISTRY["exp"],
                                vjp=lambda b, ops, out, ct, attrs: (b.mul(b.mul(ct, out), 2.0),))
    monkeypatch.setitem(ir.REGISTRY, "exp", wrong)
    with pytest.raises(AssertionError, match="disagrees with finite differences"):
        jit.check_grads(lambda x: bind("exp", x), [np.array([0.5, 1.0])])

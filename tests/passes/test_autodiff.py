"""The reverse-mode pass: gradient programs are ordinary IR (printable, parseable, verified,
differentiable again), zeros stay symbolic, unasked inputs get no work, and random composed
programs differentiate correctly."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ir
import jit
import passes
from jit.tensor import Tensor, bind
from tests.strategies import programs

X3 = np.array([0.5, -1.0, 2.0], np.float32)
Y3 = np.array([1.5, 0.25, -0.5], np.float32)


def func(signature: str, *body: str) -> str:
    return f"func @f{signature} {{\n" + "".join(f"  {line}\n" for line in body) + "}\n"


# Gradient programs are IR ------------------------------------------------------------------------

FUNCTIONS = [
    ("tanh-sum", lambda x, y: jit.tanh(x * y).sum()),
    ("mse", lambda x, y: jit.mse_loss(x, y)),
    ("softmax-ce", lambda x, y: jit.cross_entropy(jit.reshape(x, (1, 3)) * y[0], np.array([1]))),
    ("max-ties", lambda x, y: jit.max(jit.maximum(x, y))),
    ("getitem-concat", lambda x, y: jit.concatenate([x[::-1], y[1:]]).sum()),
    ("matmul", lambda x, y: jit.sum(jit.reshape(x, (3, 1)) @ jit.reshape(y, (1, 3)))),
]


@pytest.mark.parametrize("name,f", FUNCTIONS, ids=[f[0] for f in FUNCTIONS])
@pytest.mark.parametrize("stage", ["traced", "optimized"])
def test_gradient_program_prints_parses_and_verifies(name, f, stage):
    lowered = jit.jit(jit.grad(f)).lower(X3, Y3)
    text = lowered.as_text(stage)
    fn = ir.parse(text)
    assert fn == (lowered.traced if stage == "traced" else lowered.optimized)
    ir.verify(fn)
    assert ir.to_text(fn) == text
    assert fn.result_types == (ir.TensorType(ir.f32, (3,)),)
    # the program computes the gradient
    (got,) = ir.interpret(fn, [X3, Y3])
    np.testing.assert_allclose(got, jit.grad(f)(X3, Y3).numpy(), rtol=1e-6)


def test_traced_gradient_text_shows_the_derivative_ops_at_the_users_line():
    def f(x):
        return jit.tanh(x).sum()   # tanh's derivative is 4 s(2x) s(-2x)

    text = jit.jit(jit.grad(f)).lower(X3).as_text("traced")
    line = f.__code__.co_firstlineno + 1
    logistic = [l for l in text.splitlines() if " = logistic " in l]
    assert len(logistic) == 2
    assert all(l.endswith(f'loc("{__file__.split("/work/main/")[-1]}":{line})')
               or l.endswith(f":{line})") for l in logistic)


def test_gradient_golden_text():
    lowered = jit.jit(jit.grad(lambda x, y: (x * y).sum())).lower(X3, Y3)
    assert lowered.as_text("optimized") == (
        "func @lambda(%x: f32[3], %y: f32[3]) -> f32[3] {\n  return %y\n}\n")
    w = np.ones((3, 2), np.float32)
    xs = np.ones((4, 3), np.float32)
    text = jit.jit(jit.grad(lambda w, x: jit.sum(x @ w))).lower(w, xs).as_text("optimized")
    body = [line.split("  loc(")[0].rstrip() for line in text.splitlines()]
    assert body == ["func @lambda(%w: f32[3,2], %x: f32[4,3]) -> f32[3,2] {",
                    "  %0 = broadcast_to 1.0 {shape = [4, 2]} : f32[4,2]",
                    "  %1 = transpose %x {perm = [1, 0]} : f32[3,4]",
                    "  %2 = matmul %1, %0 : f32[3,2]",
                    "  return %2", "}"]


def test_vjp_pass_golden():
    fn = ir.parse(func("(%x: f32[3], %y: f32[3]) -> f32[3]", "%0 = mul %x, %y : f32[3]",
                       "return %0"))
    assert ir.to_text(passes.vjp(fn, [0, 1])) == (
        "func @f_vjp(%x: f32[3], %y: f32[3], %ct0: f32[3]) -> (f32[3], f32[3], f32[3]) {\n"
        "  %0 = mul %x, %y : f32[3]\n"
        "  %1 = mul %ct0, %y : f32[3]\n"
        "  %2 = mul %ct0, %x : f32[3]\n"
        "  return %0, %1, %2\n"
        "}\n")


def test_fan_out_accumulates_once_per_use():
    fn = ir.parse(func("(%x: f64[2]) -> f64[2]", "%0 = exp %x : f64[2]",
                       "%1 = mul %0, %x : f64[2]", "return %1"))
    out = passes.vjp(fn, [0])
    adds = [op for op in out.ops if op.name == "add"]
    assert len(adds) == 1       # %x is used twice: one add of its two cotangents
    x, ct = np.array([0.5, -1.0]), np.array([1.0, 2.0])
    _, g = ir.interpret(out, [x, ct])
    np.testing.assert_allclose(g, ct * (np.exp(x) * x + np.exp(x)))


def test_second_order_program_is_ir_too():
    def f(x):
        return (x * x * x).sum()

    hess_diag = jit.jit(jit.grad(lambda x: jit.grad(f)(x).sum()))
    lowered = hess_diag.lower(X3)
    fn = ir.parse(lowered.as_text("optimized"))
    ir.verify(fn)
    (got,) = ir.interpret(fn, [X3])
    np.testing.assert_allclose(got, 6 * X3)


# Symbolic zeros ------------------------------------------------------------------------------------

def _zero_splat(fn: ir.Function, operand) -> bool:
    if isinstance(operand, ir.Literal):
        return operand.value == 0
    producers = {op.result.name: op for op in fn.ops}
    op = producers.get(operand.name)
    return (op is not None and op.name in ("broadcast_to", "reshape")
            and isinstance(op.operands[0], ir.Literal) and op.operands[0].value == 0)


def _assert_no_add_of_zero(fn: ir.Function) -> None:
    for op in fn.ops:
        if op.name in ("add", "sub"):
            assert not any(_zero_splat(fn, o) for o in op.operands), ir.to_text(fn)


SMOOTH = ["add", "sub", "mul", "neg", "tanh", "logistic", "where", "cast", "reduce_sum",
          "reduce_max", "reshape", "transpose", "broadcast_to", "slice", "slice_scatter",
          "concatenate", "matmul", "maximum", "abs", "stop_gradient", "gt", "constant", "iota"]


@settings(max_examples=80)
@given(fn=programs(ops=SMOOTH, dtypes=("f32", "f64", "bool"), min_ops=2, max_ops=8,
                  literals=False))   # (no zeros in the forward program to start from)
def test_gradient_programs_have_no_additions_of_zero(fn):
    wrt = [i for i, p in enumerate(fn.params) if p.type.dtype.is_float]
    seeded = [i for i, r in enumerate(fn.results) if r.type.dtype.is_float]
    out = ir.verify(passes.vjp(fn, wrt, seeded))
    _assert_no_add_of_zero(out)
    assert ir.parse(ir.to_text(out)) == out


@pytest.mark.parametrize("f", [
    lambda x, y: jit.relu(x).sum(),
    lambda x, y: (jit.where(x > 0, x, 0.0) * y).sum(),
    lambda x, y: jit.max(x) + jit.min(y),
    lambda x, y: (x[1:] * 2).sum() + y[0],
    lambda x, y: jit.concatenate([x, y]).sum(),
    lambda x, y: (jit.stop_gradient(x) * y).sum(),
], ids=["relu", "where", "max-min", "getitem", "concatenate", "stop_gradient"])
def test_no_additions_of_zero_in_user_gradients(f):
    traced = jit.jit(jit.grad(f, argnums=(0, 1))).lower(X3, Y3).traced
    _assert_no_add_of_zero(traced)


def test_inputs_not_asked_about_get_no_work():
    def f(x, y, n):
        return (x * y).sum() + jit.exp(y).sum() + jit.tanh(y * n).sum()

    n = np.array(2, np.int32)
    wrt_x = jit.jit(jit.grad(f, argnums=0)).lower(X3, Y3, n).as_text("optimized")
    assert " exp " not in wrt_x and " tanh " not in wrt_x and " logistic " not in wrt_x
    wrt_y = jit.jit(jit.grad(f, argnums=1)).lower(X3, Y3, n).as_text("optimized")
    assert " exp " in wrt_y and " logistic " in wrt_y


def test_a_parameter_the_output_ignores_gets_a_zero_splat():
    fn = ir.parse(func("(%x: f32[2], %y: f32[2]) -> f32[2]", "%0 = exp %x : f32[2]",
                       "return %0"))
    out = passes.optimize(passes.vjp(fn, [1]))
    assert ir.to_text(out) == func(
        "_vjp(%x: f32[2], %y: f32[2], %ct0: f32[2]) -> (f32[2], f32[2])",
        "%0 = exp %x : f32[2]", "%1 = broadcast_to 0.0 {shape = [2]} : f32[2]", "return %0, %1")


def test_only_differentiable_paths_are_active():
    """A parameter reaching the output only through comparisons, sign or stop_gradient has
    no cotangent work at all."""
    fn = ir.parse(func("(%x: f32[2]) -> f32[2]", "%0 = gt %x, 0.0 : bool[2]",
                       "%1 = cast %0 {dtype = f32} : f32[2]", "%2 = sign %x : f32[2]",
                       "%3 = stop_gradient %x : f32[2]", "%4 = add %1, %2 : f32[2]",
                       "%5 = add %4, %3 : f32[2]", "return %5"))
    out = passes.vjp(fn, [0])
    forward = len(fn.ops)
    assert [op.name for op in out.ops[forward:]] == ["broadcast_to"]


@pytest.mark.parametrize("make,message", [
    (lambda fn: passes.vjp(fn, [1]), "cannot differentiate with respect to %n"),
    (lambda fn: passes.vjp(fn, [0], seeded=[1]), "cannot seed a cotangent for result 1"),
])
def test_vjp_pass_errors(make, message):
    fn = ir.parse(func("(%x: f32[2], %n: i32[2]) -> (f32[2], bool[2])",
                       "%0 = cast %n {dtype = f32} : f32[2]", "%1 = mul %x, %0 : f32[2]",
                       "%2 = gt %x, 0.0 : bool[2]", "return %1, %2"))
    with pytest.raises(TypeError, match=message):
        make(fn)


# Random composed programs against finite differences ---------------------------------------------

def as_python(fn: ir.Function):
    """The IR function as a Python function over Tensors (each op through `bind`)."""
    def f(*args):
        env = {p.name: a if isinstance(a, Tensor) else Tensor(np.asarray(a))
               for p, a in zip(fn.params, args)}
        for op in fn.ops:
            operands = [env[o.name] if isinstance(o, ir.Value) else o for o in op.operands]
            env[op.result.name] = bind(op.name, *operands, **op.attrs)
        outs = [env[r.name] for r in fn.results]
        return outs[0] if len(outs) == 1 else tuple(outs)
    return f


DIFFERENTIABLE_EVERYWHERE = ["add", "sub", "mul", "neg", "tanh", "logistic", "where", "reduce_sum",
                             "reshape", "transpose", "broadcast_to", "slice", "slice_scatter",
                             "concatenate", "matmul", "cast"]


@settings(max_examples=40)
@given(fn=programs(ops=DIFFERENTIABLE_EVERYWHERE, dtypes=("f64", "bool"), min_ops=2, max_ops=7,
                   literals=False, max_dim=3),
       seed=st.integers(0, 2 ** 32 - 1))
def test_random_programs_gradients_match_finite_differences(fn, seed):
    rng = np.random.default_rng(seed)
    args = [rng.uniform(-1.5, 1.5, p.type.shape) if p.type.dtype.is_float
            else rng.uniform(size=p.type.shape) < 0.5 for p in fn.params]
    if not any(p.type.dtype.is_float for p in fn.params) or not any(
            r.type.dtype.is_float for r in fn.results):
        return
    jit.check_grads(as_python(fn), args, order=1)


@settings(max_examples=15)
@given(fn=programs(ops=["mul", "tanh", "reduce_sum", "matmul", "transpose", "broadcast_to",
                        "slice", "add"], dtypes=("f64",), min_ops=2, max_ops=5, literals=False),
       seed=st.integers(0, 2 ** 32 - 1))
def test_random_programs_second_order(fn, seed):
    rng = np.random.default_rng(seed)
    args = [rng.uniform(-1.5, 1.5, p.type.shape) for p in fn.params]
    jit.check_grads(as_python(fn), args, order=2)

"""The composite functional ops of SPEC.md (written with IR primitives): values against numpy,
eager and under jit, and their gradients (first and second order) against finite differences.
"""
import numpy as np
import pytest

import jit
from jit import Tensor

RNG = np.random.default_rng(1234)


def rand(*shape):
    return RNG.uniform(-2, 2, shape)


def np_logsumexp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def np_softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_cross_entropy(logits, labels):
    logp = logits - np_logsumexp(logits, axis=1, keepdims=True)
    return -np.mean(logp[np.arange(len(labels)), labels])


LABELS = np.array([2, 0, 1, 2])
X34 = rand(3, 4)

# (id, jit function, numpy function, arguments, check second order)
CASES = [
    ("softmax", jit.softmax, np_softmax, [rand(3, 4)], True),
    ("softmax-axis0", lambda x: jit.softmax(x, axis=0), lambda x: np_softmax(x, 0), [rand(3, 4)], True),
    ("log_softmax", jit.log_softmax, lambda x: np.log(np_softmax(x)), [rand(2, 5)], True),
    ("logsumexp-all", jit.logsumexp, np_logsumexp, [rand(3, 4)], True),
    ("logsumexp-axis-keepdims", lambda x: jit.logsumexp(x, axis=1, keepdims=True),
     lambda x: np_logsumexp(x, 1, True), [rand(3, 4)], True),
    ("logsumexp-axes-tuple", lambda x: jit.logsumexp(x, axis=(0, 2)),
     lambda x: np_logsumexp(x, (0, 2)), [rand(2, 3, 2)], True),
    ("mse_loss", jit.mse_loss, lambda p, t: np.mean((p - t) ** 2), [rand(4, 3), rand(4, 3)], True),
    ("mse_loss-broadcast", jit.mse_loss, lambda p, t: np.mean((p - t) ** 2),
     [rand(4, 1), rand(4, 3)], True),
    ("cross_entropy", lambda z: jit.cross_entropy(z, LABELS),
     lambda z: np_cross_entropy(z, LABELS), [rand(4, 3)], True),
    ("relu", jit.relu, lambda x: np.maximum(x, 0), [rand(3, 4)], True),
    ("sigmoid", jit.sigmoid, lambda x: 1 / (1 + np.exp(-x)), [rand(3, 4)], True),
    ("tanh", jit.tanh, np.tanh, [rand(5)], True),
    ("matmul-1d-1d", jit.matmul, np.matmul, [rand(4), rand(4)], True),
    ("matmul-1d-2d", jit.matmul, np.matmul, [rand(4), rand(4, 3)], True),
    ("matmul-2d-1d", jit.matmul, np.matmul, [rand(3, 4), rand(4)], True),
    ("matmul-batched", jit.matmul, np.matmul, [rand(2, 3, 4), rand(2, 4, 2)], True),
    ("matmul-broadcast-batch", jit.matmul, np.matmul, [rand(2, 1, 3, 4), rand(3, 4, 2)], True),
    ("matmul-1d-batched", jit.matmul, np.matmul, [rand(4), rand(2, 4, 3)], True),
    ("matmul-operator", lambda a, b: a @ b, np.matmul, [rand(3, 2), rand(2, 3)], True),
    ("dot-2d", jit.dot, np.dot, [rand(3, 4), rand(4, 2)], True),
    ("getitem-negative-step", lambda x: x[::-1, ::-2], lambda x: x[::-1, ::-2], [rand(3, 5)], True),
    ("getitem-none-ellipsis", lambda x: x[None, ..., -1], lambda x: x[None, ..., -1],
     [rand(2, 3, 4)], True),
    ("getitem-int-slice", lambda x: x[1, 1:-1], lambda x: x[1, 1:-1], [rand(3, 5)], True),
    ("getitem-negative-start-stop", lambda x: x[-1:-4:-1], lambda x: x[-1:-4:-1], [rand(5)], True),
    ("getitem-ellipsis-none", lambda x: x[..., None, 0], lambda x: x[..., None, 0],
     [rand(2, 3)], True),
    ("getitem-out-of-range-slice", lambda x: x[3:10], lambda x: x[3:10], [rand(5)], True),
    ("concatenate-axis1", lambda a, b: jit.concatenate([a, b, a], axis=1),
     lambda a, b: np.concatenate([a, b, a], axis=1), [rand(2, 1), rand(2, 3)], True),
    ("concatenate-negative-axis", lambda a, b: jit.concatenate((a, b), axis=-2),
     lambda a, b: np.concatenate((a, b), axis=-2), [rand(1, 2), rand(3, 2)], True),
    ("stack", lambda a, b: jit.stack([a, b]), lambda a, b: np.stack([a, b]),
     [rand(2, 3), rand(2, 3)], True),
    ("stack-last-axis", lambda a, b: jit.stack([a, b], axis=-1),
     lambda a, b: np.stack([a, b], axis=-1), [rand(2, 3), rand(2, 3)], True),
    ("where", lambda c, x, y: jit.where(c, x, y), np.where,
     [rand(3, 1) > 0, rand(3, 4), rand(4)], True),
    ("where-scalar", lambda x: jit.where(x > 0, x, 0.5), lambda x: np.where(x > 0, x, 0.5),
     [rand(6)], True),
    ("maximum-broadcast", jit.maximum, np.maximum, [rand(3, 1), rand(4)], True),
    ("minimum-scalar", lambda x: jit.minimum(x, 0.25), lambda x: np.minimum(x, 0.25),
     [rand(5)], True),
    ("max-axis", lambda x: jit.max(x, axis=1), lambda x: np.max(x, axis=1), [rand(3, 4)], True),
    ("min-keepdims", lambda x: jit.min(x, axis=0, keepdims=True),
     lambda x: np.min(x, axis=0, keepdims=True), [rand(3, 4)], True),
    ("sum-axes", lambda x: jit.sum(x, axis=(0, 2)), lambda x: np.sum(x, axis=(0, 2)),
     [rand(2, 3, 4)], True),
    ("mean-negative-axis", lambda x: jit.mean(x, axis=-1, keepdims=True),
     lambda x: np.mean(x, axis=-1, keepdims=True), [rand(2, 3)], True),
    ("reshape-minus-one", lambda x: jit.reshape(x, (-1, 2)), lambda x: x.reshape(-1, 2),
     [rand(3, 4)], True),
    ("transpose-axes", lambda x: jit.transpose(x, (1, 2, 0)),
     lambda x: x.transpose(1, 2, 0), [rand(2, 3, 4)], True),
    ("T-3d", lambda x: x.T, lambda x: x.T, [rand(2, 3, 4)], True),
    ("broadcast_to", lambda x: jit.broadcast_to(x, (2, 3, 4)),
     lambda x: np.broadcast_to(x, (2, 3, 4)), [rand(3, 1)], True),
    ("pow-tensor-tensor", jit.pow, np.power, [np.abs(rand(3)) + 0.5, rand(3)], True),
    ("pow-scalar-base", lambda x: 2.0 ** x, lambda x: 2.0 ** x, [rand(3)], True),
    ("pow-scalar-exponent", lambda x: x ** 3, lambda x: x ** 3, [rand(3)], True),
    ("div-rdiv", lambda x, y: 1.0 / x + x / y, lambda x, y: 1 / x + x / y,
     [np.abs(rand(3)) + 0.5, np.abs(rand(3)) + 0.5], True),
    ("sqrt-log-exp", lambda x: jit.sqrt(x) + jit.log(x) + jit.exp(x),
     lambda x: np.sqrt(x) + np.log(x) + np.exp(x), [np.abs(rand(4)) + 0.5], True),
    ("abs-neg-sub", lambda x, y: abs(-x) - y, lambda x, y: np.abs(-x) - y,
     [rand(4) + 3, rand(4)], True),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("name,fn,reference,args,second", CASES, ids=IDS)
def test_value_eager_and_jit(name, fn, reference, args, second):
    expected = reference(*args)
    eager = fn(*[Tensor(a) for a in args])
    jitted = jit.jit(fn)(*args)
    for got in (eager, jitted):
        assert got.shape == np.shape(expected)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name,fn,reference,args,second", CASES, ids=IDS)
def test_gradients(name, fn, reference, args, second):
    jit.check_grads(fn, args, order=2 if second else 1)


@pytest.mark.parametrize("name,fn,reference,args,second",
                         [c for c in CASES if c[0] in ("softmax", "log_softmax", "cross_entropy",
                                                       "matmul-broadcast-batch", "logsumexp-all",
                                                       "mse_loss-broadcast", "stack",
                                                       "getitem-none-ellipsis")],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_float32_values_and_gradients(name, fn, reference, args, second):
    args32 = [a.astype(np.float32) if a.dtype.kind == "f" else a for a in args]
    out = jit.jit(fn)(*args32)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), reference(*args), rtol=1e-5, atol=1e-6)
    float_args = [i for i, a in enumerate(args) if a.dtype.kind == "f"]

    def total(*xs):
        return jit.sum(fn(*xs) * Tensor(np.linspace(-1, 1, out.size).reshape(out.shape)
                                        .astype(np.float32)))
    g32 = jit.grad(total, argnums=tuple(float_args))(*args32)
    g64 = jit.grad(total, argnums=tuple(float_args))(*args)
    for a, b in zip(g32, g64):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


# Numerical stability ----------------------------------------------------------------------------

def test_softmax_and_logsumexp_do_not_overflow():
    x = np.array([[1000.0, 1000.0, -1000.0], [-1e4, 0.0, 1e4]], np.float32)
    np.testing.assert_allclose(jit.softmax(x).numpy(), [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(jit.logsumexp(x, axis=1).numpy(),
                               [1000 + np.log(2), 1e4], rtol=1e-6)
    np.testing.assert_allclose(jit.log_softmax(x)[0].numpy(),
                               [-np.log(2), -np.log(2), -2000 - np.log(2)], rtol=1e-6)
    g = jit.grad(lambda x: jit.logsumexp(x))(x)
    assert np.all(np.isfinite(g.numpy()))


def test_logsumexp_of_all_minus_infinity_is_minus_infinity():
    x = np.full((2, 3), -np.inf)
    np.testing.assert_array_equal(jit.logsumexp(x, axis=1).numpy(), [-np.inf, -np.inf])


def test_cross_entropy_gradient_is_softmax_minus_one_hot():
    z = rand(4, 3)
    g = jit.grad(lambda z: jit.cross_entropy(z, LABELS))(z).numpy()
    expected = (np_softmax(z) - np.eye(3)[LABELS]) / 4
    np.testing.assert_allclose(g, expected, rtol=1e-12, atol=1e-15)


def test_sigmoid_and_tanh_gradients_stay_accurate_where_they_saturate():
    x = np.array([-30.0, 30.0, 20.0], np.float32)
    g_sig = jit.grad(lambda x: jit.sigmoid(x).sum())(x).numpy()
    g_tanh = jit.grad(lambda x: jit.tanh(x).sum())(x).numpy()
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(g_sig, np.exp(-np.abs(x64)) / (1 + np.exp(-np.abs(x64))) ** 2,
                               rtol=1e-5)
    np.testing.assert_allclose(g_tanh, 1 / np.cosh(x64) ** 2, rtol=1e-4)
    assert np.all(g_tanh > 0)


# Kinks and ties -----------------------------------------------------------------------------------

def _both_ways(fn, x):
    """The gradient of sum(fn(x)) by jit.grad and by eager backward(); they must agree."""
    g = jit.grad(lambda x: jit.sum(fn(x)))(x).numpy()
    t = Tensor(x, requires_grad=True)
    jit.sum(fn(t)).backward()
    np.testing.assert_array_equal(t.grad.numpy(), g)
    return g


TIES = [
    ("max-all", lambda x: jit.max(x), [1.0, 3.0, 3.0, 2.0], [0, 0.5, 0.5, 0]),
    ("min-all", lambda x: jit.min(x), [1.0, 1.0, 1.0, 2.0], [1 / 3, 1 / 3, 1 / 3, 0]),
    ("max-method", lambda x: x.max(), [5.0, 5.0], [0.5, 0.5]),
    ("max-axis", lambda x: jit.max(jit.reshape(x, (2, 2)), axis=1), [2.0, 2.0, 1.0, 4.0],
     [0.5, 0.5, 0, 1]),
    ("min-axis0-keepdims", lambda x: jit.min(jit.reshape(x, (2, 2)), axis=0, keepdims=True),
     [2.0, 3.0, 2.0, 1.0], [0.5, 0, 0.5, 1]),
    ("maximum-tie", lambda x: jit.maximum(x, 1.0), [1.0, 2.0, 0.0], [0.5, 1, 0]),
    ("minimum-tie", lambda x: jit.minimum(x, jit.reshape(x, (3,))[::-1]), [1.0, 2.0, 3.0],
     [2, 1, 0]),   # x0 wins twice (against x2, both ways); x1 ties itself: 0.5 + 0.5
    ("relu-at-zero", jit.relu, [-1.0, 0.0, 2.0], [0, 0, 1]),
    ("relu-method", lambda x: x.relu(), [0.0], [0]),
    ("abs-at-zero", jit.abs, [-1.0, 0.0, 2.0], [-1, 0, 1]),
    ("abs-builtin", lambda x: abs(x), [0.0, -0.0], [0, 0]),
]


@pytest.mark.parametrize("name,fn,x,expected", TIES, ids=[t[0] for t in TIES])
def test_kinks_and_ties(name, fn, x, expected):
    g = _both_ways(fn, np.array(x))
    np.testing.assert_allclose(g, expected, rtol=1e-15)


def test_maximum_tie_splits_between_both_operands():
    gx, gy = jit.grad(lambda x, y: jit.maximum(x, y).sum(), argnums=(0, 1))(
        np.array([1.0, 2.0]), np.array([1.0, 3.0]))
    np.testing.assert_array_equal(gx.numpy(), [0.5, 0.0])
    np.testing.assert_array_equal(gy.numpy(), [0.5, 1.0])

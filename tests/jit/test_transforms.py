"""grad, value_and_grad, vjp and check_grads: argnums, has_aux, pytrees, composition in any
order, and check_grads catching wrong derivatives."""
import dataclasses
import re

import numpy as np
import pytest

import ir
import jit
from jit import Tensor

X = np.array([0.5, -1.0, 2.0])
Y = np.array([1.5, 0.25, -0.5])


def f(x, y):
    return jit.sum(jit.tanh(x) * y ** 2)


def df_dx(x, y):
    return (1 - np.tanh(x) ** 2) * y ** 2


def df_dy(x, y):
    return np.tanh(x) * 2 * y


@pytest.mark.parametrize("argnums,expected", [
    (0, lambda: df_dx(X, Y)),
    (1, lambda: df_dy(X, Y)),
    (-1, lambda: df_dy(X, Y)),
    ((0,), lambda: (df_dx(X, Y),)),
    ((1, 0), lambda: (df_dy(X, Y), df_dx(X, Y))),
])
def test_grad_argnums(argnums, expected):
    got = jit.grad(f, argnums=argnums)(X, Y)
    want = expected()
    if isinstance(argnums, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g.numpy(), w, rtol=1e-12)
    else:
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)


def test_value_and_grad():
    value, (gx, gy) = jit.value_and_grad(f, argnums=(0, 1))(X, Y)
    assert value.shape == () and value.item() == pytest.approx(np.sum(np.tanh(X) * Y ** 2))
    np.testing.assert_allclose(gx.numpy(), df_dx(X, Y))
    np.testing.assert_allclose(gy.numpy(), df_dy(X, Y))


def test_has_aux():
    def loss(x):
        pred = x * 2
        return jit.sum(pred * pred), {"pred": pred, "n": 3}

    g, aux = jit.grad(loss, has_aux=True)(X)
    np.testing.assert_allclose(g.numpy(), 8 * X)
    np.testing.assert_allclose(aux["pred"].numpy(), 2 * X)
    assert aux["n"].item() == 3
    (value, aux2), g2 = jit.value_and_grad(loss, has_aux=True)(X)
    assert value.item() == pytest.approx(np.sum(4 * X ** 2))
    np.testing.assert_allclose(aux2["pred"].numpy(), 2 * X)
    np.testing.assert_allclose(g2.numpy(), 8 * X)


def test_gradients_are_pytrees_like_the_arguments():
    params = {"w": np.ones((3, 2)), "layers": [np.full(2, 0.5), (np.array(2.0),)]}
    x = np.arange(6.0).reshape(2, 3)

    def loss(p, x):
        b, (s,) = p["layers"]
        return jit.sum((x @ p["w"] + b) * s)

    g = jit.grad(loss)(params, x)
    assert sorted(g) == ["layers", "w"] and isinstance(g["layers"], list)
    assert isinstance(g["layers"][1], tuple)
    np.testing.assert_allclose(g["w"].numpy(), 2.0 * x.sum(axis=0)[:, None] * np.ones((1, 2)))
    np.testing.assert_allclose(g["layers"][0].numpy(), [4.0, 4.0])
    np.testing.assert_allclose(g["layers"][1][0].numpy(), np.sum(x @ np.ones((3, 2)) + 0.5))


def test_gradient_of_a_python_float_is_a_float32_0d_tensor():
    g = jit.grad(lambda s, x: jit.sum(x * s * s))(3.0, np.ones(2))
    assert isinstance(g, Tensor) and g.shape == () and g.dtype == np.float32
    assert g.item() == 12.0


def test_gradient_keeps_each_leafs_dtype():
    gx, gy = jit.grad(lambda x, y: jit.sum(x) + jit.sum(y), argnums=(0, 1))(
        np.ones(2, np.float32), np.ones(2, np.float64))
    assert gx.dtype == np.float32 and gy.dtype == np.float64


@pytest.mark.parametrize("order", ["grad", "jit(grad)", "grad(jit)", "jit(grad(jit))",
                                   "value_and_grad(jit)", "jit(value_and_grad)"])
def test_composition_in_any_order(order):
    compositions = {
        "grad": lambda: jit.grad(f)(X, Y),
        "jit(grad)": lambda: jit.jit(jit.grad(f))(X, Y),
        "grad(jit)": lambda: jit.grad(jit.jit(f))(X, Y),
        "jit(grad(jit))": lambda: jit.jit(jit.grad(jit.jit(f)))(X, Y),
        "value_and_grad(jit)": lambda: jit.value_and_grad(jit.jit(f))(X, Y)[1],
        "jit(value_and_grad)": lambda: jit.jit(jit.value_and_grad(f))(X, Y)[1],
    }
    np.testing.assert_allclose(compositions[order]().numpy(), df_dx(X, Y), rtol=1e-12)


@pytest.mark.parametrize("order", ["grad(grad)", "jit(grad(grad))", "grad(jit(grad))",
                                   "grad(grad(jit))"])
def test_second_order_compositions(order):
    def cube(x):
        return jit.sum(x * x * x)

    def inner(g):
        return lambda x: jit.sum(g(x))

    compositions = {
        "grad(grad)": jit.grad(inner(jit.grad(cube))),
        "jit(grad(grad))": jit.jit(jit.grad(inner(jit.grad(cube)))),
        "grad(jit(grad))": jit.grad(inner(jit.jit(jit.grad(cube)))),
        "grad(grad(jit))": jit.grad(inner(jit.grad(jit.jit(cube)))),
    }
    np.testing.assert_allclose(compositions[order](X).numpy(), 6 * X, rtol=1e-12)


def test_grad_of_a_closure_over_an_outer_traced_value():
    # d/dx [d/dy (x * y * y) at y=3] = d/dx (6x) = 6
    g = jit.grad(lambda x: jit.grad(lambda y: x * y * y)(3.0))(2.0)
    assert g.item() == 6.0
    h = jit.jit(jit.grad(lambda x: jit.sum(jit.grad(lambda y: jit.sum(x * jit.exp(y)))(x))))
    np.testing.assert_allclose(h(X).numpy(), np.exp(X) + X * np.exp(X), rtol=1e-12)


def test_grad_under_jit_traces_once():
    traces = []

    def loss(x):
        traces.append(1)
        return jit.sum(x * x)

    dloss = jit.jit(jit.grad(loss))
    dloss(X)
    dloss(X + 1)
    assert len(traces) == 1


# vjp ----------------------------------------------------------------------------------------------

def test_vjp_pytree_outputs_and_integer_primals():
    def fn(x, n):
        return {"a": x * n, "b": (jit.exp(x), x > 0)}

    n = np.array([1, 2, 3], np.int32)
    out, pullback = jit.vjp(fn, X, n)
    np.testing.assert_allclose(out["a"].numpy(), X * n)
    ct = {"a": np.ones(3), "b": (np.full(3, 2.0), np.zeros(3, bool))}
    gx, gn = pullback(ct)
    np.testing.assert_allclose(gx.numpy(), n + 2 * np.exp(X))
    assert gn.dtype == np.int32 and gn.tolist() == [0, 0, 0]     # no gradient for integers


def test_vjp_cotangent_structure_must_match():
    _, pullback = jit.vjp(lambda x: (x, x * 2), X)
    with pytest.raises(ValueError, match="the cotangent must have the structure of the output"):
        pullback(np.ones(3))


def test_vjp_is_linear_in_the_cotangent():
    _, pullback = jit.vjp(lambda x: jit.tanh(x) * x, X)
    (a,) = pullback(np.ones(3))
    (b,) = pullback(np.full(3, 3.0))
    np.testing.assert_allclose(b.numpy(), 3 * a.numpy(), rtol=1e-12)


# check_grads ---------------------------------------------------------------------------------------

def test_check_grads_accepts_correct_gradients_of_pytrees():
    jit.check_grads(lambda p, k: jit.sum(jit.tanh(p["w"] @ p["v"]) * k),
                    [{"w": np.ones((2, 3)) * 0.3, "v": np.arange(3.0)}, np.array([1, 2])],
                    order=2)


def test_check_grads_rejects_a_wrong_gradient_naming_the_worst_element():
    def wrong(x):        # x * x, but the derivative of one factor is cut: d/dx gives x, not 2x
        return jit.sum(jit.stop_gradient(x) * x)

    with pytest.raises(AssertionError) as info:
        jit.check_grads(wrong, [np.array([1.0, 3.0, -0.5])])
    message = str(info.value)
    assert "input leaf 0 at (1,)" in message       # the element with the largest error
    exact, numeric = map(float, re.search(r"reverse mode (\S+), finite differences (\S+) ",
                                          message).groups())
    assert numeric == pytest.approx(2 * exact, rel=1e-6)    # (times a random cotangent)


def test_check_grads_rejects_a_wrong_second_derivative(monkeypatch):
    """exp with a derivative whose own derivative is cut (ct * stop_gradient(exp x)):
    right at first order, wrong at second."""
    cut = dataclasses.replace(ir.REGISTRY["exp"],
                              vjp=lambda b, ops, out, ct, attrs: (b.mul(ct, b.stop_gradient(out)),))
    monkeypatch.setitem(ir.REGISTRY, "exp", cut)
    fn = lambda x: jit.sum(jit.exp(x))  # noqa: E731
    jit.check_grads(fn, [X], order=1)
    with pytest.raises(AssertionError, match="disagrees with finite differences"):
        jit.check_grads(fn, [X], order=2)


def test_check_grads_order_must_be_1_or_2():
    with pytest.raises(ValueError, match="order must be 1 or 2, got 3"):
        jit.check_grads(lambda x: jit.sum(x), [X], order=3)

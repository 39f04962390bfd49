"""Eager backward(): accumulation, no_grad, detach, seeds, jitted calls as one recorded step,
and agreement with jit.grad (both come from the same IR pass)."""
import numpy as np
import pytest

import jit
from jit import Tensor


def test_seed_examples():
    a = Tensor([[1, 2], [3, 4]], requires_grad=True)
    b = Tensor([[5, 6], [7, 8]], requires_grad=True)
    loss = sum(((a + b) * 2).flatten())
    loss.backward()
    assert repr(a.grad) == "Tensor([[2., 2.],\n        [2., 2.]], dtype=float32)"
    np.testing.assert_array_equal(b.grad.numpy(), 2.0)

    a = Tensor([[1, 2], [3, 4]], requires_grad=True)
    b = Tensor([[5, 6], [7, 8]], requires_grad=True)
    jit.mse_loss(a @ b, Tensor([[0.1, 0.2], [0.3, 0.4]])).backward()
    c = np.array([[1, 2], [3, 4.0]]) @ np.array([[5, 6], [7, 8.0]])
    gm = 2 * (c - [[0.1, 0.2], [0.3, 0.4]]) / 4
    np.testing.assert_allclose(a.grad.numpy(), gm @ np.array([[5, 6], [7, 8.0]]).T, rtol=1e-6)


def test_gradients_accumulate_across_backward_calls():
    x = Tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0])
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [5.0, 7.0])
    loss = (x * x).sum()
    loss.backward()
    loss.backward()          # the graph is kept: twice accumulates twice
    np.testing.assert_array_equal(x.grad.numpy(), [9.0, 15.0])
    x.grad = None
    (x * 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])


def test_only_leaves_created_with_requires_grad_get_grad():
    x = Tensor([1.0, 2.0], requires_grad=True)
    c = Tensor([3.0, 4.0])
    y = x * c
    y.sum().backward()
    assert c.grad is None and y.grad is None
    assert y.requires_grad and not c.requires_grad
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 4.0])
    assert x.grad.dtype == np.float32 and x.grad.shape == (2,)


def test_a_leaf_used_many_times_sums_its_gradients():
    x = Tensor(np.array([0.5, -1.0]), requires_grad=True)
    (x * x * x + jit.exp(x) * x - x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * x.numpy() ** 2 + np.exp(x.numpy())
                               * (1 + x.numpy()) - 1)


def test_no_grad_records_nothing():
    x = Tensor([1.0, 2.0], requires_grad=True)
    with jit.no_grad():
        y = x * 2
        assert not y.requires_grad
    assert (x * 2).requires_grad                  # restored on exit
    (x * y).sum().backward()                      # y is a constant here
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0])
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_no_grad_is_restored_after_an_exception():
    x = Tensor([1.0], requires_grad=True)
    with pytest.raises(ZeroDivisionError):
        with jit.no_grad():
            1 / 0
    assert (x * 2).requires_grad


def test_detach_stops_the_gradient():
    x = Tensor([1.0, 2.0], requires_grad=True)
    d = x.detach()
    assert not d.requires_grad and d.grad is None
    np.testing.assert_array_equal(d.numpy(), x.numpy())
    (x * d).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 2.0])


def test_backward_on_a_non_scalar_needs_a_gradient():
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * x
    with pytest.raises(RuntimeError, match=r"backward\(\) without a gradient needs a one-element "
                                           r"tensor, got shape \(3,\); pass gradient="):
        y.backward()
    y.backward(gradient=Tensor([1.0, 0.0, -1.0]))
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 0.0, -6.0])
    y.backward(gradient=np.ones(3))                 # numpy arrays and lists work too
    y.backward(gradient=[1.0, 1.0, 1.0])
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, 8.0, 6.0])
    with pytest.raises(ValueError, match=r"gradient has shape \(2,\), the tensor has shape "
                                         r"\(3,\)"):
        y.backward(gradient=np.ones(2))


def test_one_element_non_scalar_seeds_one():
    x = Tensor([2.0], requires_grad=True)
    (x * x).backward()
    np.testing.assert_array_equal(x.grad.numpy(), [4.0])


def test_kinks_comparisons_and_integer_casts():
    x = Tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
    (jit.relu(x) + abs(x) + (x > 0) * x + x.astype("int32") * x).sum().backward()
    # relu' = [0, 0, 1]; abs' = [-1, 0, 1]; (x > 0) * x -> [0, 0, 1]; int(x) * x -> [-1, 0, 2]
    np.testing.assert_array_equal(x.grad.numpy(), [-2.0, 0.0, 5.0])


def test_jitted_call_on_tensors_that_require_grad_is_one_step():
    traces = []

    @jit.jit
    def layer(w, x):
        traces.append(1)
        return jit.tanh(x @ w), jit.sum(w * w)

    w = Tensor(np.array([[0.5, -0.2], [0.1, 0.3]]), requires_grad=True)
    x = Tensor(np.array([[1.0, 2.0], [3.0, -1.0]]))
    h, reg = layer(w, x)
    assert h.requires_grad and reg.requires_grad
    (jit.sum(h * h) + reg).backward()
    wn, xn = w.numpy(), x.numpy()
    t = np.tanh(xn @ wn)
    np.testing.assert_allclose(w.grad.numpy(), xn.T @ (2 * t * (1 - t ** 2)) + 2 * wn,
                               rtol=1e-12)
    # the same as jit.grad of the whole computation
    g = jit.grad(lambda w: jit.sum(jit.tanh(x @ w) ** 2) + jit.sum(w * w))(wn)
    np.testing.assert_allclose(w.grad.numpy(), g.numpy(), rtol=1e-12)
    layer(Tensor(wn), x)
    assert len(traces) == 1


def test_jitted_call_with_eager_ops_before_and_after():
    a = Tensor([1.0, 2.0], requires_grad=True)
    c = Tensor(2.0, requires_grad=True)
    total = jit.jit(lambda v: jit.sum(v))
    (total(a * c) * c).backward()           # c^2 * sum(a)
    np.testing.assert_array_equal(a.grad.numpy(), [4.0, 4.0])
    assert c.grad.item() == 12.0


def test_jitted_call_on_plain_inputs_records_nothing():
    out = jit.jit(lambda x: x * 2)(Tensor([1.0]))
    assert not out.requires_grad


def test_backward_inside_jit_is_an_error():
    with pytest.raises(RuntimeError, match="backward\\(\\) cannot run inside jit or grad"):
        jit.jit(lambda x: jit.sum(x).backward())(np.ones(2))


@pytest.mark.parametrize("fn", [
    lambda x: jit.softmax(x, axis=0)[1],
    lambda x: jit.logsumexp(x * x),
    lambda x: jit.max(jit.stack([x, x[::-1]]), axis=0).sum(),
    lambda x: jit.concatenate([x[None], (x * 2)[None]], axis=0)[:, 1:].sum(),
    lambda x: jit.where(x > 0, jit.sqrt(abs(x)), x ** 2).sum(),
    lambda x: jit.mse_loss(x, np.ones(3)),
], ids=["softmax", "logsumexp", "max-stack", "concat-getitem", "where", "mse"])
def test_eager_backward_agrees_with_grad(fn):
    x0 = np.array([0.5, -1.25, 2.0])
    x = Tensor(x0, requires_grad=True)
    fn(x).backward()
    np.testing.assert_allclose(x.grad.numpy(), jit.grad(fn)(x0).numpy(), rtol=1e-12)

"""In-place updates of eager tensors, as a PyTorch training loop writes them."""
import numpy as np
import pytest

import jit
from jit import Tensor


def test_sgd_with_in_place_updates_under_no_grad_trains():
    w = Tensor([1.0, -2.0], requires_grad=True)
    for _ in range(20):
        loss = (w * w).sum()
        loss.backward()
        with jit.no_grad():
            w -= 0.25 * w.grad
        w.grad.zero_()
    assert w.requires_grad
    np.testing.assert_allclose(w.numpy(), [1.0 * 0.5 ** 20, -2.0 * 0.5 ** 20], rtol=1e-6)
    assert w.grad.numpy().tolist() == [0.0, 0.0]


def test_in_place_update_of_a_tensor_that_requires_grad_needs_no_grad():
    w = Tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="in-place \\+= on a tensor that requires grad"):
        w += 1
    y = w * 2
    with jit.no_grad(), pytest.raises(RuntimeError, match="in-place"):
        y *= 3  # not a leaf: its recorded step would no longer describe its value


def test_backward_refuses_a_graph_whose_input_changed_in_place():
    w = Tensor([1.0, 2.0], requires_grad=True)
    loss = (w * w).sum()
    with jit.no_grad():
        w *= 2
    with pytest.raises(RuntimeError, match="modified in place after it was used"):
        loss.backward()


def test_in_place_updates_keep_the_dtype_and_shape():
    ints = Tensor(np.array([1, 2]))
    with pytest.raises(TypeError, match="cannot store a float32 result in a int64 tensor"):
        ints += 0.5
    ints += 1
    assert ints.numpy().tolist() == [2, 3] and ints.dtype == np.int64
    with pytest.raises(ValueError, match="the result has shape"):
        ints += np.ones((2, 2), np.int64)


def test_in_place_on_a_traced_value_is_a_functional_update():
    def f(x):
        x += 1
        x *= 2
        return x

    assert jit.jit(f)(np.ones(2)).numpy().tolist() == [4.0, 4.0]


def test_item_assignment_follows_numpy_on_eager_tensors():
    x = Tensor(np.zeros((2, 3)))
    x[0] = 1.0
    x[1, ::2] = Tensor([5.0, 6.0])
    assert x.numpy().tolist() == [[1.0, 1.0, 1.0], [5.0, 0.0, 6.0]]
    w = Tensor([1.0, 2.0], requires_grad=True)
    loss = (w * w).sum()
    with pytest.raises(RuntimeError, match="item assignment on a tensor that requires grad"):
        w[0] = 3.0
    with jit.no_grad():
        w[0] = 3.0
    with pytest.raises(RuntimeError, match="modified in place"):
        loss.backward()


def test_item_assignment_on_a_traced_value_is_an_error():
    def f(x):
        x[0] = 1.0
        return x

    with pytest.raises(TypeError, match="item assignment on a traced tensor"):
        jit.jit(f)(np.zeros(3))

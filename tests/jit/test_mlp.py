"""A 2-hidden-layer MLP with softmax cross-entropy, trained 20 SGD steps three ways (compiled
value_and_grad, a compiled whole training step, eager backward()) to the same parameters."""
import numpy as np

import jit
from jit import Tensor

STEPS, LR = 20, 0.5


def init(seed=0):
    rng = np.random.default_rng(seed)
    sizes = [(8, 16), (16, 16), (16, 3)]
    params = {}
    for i, (m, n) in enumerate(sizes):
        params[f"w{i}"] = (rng.standard_normal((m, n)) / np.sqrt(m)).astype(np.float32)
        params[f"b{i}"] = np.zeros(n, np.float32)
    x = rng.standard_normal((32, 8)).astype(np.float32)
    labels = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)       # three classes
    return params, x, labels


def loss_fn(params, x, labels):
    h = jit.relu(x @ params["w0"] + params["b0"])
    h = jit.tanh(h @ params["w1"] + params["b1"])
    logits = h @ params["w2"] + params["b2"]
    return jit.cross_entropy(logits, labels)


def train_compiled_value_and_grad(params, x, labels):
    step = jit.jit(jit.value_and_grad(loss_fn))
    losses = []
    for _ in range(STEPS):
        loss, grads = step(params, x, labels)
        losses.append(loss.item())
        params = {k: params[k] - LR * grads[k].numpy() for k in params}
    return params, losses


def train_compiled_step(params, x, labels):
    @jit.jit
    def step(params, x, labels):
        loss, grads = jit.value_and_grad(loss_fn)(params, x, labels)
        return {k: params[k] - LR * grads[k] for k in params}, loss

    losses = []
    for _ in range(STEPS):
        params, loss = step(params, x, labels)
        losses.append(loss.item())
    return {k: v.numpy() for k, v in params.items()}, losses


def train_eager(params, x, labels):
    params = {k: Tensor(v, requires_grad=True) for k, v in params.items()}
    losses = []
    for _ in range(STEPS):
        loss = loss_fn(params, Tensor(x), Tensor(labels))
        loss.backward()
        losses.append(loss.item())
        with jit.no_grad():
            params = {k: Tensor(p - LR * p.grad, requires_grad=True) for k, p in params.items()}
    return {k: p.numpy() for k, p in params.items()}, losses


def test_mlp_trains_the_same_compiled_and_eager():
    params, x, labels = init()
    a, losses_a = train_compiled_value_and_grad(params, x, labels)
    b, losses_b = train_compiled_step(params, x, labels)
    c, losses_c = train_eager(params, x, labels)
    assert losses_a[-1] < 0.6 * losses_a[0]                 # it learns
    for other in (losses_b, losses_c):
        np.testing.assert_allclose(other, losses_a, rtol=2e-5)
    for k in params:
        assert a[k].dtype == b[k].dtype == c[k].dtype == np.float32
        np.testing.assert_allclose(b[k], a[k], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(c[k], a[k], rtol=1e-4, atol=1e-5)


def test_mlp_gradient_matches_finite_differences():
    params, x, labels = init(1)
    small = {k: v[:4] if k == "w0" else v for k, v in params.items()}
    jit.check_grads(lambda p: loss_fn(p, x[:6, :4], labels[:6]), [small], order=1)

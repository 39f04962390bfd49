"""Train a small MLP on scikit-learn's bundled handwritten digits (8x8 images, no download)
with tensorjit, and the same model with PyTorch when it is installed, for comparison.

    pip install scikit-learn      # or: pip install 'tensorjit[bench]'
    PYTHONPATH=. python examples/train_digits.py
"""
import importlib.util
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import jit

SIZES = (64, 128, 10)
EPOCHS, BATCH, LR = 30, 32, 0.1


def init_params(rng):
    params = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        w = rng.standard_normal((fan_in, fan_out)) * np.sqrt(2 / fan_in)
        params += [w.astype(np.float32), np.zeros(fan_out, np.float32)]
    return params


def logits(params, x):
    w1, b1, w2, b2 = params
    return jit.relu(x @ w1 + b1) @ w2 + b2


def loss(params, x, y):
    return jit.cross_entropy(logits(params, x), y)


def batches(rng, n):
    """Shuffled full batches (one shape, so the step compiles once)."""
    order = rng.permutation(n)
    return [order[i:i + BATCH] for i in range(0, n - BATCH + 1, BATCH)]


def train_tensorjit(data, rng):
    x_train, x_test, y_train, y_test = data
    params = init_params(rng)
    step = jit.jit(jit.value_and_grad(loss))
    predict = jit.jit(logits)
    epoch_times = []
    for epoch in range(EPOCHS):
        start, total = time.perf_counter(), 0.0
        for idx in batches(rng, len(x_train)):
            value, grads = step(params, x_train[idx], y_train[idx])
            params = [p - LR * g.numpy() for p, g in zip(params, grads)]
            total += value.item()
        epoch_times.append(time.perf_counter() - start)
        if epoch % 5 == 4 or epoch == 0:
            acc = (predict(params, x_test).numpy().argmax(1) == y_test).mean()
            print(f"  epoch {epoch + 1:2d}  loss {total / (len(x_train) // BATCH):.4f}  "
                  f"test accuracy {acc:.2%}  ({epoch_times[-1] * 1e3:.1f} ms)")
    return (predict(params, x_test).numpy().argmax(1) == y_test).mean(), epoch_times


def train_torch(data, rng):
    import torch
    x_train, x_test, y_train, y_test = (torch.from_numpy(a) for a in data)
    y_train = y_train.long()
    params = [torch.from_numpy(p).requires_grad_() for p in init_params(rng)]

    def forward(x):
        w1, b1, w2, b2 = params
        return torch.relu(x @ w1 + b1) @ w2 + b2
    epoch_times = []
    for _ in range(EPOCHS):
        start = time.perf_counter()
        for idx in batches(rng, len(x_train)):
            idx = torch.from_numpy(idx)
            value = torch.nn.functional.cross_entropy(forward(x_train[idx]), y_train[idx])
            grads = torch.autograd.grad(value, params)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p -= LR * g
        epoch_times.append(time.perf_counter() - start)
    with torch.no_grad():
        acc = (forward(x_test).argmax(1) == y_test).double().mean().item()
    return acc, epoch_times


def report(name, acc, epoch_times):
    later = np.median(epoch_times[1:])
    print(f"{name}: test accuracy {acc:.2%}; first epoch {epoch_times[0] * 1e3:.0f} ms "
          f"(includes compiling), then {later * 1e3:.1f} ms per epoch (median)")


def main():
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    data = train_test_split(x, digits.target.astype(np.int32), test_size=0.25, random_state=0)
    print(f"digits: {len(data[0])} training and {len(data[1])} test images, "
          f"MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, SGD lr {LR}, {EPOCHS} epochs")
    print("tensorjit:")
    report("tensorjit", *train_tensorjit(data, np.random.default_rng(0)))
    if importlib.util.find_spec("torch") is None:
        print("PyTorch: skipped (torch is not installed)")
        return
    report("PyTorch eager", *train_torch(data, np.random.default_rng(0)))


if __name__ == "__main__":
    main()

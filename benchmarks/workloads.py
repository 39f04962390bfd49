"""The workloads, as data: inputs, one generic function that tensorjit, JAX and PyTorch each run
through their own `ops` namespace (so every system computes the same program), and the numpy
implementation, which also gives the float64 reference when run on float64 inputs.

Gradient workloads use a hand-written numpy backward; the tests check it against finite
differences, so the reference does not depend on any system's autodiff.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

LR = 0.01  # SGD step of the MLP workload
MLP_SIZES = (784, 256, 256, 10)
MLP_BATCH = 128


@dataclass(frozen=True)
class Workload:
    """One row of the table."""

    name: str                               # what --only selects
    title: str                              # what the table shows
    inputs: Callable[[np.random.Generator], tuple] | None = None
    fn: Callable[..., Any] | None = None    # fn(ops, *inputs): the generic program
    grad_argnums: tuple[int, ...] | None = None  # time ops.value_and_grad(fn) instead
    numpy_fn: Callable[..., Any] | None = None   # numpy(*inputs); defaults to fn on numpy ops
    flops: float = 0.0                      # per call, for GFLOP/s (0: not reported)
    dtype: str = "float32"                  # whose FMA peak the GFLOP/s are a fraction of
    reduce_len: int = 1                     # terms summed per output element (tolerance)
    per_call: bool = False                  # a dispatch-cost row: the time is one tiny call
    first_call_of: str | None = None        # a compile-time row: which workload's first call

    def build(self, ops: Any) -> Callable[..., Any]:
        """The program for one system: `fn` bound to its ops, under its value_and_grad."""
        f = partial(self.fn, ops)
        return ops.value_and_grad(f, argnums=self.grad_argnums) if self.grad_argnums else f

    def numpy(self) -> Callable[..., Any]:
        return self.numpy_fn or partial(self.fn, NUMPY_OPS)


# ---- generic programs: fn(ops, *inputs) ----

def matmul(ops, a, b):
    return a @ b


def linear_relu(ops, x, w, b):
    return ops.relu(x @ w + b)


def sigmoid_fma(ops, a, b, c):
    return ops.sigmoid(a * b + c) * 2


def sum_sigmoid_fma(ops, a, b, c):
    return ops.sum(ops.sigmoid(a * b + c))


def add_one(ops, x):
    return x + 1


def total(ops, x):
    return ops.sum(x)


def row_softmax(ops, x):
    return ops.softmax(x, axis=-1)


def sum_sigmoid_matmul(ops, a, b):
    return ops.sum(ops.sigmoid(a @ b))


def mlp_loss(ops, params, x, labels):
    w1, b1, w2, b2, w3, b3 = params
    h = ops.relu(x @ w1 + b1)
    h = ops.relu(h @ w2 + b2)
    return ops.cross_entropy(h @ w3 + b3, labels)


def mlp_step(ops, params, x, labels):
    """One SGD step: forward, backward and update in one call; returns (loss, new params)."""
    loss, grads = ops.value_and_grad(partial(mlp_loss, ops))(params, x, labels)
    return loss, tuple(p - LR * g for p, g in zip(params, grads))


# ---- numpy: the ops namespace, and hand-written backward passes ----

def _np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


NUMPY_OPS = SimpleNamespace(sigmoid=_np_sigmoid, relu=lambda x: np.maximum(x, 0), sum=np.sum,
                            softmax=_np_softmax)


def sum_sigmoid_matmul_grads_numpy(a, b):
    s = _np_sigmoid(a @ b)
    ds = s * (1 - s)
    return s.sum(), (ds @ b.T, a.T @ ds)


def mlp_step_numpy(params, x, labels):
    w1, b1, w2, b2, w3, b3 = params
    h1 = np.maximum(x @ w1 + b1, 0)
    h2 = np.maximum(h1 @ w2 + b2, 0)
    z = h2 @ w3 + b3
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(len(labels))
    loss = (np.log(s[:, 0]) - z[rows, labels]).mean()
    dz = e / s
    dz[rows, labels] -= 1
    dz /= len(labels)
    dh2 = (dz @ w3.T) * (h2 > 0)
    dh1 = (dh2 @ w2.T) * (h1 > 0)
    grads = (x.T @ dh1, dh1.sum(0), h1.T @ dh2, dh2.sum(0), h2.T @ dz, dz.sum(0))
    return loss, tuple(p - LR * g for p, g in zip(params, grads))


# ---- inputs ----

def _normal(rng, shape, dtype=np.float32, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def mlp_inputs(rng: np.random.Generator, sizes=MLP_SIZES, batch=MLP_BATCH) -> tuple:
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        params += [_normal(rng, (fan_in, fan_out), scale=np.sqrt(2 / fan_in)),
                   _normal(rng, (fan_out,), scale=0.01)]
    x = _normal(rng, (batch, sizes[0]))
    labels = rng.integers(0, sizes[-1], batch).astype(np.int32)
    return tuple(params), x, labels


def to_float64(tree: Any) -> Any:
    """The same inputs in float64 (integers stay), for the reference."""
    if isinstance(tree, (tuple, list)):
        return type(tree)(to_float64(t) for t in tree)
    if isinstance(tree, np.ndarray) and np.issubdtype(tree.dtype, np.floating):
        return tree.astype(np.float64)
    return tree


# ---- the table ----

def _matmul(n: int, dtype=np.float32) -> Workload:
    tag = "f32" if dtype == np.float32 else "f64"
    return Workload(f"matmul_{tag}_{n}", f"matmul {tag} n={n}",
                    lambda rng: (_normal(rng, (n, n), dtype), _normal(rng, (n, n), dtype)),
                    matmul, flops=2 * n ** 3, reduce_len=n, dtype=np.dtype(dtype).name)


def _elementwise(fn, label: str, n: int, tag: str) -> Workload:
    return Workload(f"{fn.__name__}_{tag}", f"{label} {tag}",
                    lambda rng: tuple(_normal(rng, (n,)) for _ in range(3)), fn)


def _example2(n: int) -> Workload:
    # Scaled so A @ B ~ N(0, 1): sigmoid stays off its flat tails and the gradients matter.
    scale = n ** -0.25
    return Workload(f"sum_sigmoid_matmul_grad_{n}", f"sum(sigmoid(A@B)) +grads n={n}",
                    lambda rng: (_normal(rng, (n, n), scale=scale),
                                 _normal(rng, (n, n), scale=scale)),
                    sum_sigmoid_matmul, grad_argnums=(0, 1),
                    numpy_fn=sum_sigmoid_matmul_grads_numpy, flops=6 * n ** 3, reduce_len=n)


def _mlp_flops(sizes=MLP_SIZES, batch=MLP_BATCH) -> float:
    # forward, and the backward's two matmuls per layer (the first layer's dx is not needed)
    layers = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    return 2 * batch * (3 * sum(layers) - layers[0])


def _table() -> list[Workload]:
    rows = [_matmul(n) for n in (64, 128, 256, 512, 1024, 2048)]
    rows += [_matmul(n, np.float64) for n in (256, 1024)]
    rows.append(Workload("linear_relu_512", "relu(x@w+b) 512",
                         lambda rng: (_normal(rng, (512, 512)), _normal(rng, (512, 512)),
                                      _normal(rng, (512,))),
                         linear_relu, flops=2 * 512 ** 3, reduce_len=512))
    for n, tag in ((1 << 20, "1M"), (1 << 24, "16M")):
        rows.append(_elementwise(sigmoid_fma, "sigmoid(a*b+c)*2", n, tag))
        rows.append(_elementwise(sum_sigmoid_fma, "sum(sigmoid(a*b+c))", n, tag))
    rows += [_example2(n) for n in (64, 256, 1024)]
    rows.append(Workload("mlp_step", "MLP 784-256-256-10 SGD step b=128", mlp_inputs, mlp_step,
                         numpy_fn=mlp_step_numpy, flops=_mlp_flops(), reduce_len=784))
    rows.append(Workload("dispatch_add_one", "x + 1, 8 floats (per call)",
                         lambda rng: (_normal(rng, (8,)),), add_one, per_call=True))
    # Positive terms, so an error relative to the total is meaningful (reduce_len 1: a float32
    # sum of 16M terms done well is good to ~1e-6; a single running sum is off by ~1e-3).
    rows.append(Workload("sum_16M", "sum 16M",
                         lambda rng: (rng.random(1 << 24, dtype=np.float32),), total))
    rows.append(Workload("softmax_4096x1024", "row softmax 4096x1024",
                         lambda rng: (_normal(rng, (4096, 1024)),), row_softmax))
    rows.append(Workload("first_call_mlp_step", "first call, fresh process: MLP step",
                         first_call_of="mlp_step"))
    rows.append(Workload("first_call_sigmoid_fma", "first call, fresh process: fused sigmoid",
                         first_call_of="sigmoid_fma_1M"))
    return rows


WORKLOADS: dict[str, Workload] = {w.name: w for w in _table()}


def select(only: str | None) -> list[Workload]:
    """Workloads named by a comma-separated list; a name that is no workload's selects those it
    prefixes (`matmul` picks every matmul row). Unknown names are a ValueError."""
    if not only:
        return list(WORKLOADS.values())
    chosen: list[Workload] = []
    for token in (t.strip() for t in only.split(",") if t.strip()):
        hits = [WORKLOADS[token]] if token in WORKLOADS else \
            [w for w in WORKLOADS.values() if w.name.startswith(token)]
        if not hits:
            raise ValueError(f"no workload named {token!r}; known: {', '.join(WORKLOADS)}")
        chosen += [w for w in hits if w not in chosen]
    return chosen

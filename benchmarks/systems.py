"""The systems compared: how each turns a workload into a no-argument call on prepared inputs,
and how its result becomes numpy for the check. Peers are used only when installed.

Each `prepare` returns `run`, whose every call computes the whole result and waits for it
(JAX dispatches asynchronously, so its `run` blocks until ready).
"""
from __future__ import annotations

import importlib.util
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

from benchmarks.harness import leaves
from benchmarks.workloads import Workload


class NotSupported(Exception):
    """The system has no implementation of this workload (shown as n/a, not as a failure)."""


def _tree_map(fn: Callable, tree: Any) -> Any:
    if isinstance(tree, (tuple, list)):
        return type(tree)(_tree_map(fn, t) for t in tree)
    return fn(tree)


def _numpy_leaves(out: Any) -> list[np.ndarray]:
    return [np.asarray(x) for x in leaves(out)]


class System:
    name = ""
    module = ""  # the package that must be importable

    def unavailable(self) -> str | None:
        """Why the system can't run here (None when it can)."""
        if self.module and importlib.util.find_spec(self.module) is None:
            return f"{self.module} is not installed"
        return None

    def configure(self, one_thread: bool) -> None:
        """Set the system's own thread count before anything runs."""

    def prepare(self, w: Workload, inputs: tuple) -> Callable[[], Any]:
        raise NotImplementedError

    def to_numpy(self, out: Any) -> list[np.ndarray]:
        return _numpy_leaves(out)


class Numpy(System):
    name = "numpy"

    def prepare(self, w, inputs):
        fn = w.numpy()
        return lambda: fn(*inputs)


class Tensorjit(System):
    name = "tensorjit"

    def prepare(self, w, inputs):
        import jit
        f = jit.jit(w.build(jit))
        return lambda: f(*inputs)


def _jax_cross_entropy(logits, labels):
    import jax
    import jax.numpy as jnp
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


class Jax(System):
    name = "jax.jit"
    module = "jax"

    def prepare(self, w, inputs):
        import jax
        import jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)  # the float64 matmuls; float32 stays float32
        ops = SimpleNamespace(sigmoid=jax.nn.sigmoid, relu=jax.nn.relu, sum=jnp.sum,
                              softmax=jax.nn.softmax, cross_entropy=_jax_cross_entropy,
                              value_and_grad=jax.value_and_grad)
        f = jax.jit(w.build(ops))
        args = jax.device_put(inputs)
        return lambda: jax.block_until_ready(f(*args))


def _torch_value_and_grad(fn: Callable, argnums: int | tuple[int, ...] = 0) -> Callable:
    """JAX's value_and_grad over torch.autograd, for the generic programs."""
    import torch
    from torch.utils._pytree import tree_flatten, tree_unflatten

    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)

    def value_and_grad(*args):
        args = list(args)
        for i in nums:
            args[i] = _tree_map(lambda t: t.detach().requires_grad_(), args[i])
        out = fn(*args)
        flat, spec = tree_flatten([args[i] for i in nums])
        grads = tree_unflatten(list(torch.autograd.grad(out, flat)), spec)
        grads = [_tree_map(lambda g: g.detach(), g) for g in grads]
        return out.detach(), grads[0] if isinstance(argnums, int) else tuple(grads)
    return value_and_grad


class TorchEager(System):
    name = "torch"
    module = "torch"

    def configure(self, one_thread):
        import torch
        if one_thread:
            torch.set_num_threads(1)

    def ops(self):
        import torch
        import torch.nn.functional as F
        return SimpleNamespace(sigmoid=torch.sigmoid, relu=torch.relu, sum=torch.sum,
                               softmax=lambda x, axis=-1: torch.softmax(x, dim=axis),
                               cross_entropy=F.cross_entropy,
                               value_and_grad=_torch_value_and_grad)

    def wrap(self, f: Callable) -> Callable:
        return f

    def prepare(self, w, inputs):
        import torch

        def tensor(x):  # cross_entropy wants int64 labels; convert before timing
            x = np.asarray(x)
            return torch.from_numpy(x.astype(np.int64) if x.dtype.kind == "i" else x)
        f = self.wrap(w.build(self.ops()))
        args = _tree_map(tensor, inputs)
        return lambda: f(*args)

    def to_numpy(self, out):
        return [x.detach().numpy() for x in leaves(out)]


class TorchCompile(TorchEager):
    name = "torch.compile"

    def wrap(self, f):
        import torch
        return torch.compile(f)


class Numba(System):
    """Explicit loops for the elementwise, reduction and dispatch rows (matmul and the
    training workloads have no numba version, as in PERF-NOTES section 7)."""

    name = "numba"
    module = "numba"

    def configure(self, one_thread):
        import numba
        if one_thread:
            numba.set_num_threads(1)

    def prepare(self, w, inputs):
        kernels = _numba_kernels()
        if w.fn is None or w.fn.__name__ not in kernels:
            raise NotSupported(f"no numba version of {w.name}")
        kernel = kernels[w.fn.__name__]
        return lambda: kernel(*inputs)


def _numba_kernels() -> dict[str, Callable]:
    import math

    import numba

    njit = numba.njit(fastmath=True)

    @njit
    def sigmoid_fma(a, b, c):
        out = np.empty_like(a)
        for i in range(a.size):
            out[i] = 2 / (1 + math.exp(-(a[i] * b[i] + c[i])))
        return out

    @njit
    def sum_sigmoid_fma(a, b, c):
        acc = np.float32(0)
        for i in range(a.size):
            acc += 1 / (1 + math.exp(-(a[i] * b[i] + c[i])))
        return acc

    @njit
    def add_one(x):
        return x + 1

    @njit
    def total(x):
        acc = np.float32(0)
        for i in range(x.size):
            acc += x[i]
        return acc

    @njit
    def row_softmax(x):
        out = np.empty_like(x)
        for r in range(x.shape[0]):
            top = x[r, 0]
            for j in range(x.shape[1]):
                top = max(top, x[r, j])
            s = np.float32(0)
            for j in range(x.shape[1]):
                out[r, j] = math.exp(x[r, j] - top)
                s += out[r, j]
            for j in range(x.shape[1]):
                out[r, j] /= s
        return out

    return {k.py_func.__name__: k
            for k in (sigmoid_fma, sum_sigmoid_fma, add_one, total, row_softmax)}


SYSTEMS: list[System] = [Numpy(), Tensorjit(), Jax(), TorchEager(), TorchCompile(), Numba()]
FIRST_CALL_SYSTEMS = ("tensorjit", "jax.jit", "torch.compile", "numba")


def by_name(name: str) -> System:
    for s in SYSTEMS:
        if s.name == name:
            return s
    raise KeyError(name)

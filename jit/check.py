"""`check_grads`: reverse-mode gradients against central finite differences in float64."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from jit.pytree import flatten, unflatten
from jit.tensor import Tensor
from jit.transforms import vjp


def _to_f64(x: Any) -> Any:
    """Float leaves become float64 Tensors (so differences are exact enough); others stay."""
    array = np.asarray(x.numpy() if isinstance(x, Tensor) else x)
    if array.dtype.kind == "f" or isinstance(x, float):
        return Tensor(array.astype(np.float64))
    return x


def _flat_args(args: Sequence[Any]) -> tuple[list[Any], list]:
    leaves, trees = [], []
    for a in args:
        a_leaves, tree = flatten(a)
        leaves += a_leaves
        trees.append((tree, len(a_leaves)))
    return leaves, trees


def _rebuild(leaves: list[Any], trees: list) -> tuple:
    out, at = [], 0
    for tree, n in trees:
        out.append(unflatten(tree, leaves[at:at + n]))
        at += n
    return tuple(out)


def _float_outputs(out: Any) -> list[np.ndarray]:
    return [np.asarray(o.numpy() if isinstance(o, Tensor) else o, dtype=np.float64)
            for o in flatten(out)[0]
            if np.asarray(o.numpy() if isinstance(o, Tensor) else o).dtype.kind == "f"]


def _check_order1(fn: Callable, leaves: list[Any], trees: list, rng: np.random.Generator,
                  eps: float, rtol: float, atol: float) -> None:
    args = _rebuild(leaves, trees)
    out, pullback = vjp(fn, *args)
    outs = flatten(out)[0]
    cts = [Tensor(rng.standard_normal(np.shape(o)).astype(np.float64))
           if isinstance(o, Tensor) and o.dtype.kind == "f" else o for o in outs]
    analytic = flatten(pullback(unflatten(flatten(out)[1], cts)))[0]
    ct_arrays = [c.numpy() for c, o in zip(cts, outs) if isinstance(o, Tensor) and o.dtype.kind == "f"]

    def objective(perturbed: list[Any]) -> float:
        values = _float_outputs(fn(*_rebuild(perturbed, trees)))
        return float(sum(np.sum(c * v) for c, v in zip(ct_arrays, values)))

    scale = max(1.0, abs(objective(leaves)))
    worst = None
    for i, leaf in enumerate(leaves):
        if not (isinstance(leaf, Tensor) and leaf.dtype.kind == "f"):
            continue
        base = leaf.numpy()
        g = analytic[i].numpy()
        directions = ([np.eye(base.size)[k].reshape(base.shape) for k in range(base.size)]
                      if base.size <= 16 else [rng.standard_normal(base.shape) for _ in range(3)])
        for k, v in enumerate(directions):
            def at(sign: float) -> float:
                moved = list(leaves)
                moved[i] = Tensor(base + sign * eps * v)
                return objective(moved)
            numeric = (at(1.0) - at(-1.0)) / (2 * eps)
            exact = float(np.sum(g * v))
            tol = atol * scale + rtol * abs(numeric)
            excess = abs(exact - numeric) - tol
            if worst is None or excess > worst[0]:
                where = (tuple(int(i) for i in np.unravel_index(k, base.shape))
                         if base.size <= 16 else f"random direction {k}")
                worst = (excess, i, where, exact, numeric, tol)
    if worst is not None and worst[0] > 0:
        _, i, where, exact, numeric, tol = worst
        raise AssertionError(
            f"check_grads: the gradient of input leaf {i} at {where} disagrees with finite "
            f"differences: reverse mode {exact:.9g}, finite differences {numeric:.9g} "
            f"(|difference| {abs(exact - numeric):.3g} > tolerance {tol:.3g})")


def check_grads(fn: Callable, args: Sequence[Any], order: int = 1, *, eps: float = 1e-6,
                rtol: float = 1e-5, atol: float = 1e-6, seed: int = 0) -> None:
    """Raise AssertionError naming the worst element where reverse-mode gradients of `fn` at
    `args` disagree with float64 central differences; `order=2` also checks second order."""
    if order not in (1, 2):
        raise ValueError(f"check_grads: order must be 1 or 2, got {order}")
    rng = np.random.default_rng(seed)
    leaves, trees = _flat_args([_to_f64_tree(a) for a in args])
    _check_order1(fn, leaves, trees, rng, eps, rtol, atol)
    if order == 2:
        _check_order1(_first_order(fn, leaves, trees, rng), leaves, trees, rng, eps, rtol * 10,
                      atol * 10)


def _to_f64_tree(a: Any) -> Any:
    leaves, tree = flatten(a)
    return unflatten(tree, [_to_f64(x) for x in leaves])


def _first_order(fn: Callable, leaves: list[Any], trees: list,
                 rng: np.random.Generator) -> Callable:
    """A scalar function of the inputs whose gradient involves every second derivative:
    <w, J(x)^T ct> for fixed random ct and w."""
    out = fn(*_rebuild(leaves, trees))
    outs, out_tree = flatten(out)
    cts = [Tensor(rng.standard_normal(np.shape(o))) if isinstance(o, Tensor)
           and o.dtype.kind == "f" else o for o in outs]
    weights = [rng.standard_normal(np.shape(x)) if isinstance(x, Tensor) and x.dtype.kind == "f"
               else None for x in leaves]

    def contracted(*args: Any) -> Any:
        _, pullback = vjp(fn, *args)
        grads = flatten(pullback(unflatten(out_tree, cts)))[0]
        total = 0.0
        for g, w in zip(grads, weights):
            if g is not None and w is not None:
                total = total + (g * Tensor(w)).sum()
        return total

    return contracted

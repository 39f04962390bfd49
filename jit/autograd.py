"""Eager autograd: what eager ops record, and `backward()`.

Eager ops record one `Node` per result (the IR op, its attributes, its inputs). `backward()`
replays the recorded steps into an IR function of the leaves, runs the same reverse-mode pass
that `grad` uses (`passes.vjp`), and executes the gradient program. Nothing is freed after a
backward pass, so calling it twice accumulates twice (PyTorch's `retain_graph=True`).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import numpy as np

import passes
from ir import Builder, Function, Literal, Location, Operand

if TYPE_CHECKING:
    from jit.tensor import Tensor


@dataclass(eq=False)
class Node:
    """How an eager tensor was made: an IR op on `inputs`, or result `index` of a jitted call."""

    op: str                       # an IR op name, or "call"
    attrs: Mapping[str, Any]
    inputs: tuple                 # Tensors and Literals, in operand order
    loc: Location | None
    fn: Function | None = None    # "call": the traced function, recorded as one step
    index: int = 0                # "call": which of its results
    call: object = field(default=None)  # "call": shared by the results of one call
    versions: tuple = field(init=False)  # the inputs' in-place versions when recorded

    def __post_init__(self) -> None:
        self.versions = tuple(getattr(i, "_version", None) for i in self.inputs)


_state = threading.local()


def grad_enabled() -> bool:
    return getattr(_state, "enabled", True)


@contextmanager
def no_grad() -> Iterator[None]:
    """Inside, eager ops record nothing, so nothing computed there gets a gradient."""
    saved = grad_enabled()
    _state.enabled = False
    try:
        yield
    finally:
        _state.enabled = saved


def record(out: "Tensor", node: Node) -> None:
    out._node = node
    out.requires_grad = True


def _topological(root: "Tensor") -> list["Tensor"]:
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        t, expanded = stack.pop()
        if expanded:
            order.append(t)
            continue
        if id(t) in seen:
            continue
        seen.add(id(t))
        stack.append((t, True))
        if t._node is not None:
            stack.extend((i, False) for i in t._node.inputs if not isinstance(i, Literal))
    return order


def _check_versions(node: Node) -> None:
    for tensor, recorded in zip(node.inputs, node.versions):
        if recorded is not None and tensor._version != recorded:
            raise RuntimeError(
                f"backward(): a {tensor.type} tensor this result depends on was modified in "
                f"place after it was used (version {tensor._version}, recorded {recorded}); "
                f"recompute the forward pass after updating it")


def graph_to_ir(root: "Tensor") -> tuple[Function, list["Tensor"], list["Tensor"]]:
    """The recorded steps from the leaves to `root` as an IR function.

    Its parameters are the leaves that require grad, then every other concrete input.
    """
    order = _topological(root)
    sources = [t for t in order if t._node is None]
    leaves = [t for t in sources if t.requires_grad]
    others = [t for t in sources if not t.requires_grad]
    b = Builder("backward")
    env: dict[int, Operand] = {id(t): b.param(t.type, "leaf" if t.requires_grad else "input")
                               for t in leaves + others}
    calls: dict[int, list[Operand]] = {}
    for t in order:
        node = t._node
        if node is None:
            continue
        _check_versions(node)
        operands = [i if isinstance(i, Literal) else env[id(i)] for i in node.inputs]
        if node.op == "call":
            if id(node.call) not in calls:
                calls[id(node.call)] = b.inline(node.fn, operands)
            env[id(t)] = calls[id(node.call)][node.index]
        else:
            env[id(t)] = b.emit(node.op, *operands, loc=node.loc, **node.attrs)
    return b.build([env[id(root)]]), leaves, others


def backward(root: "Tensor", gradient: Any = None) -> None:
    from jit.execution import execute
    from jit.tensor import Tensor

    if root.is_traced:
        raise RuntimeError("backward() cannot run inside jit or grad; differentiate the "
                           "function with jit.grad instead")
    if not root.requires_grad:
        raise RuntimeError("backward(): this tensor does not require grad (no input it depends "
                           "on was created with requires_grad=True)")
    if gradient is None:
        if root.size != 1:
            raise RuntimeError(f"backward() without a gradient needs a one-element tensor, got "
                               f"shape {root.shape}; pass gradient= of that shape")
        seed = np.ones(root.shape, dtype=root.dtype)
    else:
        seed = np.asarray(gradient.numpy() if isinstance(gradient, Tensor) else gradient)
        if seed.shape != root.shape:
            raise ValueError(f"backward(): gradient has shape {seed.shape}, the tensor has "
                             f"shape {root.shape}")
        seed = seed.astype(root.dtype)
    fn, leaves, others = graph_to_ir(root)
    with_value = passes.vjp(fn, wrt=range(len(leaves)))
    grads_only = passes.dce(Function(with_value.name, with_value.params, with_value.ops,
                                     with_value.results[1:]))
    grads = execute(grads_only, [t._data for t in leaves + others] + [seed])
    for leaf, g in zip(leaves, grads):
        leaf.grad = Tensor._wrap(g if leaf.grad is None else leaf.grad._data + g)

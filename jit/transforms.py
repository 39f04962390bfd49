"""`grad`, `value_and_grad` and `vjp`: trace, run the reverse-mode pass, call the result.

Each transform builds an IR function and runs it through `call_traced`, so under `jit` (or
another transform) its IR is inlined into the outer trace, and on concrete inputs it executes
natively. That is what makes them compose in any order.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import numpy as np

import passes
from ir import Builder, Function
from jit.api import Traced, call_traced, trace
from jit.pytree import flatten, unflatten
from jit.tensor import Tensor


def _argnums_tuple(argnums: int | Sequence[int], nargs: int) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for i in nums:
        if not -nargs <= i < nargs:
            raise ValueError(f"argnums {argnums} names argument {i}, but the function was "
                             f"called with {nargs} arguments")
    return tuple(i % nargs for i in nums)


def _leaf_ranges(args: Sequence[Any]) -> list[range]:
    """Which flat leaves belong to each argument."""
    ranges, start = [], 0
    for a in args:
        n = len(flatten(a)[0])
        ranges.append(range(start, start + n))
        start += n
    return ranges


def _split_aux(traced: Traced, has_aux: bool, transform: str) -> tuple[int, Any]:
    """The number of output leaves that are the differentiated output, and the aux tree."""
    tree = traced.out_tree
    if not has_aux:
        return tree.num_leaves, None
    if tree.kind not in ("tuple", "list") or len(tree.children) != 2:
        raise TypeError(f"{transform} with has_aux=True needs the function to return a pair "
                        f"(output, aux)")
    return tree.children[0].num_leaves, tree.children[1]


def _scalar_output_check(traced: Traced, n_out: int, transform: str) -> None:
    results = traced.fn.results[:n_out]
    if n_out != 1 or results[0].type.size != 1 or not results[0].type.dtype.is_float:
        got = ", ".join(str(r.type) for r in results) or "nothing"
        raise TypeError(f"{transform} needs a function whose output is one floating-point "
                        f"element, got {got}; use vjp for other outputs")


def _grad_program(traced: Traced, wrt: list[int], with_outputs: bool) -> Function:
    """(*leaves, *captured) -> ([*outputs,] *grads of `wrt`), seeded with 1 for output 0.

    Without `with_outputs` (plain `grad`) the program computes only what the gradients need.
    """
    with_ct = passes.vjp(traced.fn, wrt, seeded=[0])
    b = Builder(f"{traced.fn.name}_grad")
    params = [b.param(p.type, p.name) for p in traced.fn.params]
    out = traced.fn.results[0].type
    results = b.inline(with_ct, params + [b.full(out.shape, 1.0, out.dtype)])
    if not with_outputs:
        results = results[len(traced.fn.results):]
    return passes.dce(b.build(results))


def _value_and_grad(fn: Callable, args: tuple, argnums, has_aux: bool, transform: str):
    nums = _argnums_tuple(argnums, len(args))
    traced = trace(fn, args)
    n_out, aux_tree = _split_aux(traced, has_aux, transform)
    _scalar_output_check(traced, n_out, transform)
    ranges = _leaf_ranges(args)
    wrt = [i for n in nums for i in ranges[n]]
    for n in nums:
        for i in ranges[n]:
            p = traced.fn.params[i]
            if not p.type.dtype.is_float:
                raise TypeError(f"{transform}: argument {n} has a leaf of type {p.type}; only "
                                f"floating-point arguments can be differentiated")
    leaves = [x for a in args for x in flatten(a)[0]]
    with_outputs = has_aux or transform == "value_and_grad"
    outs = call_traced(_grad_program(traced, wrt, with_outputs), leaves + list(traced.captured))
    n_results = len(traced.fn.results) if with_outputs else 0
    value = outs[0] if with_outputs else None
    aux = unflatten(aux_tree, outs[n_out:n_results]) if has_aux else None
    grads_flat = outs[n_results:]
    grads, at = [], 0
    for n in nums:
        count = len(ranges[n])
        grads.append(unflatten(flatten(args[n])[1], grads_flat[at:at + count]))
        at += count
    grads_out = grads[0] if isinstance(argnums, int) else tuple(grads)
    return value, grads_out, aux


def grad(fn: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable:
    """The gradient of `fn` (one-element output) with respect to the arguments `argnums`."""
    @functools.wraps(fn, updated=())
    def grad_fn(*args):
        _, grads, aux = _value_and_grad(fn, args, argnums, has_aux, "grad")
        return (grads, aux) if has_aux else grads
    return grad_fn


def value_and_grad(fn: Callable, argnums: int | Sequence[int] = 0,
                   has_aux: bool = False) -> Callable:
    """`(value, grads)`, or `((value, aux), grads)` with `has_aux`."""
    @functools.wraps(fn, updated=())
    def value_and_grad_fn(*args):
        value, grads, aux = _value_and_grad(fn, args, argnums, has_aux, "value_and_grad")
        return ((value, aux) if has_aux else value), grads
    return value_and_grad_fn


def vjp(fn: Callable, *primals: Any) -> tuple[Any, Callable]:
    """`(out, vjp_fn)`: `vjp_fn(ct)` returns one cotangent per primal, shaped like it (zeros
    for integer and bool leaves, which carry no gradient)."""
    traced = trace(fn, primals)
    leaves = [x for a in primals for x in flatten(a)[0]]
    out = unflatten(traced.out_tree, call_traced(traced.fn, leaves + list(traced.captured)))
    float_leaves = [i for i, p in enumerate(traced.fn.params[:len(leaves)])
                    if p.type.dtype.is_float]
    float_outs = [i for i, r in enumerate(traced.fn.results) if r.type.dtype.is_float]
    program = passes.vjp(traced.fn, float_leaves, seeded=float_outs)
    n_results = len(traced.fn.results)

    def vjp_fn(ct: Any) -> tuple:
        ct_leaves, ct_tree = flatten(ct)
        if ct_tree != traced.out_tree:
            raise ValueError("vjp_fn: the cotangent must have the structure of the output")
        seeds = [ct_leaves[i] for i in float_outs]
        outs = call_traced(program, leaves + list(traced.captured) + seeds)
        by_leaf = dict(zip(float_leaves, outs[n_results:]))
        flat = [by_leaf[i] if i in by_leaf else Tensor(np.zeros(p.type.shape, p.type.dtype.numpy))
                for i, p in enumerate(traced.fn.params[:len(leaves)])]
        cts, at = [], 0
        for a in primals:
            a_leaves, a_tree = flatten(a)
            cts.append(unflatten(a_tree, flat[at:at + len(a_leaves)]))
            at += len(a_leaves)
        return tuple(cts)

    return out, vjp_fn

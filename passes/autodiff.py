"""Reverse-mode automatic differentiation as an IR -> IR pass.

`vjp(fn, wrt, seeded)` returns a function that computes `fn`'s results and the cotangents of the
parameters in `wrt`, given cotangents for the results in `seeded`. Each op's derivative is the
IR its definition's `vjp` rule emits, so the output is ordinary IR: it prints, optimizes,
compiles, and can be differentiated again. Eager `backward()`, `grad`, `value_and_grad` and
`vjp` all come here.

Zeros stay symbolic: a value that no seeded result depends on has no cotangent at all, so the
program carries no `add %x, 0` chains, and inputs nobody asked about get no work (DCE removes
the rest).
"""
from __future__ import annotations

from typing import Sequence

from ir import Builder, Function, Value, opdef
from passes.dce import dce


def _active_values(fn: Function, wrt: Sequence[int]) -> set[str]:
    """Float values that depend on a differentiated parameter through differentiable ops."""
    active = {fn.params[i].name for i in wrt if fn.params[i].type.dtype.is_float}
    for op in fn.ops:
        if (opdef(op.name).vjp is not None and op.type.dtype.is_float
                and any(isinstance(o, Value) and o.name in active for o in op.operands)):
            active.add(op.result.name)
    return active


def vjp(fn: Function, wrt: Sequence[int], seeded: Sequence[int] | None = None) -> Function:
    """(*params, *cts of the seeded results) -> (*results, *cts of the `wrt` params).

    `seeded` defaults to every result. A `wrt` parameter that no seeded result depends on gets
    a zero cotangent; a non-float one is an error.
    """
    seeded = tuple(range(len(fn.results))) if seeded is None else tuple(seeded)
    for i in wrt:
        if not fn.params[i].type.dtype.is_float:
            raise TypeError(f"cannot differentiate with respect to {fn.params[i]} of type "
                            f"{fn.params[i].type}: only floating-point inputs have gradients")
    b = Builder(f"{fn.name}_vjp")
    env = b.replay(fn, [b.param(p.type, p.name) for p in fn.params])

    active = _active_values(fn, wrt)
    cts: dict[str, Value] = {}

    def accumulate(name: str, ct: Value) -> None:
        cts[name] = b.add(cts[name], ct) if name in cts else ct

    for i in seeded:
        result = fn.results[i]
        if not result.type.dtype.is_float:
            raise TypeError(f"cannot seed a cotangent for result {i} of type {result.type}: "
                            f"only floating-point results carry gradients")
        ct = b.param(result.type, f"ct{i}")
        if result.name in active:
            accumulate(result.name, ct)

    for op in reversed(fn.ops):
        ct = cts.get(op.result.name)
        if ct is None:
            continue
        operands = [env[o.name] if isinstance(o, Value) else o for o in op.operands]
        with b.location(op.loc):
            op_cts = opdef(op.name).vjp(b, operands, env[op.result.name], ct, op.attrs)
        for o, o_ct in zip(op.operands, op_cts):
            if o_ct is not None and isinstance(o, Value) and o.name in active:
                accumulate(o.name, o_ct)

    grads = []
    for i in wrt:
        p = fn.params[i]
        grads.append(cts[p.name] if p.name in cts else b.zeros_like(env[p.name]))
    return dce(b.build([env[r.name] for r in fn.results] + grads))

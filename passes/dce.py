"""Dead code elimination: drop every op whose result no result depends on."""
from __future__ import annotations

from ir import Function, Value
from passes.rebuild import rebuild


def dce(fn: Function) -> Function:
    live = {r.name for r in fn.results}
    for op in reversed(fn.ops):
        if op.result.name in live:
            live.update(o.name for o in op.operands if isinstance(o, Value))
    return rebuild(fn, keep=lambda op: op.result.name in live)

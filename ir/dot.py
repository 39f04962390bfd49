"""Graphviz view of a function: one node per parameter and op, an edge per use."""
from __future__ import annotations

import json

from ir.core import Function, Value
from ir.text import format_attr, format_operand


def to_dot(fn: Function) -> str:
    lines = [f"digraph {json.dumps(fn.name)} {{", "  rankdir=TB;",
             '  node [shape=box, fontname="monospace", fontsize=10];']
    for p in fn.params:
        lines.append(f'  "{p.name}" [label={json.dumps(f"%{p.name}: {p.type}")}, shape=ellipse];')
    for op in fn.ops:
        attrs = ", ".join(f"{k}={format_attr(v)}" for k, v in sorted(op.attrs.items()))
        literals = ", ".join(format_operand(o, op, i) for i, o in enumerate(op.operands)
                             if not isinstance(o, Value))
        detail = " ".join(part for part in (literals, f"{{{attrs}}}" if attrs else "") if part)
        label = f"%{op.result.name} = {op.name} {detail}".rstrip() + f"\n{op.type}"
        lines.append(f'  "{op.result.name}" [label={json.dumps(label)}];')
        for o in op.operands:
            if isinstance(o, Value):
                lines.append(f'  "{o.name}" -> "{op.result.name}";')
    for i, r in enumerate(fn.results):
        lines.append(f'  "return{i}" [label="return {i}", shape=plaintext];')
        lines.append(f'  "{r.name}" -> "return{i}";')
    lines.append("}")
    return "\n".join(lines) + "\n"

"""The loop IR: kernels over buffers, the stage between tensor IR and LLVM IR.

A `Program` is buffers plus kernels run in order. A `LoopKernel` runs its stages inside outer
loops (`outer`: one iteration per "row"); each `Stage` is a loop nest over its own inner shape
whose body is a list of scalar expressions (the fused tensor ops, applied per element). All
accesses are affine: element offset + sum(index * stride) over the outer then inner indices,
with stride 0 for broadcasting. Row reductions accumulate into per-row `slots` that later
stages of the same row read; `Store.combine` accumulates into memory (column reductions).
A `MatmulKernel` is a call of the generated GEMM on strided operands.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union

import numpy as np

from ir.core import DType

# Temps live in one scratch arena whose base is aligned to ARENA_ALIGN bytes. Each starts at a
# multiple of it and, while it lives, owns its bytes up to the next multiple: code may read and
# write a whole vector (<= ARENA_ALIGN bytes) over a temp's last elements (runtime/codegen.py,
# `whole_tail`), so those padding bytes hold any bits, never another live buffer's data.
ARENA_ALIGN = 64


@dataclass(frozen=True)
class Buffer:
    name: str
    dtype: DType
    shape: tuple[int, ...]
    kind: str            # "input", "output", "const", "temp"
    offset: int = 0      # temps: byte offset in the scratch arena

    @property
    def size(self) -> int:
        size = 1
        for n in self.shape:
            size *= n
        return size

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


@dataclass(frozen=True)
class Access:
    buffer: str
    offset: int
    strides: tuple[int, ...]   # one per iteration dimension (outer, then the stage's inner)

    @property
    def row_step(self) -> int:
        """Elements between consecutive iterations of the innermost loop (0: the same one)."""
        return self.strides[-1] if self.strides else 0

    def __str__(self) -> str:
        terms = [str(self.offset)] if self.offset or not any(self.strides) else []
        terms += [f"{s}*i{d}" if s != 1 else f"i{d}" for d, s in enumerate(self.strides) if s]
        return f"%{self.buffer}[{' + '.join(terms)}]"


@dataclass(frozen=True)
class Expr:
    """One scalar expression of a stage body; `args` index earlier expressions.

    op: an elementwise tensor-IR op name, or "load" (attrs: access), "literal" (attrs:
    value), "index" (attrs: dim; the iteration index), "slot" (attrs: slot), "acc" (a matmul
    epilogue's product).
    """

    op: str
    args: tuple[int, ...]
    dtype: DType
    attrs: tuple[tuple[str, Any], ...] = ()

    def attr(self, name: str) -> Any:
        return dict(self.attrs)[name]


@dataclass(frozen=True)
class Store:
    expr: int
    access: Access
    combine: str | None = None   # None: overwrite; "add", "max", "min": accumulate


def reduction_identity(kind: str, dtype: DType) -> bool | int | float:
    """The value a reduction starts from: 0 for sums (and "set"), the dtype's lowest / highest
    value for max / min."""
    if kind in ("add", "set"):
        return 0
    if dtype.is_float:
        return float("-inf") if kind == "max" else float("inf")
    if dtype.is_bool:
        return kind == "min"
    info = np.iinfo(dtype.numpy)
    return int(info.min) if kind == "max" else int(info.max)


@dataclass(frozen=True)
class Reduction:
    kind: str      # "add", "max", "min", or "set" (a value computed once per row)
    expr: int
    slot: int


@dataclass(frozen=True)
class Stage:
    shape: tuple[int, ...]
    exprs: tuple[Expr, ...]
    stores: tuple[Store, ...] = ()
    reductions: tuple[Reduction, ...] = ()


@dataclass(frozen=True)
class LoopKernel:
    name: str
    outer: tuple[int, ...]
    slots: tuple[tuple[str, DType], ...]   # (reduction kind, dtype) per slot, reset every row
    stages: tuple[Stage, ...]
    computes: tuple[str, ...]              # the tensor-IR ops it holds, for reading

    @property
    def buffers(self) -> tuple[str, ...]:
        names = []
        for stage in self.stages:
            accesses = [e.attr("access") for e in stage.exprs if e.op == "load"]
            accesses += [s.access for s in stage.stores]
            names += [a.buffer for a in accesses if a.buffer not in names]
        return tuple(names)


@dataclass(frozen=True)
class Operand2D:
    """A matmul operand: element [b..., i, j] at offset + b·batch_strides + i*rows + j*cols."""

    buffer: str
    offset: int
    batch_strides: tuple[int, ...]
    rows: int
    cols: int

    def __str__(self) -> str:
        return (f"%{self.buffer}[{self.offset} + batch{list(self.batch_strides)} "
                f"+ i*{self.rows} + j*{self.cols}]")


@dataclass(frozen=True)
class MatmulKernel:
    name: str
    dtype: DType
    batch: tuple[int, ...]
    m: int
    n: int
    k: int
    a: Operand2D
    b: Operand2D
    c: Operand2D
    computes: tuple[str, ...]
    # Elementwise ops applied to C strip by strip once it holds the product (bias, relu): a
    # stage over (i, j) whose "acc" expression is the product and whose one store is to C.
    epilogue: Stage | None = None

    @property
    def epilogue_buffers(self) -> tuple[str, ...]:
        if self.epilogue is None:
            return ()
        return tuple(dict.fromkeys(e.attr("access").buffer for e in self.epilogue.exprs
                                   if e.op == "load"))

    @property
    def buffers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.a.buffer, self.b.buffer, self.c.buffer)
                                   + self.epilogue_buffers))


Kernel = Union[LoopKernel, MatmulKernel]


@dataclass(frozen=True)
class Program:
    name: str
    buffers: tuple[Buffer, ...]
    kernels: tuple[Kernel, ...]
    inputs: tuple[str, ...]       # buffer per function parameter
    outputs: tuple[str, ...]      # buffer per function result
    constants: tuple[tuple[str, Any], ...]   # (buffer, numpy array) baked into the program
    scratch_bytes: int

    def buffer(self, name: str) -> Buffer:
        return next(b for b in self.buffers if b.name == name)


# Printing --------------------------------------------------------------------------------------

def _format_expr(i: int, e: Expr) -> str:
    if e.op == "load":
        rhs = f"load {e.attr('access')}"
    elif e.op == "literal":
        rhs = f"{e.attr('value')!r}"
    elif e.op == "index":
        rhs = f"index i{e.attr('dim')}"
    elif e.op == "slot":
        rhs = f"slot s{e.attr('slot')}"
    elif e.op == "acc":
        rhs = "acc"
    else:
        extra = "".join(f" {{{k} = {v}}}" for k, v in e.attrs)
        rhs = f"{e.op} {', '.join(f'e{a}' for a in e.args)}{extra}"
    return f"e{i} = {rhs} : {e.dtype}"


def stage_lanes(stage: Stage, vector_bytes: int) -> int:
    """How many elements the stage's innermost loop handles per step: the widest element
    decides (the code generator uses the same rule)."""
    if not stage.shape:
        return 1
    widest = max((e.dtype.itemsize for e in stage.exprs if not e.dtype.is_bool), default=4)
    return max(1, vector_bytes // widest)


ScheduleText = Callable[[MatmulKernel], Sequence[str]]


def format_kernel(kernel: Kernel, vector_bytes: int | None = None,
                  schedule: ScheduleText | None = None) -> list[str]:
    if isinstance(kernel, MatmulKernel):
        lines = [f"kernel {kernel.name}: matmul {kernel.dtype}[{kernel.m}x{kernel.k}] @ "
                 f"[{kernel.k}x{kernel.n}] batch {list(kernel.batch)}   "
                 f"({', '.join(kernel.computes)})",
                 f"  a = {kernel.a}", f"  b = {kernel.b}", f"  c = {kernel.c}"]
        if schedule is not None:
            lines += [f"  {line}" for line in schedule(kernel)]
        if kernel.epilogue is not None:
            lines.append(f"  epilogue on each finished row strip: for i0 in [0, {kernel.m}) "
                         f"i1 in [0, {kernel.n})")
            lines += [f"    {_format_expr(i, e)}" for i, e in enumerate(kernel.epilogue.exprs)]
            lines += [f"    {s.access} = e{s.expr}" for s in kernel.epilogue.stores]
        return lines
    lines = [f"kernel {kernel.name}   ({', '.join(kernel.computes)})"]
    indent = "  "
    for d, n in enumerate(kernel.outer):
        lines.append(f"{indent}for i{d} in [0, {n}):")
        indent += "  "
    if kernel.slots:
        lines.append(indent + "slots " + ", ".join(f"s{i}: {k} {t}"
                                                   for i, (k, t) in enumerate(kernel.slots)))
    base = len(kernel.outer)
    for number, stage in enumerate(kernel.stages):
        loops = " ".join(f"i{base + d} in [0, {n})" for d, n in enumerate(stage.shape))
        lanes = stage_lanes(stage, vector_bytes) if vector_bytes else 1
        width = f"  (vector of {lanes})" if lanes > 1 else ""
        lines.append(f"{indent}stage {number}: for {loops or '(once)'}{width}")
        lines += [f"{indent}  {_format_expr(i, e)}" for i, e in enumerate(stage.exprs)]
        lines += [f"{indent}  s{r.slot} {r.kind}= e{r.expr}" for r in stage.reductions]
        lines += [f"{indent}  {s.access} {('' if s.combine is None else s.combine)}= e{s.expr}"
                  for s in stage.stores]
    return lines


def to_text(program: Program, vector_bytes: int | None = None,
            schedule: ScheduleText | None = None) -> str:
    """The program as text; with the target's vector size, each stage shows its vector width,
    and with the target's `schedule`, each matmul its blocks, packing and register tiles."""
    lines = [f"program @{program.name}   (scratch {program.scratch_bytes} bytes)"]
    for b in program.buffers:
        where = f" at +{b.offset}" if b.kind == "temp" else ""
        lines.append(f"  buffer %{b.name}: {b.dtype}[{','.join(map(str, b.shape))}] "
                     f"{b.kind}{where}")
    for kernel in program.kernels:
        lines += ["  " + line for line in format_kernel(kernel, vector_bytes, schedule)]
    return "\n".join(lines) + "\n"


# Verification ----------------------------------------------------------------------------------

class LoopVerifyError(ValueError):
    """A loop program that would touch memory outside a buffer, or is malformed."""


def _check_range(where: str, buffer: Buffer, offset: int, extents, strides) -> None:
    if len(strides) != len(extents):
        raise LoopVerifyError(f"{where}: {len(strides)} strides for {len(extents)} loops")
    if any(n == 0 for n in extents):
        return
    low = offset + sum((n - 1) * s for n, s in zip(extents, strides) if s < 0)
    high = offset + sum((n - 1) * s for n, s in zip(extents, strides) if s > 0)
    if low < 0 or high >= buffer.size:
        raise LoopVerifyError(f"{where}: elements {low}..{high} of %{buffer.name}, which has "
                              f"{buffer.size}")


def verify(program: Program) -> Program:
    """Check that every access stays inside its buffer, so generated code cannot corrupt
    memory; returns the program unchanged."""
    buffers = {b.name: b for b in program.buffers}
    for kernel in program.kernels:
        if isinstance(kernel, MatmulKernel):
            shapes = {"a": (kernel.m, kernel.k), "b": (kernel.k, kernel.n), "c": (kernel.m, kernel.n)}
            for label, (rows, cols) in shapes.items():
                operand = getattr(kernel, label)
                _check_range(f"{kernel.name}.{label}", buffers[operand.buffer], operand.offset,
                             kernel.batch + (rows, cols),
                             operand.batch_strides + (operand.rows, operand.cols))
            if kernel.epilogue is not None:
                for e in kernel.epilogue.exprs:
                    if e.op == "load":
                        access = e.attr("access")
                        _check_range(f"{kernel.name} epilogue", buffers[access.buffer],
                                     access.offset, (kernel.m, kernel.n), access.strides)
            continue
        for number, stage in enumerate(kernel.stages):
            extents = kernel.outer + stage.shape
            where = f"{kernel.name} stage {number}"
            accesses = [e.attr("access") for e in stage.exprs if e.op == "load"]
            accesses += [s.access for s in stage.stores]
            for access in accesses:
                _check_range(where, buffers[access.buffer], access.offset, extents,
                             access.strides)
            for e in stage.exprs:
                if any(a >= len(stage.exprs) or a < 0 for a in e.args):
                    raise LoopVerifyError(f"{where}: an expression uses an undefined one")
    return program

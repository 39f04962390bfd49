"""Lowering: tensor IR -> loop IR, with the fusion decisions made on the way.

Ops are visited in order and each is placed where it costs least:
- layout ops on buffers become strided views (no copy); on kernel values, index maps;
- an elementwise op joins the kernel of an operand when it reads that operand element for
  element (same stage), reads a row's reduction result broadcast along the row (a later stage
  of the same kernel, as in softmax), or reads an earlier stage's value of the same row (kept
  in a row-sized scratch buffer);
- a reduction over a value's trailing dimensions becomes a per-row slot of the producing
  kernel (a vector accumulator); over other dimensions, an accumulating store;
- matmul, concatenate and slice_scatter get kernels of their own over buffers.
A value leaves its kernel (is stored to a buffer) only when something outside reads it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ir import DType, Function, Literal, Op, Value
from ir.loops import (Access, Buffer, Expr, LoopKernel, MatmulKernel, Operand2D, Program,
                      Reduction, Stage, Store, reduction_identity)
from ir.registry import opdef
from passes.memory import plan_arena
from passes.views import (LAYOUT_OPS, Home, InBuffer, InLiteral, InSlot, InStage, Mapped,
                          buffer_view, canonical, canonical_dims, contiguous_strides, index_map)

_REDUCE_KIND = {"reduce_sum": "add", "reduce_max": "max", "reduce_min": "min"}
# A matmul epilogue specializes the GEMM (about 0.2 s of compiling per distinct epilogue);
# below this many outputs (1 MiB of float32) the pass it saves costs less than ~50 us.
EPILOGUE_MIN_ELEMENTS = 1 << 18


@dataclass(eq=False)
class StageBuilder:
    shape: tuple[int, ...]
    exprs: list[Expr] = field(default_factory=list)
    stores: list[Store] = field(default_factory=list)
    reductions: list[Reduction] = field(default_factory=list)
    _memo: dict = field(default_factory=dict)

    def add(self, expr: Expr) -> int:
        if expr.op in ("load", "literal", "index", "slot"):
            key = (expr.op, expr.dtype, expr.attrs)
            if key not in self._memo:
                self._memo[key] = len(self.exprs)
                self.exprs.append(expr)
            return self._memo[key]
        self.exprs.append(expr)
        return len(self.exprs) - 1

    def freeze(self) -> Stage:
        return Stage(self.shape, tuple(self.exprs), tuple(self.stores), tuple(self.reductions))


@dataclass(eq=False)
class KernelBuilder:
    index: int
    outer: tuple[int, ...] = ()
    stages: list[StageBuilder] = field(default_factory=list)
    slots: list[tuple[str, DType]] = field(default_factory=list)
    computes: list[str] = field(default_factory=list)
    matmul: MatmulKernel | None = None

    def stage_index(self, stage: StageBuilder) -> int:
        return self.stages.index(stage)

    def freeze(self):
        if self.matmul is not None:
            return self.matmul
        return LoopKernel(f"k{self.index}", self.outer, tuple(self.slots),
                          tuple(s.freeze() for s in self.stages), tuple(self.computes))


class Lowering:
    def __init__(self, fn: Function):
        self.fn = fn
        self.buffers: dict[str, Buffer] = {}
        self.producer: dict[str, int] = {}        # buffer -> index of the kernel writing it
        self.readers: dict[str, set[int]] = {}    # buffer -> kernels reading it
        self.kernels: list[KernelBuilder] = []
        self.homes: dict[str, Home] = {}
        self.stored: dict[tuple[int, int], InBuffer] = {}   # (id(stage), expr) -> its buffer
        self.constants: list[tuple[str, Any]] = []
        self.handled: set[str] = set()            # ops lowered ahead of their turn
        self.uses: dict[str, set[str]] = {}       # value -> the ops (or "return") using it
        for op in fn.ops:
            for o in op.operands:
                if isinstance(o, Value):
                    self.uses.setdefault(o.name, set()).add(op.result.name)
        for r in fn.results:
            self.uses.setdefault(r.name, set()).add("return")

    # Buffers and kernels -----------------------------------------------------------------------

    def new_buffer(self, prefix: str, dtype: DType, shape: tuple[int, ...], kind: str) -> str:
        number = len(self.buffers)
        while f"{prefix}{number}" in self.buffers:
            number += 1
        name = f"{prefix}{number}"
        self.buffers[name] = Buffer(name, dtype, tuple(shape), kind)
        return name

    def new_kernel(self) -> KernelBuilder:
        kernel = KernelBuilder(len(self.kernels))
        self.kernels.append(kernel)
        return kernel

    def temp_view(self, dtype: DType, shape: tuple[int, ...]) -> InBuffer:
        name = self.new_buffer("t", dtype, shape, "temp")
        return InBuffer(name, 0, contiguous_strides(shape), shape)

    def access(self, view: InBuffer, kernel: KernelBuilder, shape: tuple[int, ...]) -> Access:
        """Read or write `view` (of tensor shape `shape`) over a kernel's iteration dims."""
        self.readers.setdefault(view.buffer, set()).add(kernel.index)
        strides = tuple(view.strides[d] for d in canonical_dims(shape))
        return Access(view.buffer, view.offset, strides)

    def write(self, stage: StageBuilder, kernel: KernelBuilder, expr: int, view: InBuffer,
              shape: tuple[int, ...], combine: str | None = None) -> None:
        stage.stores.append(Store(expr, self.access(view, kernel, shape), combine))
        self.producer.setdefault(view.buffer, kernel.index)

    # Materialisation ---------------------------------------------------------------------------

    def materialize(self, home: Home, dtype: DType) -> InBuffer | InLiteral:
        """Make a value readable from later kernels: its buffer view (or literal)."""
        if isinstance(home, (InBuffer, InLiteral)):
            return home
        if isinstance(home, Mapped):
            view = self.materialize(home.base, dtype)
            for op, in_shape, out_shape, attrs in home.chain:
                if isinstance(view, InLiteral):
                    view = InLiteral(view.literal, out_shape)
                    continue
                view = buffer_view(view, op, in_shape, out_shape, attrs) or self.copy(view, dtype)
            return view
        key = (id(home.stage), home.expr if isinstance(home, InStage) else -1 - home.slot)
        if key not in self.stored:
            view = self.temp_view(dtype, home.shape)
            stage, expr = self.stage_of_value(home)
            self.write(stage, home.kernel, expr, view, home.shape)
            self.stored[key] = view
        return self.stored[key]

    def stage_of_value(self, home: InStage | InSlot) -> tuple[StageBuilder, int]:
        """The stage (and expression) where the value can be stored."""
        if isinstance(home, InStage):
            return home.stage, home.expr
        kernel = home.kernel
        if kernel.stages[-1].shape != () or kernel.stages[-1] is home.stage:
            kernel.stages.append(StageBuilder(()))
        stage = kernel.stages[-1]
        dtype = kernel.slots[home.slot][1]
        return stage, stage.add(Expr("slot", (), dtype, (("slot", home.slot),)))

    def copy(self, source: InBuffer | InLiteral, dtype: DType) -> InBuffer:
        """A contiguous copy of a view or a broadcast literal, in a kernel of its own."""
        kernel = self.new_kernel()
        kernel.computes.append("copy")
        stage = StageBuilder(canonical(source.shape))
        kernel.stages.append(stage)
        expr = self.read(source, kernel, stage, dtype, source.shape)
        target = self.temp_view(dtype, source.shape)
        self.write(stage, kernel, expr, target, source.shape)
        return target

    def read(self, home: InBuffer | InLiteral, kernel: KernelBuilder, stage: StageBuilder,
             dtype: DType, shape: tuple[int, ...]) -> int:
        if isinstance(home, InLiteral):
            return stage.add(Expr("literal", (), dtype, (("value", home.literal.value),)))
        return stage.add(Expr("load", (), dtype, (("access", self.access(home, kernel, shape)),)))

    # Placement of elementwise ops --------------------------------------------------------------

    def resolve(self, operand) -> Home:
        if isinstance(operand, Literal):
            return InLiteral(operand, ())
        return self.homes[operand.name]

    def fusion_target(self, homes: list[Home], shape: tuple[int, ...]):
        """(kernel, stage) an elementwise op of `shape` can join, or None."""
        internal = [h for h in homes if isinstance(h, (InStage, InSlot, Mapped))]
        if not internal:
            return None
        kernel = max((h.base if isinstance(h, Mapped) else h).kernel.index for h in internal)
        kernel = self.kernels[kernel]
        full = canonical(shape)
        if full[:len(kernel.outer)] != kernel.outer:
            return None
        inner = full[len(kernel.outer):]
        first = 0
        for h in homes:
            kind = self.relation(h, kernel, full)
            if kind is None:
                return None
            if kind[0] == "same":
                first = max(first, kernel.stage_index(kind[1]))
            elif kind[0] == "row":
                first = max(first, kernel.stage_index(kind[1]) + 1)
        for stage in kernel.stages[first:]:
            if stage.shape == inner:
                return kernel, stage
        stage = StageBuilder(inner)
        kernel.stages.append(stage)
        return kernel, stage

    def relation(self, home: Home, kernel: KernelBuilder, full: tuple[int, ...]):
        """How an op of canonical shape `full` in `kernel` could read `home`; None if not."""
        if isinstance(home, InLiteral):
            return ("free",)
        if isinstance(home, InBuffer):
            producer = self.producer.get(home.buffer, -1)
            return ("free",) if producer < kernel.index else None
        base, src = (home.base, home.src) if isinstance(home, Mapped) else (home, None)
        if base.kernel is not kernel:
            return ("free",) if base.kernel.index < kernel.index else None
        base_rank = len(canonical(base.shape))
        if src is None:
            src = tuple(range(base_rank))
        if isinstance(base, InStage) and canonical(base.shape) == full \
                and src == tuple(range(len(full))):
            return ("same", base.stage)
        rank = len(kernel.outer)
        row = src == tuple(range(rank)) + (None,) * (len(full) - rank) and base_rank == rank
        per_row = isinstance(base, InSlot) or base.stage.shape == ()
        return ("row", base.stage) if row and per_row else None

    def operand_expr(self, home: Home, kernel: KernelBuilder, stage: StageBuilder,
                     dtype: DType, shape: tuple[int, ...]) -> int:
        base = home.base if isinstance(home, Mapped) else home
        if isinstance(base, (InStage, InSlot)) and base.kernel is kernel:
            if isinstance(base, InStage) and base.stage is stage:
                return base.expr
            if isinstance(base, InStage) and base.stage.shape == ():
                base = self.keep_per_row(base)
            if isinstance(base, InSlot):
                return stage.add(Expr("slot", (), dtype, (("slot", base.slot),)))
            return self.row_local(base, kernel, stage, dtype)
        return self.read(self.materialize(home, dtype), kernel, stage, dtype, shape)

    def keep_per_row(self, home: InStage) -> InSlot:
        """A value computed once per row, kept in a slot for the row's later stages."""
        key = (id(home.stage), home.expr, "slot")
        if key not in self.stored:
            kernel = home.kernel
            slot = len(kernel.slots)
            kernel.slots.append(("set", home.stage.exprs[home.expr].dtype))
            home.stage.reductions.append(Reduction("set", home.expr, slot))
            self.stored[key] = InSlot(kernel, home.stage, slot, home.shape)
        return self.stored[key]

    def row_local(self, home: InStage, kernel: KernelBuilder, stage: StageBuilder,
                  dtype: DType) -> int:
        """An earlier stage's value of this row: stored to a row-sized scratch, reloaded."""
        key = (id(home.stage), home.expr, "row")
        if key not in self.stored:
            view = self.temp_view(dtype, home.stage.shape)
            access = Access(view.buffer, 0, (0,) * len(kernel.outer) + view.strides)
            home.stage.stores.append(Store(home.expr, access))
            self.producer.setdefault(view.buffer, kernel.index)
            self.readers.setdefault(view.buffer, set()).add(kernel.index)
            self.stored[key] = InBuffer(view.buffer, 0, access.strides, ())
        access = Access(self.stored[key].buffer, 0, self.stored[key].strides)
        return stage.add(Expr("load", (), dtype, (("access", access),)))

    def elementwise(self, op: Op) -> None:
        homes = [self.resolve(o) for o in op.operands]
        target = self.fusion_target(homes, op.type.shape)
        if target is None:
            kernel = self.new_kernel()
            stage = StageBuilder(canonical(op.type.shape))
            kernel.stages.append(stage)
        else:
            kernel, stage = target
        args = []
        for o, h in zip(op.operands, homes):
            shape = op.type.shape if isinstance(o, Value) else ()
            args.append(self.operand_expr(h, kernel, stage, o.type.dtype, shape))
        if op.name == "iota":
            dims = canonical_dims(op.type.shape)
            axis = op.attrs["axis"]
            expr = (stage.add(Expr("index", (), op.type.dtype, (("dim", dims.index(axis)),)))
                    if axis in dims else stage.add(Expr("literal", (), op.type.dtype,
                                                        (("value", 0),))))
        else:
            attrs = tuple(sorted((k, v) for k, v in op.attrs.items()))
            expr = stage.add(Expr(op.name, tuple(args), op.type.dtype, attrs))
        kernel.computes.append(f"%{op.result.name} = {op.name}")
        self.homes[op.result.name] = InStage(kernel, stage, expr, op.type.shape)

    # Reductions --------------------------------------------------------------------------------

    def reduction(self, op: Op) -> None:
        (operand,) = op.operands
        in_shape = operand.type.shape
        reduced = [d for d in op.attrs["axes"] if in_shape[d] != 1]
        home = self.resolve(operand)
        if not reduced:
            self.layout_on(home, "reshape", in_shape, op.type.shape, {}, op)
            return
        full = canonical(in_shape)
        rank = len(canonical([n for d, n in enumerate(in_shape) if d not in reduced]))
        trailing = canonical_dims(in_shape)[rank:] == reduced
        kind = _REDUCE_KIND[op.name]
        placed = self.place_reduction_input(home, full, rank, trailing)
        kernel, stage, expr = placed
        kernel.computes.append(f"%{op.result.name} = {op.name}")
        if trailing and kernel.outer == full[:rank] and stage.shape == full[rank:]:
            slot = len(kernel.slots)
            kernel.slots.append((kind, op.type.dtype))
            stage.reductions.append(Reduction(kind, expr, slot))
            self.homes[op.result.name] = InSlot(kernel, stage, slot, op.type.shape)
            return
        out = self.temp_view(op.type.dtype, op.type.shape)
        init = StageBuilder(canonical(op.type.shape))
        identity = reduction_identity(kind, op.type.dtype)
        value = init.add(Expr("literal", (), op.type.dtype, (("value", identity),)))
        kernel.stages.insert(0, init)
        self.write(init, kernel, value, out, op.type.shape)
        kept = iter(out.strides[d] for d in canonical_dims(op.type.shape))
        strides = tuple(0 if d in reduced else next(kept) for d in canonical_dims(in_shape))
        stage.stores.append(Store(expr, Access(out.buffer, 0, strides), kind))
        self.homes[op.result.name] = out

    def place_reduction_input(self, home: Home, full, rank: int, trailing: bool):
        """The (kernel, stage, expr) holding the reduction's operand, resplitting a fresh
        single-stage kernel into rows when the reduction is over trailing dimensions."""
        base = home.base if isinstance(home, Mapped) else home
        if isinstance(base, InStage):
            kernel = base.kernel
            relation = self.relation(home, kernel, full)
            if relation is not None and relation[0] == "same":
                if trailing and kernel.outer == full[:rank] and base.stage.shape == full[rank:]:
                    return kernel, base.stage, base.expr
                if (kernel.outer == () and len(kernel.stages) == 1 and not kernel.slots
                        and trailing):
                    kernel.outer, base.stage.shape = full[:rank], full[rank:]
                    return kernel, base.stage, base.expr
                if kernel.outer == () and not trailing:
                    return kernel, base.stage, base.expr
        kernel = self.new_kernel()
        stage = StageBuilder(full[rank:] if trailing else full)
        kernel.outer = full[:rank] if trailing else ()
        kernel.stages.append(stage)
        dtype = self.dtype_of(home)
        value = self.materialize(home, dtype)
        expr = self.read(value, kernel, stage, dtype, value.shape)
        return kernel, stage, expr

    def dtype_of(self, home: Home) -> DType:
        if isinstance(home, InBuffer):
            return self.buffers[home.buffer].dtype
        if isinstance(home, InLiteral):
            return home.literal.dtype
        base = home.base if isinstance(home, Mapped) else home
        if isinstance(base, InSlot):
            return base.kernel.slots[base.slot][1]
        return base.stage.exprs[base.expr].dtype

    # Layout ops --------------------------------------------------------------------------------

    def layout_on(self, home: Home, name: str, in_shape, out_shape, attrs: dict, op: Op) -> None:
        if isinstance(home, InLiteral):
            self.homes[op.result.name] = InLiteral(home.literal, out_shape)
            return
        if isinstance(home, InBuffer):
            view = buffer_view(home, name, in_shape, out_shape, attrs)
            if view is None:
                view = buffer_view(self.copy(home, op.type.dtype), name, in_shape, out_shape, attrs)
            self.homes[op.result.name] = view
            return
        base, src, chain = ((home.base, home.src, home.chain) if isinstance(home, Mapped)
                            else (home, tuple(range(len(canonical(home.shape)))), ()))
        chain = chain + ((name, in_shape, out_shape, attrs),)
        mapped = index_map(src, name, in_shape, out_shape, attrs)
        if mapped is None:
            view = self.materialize(Mapped(base, src, out_shape, chain), op.type.dtype)
            self.homes[op.result.name] = view
        else:
            self.homes[op.result.name] = Mapped(base, mapped, out_shape, chain)

    # Kernels of their own ----------------------------------------------------------------------

    def matmul(self, op: Op) -> None:
        a, b = (self.materialize(self.resolve(o), op.type.dtype) for o in op.operands)
        a, b = (v if isinstance(v, InBuffer) else self.copy(v, op.type.dtype) for v in (a, b))
        out = self.temp_view(op.type.dtype, op.type.shape)
        kernel = self.new_kernel()
        self.producer[out.buffer] = kernel.index
        for v in (a, b):
            self.readers.setdefault(v.buffer, set()).add(kernel.index)
        batch = op.type.shape[:-2]
        m, k = a.shape[-2:]
        n = b.shape[-1]
        if not op.type.dtype.is_float:
            self.integer_matmul(kernel, op, a, b, out)
            return
        worth_it = not batch and m * n >= EPILOGUE_MIN_ELEMENTS
        region = self.epilogue_region(op) if worth_it else []
        epilogue = self.epilogue_stage(op, region, kernel, out) if region else None
        kernel.matmul = MatmulKernel(
            f"k{kernel.index}", op.type.dtype, batch, m, n, k,
            *(Operand2D(v.buffer, v.offset, v.strides[:-2], v.strides[-2], v.strides[-1])
              for v in (a, b, out)),
            (f"%{op.result.name} = matmul",) + tuple(f"%{o.result.name} = {o.name}"
                                                     for o in region), epilogue)
        self.homes[(region[-1] if region else op).result.name] = out

    def available(self, value) -> Home | None:
        """The home of an operand that is already readable by a new kernel, else None."""
        if isinstance(value, Literal):
            return InLiteral(value, ())
        home = self.homes.get(value.name)
        return home if isinstance(home, (InBuffer, InLiteral)) else None

    def epilogue_region(self, matmul: Op) -> list[Op]:
        """The elementwise ops after `matmul` that can run in its store: same shape, every
        operand the product, another op of the region, or something already in memory; and
        only the last op's value is used outside the region."""
        later = self.fn.ops[self.fn.ops.index(matmul) + 1:]
        inside, region = {matmul.result.name}, []
        for op in later:
            kind = opdef(op.name).kind
            if op.name in LAYOUT_OPS and self.available(op.operands[0]) is not None:
                (operand,) = op.operands
                home = self.available(operand)
                view = (InLiteral(home.literal, op.type.shape) if isinstance(home, InLiteral)
                        else buffer_view(home, op.name, operand.type.shape, op.type.shape,
                                         op.attrs))
                if view is not None:  # a view needing a copy kernel is left for its turn
                    self.homes[op.result.name] = view
                continue
            if kind != "elementwise" or op.type.shape != matmul.type.shape or not any(
                    isinstance(o, Value) and o.name in inside for o in op.operands):
                continue
            if all(isinstance(o, Value) and o.name in inside or self.available(o) is not None
                   for o in op.operands):
                region.append(op)
                inside.add(op.result.name)
        while region:
            names = {o.result.name for o in region}
            internal = (inside - {region[-1].result.name})
            if region[-1].type.dtype == matmul.type.dtype and all(
                    self.uses.get(v, set()) <= names for v in internal):
                break
            inside.discard(region.pop().result.name)
        self.handled.update(o.result.name for o in region)
        return region

    def epilogue_stage(self, matmul: Op, region: list[Op], kernel: KernelBuilder,
                       out: InBuffer) -> Stage:
        stage = StageBuilder(matmul.type.shape)
        exprs = {matmul.result.name: stage.add(Expr("acc", (), matmul.type.dtype))}
        for op in region:
            args = []
            for o in op.operands:
                if isinstance(o, Value) and o.name in exprs:
                    args.append(exprs[o.name])
                    continue
                home = self.available(o)
                if isinstance(home, InLiteral):
                    args.append(stage.add(Expr("literal", (), o.type.dtype,
                                               (("value", home.literal.value),))))
                else:
                    self.readers.setdefault(home.buffer, set()).add(kernel.index)
                    access = Access(home.buffer, home.offset, home.strides)
                    args.append(stage.add(Expr("load", (), o.type.dtype, (("access", access),))))
            attrs = tuple(sorted(op.attrs.items()))
            exprs[op.result.name] = stage.add(Expr(op.name, tuple(args), op.type.dtype, attrs))
        stage.stores.append(Store(exprs[region[-1].result.name],
                                  Access(out.buffer, 0, out.strides)))
        return stage.freeze()

    def integer_matmul(self, kernel: KernelBuilder, op: Op, a: InBuffer, b: InBuffer,
                       out: InBuffer) -> None:
        """Integer matmul (the GEMM is floating-point only): a dot product per element, as a
        row reduction over k with (batch..., i, j) as the outer loops."""
        dtype = op.type.dtype
        kernel.outer = op.type.shape
        kernel.computes.append(f"%{op.result.name} = matmul")
        dot = StageBuilder((a.shape[-1],))
        row = dot.add(Expr("load", (), dtype, (("access", Access(
            a.buffer, a.offset, a.strides[:-2] + (a.strides[-2], 0, a.strides[-1]))),)))
        column = dot.add(Expr("load", (), dtype, (("access", Access(
            b.buffer, b.offset, b.strides[:-2] + (0, b.strides[-1], b.strides[-2]))),)))
        dot.reductions.append(Reduction("add", dot.add(Expr("mul", (row, column), dtype)), 0))
        kernel.slots.append(("add", dtype))
        store = StageBuilder(())
        value = store.add(Expr("slot", (), dtype, (("slot", 0),)))
        store.stores.append(Store(value, Access(out.buffer, 0, out.strides)))
        kernel.stages += [dot, store]
        self.homes[op.result.name] = out

    def placement(self, op: Op, pieces) -> None:
        """concatenate / slice_scatter: zero-fill if needed, then copy each piece into place."""
        out = self.temp_view(op.type.dtype, op.type.shape)
        kernel = self.new_kernel()
        kernel.computes.append(f"%{op.result.name} = {op.name}")
        if op.name == "slice_scatter":
            zero = StageBuilder(canonical(op.type.shape))
            kernel.stages.append(zero)
            value = zero.add(Expr("literal", (), op.type.dtype, (("value", 0),)))
            self.write(zero, kernel, value, out, op.type.shape)
        for operand, offset, steps in pieces:
            source = self.materialize(self.resolve(operand), op.type.dtype)
            stage = StageBuilder(canonical(operand.type.shape))
            kernel.stages.append(stage)
            expr = self.read(source, kernel, stage, op.type.dtype, operand.type.shape)
            target = InBuffer(out.buffer, sum(o * s for o, s in zip(offset, out.strides)),
                              tuple(s * st for s, st in zip(out.strides, steps)),
                              operand.type.shape)
            self.write(stage, kernel, expr, target, operand.type.shape)
        self.homes[op.result.name] = out

    # Driver ------------------------------------------------------------------------------------

    def lower_op(self, op: Op) -> None:
        kind = opdef(op.name).kind
        if op.result.name in self.handled:  # already part of a matmul's epilogue
            return
        if op.name == "stop_gradient":  # only autodiff cares; the value is its operand's
            self.homes[op.result.name] = self.resolve(op.operands[0])
        elif op.name == "constant":
            name = self.new_buffer("c", op.type.dtype, op.type.shape, "const")
            self.constants.append((name, op.attrs["value"].array))
            self.homes[op.result.name] = InBuffer(name, 0, contiguous_strides(op.type.shape),
                                                  op.type.shape)
        elif op.name in LAYOUT_OPS:
            (operand,) = op.operands
            self.layout_on(self.resolve(operand), op.name, operand.type.shape, op.type.shape,
                           dict(op.attrs), op)
        elif kind == "elementwise" or op.name == "iota":
            self.elementwise(op)
        elif kind == "reduce":
            self.reduction(op)
        elif op.name == "matmul":
            self.matmul(op)
        elif op.name == "concatenate":
            axis, at, pieces = op.attrs["axis"], 0, []
            for o in op.operands:
                pieces.append((o, tuple(at if d == axis else 0 for d in range(op.type.ndim)),
                               (1,) * op.type.ndim))
                at += o.type.shape[axis]
            self.placement(op, pieces)
        elif op.name == "slice_scatter":
            self.placement(op, [(op.operands[0], op.attrs["starts"], op.attrs["steps"])])
        else:
            raise NotImplementedError(f"no lowering for op {op.name!r}")

    def output(self, value: Value, claimed: set[str]) -> str:
        home = self.homes[value.name]
        dtype = value.type.dtype
        if (isinstance(home, InBuffer) and self.buffers[home.buffer].kind == "temp"
                and home.buffer not in claimed and home.offset == 0 and home.is_contiguous()
                and self.buffers[home.buffer].shape == value.type.shape
                and home.buffer in self.producer):
            return home.buffer
        target = InBuffer(self.new_buffer("out", dtype, value.type.shape, "temp"), 0,
                          contiguous_strides(value.type.shape), value.type.shape)
        if isinstance(home, (InStage, InSlot)):
            stage, expr = self.stage_of_value(home)
            self.write(stage, home.kernel, expr, target, value.type.shape)
            return target.buffer
        source = self.materialize(home, dtype)
        kernel = self.new_kernel()
        kernel.computes.append("copy")
        stage = StageBuilder(canonical(value.type.shape))
        kernel.stages.append(stage)
        expr = self.read(source, kernel, stage, dtype, value.type.shape)
        self.write(stage, kernel, expr, target, value.type.shape)
        return target.buffer


def lower(fn: Function) -> Program:
    """The loop program computing `fn`: kernels in order over planned buffers."""
    state = Lowering(fn)
    inputs = []
    for p in fn.params:
        state.buffers[p.name] = Buffer(p.name, p.type.dtype, p.type.shape, "input")
        state.homes[p.name] = InBuffer(p.name, 0, contiguous_strides(p.type.shape), p.type.shape)
        inputs.append(p.name)
    for op in fn.ops:
        state.lower_op(op)
    claimed: set[str] = set()
    outputs = []
    for r in fn.results:
        name = state.output(r, claimed)
        claimed.add(name)
        outputs.append(name)
    buffers = {n: (Buffer(b.name, b.dtype, b.shape, "output") if n in claimed else b)
               for n, b in state.buffers.items()}
    kernels = tuple(k.freeze() for k in state.kernels)
    planned, scratch = plan_arena(buffers, state.producer, state.readers)
    return Program(fn.name, tuple(planned.values()), kernels, tuple(inputs), tuple(outputs),
                   tuple(state.constants), scratch)

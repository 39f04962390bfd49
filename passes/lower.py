"""Lowering: tensor IR -> loop IR, with the fusion decisions made on the way.

Ops are visited in order and each is placed where it costs least:
- layout ops on buffers become strided views (no copy); on kernel values, index maps;
- an elementwise op joins the kernel of an operand when it reads that operand element for
  element (same stage), reads a row's reduction result broadcast along the row (a later stage
  of the same kernel, as in softmax), or reads an earlier stage's value of the same row (kept
  in a row-sized scratch buffer); an op whose operands are all in memory joins the latest
  kernel already reading one of them (sibling fusion: the buffer is read once);
- a reduction over a value's trailing dimensions becomes a per-row slot of the producing
  kernel (a vector accumulator); over other dimensions, an accumulating store;
- matmul, concatenate and slice_scatter get kernels of their own over buffers.
A value leaves its kernel (is stored to a buffer) only when something outside reads it.
"""
from __future__ import annotations

from typing import Any

from ir import DType, Function, Literal, Op, Value
from ir.loops import Access, Buffer, Expr, Program, Reduction, Store, reduction_identity
from ir.registry import opdef
from passes.loop_builders import KernelBuilder, StageBuilder
from passes.lower_matmul import lower_matmul
from passes.memory import plan_arena
from passes.views import (LAYOUT_OPS, Home, InBuffer, InLiteral, InSlot, InStage, Mapped,
                          buffer_view, canonical, canonical_dims, contiguous_strides, index_map)

_REDUCE_KIND = {"reduce_sum": "add", "reduce_max": "max", "reduce_min": "min"}


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
                view = (buffer_view(view, op, in_shape, out_shape, attrs)
                        or buffer_view(self.copy(view, dtype), op, in_shape, out_shape, attrs))
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
        if internal:
            index = max((h.base if isinstance(h, Mapped) else h).kernel.index for h in internal)
        else:
            index = self.sibling(homes)
            if index is None:
                return None
        kernel = self.kernels[index]
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

    def sibling(self, homes: list[Home]) -> int | None:
        """The latest loop kernel already reading one of these buffers after all of them are
        written: an op of memory operands joins it, so the buffer is read once (the forward
        and derivative passes of sigmoid both read the matmul's output)."""
        buffers = [h.buffer for h in homes if isinstance(h, InBuffer)]
        written = max((self.producer.get(b, -1) for b in buffers), default=-1)
        readers = [k for b in buffers for k in self.readers.get(b, ())
                   if k > written and self.kernels[k].matmul is None]
        return max(readers, default=None)

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
            lower_matmul(self, op)
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

"""Lowering of matmul: the GEMM call, its epilogue (the elementwise ops that follow it and
run on each row strip of C once the GEMM has finished it), and integer matmul as a loop
kernel."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ir import Literal, Op, Value
from ir.loops import Access, Expr, MatmulKernel, Operand2D, Reduction, Stage, Store
from ir.registry import opdef
from passes.loop_builders import KernelBuilder, StageBuilder
from passes.views import LAYOUT_OPS, Home, InBuffer, InLiteral, buffer_view

if TYPE_CHECKING:
    from passes.lower import Lowering

# An epilogue saves a pass over C: 9 us of 233 for an SGD update after a 784x128 @ 128x256
# product, 13 us of the MLP step's 680. Below this many elements (256 KiB of float32) C stays
# in L2 for that pass, and what fusing saves was not measured to outweigh the call. (Tried at
# 1 << 15 with relu's gradient mask recomputed from its output, so that bias + relu ran in
# the MLP's forward epilogues: the step's two relu kernels went, its bias-gradient kernels
# grew by about as much: 634-649 us a step against 633-635.)
EPILOGUE_MIN_ELEMENTS = 1 << 16


def lower_matmul(state: Lowering, op: Op) -> None:
    a, b = (state.materialize(state.resolve(o), op.type.dtype) for o in op.operands)
    a, b = (v if isinstance(v, InBuffer) else state.copy(v, op.type.dtype) for v in (a, b))
    out = state.temp_view(op.type.dtype, op.type.shape)
    kernel = state.new_kernel()
    state.producer[out.buffer] = kernel.index
    for v in (a, b):
        state.readers.setdefault(v.buffer, set()).add(kernel.index)
    batch = op.type.shape[:-2]
    m, k = a.shape[-2:]
    n = b.shape[-1]
    if not op.type.dtype.is_float:
        _integer_matmul(state, kernel, op, a, b, out)
        return
    # not batched: `finish` reads operands at (row, col) alone, one record for every batch
    worth_it = not batch and m * n >= EPILOGUE_MIN_ELEMENTS
    region = _epilogue_region(state, op) if worth_it else []
    epilogue = _epilogue_stage(state, op, region, kernel, out) if region else None
    kernel.matmul = MatmulKernel(
        f"k{kernel.index}", op.type.dtype, batch, m, n, k,
        *(Operand2D(v.buffer, v.offset, v.strides[:-2], v.strides[-2], v.strides[-1])
          for v in (a, b, out)),
        (f"%{op.result.name} = matmul",) + tuple(f"%{o.result.name} = {o.name}"
                                                 for o in region), epilogue)
    state.homes[(region[-1] if region else op).result.name] = out


def _available(state: Lowering, value) -> Home | None:
    """The home of an operand that is already readable by a new kernel, else None."""
    if isinstance(value, Literal):
        return InLiteral(value, ())
    home = state.homes.get(value.name)
    return home if isinstance(home, (InBuffer, InLiteral)) else None


def _epilogue_region(state: Lowering, matmul: Op) -> list[Op]:
    """The elementwise ops after `matmul` that can run on its output: same shape, every
    operand the product, another op of the region, or something already in memory; and
    only the last op's value is used outside the region."""
    later = state.fn.ops[state.fn.ops.index(matmul) + 1:]
    inside, region = {matmul.result.name}, []
    for op in later:
        kind = opdef(op.name).kind
        if op.name in LAYOUT_OPS and _available(state, op.operands[0]) is not None:
            (operand,) = op.operands
            home = _available(state, operand)
            view = (InLiteral(home.literal, op.type.shape) if isinstance(home, InLiteral)
                    else buffer_view(home, op.name, operand.type.shape, op.type.shape,
                                     op.attrs))
            if view is not None:  # a view needing a copy kernel is left for its turn
                state.homes[op.result.name] = view
            continue
        if kind != "elementwise" or op.type.shape != matmul.type.shape or not any(
                isinstance(o, Value) and o.name in inside for o in op.operands):
            continue
        if all(isinstance(o, Value) and o.name in inside or _available(state, o) is not None
               for o in op.operands):
            region.append(op)
            inside.add(op.result.name)
    while region:
        names = {o.result.name for o in region}
        internal = (inside - {region[-1].result.name})
        if region[-1].type.dtype == matmul.type.dtype and all(
                state.uses.get(v, set()) <= names for v in internal):
            break
        inside.discard(region.pop().result.name)
    state.handled.update(o.result.name for o in region)
    return region


def _epilogue_stage(state: Lowering, matmul: Op, region: list[Op], kernel: KernelBuilder,
                    out: InBuffer) -> Stage:
    stage = StageBuilder(matmul.type.shape)
    exprs = {matmul.result.name: stage.add(Expr("acc", (), matmul.type.dtype))}
    for op in region:
        args = []
        for o in op.operands:
            if isinstance(o, Value) and o.name in exprs:
                args.append(exprs[o.name])
                continue
            home = _available(state, o)
            if isinstance(home, InLiteral):
                args.append(stage.add(Expr("literal", (), o.type.dtype,
                                           (("value", home.literal.value),))))
            else:
                state.readers.setdefault(home.buffer, set()).add(kernel.index)
                access = Access(home.buffer, home.offset, home.strides)
                args.append(stage.add(Expr("load", (), o.type.dtype, (("access", access),))))
        attrs = tuple(sorted(op.attrs.items()))
        exprs[op.result.name] = stage.add(Expr(op.name, tuple(args), op.type.dtype, attrs))
    stage.stores.append(Store(exprs[region[-1].result.name],
                              Access(out.buffer, 0, out.strides)))
    return stage.freeze()


def _integer_matmul(state: Lowering, kernel: KernelBuilder, op: Op, a: InBuffer,
                    b: InBuffer, out: InBuffer) -> None:
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
    state.homes[op.result.name] = out

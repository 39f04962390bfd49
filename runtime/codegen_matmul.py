"""Matmul kernels in LLVM IR: the call of the generated GEMM per batch element, and the
epilogue callback that runs a kernel's fused elementwise ops inside the GEMM's tile store."""
from __future__ import annotations

from typing import Sequence

from llvmlite import ir

from ir import DType
from ir.loops import Access, MatmulKernel
from runtime.codegen import (I32, I64, PTR, VOID, c64, counted_loop, emit_op, memory_type,
                             splat)
from runtime.elementwise import constant, lanes_of, llvm_type, type_suffix


GEMM_TYPE = ir.FunctionType(VOID, [PTR, I64, I64, PTR, I64, I64, PTR, I64, I64, I64, I64,
                                   PTR, PTR])


def emit_matmul_kernel(module: ir.Module, kernel: MatmulKernel, gemm_name: str) -> ir.Function:
    """Call the GEMM once per batch element, at that element's offsets; the epilogue's
    operands go to it as an array of pointers."""
    names = kernel.buffers + ("gemm_scratch",)
    fn = ir.Function(module, ir.FunctionType(VOID, [PTR] * len(names)), kernel.name)
    fn.linkage = "internal"
    gemm = module.globals.get(gemm_name) or ir.Function(module, GEMM_TYPE, gemm_name)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    pointers = dict(zip(names, fn.args))
    element = llvm_type(kernel.dtype)
    operands = kernel.epilogue_buffers
    epi = ir.Constant(PTR, None)
    if kernel.epilogue is not None:  # [M, N, operand pointers...]: shapes stay run-time
        epi = b.alloca(ir.ArrayType(I64, 2 + len(operands)))
        epi.type = PTR  # an opaque pointer, like every other pointer here
        b.store(c64(kernel.m), epi)
        b.store(c64(kernel.n), b.gep(epi, [c64(1)], source_etype=I64))
        for position, name in enumerate(operands):
            b.store(pointers[name], b.gep(epi, [c64(2 + position)], source_etype=PTR))

    def at(operand, index):
        offset = c64(operand.offset)
        for i, stride in zip(index, operand.batch_strides):
            offset = b.add(offset, b.mul(i, c64(stride)))
        return b.gep(pointers[operand.buffer], [offset], source_etype=element)

    def batch(index: list[ir.Value], extents: Sequence[int]) -> None:
        if extents:
            with counted_loop(b, 0, extents[0]) as i:
                batch(index + [i], extents[1:])
            return
        a, bb, c = kernel.a, kernel.b, kernel.c
        b.call(gemm, [at(a, index), c64(a.rows), c64(a.cols), at(bb, index), c64(bb.rows),
                      c64(bb.cols), at(c, index), c64(c.rows), c64(kernel.m), c64(kernel.n),
                      c64(kernel.k), pointers["gemm_scratch"], epi])

    batch([], kernel.batch)
    b.ret_void()
    return fn


def epilogue_emitter(kernel: MatmulKernel, dtypes: dict[str, DType]):
    """The GEMM's epilogue callback for a kernel: its epilogue stage on one vector of a final
    tile. Tiles at the edges carry lanes and rows past N and M; loads there are masked or
    clamped so that they never leave their buffers. M and N come at run time (in `epi`), so
    one compiled GEMM serves every shape with the same epilogue."""
    stage = kernel.epilogue
    operands = kernel.epilogue_buffers

    def emit(b: ir.IRBuilder, acc: ir.Value, row: ir.Value, col: ir.Value, epi: ir.Value):
        lanes = lanes_of(acc)
        m = b.load(epi, typ=I64)
        n = b.load(b.gep(epi, [c64(1)], source_etype=I64), typ=I64)
        pointers = {name: b.load(b.gep(epi, [c64(2 + i)], source_etype=PTR), typ=PTR)
                    for i, name in enumerate(operands)}
        row = b.select(b.icmp_signed("<", row, m), row, b.sub(m, c64(1)))
        values: list = []
        for e in stage.exprs:
            if e.op == "acc":
                values.append(acc)
            elif e.op == "literal":
                values.append(constant(e.dtype, e.attr("value"), lanes))
            elif e.op == "load":
                access = e.attr("access")
                values.append(_edge_safe_load(b, access, pointers[access.buffer],
                                              dtypes[access.buffer], row, col, n, lanes))
            else:
                values.append(emit_op(b, stage, e, values))
        return values[stage.stores[0].expr]

    return emit


def _edge_safe_load(b: ir.IRBuilder, access: Access, pointer: ir.Value, dtype: DType,
                    row: ir.Value, col: ir.Value, n: ir.Value, lanes: int) -> ir.Value:
    row_stride, col_stride = access.strides
    memory = memory_type(dtype)
    base = b.add(c64(access.offset), b.mul(row, c64(row_stride)))
    if col_stride == 0 or lanes == 1:
        index = base if col_stride == 0 else b.add(base, b.mul(col, c64(col_stride)))
        value = b.load(b.gep(pointer, [index], source_etype=memory), typ=memory)
    elif col_stride == 1:
        vector = ir.VectorType(memory, lanes)
        lane_numbers = ir.Constant(ir.VectorType(I64, lanes), list(range(lanes)))
        columns = b.add(splat(b, col, lanes), lane_numbers)
        mask = b.icmp_signed("<", columns, splat(b, n, lanes))
        address = b.gep(pointer, [b.add(base, col)], source_etype=memory)
        name = f"llvm.masked.load.{type_suffix(vector)}.p0"
        load = b.module.globals.get(name) or ir.Function(
            b.module, ir.FunctionType(vector, [PTR, I32, mask.type, vector]), name)
        value = b.call(load, [address, ir.Constant(I32, dtype.itemsize), mask,
                              ir.Constant(vector, None)])
    else:
        value = ir.Constant(ir.VectorType(memory, lanes), ir.Undefined)
        for lane in range(lanes):
            column = b.add(col, c64(lane))
            column = b.select(b.icmp_signed("<", column, n), column, b.sub(n, c64(1)))
            index = b.add(base, b.mul(column, c64(col_stride)))
            scalar = b.load(b.gep(pointer, [index], source_etype=memory), typ=memory)
            value = b.insert_element(value, scalar, ir.Constant(I32, lane))
    if dtype.is_bool:
        value = b.icmp_unsigned("!=", value, ir.Constant(value.type, None))
    if lanes > 1 and not isinstance(value.type, ir.VectorType):
        value = splat(b, value, lanes)
    return value

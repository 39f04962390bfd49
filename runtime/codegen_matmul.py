"""Matmul kernels in LLVM IR: the call of the generated GEMM per batch element, and the
epilogue callback that runs a kernel's fused elementwise ops on each row strip of C the GEMM
has finished (the record the GEMM passes it is described in runtime/gemm_ir.py)."""
from __future__ import annotations

from typing import Sequence

from llvmlite import ir

from ir import DType
from ir.loops import Access, MatmulKernel, Stage, stage_lanes
from runtime.codegen import (I32, I64, PTR, VOID, c64, counted_loop, emit_op, masked_load,
                             masked_store, memory_type, splat)
from runtime.elementwise import constant, lanes_of, llvm_type
from runtime.engine import host
from runtime.gemm_ir import FINISH_TYPE, lanes_below

GEMM_TYPE = ir.FunctionType(VOID, [PTR, I64, I64, PTR, I64, I64, PTR, I64, I64, I64, I64,
                                   PTR, PTR])


def emit_matmul_kernel(module: ir.Module, kernel: MatmulKernel, gemm_name: str,
                       dtypes: dict[str, DType]) -> ir.Function:
    """Call the GEMM once per batch element, at that element's offsets. With an epilogue,
    the GEMM gets the record [finish, operand pointers...]."""
    names = kernel.buffers + ("gemm_scratch",)
    fn = ir.Function(module, ir.FunctionType(VOID, [PTR] * len(names)), kernel.name)
    fn.linkage = "internal"
    gemm = module.globals.get(gemm_name) or ir.Function(module, GEMM_TYPE, gemm_name)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    pointers = dict(zip(names, fn.args))
    element = llvm_type(kernel.dtype)
    operands = kernel.epilogue_buffers
    epi = ir.Constant(PTR, None)
    if kernel.epilogue is not None:
        epi = b.alloca(ir.ArrayType(PTR, 1 + len(operands)))
        epi.type = PTR  # an opaque pointer, like every other pointer here
        b.store(emit_finish(module, kernel, dtypes), epi)
        for position, name in enumerate(operands):
            b.store(pointers[name], b.gep(epi, [c64(1 + position)], source_etype=PTR))

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


def emit_finish(module: ir.Module, kernel: MatmulKernel, dtypes: dict[str, DType]
                ) -> ir.Function:
    """The kernel's epilogue as the GEMM's `finish` callback: its stage on each element of a
    finished strip of C, in place, a vector at a time; a row's last cols % lanes elements are
    one masked vector, whose operands are read only at those columns."""
    fn = ir.Function(module, FINISH_TYPE, f"{kernel.name}.finish")
    fn.linkage = "internal"
    strip, rs, row0, col0, rows, cols, epi = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    lanes = stage_lanes(kernel.epilogue, host().vector_bytes)
    element, vector = llvm_type(kernel.dtype), llvm_type(kernel.dtype, lanes)
    pointers = {name: b.load(b.gep(epi, [c64(1 + i)], source_etype=PTR), typ=PTR)
                for i, name in enumerate(kernel.epilogue_buffers)}
    full = b.sub(cols, b.srem(cols, c64(lanes)))

    def finish(row: ir.Value, c_row: ir.Value, j: ir.Value, valid: ir.Value | None) -> None:
        at = b.gep(c_row, [j], source_etype=element)
        mask = None if valid is None else lanes_below(b, valid, lanes)
        acc = (b.load(at, typ=vector, align=kernel.dtype.itemsize) if mask is None else
               masked_load(b, at, vector, mask, kernel.dtype.itemsize))
        values = _epilogue_values(b, kernel.epilogue, acc, pointers, dtypes, row,
                                  b.add(col0, j), valid)
        if mask is None:
            b.store(values, at, align=kernel.dtype.itemsize)
        else:
            masked_store(b, values, at, mask, kernel.dtype.itemsize)

    with counted_loop(b, 0, rows) as i:
        row = b.add(row0, i)
        c_row = b.gep(strip, [b.mul(i, rs)], source_etype=element)
        with counted_loop(b, 0, full, lanes) as j:
            finish(row, c_row, j, None)
        with b.if_then(b.icmp_signed("<", full, cols)):
            finish(row, c_row, full, b.sub(cols, full))
    b.ret_void()
    return fn


def _epilogue_values(b: ir.IRBuilder, stage: Stage, acc: ir.Value, pointers: dict,
                     dtypes: dict[str, DType], row: ir.Value, col: ir.Value,
                     valid: ir.Value | None) -> ir.Value:
    """The epilogue stage's value at C[row, col:+lanes] given the product `acc` there."""
    lanes = lanes_of(acc)
    values: list = []
    for e in stage.exprs:
        if e.op == "acc":
            values.append(acc)
        elif e.op == "literal":
            values.append(constant(e.dtype, e.attr("value"), lanes))
        elif e.op == "load":
            access = e.attr("access")
            values.append(_operand_load(b, access, pointers[access.buffer],
                                        dtypes[access.buffer], row, col, lanes, valid))
        else:
            values.append(emit_op(b, stage, e, values))
    return values[stage.stores[0].expr]


def _operand_load(b: ir.IRBuilder, access: Access, pointer: ir.Value, dtype: DType,
                  row: ir.Value, col: ir.Value, lanes: int, valid: ir.Value | None
                  ) -> ir.Value:
    """The vector of an epilogue operand at C[row, col:+lanes]; with `valid`, only that many
    lanes are read."""
    row_stride, col_stride = access.strides
    memory = memory_type(dtype)
    base = b.add(c64(access.offset), b.mul(row, c64(row_stride)))
    if col_stride == 0:
        value = b.load(b.gep(pointer, [base], source_etype=memory), typ=memory)
    elif col_stride == 1:
        vector = ir.VectorType(memory, lanes)
        address = b.gep(pointer, [b.add(base, col)], source_etype=memory)
        value = (b.load(address, typ=vector, align=dtype.itemsize) if valid is None else
                 masked_load(b, address, vector, lanes_below(b, valid, lanes), dtype.itemsize))
    else:
        value = ir.Constant(ir.VectorType(memory, lanes), ir.Undefined)
        last = None if valid is None else b.sub(valid, c64(1))
        for lane in range(lanes):
            offset = c64(lane) if last is None else b.select(
                b.icmp_signed("<", c64(lane), valid), c64(lane), last)
            index = b.add(base, b.mul(b.add(col, offset), c64(col_stride)))
            scalar = b.load(b.gep(pointer, [index], source_etype=memory), typ=memory)
            value = b.insert_element(value, scalar, ir.Constant(I32, lane))
    if dtype.is_bool:
        value = b.icmp_unsigned("!=", value, ir.Constant(value.type, None))
    if not isinstance(value.type, ir.VectorType):
        value = splat(b, value, lanes)
    return value


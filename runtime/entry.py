"""One LLVM module per program: its kernels and the entry that runs them in order.

The entry is a Python builtin taking the numpy arrays themselves (PERF-NOTES 4: ~0.1 us a
call, where ctypes costs 0.4-2 us and `.ctypes.data` 2.4 us per array).
"""
from __future__ import annotations

from llvmlite import ir

from ir.loops import MatmulKernel, Program
from runtime.codegen import I8, I64, PTR, VOID, c64, emit_loop_kernel
from runtime.codegen_matmul import emit_matmul_kernel
from runtime.engine import host


def entry_items(program: Program) -> list[str]:
    """The order of the arrays in the tuple the entry receives."""
    consts = [name for name, _ in program.constants]
    return list(program.inputs) + list(program.outputs) + consts + ["arena", "gemm_scratch"]


def emit_program(program: Program, gemm_names: dict[str, str], array_data_offset: int) -> str:
    """The LLVM module for a program; `gemm_names` names the GEMM each matmul kernel calls.

    Its `entry` is a METH_FASTCALL builtin, `PyObject *entry(self, PyObject *const *args,
    Py_ssize_t nargs)`: the arrays come in `entry_items` order and the entry reads their data
    pointers itself. It releases the GIL while the kernels run and returns None.
    """
    module = ir.Module(program.name)
    module.triple = host().triple
    entry = ir.Function(module, ir.FunctionType(PTR, [PTR, PTR, I64]), "entry")
    save = ir.Function(module, ir.FunctionType(PTR, []), "PyEval_SaveThread")
    restore = ir.Function(module, ir.FunctionType(VOID, [PTR]), "PyEval_RestoreThread")
    incref = ir.Function(module, ir.FunctionType(VOID, [PTR]), "Py_IncRef")
    none = ir.GlobalVariable(module, I8, "_Py_NoneStruct")
    b = ir.IRBuilder(entry.append_basic_block("entry"))
    data: dict[str, ir.Value] = {}
    for position, name in enumerate(entry_items(program)):
        item = b.load(b.gep(entry.args[1], [c64(position)], source_etype=PTR), typ=PTR)
        data[name] = b.load(b.gep(item, [c64(array_data_offset)], source_etype=I8), typ=PTR)
    for buffer in program.buffers:
        if buffer.kind == "temp":
            data[buffer.name] = b.gep(data["arena"], [c64(buffer.offset)], source_etype=I8)
    thread_state = b.call(save, [])
    for kernel in program.kernels:
        if isinstance(kernel, MatmulKernel):
            fn = emit_matmul_kernel(module, kernel, gemm_names[kernel.name])
            args = [data[n] for n in kernel.buffers] + [data["gemm_scratch"]]
        else:
            fn = emit_loop_kernel(module, kernel, program)
            args = [data[n] for n in kernel.buffers]
        b.call(fn, args)
    b.call(restore, [thread_state])
    b.call(incref, [none])
    b.ret(none)
    return str(module)

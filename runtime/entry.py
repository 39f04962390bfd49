"""One LLVM module per program: its kernels and the Python entry that runs them.

The entry is a METH_FASTCALL builtin called with the program's input arrays and nothing else:
everything about a call that is known at compile time is decided then, so a call costs about
a tenth of a microsecond of dispatch (PERF-NOTES 4; ROADMAP: microsecond dispatch). It
1. checks that each argument is an ndarray with the parameter's dtype (the very descr object),
   shape, C-contiguous and aligned; otherwise it returns NotImplemented and the caller converts
   the arguments and calls again;
2. allocates the outputs with numpy's PyArray_Empty, or takes back an output array of one of
   its last two calls that nobody else holds any more (its reference count is 1: only the
   entry's list refers to it, so no view, buffer or caller can see it) and that is still the
   writeable array it made. Fresh memory is what made a plain loop slow: freeing and
   allocating 256 KB outputs each call had glibc return the heap top to the system and
   fault it in again (the seed's example 2 at n=256: 583 us a call instead of 420). Two
   generations also serve `params = step(params, ...)`, whose outputs are its next inputs;
3. releases the GIL, takes the program's scratch (a spin lock: the arena and GEMM workspace are
   shared by all calls of one executable), runs the kernels in order, and returns the outputs
   as a tuple.
Addresses that differ between processes reach the code as symbols (runtime/pyabi.py) or
through `self`, the tuple `entry_self` describes, never as constants in the code.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir

from ir.loops import MatmulKernel, Program
from runtime import pyabi
from runtime.codegen import I8, I32, I64, PTR, VOID, c64, emit_loop_kernel
from runtime.codegen_matmul import emit_matmul_kernel
from runtime.engine import host

ENTRY = "entry"
GENERATIONS = 2  # output arrays kept per output for reuse (see 2. above)
KERNEL_TICKS = "kernel_ticks"  # with profile=True: [kernels x i64] time-stamp counts


def entry_self(program: Program, scratch: list[np.ndarray]) -> tuple:
    """The entry's `self`: the input and output dtypes (descr objects), the list of recent
    output arrays (GENERATIONS per output), then the constants' arrays and the `scratch`
    arrays (arena, GEMM workspace), whose data the kernels use."""
    dtypes = [np.dtype(program.buffer(n).dtype.numpy) for n in program.inputs + program.outputs]
    recent: list = [None] * (GENERATIONS * len(program.outputs))
    return (*dtypes, recent, *(np.ascontiguousarray(a) for _, a in program.constants),
            *scratch)


class _EntryBuilder:
    """The entry function's blocks: argument checks, output allocation, the locked run."""

    def __init__(self, module: ir.Module, program: Program):
        self.module = module
        self.program = program
        self.fn = ir.Function(module, ir.FunctionType(PTR, [PTR, PTR, I64]), ENTRY)
        self.self_tuple, self.args, self.nargs = self.fn.args
        self.b = ir.IRBuilder(self.fn.append_basic_block("check_count"))
        self.not_implemented = self.fn.append_basic_block("not_implemented")
        b = ir.IRBuilder(self.not_implemented)
        result = self.extern_global("_Py_NotImplementedStruct")
        b.call(self.extern("Py_IncRef", VOID, [PTR]), [result])
        b.ret(result)

    def extern(self, name: str, ret: ir.Type, params: list[ir.Type]) -> ir.Function:
        existing = self.module.globals.get(name)
        return existing or ir.Function(self.module, ir.FunctionType(ret, params), name)

    def extern_global(self, name: str) -> ir.GlobalVariable:
        return self.module.globals.get(name) or ir.GlobalVariable(self.module, I8, name)

    def field(self, obj: ir.Value, offset: int, ty: ir.Type) -> ir.Value:
        return self.b.load(self.b.gep(obj, [c64(offset)], source_etype=I8), typ=ty)

    def self_item(self, index: int) -> ir.Value:
        return self.field(self.self_tuple, pyabi.TUPLE_ITEMS + 8 * index, PTR)

    def require(self, condition: ir.Value, name: str) -> None:
        """Go on in a new block when `condition` holds, else return NotImplemented."""
        block = self.fn.append_basic_block(name)
        self.b.cbranch(condition, block, self.not_implemented)
        self.b.position_at_end(block)

    def check_inputs(self) -> list[ir.Value]:
        """The inputs' data pointers, after checking every argument."""
        b, program = self.b, self.program
        self.require(b.icmp_unsigned("==", self.nargs, c64(len(program.inputs))), "check_types")
        array_type = self.extern_global("PyArray_Type")
        data = []
        for position, name in enumerate(program.inputs):
            shape = program.buffer(name).shape
            obj = b.load(b.gep(self.args, [c64(position)], source_etype=PTR), typ=PTR)
            obj_type = self.field(obj, pyabi.HEADER - 8, PTR)
            self.require(b.icmp_unsigned("==", obj_type, array_type), f"check_{name}")
            self.require(self.is_array_like(obj, self.self_item(position), shape,
                                            pyabi.C_CONTIGUOUS | pyabi.ALIGNED),
                         f"checked_{name}")
            data.append(self.field(obj, pyabi.ARRAY_DATA, PTR))
        return data

    def is_array_like(self, obj: ir.Value, descr: ir.Value, shape: tuple[int, ...],
                      flags: int) -> ir.Value:
        """i1: the ndarray `obj` has exactly this dtype object and shape, and all of `flags`."""
        b = self.b
        ok = b.and_(b.icmp_unsigned("==", self.field(obj, pyabi.ARRAY_DESCR, PTR), descr),
                    b.icmp_signed("==", self.field(obj, pyabi.ARRAY_NDIM, I32),
                                  ir.Constant(I32, len(shape))))
        required = ir.Constant(I32, flags)
        has = b.and_(self.field(obj, pyabi.ARRAY_FLAGS, I32), required)
        ok = b.and_(ok, b.icmp_unsigned("==", has, required))
        dims = self.field(obj, pyabi.ARRAY_DIMS, PTR)
        for axis, size in enumerate(shape):
            dim = b.load(b.gep(dims, [c64(axis)], source_etype=I64), typ=I64)
            ok = b.and_(ok, b.icmp_signed("==", dim, c64(size)))
        return ok

    def reusable(self, obj: ir.Value, descr: ir.Value, shape: tuple[int, ...]) -> ir.Value:
        """i1: `obj`, an item of the list of recent outputs, can be this output again: an
        array only that list refers to, unchanged since the entry made it."""
        b = self.b
        start = b.block
        check = self.fn.append_basic_block("check_recent")
        done = self.fn.append_basic_block("recent_checked")
        b.cbranch(b.icmp_unsigned("==", obj, self.extern_global("_Py_NoneStruct")), done, check)
        b.position_at_end(check)
        alone = b.icmp_signed("==", self.field(obj, pyabi.REFCOUNT, I64), c64(1))
        flags = pyabi.C_CONTIGUOUS | pyabi.ALIGNED | pyabi.OWNDATA | pyabi.WRITEABLE
        ok = b.and_(alone, self.is_array_like(obj, descr, shape, flags))
        checked = b.block
        b.branch(done)
        b.position_at_end(done)
        result = b.phi(ir.IntType(1))
        result.add_incoming(ir.Constant(ir.IntType(1), 0), start)
        result.add_incoming(ok, checked)
        return result

    def allocate_outputs(self) -> tuple[ir.Value, list[ir.Value]]:
        """A new tuple of the output arrays (recent ones taken back, else fresh) and their
        data pointers; NULL (MemoryError set) when numpy cannot allocate."""
        b, program = self.b, self.program
        tuple_new = self.extern("PyTuple_New", PTR, [I64])
        set_item = self.extern("PyTuple_SetItem", I32, [PTR, I64, PTR])
        list_item = self.extern("PyList_GetItem", PTR, [PTR, I64])
        set_list_item = self.extern("PyList_SetItem", I32, [PTR, I64, PTR])
        empty = self.extern("PyArray_Empty", PTR, [I32, PTR, PTR, I32])
        incref = self.extern("Py_IncRef", VOID, [PTR])
        decref = self.extern("Py_DecRef", VOID, [PTR])
        recent = self.self_item(len(program.inputs) + len(program.outputs))
        outputs = b.call(tuple_new, [c64(len(program.outputs))])
        self._unless_null(outputs, "allocate", [])
        data = []
        for position, name in enumerate(program.outputs):
            shape = program.buffer(name).shape
            descr = self.self_item(len(program.inputs) + position)
            first_slot = GENERATIONS * position
            slots = [b.call(list_item, [recent, c64(first_slot + g)]) for g in range(GENERATIONS)]
            takes = [self.reusable(slot, descr, shape) for slot in slots]
            taken = slots[-1]
            for slot, take in zip(reversed(slots[:-1]), reversed(takes[:-1])):
                taken = b.select(take, slot, taken)
            any_taken = takes[0]
            for take in takes[1:]:
                any_taken = b.or_(any_taken, take)
            reuse_block = self.fn.append_basic_block(f"reuse_{name}")
            fresh_block = self.fn.append_basic_block(f"allocate_{name}")
            ready = self.fn.append_basic_block(f"output_{name}")
            b.cbranch(any_taken, reuse_block, fresh_block)
            b.position_at_end(reuse_block)
            b.call(incref, [taken])  # the tuple's reference; the list keeps its own
            b.branch(ready)
            b.position_at_end(fresh_block)
            dims = ir.GlobalVariable(self.module, ir.ArrayType(I64, len(shape)), f"shape_{name}")
            dims.global_constant, dims.linkage = True, "private"
            dims.initializer = ir.Constant(ir.ArrayType(I64, len(shape)), list(shape))
            b.call(incref, [descr])  # PyArray_Empty steals it
            fresh = b.call(empty, [ir.Constant(I32, len(shape)), dims, descr, ir.Constant(I32, 0)])
            self._unless_null(fresh, f"allocated_{name}", [(decref, outputs)])
            # The list keeps a reference in the first empty slot, else in the last one, whose
            # array is held elsewhere (it loses only the list's reference) or was changed
            # beyond reuse (it is freed).
            none = self.extern_global("_Py_NoneStruct")
            slot = c64(first_slot + GENERATIONS - 1)
            for g in reversed(range(GENERATIONS - 1)):
                slot = b.select(b.icmp_unsigned("==", slots[g], none), c64(first_slot + g), slot)
            b.call(incref, [fresh])  # one reference for the list, one for the tuple
            b.call(set_list_item, [recent, slot, fresh])
            fresh_end = b.block
            b.branch(ready)
            b.position_at_end(ready)
            array = b.phi(PTR)
            array.add_incoming(taken, reuse_block)
            array.add_incoming(fresh, fresh_end)
            b.call(set_item, [outputs, c64(position), array])
            data.append(self.field(array, pyabi.ARRAY_DATA, PTR))
        return outputs, data

    def _unless_null(self, value: ir.Value, name: str, cleanup: list) -> None:
        failed = self.fn.append_basic_block(f"{name}_failed")
        block = self.fn.append_basic_block(name)
        self.b.cbranch(self.b.icmp_unsigned("==", value, ir.Constant(PTR, None)), failed, block)
        with self.b.goto_block(failed):
            for fn, arg in cleanup:
                self.b.call(fn, [arg])
            self.b.ret(ir.Constant(PTR, None))
        self.b.position_at_end(block)

    def run_locked(self, run) -> None:
        """`run()` emits the kernel calls; around them the GIL is released and, when the
        program has scratch, a spin lock held (waiting threads yield the CPU, not the GIL)."""
        b = self.b
        save = self.extern("PyEval_SaveThread", PTR, [])
        restore = self.extern("PyEval_RestoreThread", VOID, [PTR])
        thread_state = b.call(save, [])
        if self.program.scratch_bytes or any(isinstance(k, MatmulKernel)
                                             for k in self.program.kernels):
            busy = ir.GlobalVariable(self.module, I32, "scratch_busy")
            busy.linkage, busy.initializer = "internal", ir.Constant(I32, 0)
            acquire = self.fn.append_basic_block("acquire")
            wait = self.fn.append_basic_block("wait")
            locked = self.fn.append_basic_block("locked")
            b.branch(acquire)
            b.position_at_end(acquire)
            swapped = b.cmpxchg(busy, ir.Constant(I32, 0), ir.Constant(I32, 1),
                                "acquire", "monotonic")
            b.cbranch(b.extract_value(swapped, 1), locked, wait)
            b.position_at_end(wait)
            b.call(self.extern("sched_yield", I32, []), [])
            b.branch(acquire)
            b.position_at_end(locked)
            run()
            b.store_atomic(ir.Constant(I32, 0), busy, "release", 4)
        else:
            run()
        b.call(restore, [thread_state])


def _tick_counters(module: ir.Module, count: int):
    """The KERNEL_TICKS array, and a function that emits a call between two counter reads
    and adds their difference to the array's element `index`."""
    array_type = ir.ArrayType(I64, count)
    counters = ir.GlobalVariable(module, array_type, KERNEL_TICKS)
    counters.initializer = ir.Constant(array_type, [0] * count)
    counters.type = PTR  # an opaque pointer, like every other pointer here
    read = ir.Function(module, ir.FunctionType(I64, []), "llvm.readcyclecounter")

    def timed(b: ir.IRBuilder, index: int, emit_call) -> None:
        start = b.call(read, [])
        emit_call()
        elapsed = b.sub(b.call(read, []), start)
        slot = b.gep(counters, [c64(0), c64(index)], source_etype=array_type)
        b.store(b.add(b.load(slot, typ=I64), elapsed), slot)
    return timed


def emit_program(program: Program, gemm_names: dict[str, str], profile: bool = False) -> str:
    """The LLVM module for a program: its kernels and the `entry` builtin (module docstring);
    `gemm_names` names the GEMM each matmul kernel calls. With `profile`, each kernel call
    adds its time-stamp-counter ticks to the global array KERNEL_TICKS."""
    module = ir.Module(program.name)
    module.triple = host().triple
    entry = _EntryBuilder(module, program)
    data = dict(zip(program.inputs, entry.check_inputs()))
    outputs, output_data = entry.allocate_outputs()
    data.update(zip(program.outputs, output_data))
    fixed = [name for name, _ in program.constants] + ["arena", "gemm_scratch"]
    first_fixed = len(program.inputs) + len(program.outputs) + 1  # after the recent outputs
    for index, name in enumerate(fixed):
        data[name] = entry.field(entry.self_item(first_fixed + index), pyabi.ARRAY_DATA, PTR)
    for buffer in program.buffers:
        if buffer.kind == "temp":
            data[buffer.name] = entry.b.gep(data["arena"], [c64(buffer.offset)], source_etype=I8)

    ticks = _tick_counters(module, len(program.kernels)) if profile else None
    dtypes = {buffer.name: buffer.dtype for buffer in program.buffers}

    def run() -> None:
        for index, kernel in enumerate(program.kernels):
            if isinstance(kernel, MatmulKernel):
                fn = emit_matmul_kernel(module, kernel, gemm_names[kernel.name], dtypes)
                args = [data[n] for n in kernel.buffers] + [data["gemm_scratch"]]
            else:
                fn = emit_loop_kernel(module, kernel, program)
                args = [data[n] for n in kernel.buffers]
            if ticks is None:
                entry.b.call(fn, args)
            else:
                ticks(entry.b, index, lambda: entry.b.call(fn, args))

    entry.run_locked(run)
    entry.b.ret(outputs)
    return str(module)

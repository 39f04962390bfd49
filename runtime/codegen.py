"""Loop kernels in LLVM IR, and the small helpers every emitter shares.

Each stage's innermost loop is explicitly vectorized (`<W x T>`, W from the host's widest
vector register and the stage's widest element) and unrolled UNROLL times as one
`<UNROLL*W x T>` body; a reduction accumulates into a vector that wide. LLVM splits that wide
body into UNROLL registers op by op, so the copies' long dependency chains (exp, a division)
interleave; whole copies one after the other fill the out-of-order scheduler with operations
waiting on the same chain (sigmoid(a*b+c)*2: 5.8 -> 7.0 Gelem/s on Zen5, where copies did nothing;
sum(sigmoid(a*b+c)) 1M, which had one copy per accumulator: 203 -> 181 us). A `<W x T>` loop
and one masked `<W x T>` body for the last n % W elements finish (a scalar tail where an access
is strided along the row): rows of 10 classes cost one vector each, not ten scalar exps (the
MLP's cross-entropy: 11.2 -> 6.1 us). A temp holding one row is read and written whole even
there (`whole_tail`).

On x86, a kernel too big for the L3 streams the output a non-reducing stage fills contiguously:
the main loop's stores are non-temporal (`!nontemporal`, MOVNTPS), so the output's lines are
neither read for ownership nor written back later from a cache they would not stay in anyway
(`streaming_bytes` says how big, with measurements). Those stores need aligned vectors, so a
scalar lead-in runs until the output pointer reaches a 64-byte boundary, the `<W x T>` loop
and the scalar tail finish after it, and the kernel ends with an `sfence` so the streamed data
is visible to other threads once it returns.
"""
from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Iterator, Sequence

from llvmlite import ir

from ir import DType, i64
from ir.loops import (ARENA_ALIGN, Access, Expr, LoopKernel, MatmulKernel, Program, Stage,
                      Store, reduction_identity, stage_lanes)
from runtime.elementwise import (EMITTERS, Ctx, constant, intrinsic, lanes_of, llvm_type,
                                 type_suffix)
from runtime.engine import host
from runtime.gemm import cache_sizes

I8, I32, I64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
PTR = ir.PointerType()
VOID = ir.VoidType()
UNROLL = 4            # vector registers per main-loop iteration
LINE = 64             # bytes: streamed stores start at this alignment


def identity(kind: str, dtype: DType, lanes: int = 1) -> ir.Constant:
    return constant(dtype, reduction_identity(kind, dtype), lanes)


def memory_type(dtype: DType) -> ir.Type:
    return I8 if dtype.is_bool else llvm_type(dtype)


def c64(value: int) -> ir.Constant:
    return ir.Constant(I64, value)


def i64_value(value: int | ir.Value) -> ir.Value:
    return c64(value) if isinstance(value, int) else value


@contextmanager
def counted_loop(b: ir.IRBuilder, start: int | ir.Value, stop: int | ir.Value,
                 step: int = 1) -> Iterator[ir.Value]:
    """for i in range(start, stop, step), bounds constant or i64 values; yields i (an i64 phi)."""
    pre = b.block
    head, body, done = (b.append_basic_block(n) for n in ("head", "body", "done"))
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I64, "i")
    i.add_incoming(i64_value(start), pre)
    b.cbranch(b.icmp_signed("<", i, i64_value(stop)), body, done)
    b.position_at_end(body)
    yield i
    i.add_incoming(b.add(i, c64(step), flags=("nsw",)), b.block)
    b.branch(head)
    b.position_at_end(done)


def splat(b: ir.IRBuilder, value: ir.Value, lanes: int) -> ir.Value:
    if lanes == 1:
        return value
    vector = ir.VectorType(value.type, lanes)
    one = b.insert_element(ir.Constant(vector, ir.Undefined), value, ir.Constant(I32, 0))
    return b.shuffle_vector(one, ir.Constant(vector, ir.Undefined),
                            ir.Constant(ir.VectorType(I32, lanes), None))


def combine(b: ir.IRBuilder, kind: str, dtype: DType, x: ir.Value, y: ir.Value) -> ir.Value:
    if kind == "add":
        return b.fadd(x, y) if dtype.is_float else b.add(x, y)
    if dtype.is_float:
        return intrinsic(b, "maximum" if kind == "max" else "minimum", [x, y])
    return b.select(b.icmp_signed(">" if kind == "max" else "<", x, y), x, y)


def horizontal(b: ir.IRBuilder, kind: str, dtype: DType, vector: ir.Value) -> ir.Value:
    """Reduce the lanes of a vector to one scalar.

    A float max or min halves the vector log2(W) times with `combine` (same result: the
    NaN-propagating max is associative): x86 expands llvm.vector.reduce.fmaximum into a
    serial chain of scalar steps, each checking NaN and the sign of zero, ~110 instructions
    for 16 lanes. Short rows, reduced once each, wait on that chain (whole_tail)."""
    if lanes_of(vector) == 1:
        return vector
    if kind == "add" and dtype.is_float:
        return intrinsic(b, "vector.reduce.fadd", [constant(dtype, -0.0), vector],
                         ret=vector.type.element, overload=vector.type, fastmath=("reassoc",))
    if dtype.is_float:
        lanes = lanes_of(vector)
        assert lanes & (lanes - 1) == 0, "halving needs a power-of-two lane count"
        while lanes > 1:
            lanes //= 2
            halves = [b.shuffle_vector(vector, vector, ir.Constant(
                ir.VectorType(I32, lanes), list(range(first, first + lanes))))
                for first in (0, lanes)]
            vector = combine(b, kind, dtype, *halves)
        return b.extract_element(vector, ir.Constant(I32, 0))
    name = {"add": "add", "max": "smax", "min": "smin"}[kind]
    return intrinsic(b, f"vector.reduce.{name}", [vector], ret=vector.type.element,
                     overload=vector.type)


def masked_load(b: ir.IRBuilder, pointer: ir.Value, vector: ir.VectorType, mask: ir.Value,
                align: int) -> ir.Value:
    """The lanes of `mask` loaded, the others 1 (harmless in any op: no division by zero)."""
    one = ir.Constant(vector, [ir.Constant(vector.element, 1)] * vector.count)
    return intrinsic(b, "masked.load", [pointer, ir.Constant(I32, align), mask, one], ret=vector)


def masked_store(b: ir.IRBuilder, value: ir.Value, pointer: ir.Value, mask: ir.Value,
                 align: int) -> None:
    """Store the lanes of `mask`. A constant mask of one lane is a scalar store: LLVM 22's x86
    backend turns a masked store of a truncated vector with such a mask into a store of the
    untruncated element (i64 -> i32 wrote 8 bytes, past the end of the last row's output: a
    heap overflow; llvm/llvm-project#179489, fixed after 22.1)."""
    if isinstance(mask, ir.Constant):
        active = [lane for lane, bit in enumerate(mask.constant) if bit.constant]
        if len(active) == 1:
            (lane,) = active
            element = b.extract_element(value, ir.Constant(I32, lane))
            b.store(element, b.gep(pointer, [c64(lane)], source_etype=value.type.element),
                    align=align)
            return
    name = f"llvm.masked.store.{type_suffix(value.type)}.p0"
    fn = b.module.globals.get(name) or ir.Function(
        b.module, ir.FunctionType(VOID, [value.type, PTR, I32, mask.type]), name)
    b.call(fn, [value, pointer, ir.Constant(I32, align), mask])


def emit_op(b: ir.IRBuilder, stage: Stage, e: Expr, values: list) -> ir.Value:
    """An elementwise op of a stage's body, on the values of its arguments."""
    in_dtypes = [stage.exprs[a].dtype for a in e.args]
    literals = {k: stage.exprs[a].attr("value") for k, a in enumerate(e.args)
                if stage.exprs[a].op == "literal"}
    return EMITTERS[e.op](Ctx(b, in_dtypes, e.dtype, dict(e.attrs), literals),
                          [values[a] for a in e.args])


class StageEmitter:
    """Emits one stage's loop nest inside a kernel function."""

    def __init__(self, b: ir.IRBuilder, stage: Stage, pointers: dict[str, ir.Value],
                 dtypes: dict[str, DType], slots: list[ir.Value], slot_types: list,
                 stream: Store | None, temp_sizes: dict[str, int]):
        self.b, self.stage, self.pointers, self.dtypes = b, stage, pointers, dtypes
        self.slots, self.slot_types, self.stream = slots, slot_types, stream
        self.temp_sizes = temp_sizes
        self.lanes = stage_lanes(stage, host().vector_bytes)

    def emit(self, outer: list[ir.Value]) -> None:
        b, stage = self.b, self.stage
        if not stage.shape:
            self.body(outer, 1)
            return
        widths = (1, self.lanes, self.lanes * UNROLL) if self.lanes > 1 else (1,)
        self.accs = {}  # (slot, lanes) -> the accumulator of the bodies that many lanes wide
        for r in stage.reductions:
            dtype = self.slot_types[r.slot][1]
            for width in widths:
                self.accs[(r.slot, width)] = self.alloca(identity(r.kind, dtype, width))
        self.nest(outer, list(stage.shape))
        for r in stage.reductions:
            dtype = self.slot_types[r.slot][1]
            total = b.load(self.accs[(r.slot, 1)])
            for width in widths[1:]:
                part = horizontal(b, r.kind, dtype, b.load(self.accs[(r.slot, width)]))
                total = combine(b, r.kind, dtype, total, part)
            b.store(total, self.slots[r.slot])

    def alloca(self, init: ir.Constant) -> ir.Value:
        with self.b.goto_entry_block():
            slot = self.b.alloca(init.type)
        self.b.store(init, slot)
        return slot

    def nest(self, index: list[ir.Value], extents: list[int]) -> None:
        if len(extents) > 1:
            with counted_loop(self.b, 0, extents[0]) as i:
                self.nest(index + [i], extents[1:])
            return
        n, lanes = extents[0], self.lanes
        if self.stream is not None:
            self.streamed_row(index, n)
            return
        block = lanes * UNROLL
        main_end = n - n % block if lanes > 1 else 0
        vector_end = n - n % lanes if lanes > 1 else 0
        self.loop(index, 0, main_end, block)
        self.loop(index, main_end, vector_end, lanes)
        if vector_end < n and self.masks_fit():
            self.body(index + [c64(vector_end)], lanes, tail=n - vector_end)
        else:
            self.loop(index, vector_end, n, 1)

    def masks_fit(self) -> bool:
        """Whether a row's tail can run as one masked vector: every load contiguous or
        broadcast along the row, every store contiguous or accumulating into one element."""
        loads = [e.attr("access") for e in self.stage.exprs if e.op == "load"]
        return (self.lanes > 1 and all(a.row_step in (0, 1) for a in loads)
                and all(s.access.row_step == 1 or (s.access.row_step == 0 and s.combine)
                        for s in self.stage.stores))

    def streamed_row(self, index: list[ir.Value], n: int) -> None:
        """The innermost loop of a streaming stage: scalars up to the output's first 64-byte
        boundary (it depends on where the caller's array starts), streamed whole blocks, then
        the usual <W x T> loop and scalar tail. n > LINE, so the lead-in never passes the end."""
        b, lanes = self.b, self.lanes
        itemsize = self.dtypes[self.stream.access.buffer].itemsize
        start = b.ptrtoint(self.address(self.stream.access, index + [c64(0)]), I64)
        lead = b.lshr(b.and_(b.sub(c64(0), start), c64(LINE - 1)), c64(itemsize.bit_length() - 1))
        main_end = b.sub(c64(n), b.urem(b.sub(c64(n), lead), c64(lanes * UNROLL)))
        vector_end = b.sub(c64(n), b.urem(b.sub(c64(n), main_end), c64(lanes)))
        self.loop(index, 0, lead, 1)
        self.loop(index, lead, main_end, lanes * UNROLL, streaming=True)
        self.loop(index, main_end, vector_end, lanes)
        self.loop(index, vector_end, n, 1)

    def loop(self, index: list[ir.Value], start: int | ir.Value, stop: int | ir.Value,
             step: int, streaming: bool = False) -> None:
        """The innermost dimension from start to stop, `step` elements per iteration: one
        element, one vector, or a main-loop block of UNROLL vectors."""
        if isinstance(start, int) and isinstance(stop, int) and start >= stop:
            return
        with counted_loop(self.b, start, stop, step) as j:
            self.body(index + [j], step, streaming)

    def address(self, access: Access, index: list[ir.Value]) -> ir.Value:
        b = self.b
        offset = c64(access.offset)
        for i, stride in zip(index, access.strides):
            if stride:
                offset = b.add(offset, b.mul(i, c64(stride), flags=("nsw",)), flags=("nsw",))
        dtype = self.dtypes[access.buffer]
        return b.gep(self.pointers[access.buffer], [offset], source_etype=memory_type(dtype))

    def whole_tail(self, access: Access) -> bool:
        """Whether a row's masked tail may load or store `access` as one whole vector: a temp
        of exactly the row's length, indexed by the row position alone. The tail's vector
        starts at a multiple of its size (at most ARENA_ALIGN bytes), so it stays in bytes the
        temp owns (ir/loops.py). Its lanes past the row hold any bits, stale arena bytes
        included, which no emitted op can trap on (float ops do not trap, integer division
        is not an op, casts saturate), and which masked stores and reductions drop.

        Why: a later stage's load of the row then reads the stored vector from the store
        buffer, where after a masked store it waited for the store to retire, once per stage
        of every row. The MLP's cross-entropy (128 rows of 10, four stages): 5.4 -> 3.5 us
        with the horizontal max as a tree, 6.0 with neither (the tree alone: no change)."""
        assert host().vector_bytes <= ARENA_ALIGN
        return (self.temp_sizes.get(access.buffer) == self.stage.shape[-1]
                and access.offset == 0 and access.row_step == 1 and not any(access.strides[:-1]))

    def load(self, access: Access, index: list[ir.Value], lanes: int,
             mask: ir.Value | None = None) -> ir.Value:
        b, dtype = self.b, self.dtypes[access.buffer]
        step = access.row_step
        if mask is not None and self.whole_tail(access):
            mask = None
        if lanes == 1 or step == 0:
            value = b.load(self.address(access, index), typ=memory_type(dtype))
            value = b.icmp_unsigned("!=", value, ir.Constant(I8, 0)) if dtype.is_bool else value
            return splat(b, value, lanes)
        if step == 1:
            vector = ir.VectorType(memory_type(dtype), lanes)
            pointer = self.address(access, index)
            value = (b.load(pointer, typ=vector, align=dtype.itemsize) if mask is None else
                     masked_load(b, pointer, vector, mask, dtype.itemsize))
            if dtype.is_bool:
                value = b.icmp_unsigned("!=", value, ir.Constant(vector, [ir.Constant(I8, 0)] * lanes))
            return value
        value = ir.Constant(llvm_type(dtype, lanes), ir.Undefined)
        for lane in range(lanes):
            at = index[:-1] + [b.add(index[-1], c64(lane))]
            scalar = self.load(access, at, 1)
            value = b.insert_element(value, scalar, ir.Constant(I32, lane))
        return value

    def store(self, access: Access, index: list[ir.Value], value: ir.Value, dtype: DType,
              streaming: bool = False, mask: ir.Value | None = None) -> None:
        """Store a value at index; `streaming`: a non-temporal store of a block that starts at
        a 64-byte boundary (the streamed loop's), so each of its registers is aligned; `mask`:
        only those lanes (a contiguous store)."""
        b = self.b
        lanes = lanes_of(value)
        step = access.row_step
        if dtype.is_bool:
            value = b.zext(value, ir.VectorType(I8, lanes) if lanes > 1 else I8)
        if mask is not None and lanes > 1 and not self.whole_tail(access):
            masked_store(b, value, self.address(access, index), mask, dtype.itemsize)
            return
        if streaming:
            stored = b.store(value, self.address(access, index),
                             align=min(LINE, lanes * dtype.itemsize))
            stored.set_metadata("nontemporal", b.module.add_metadata([ir.Constant(I32, 1)]))
            return
        if lanes == 1 or step == 1:
            b.store(value, self.address(access, index), align=dtype.itemsize)
            return
        for lane in range(lanes):
            at = index[:-1] + [b.add(index[-1], c64(lane))]
            b.store(b.extract_element(value, ir.Constant(I32, lane)), self.address(access, at))

    def expression(self, e: Expr, values: list, index: list[ir.Value], lanes: int,
                   mask: ir.Value | None):
        b = self.b
        if e.op == "load":
            return self.load(e.attr("access"), index, lanes, mask)
        if e.op == "literal":
            return constant(e.dtype, e.attr("value"), lanes)
        if e.op == "slot":
            return splat(b, b.load(self.slots[e.attr("slot")]), lanes)
        if e.op == "index":
            dim = e.attr("dim")
            i = splat(b, index[dim], lanes)
            if lanes > 1 and dim == len(index) - 1:
                i = b.add(i, ir.Constant(ir.VectorType(I64, lanes), list(range(lanes))))
            return EMITTERS["cast"](Ctx(b, [i64], e.dtype, {}, {}), [i])
        return emit_op(b, self.stage, e, values)

    def body(self, index: list[ir.Value], lanes: int, streaming: bool = False,
             tail: int | None = None) -> None:
        """One step of the row: `lanes` elements from index; with `tail`, only the first
        `tail` of them (masked loads and stores but `whole_tail`'s, identities into
        reductions)."""
        b, stage = self.b, self.stage
        mask = None if tail is None else ir.Constant(
            ir.VectorType(ir.IntType(1), lanes), [lane < tail for lane in range(lanes)])

        def active(value: ir.Value, kind: str, dtype: DType) -> ir.Value:
            return value if mask is None else b.select(mask, value, identity(kind, dtype, lanes))

        values: list = []
        for e in stage.exprs:
            values.append(self.expression(e, values, index, lanes, mask))
        for r in stage.reductions:
            value = values[r.expr]
            if r.kind == "set":
                b.store(value, self.slots[r.slot])
                continue
            dtype = self.slot_types[r.slot][1]
            acc = self.accs[(r.slot, lanes)]
            b.store(combine(b, r.kind, dtype, b.load(acc), active(value, r.kind, dtype)), acc)
        for s in stage.stores:
            value, dtype = values[s.expr], stage.exprs[s.expr].dtype
            step = s.access.row_step
            if s.combine is not None:
                if lanes > 1 and step == 0:
                    value = horizontal(b, s.combine, dtype, active(value, s.combine, dtype))
                old = self.load(s.access, index, lanes_of(value), mask)
                value = combine(b, s.combine, dtype, old, value)
            self.store(s.access, index, value, dtype, streaming,
                       mask if step == 1 else None)


def is_x86() -> bool:
    return host().triple.split("-")[0] in ("x86_64", "i386", "i686")


@functools.cache
def streaming_bytes() -> int:
    """Kernels whose buffers add up to at least this many bytes (the L3's size: then they
    cannot all stay in it) stream their outputs. Below it, normal stores win for the next
    reader, which finds the output in L3, and often outright: they complete in L3 while a
    streamed store goes to DRAM. Zen5, 32 MB L3, fresh outputs, 1 thread, best-of times in us,
    normal -> streamed stores:
        sigmoid(a*b+c)*2, 16 / 24 / 32 / 64 MB moved: 185 -> 169, 367 -> 296, 583 -> 445,
        1458 -> 1057; with a numpy pass reading the output after it: 268 -> 297 (worse),
        554 -> 522, 896 -> 796, 2254 -> 1858.
        x*2, 8 / 12 / 16 / 32 MB: 67 -> 95, 109 -> 143, 179 -> 206 (worse), 552 -> 490."""
    return cache_sizes()[2]


def kernel_bytes(kernel: LoopKernel, program: Program) -> int:
    """The bytes of every buffer the kernel reads or writes."""
    return sum(program.buffer(name).nbytes for name in kernel.buffers)


def loaded_buffers(program: Program) -> set[str]:
    """Buffers some kernel of the program reads (a GEMM: all of its operands)."""
    names: set[str] = set()
    for kernel in program.kernels:
        if isinstance(kernel, MatmulKernel):
            names.update(kernel.buffers)
        else:
            names.update(e.attr("access").buffer for stage in kernel.stages
                         for e in stage.exprs if e.op == "load")
    return names


def streamed_store(stage: Stage, big_kernel: bool, loaded: set[str]) -> Store | None:
    """The stage's store to stream, or None. Only on x86 (the fence), in a kernel of at least
    streaming_bytes(), for a stage that does not reduce and stores once, overwriting unit-stride
    rows long enough for a lead-in and a block, into a buffer that no kernel of the program
    reads (its next reader is the caller)."""
    lanes = stage_lanes(stage, host().vector_bytes)
    if not (is_x86() and big_kernel) or stage.reductions or len(stage.stores) != 1 or lanes == 1:
        return None
    (store,) = stage.stores
    if (store.combine is not None or store.access.strides[-1] != 1
            or stage.shape[-1] < LINE + 2 * lanes * UNROLL or store.access.buffer in loaded):
        return None
    return store


def fence(b: ir.IRBuilder) -> None:
    """x86 sfence: the streamed stores, weakly ordered, become visible before any later store
    (another thread may read the outputs as soon as the kernel returns)."""
    name = "llvm.x86.sse.sfence"
    fn = b.module.globals.get(name) or ir.Function(b.module, ir.FunctionType(VOID, []), name)
    b.call(fn, [])


def emit_loop_kernel(module: ir.Module, kernel: LoopKernel, program: Program) -> ir.Function:
    names = kernel.buffers
    fn = ir.Function(module, ir.FunctionType(VOID, [PTR] * len(names)), kernel.name)
    fn.linkage = "internal"
    for arg, name in zip(fn.args, names):
        arg.name = name
        arg.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    pointers = dict(zip(names, fn.args))
    dtypes = {name: program.buffer(name).dtype for name in names}
    temp_sizes = {name: program.buffer(name).size for name in names
                  if program.buffer(name).kind == "temp"}
    slot_types = list(kernel.slots)
    slots = [b.alloca(llvm_type(dtype)) for _, dtype in slot_types]
    big, loaded = kernel_bytes(kernel, program) >= streaming_bytes(), loaded_buffers(program)
    streams = [streamed_store(stage, big, loaded) for stage in kernel.stages]

    def row(index: list[ir.Value], extents: Sequence[int]) -> None:
        if extents:
            with counted_loop(b, 0, extents[0]) as i:
                row(index + [i], extents[1:])
            return
        for slot, (kind, dtype) in zip(slots, slot_types):
            b.store(identity(kind, dtype), slot)
        for stage, stream in zip(kernel.stages, streams):
            StageEmitter(b, stage, pointers, dtypes, slots, slot_types, stream,
                         temp_sizes).emit(index)

    row([], kernel.outer)
    if any(streams):
        fence(b)
    b.ret_void()
    return fn

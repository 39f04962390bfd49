"""LLVM IR emission for the packed, register-tiled GEMM (design and numbers: runtime/gemm.py).

The `emit_*` helpers append code at the builder's position, so the microkernel and the tile
store are inlined where they are used; only `name.block` (the tile loops) and the two
transposing packers are functions of their own, called. The "light" pipeline has no inliner
and no LICM, so loop invariants (row offsets, pointers) are hoisted here by hand.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from llvmlite import ir

if TYPE_CHECKING:
    from runtime.gemm import GemmConfig

I32 = ir.IntType(32)
I64 = ir.IntType(64)
PTR = ir.PointerType()

# The GEMM's last argument `epi` is null or an epilogue record whose first field is a
# `finish(c, rs, row, col, rows, cols, epi)`: called once the rows x cols at `c` (row stride
# rs), which are C[row:+rows, col:+cols], hold their final products, with the record itself
# (the rest of it is the callback's): on each row strip of a block (MR rows, the last mc %
# MR, or narrow_mr for a one-vector-wide block; all its columns) after its last K block,
# usually while the strip is still in L1 or L2. One compiled GEMM serves every epilogue and
# plain products alike. Called per tile, from the tile loop, the call slowed every product by
# 4% at K=128 (784x128 @ 128x256: 205 -> 213 us) and epilogues gained nothing over a separate
# pass; per strip, plain products run as without it.
FINISH_TYPE = ir.FunctionType(ir.VoidType(), [PTR, I64, I64, I64, I64, I64, PTR])

# b_panel(jr) -> (pointer to B micro-panel jr, its k stride, its alignment)
BPanel = Callable[[ir.Value], tuple[ir.Value, ir.Value, int]]

ARG_NAMES = ("A", "rsa", "csa", "B", "rsb", "csb", "C", "rsc", "M", "N", "K", "scratch", "epi")
# The block function: one A row range against one B column range, over one K block.
MACRO_ARGS = ("a", "a_step", "a_rs", "a_ks", "even_rows", "b", "b_step", "b_ks", "b_edge",
              "nfull", "c", "rsc", "row0", "col0", "mc", "nc", "kc", "first", "last", "epi")
POINTER_ARGS = ("A", "B", "C", "scratch", "a", "b", "b_edge", "c", "epi", "src", "dst")


def c64(x: int) -> ir.Constant:
    return ir.Constant(I64, x)


def lanes_below(b: ir.IRBuilder, valid: ir.Value, lanes: int, first_lane: int = 0) -> ir.Value:
    """The <lanes x i1> mask of lanes first_lane + l < valid (compared in i32: i64 lanes cost
    two compares and a merge per AVX-512 vector)."""
    numbers = ir.Constant(ir.VectorType(I32, lanes), list(range(first_lane, first_lane + lanes)))
    limit = b.insert_element(ir.Constant(numbers.type, ir.Undefined), b.trunc(valid, I32),
                             ir.Constant(I32, 0))
    limit = b.shuffle_vector(limit, limit, ir.Constant(ir.VectorType(I32, lanes), None))
    return b.icmp_signed("<", numbers, limit)


class GemmEmitter:
    """Builds one GEMM function `void name(<ARG_NAMES>)` into a module."""

    def __init__(self, cfg: GemmConfig, module: ir.Module, name: str):
        self.cfg = cfg
        self.es = 4 if cfg.dtype == "float32" else 8
        self.t = ir.FloatType() if self.es == 4 else ir.DoubleType()
        self.w = cfg.lanes
        self.nv = cfg.nr // self.w
        self.vt = ir.VectorType(self.t, self.w)
        self.prefetch = ir.Function(
            module, ir.FunctionType(ir.VoidType(), [PTR, I32, I32, I32]), "llvm.prefetch.p0")
        suffix = f"v{self.w}f{self.es * 8}"
        self.fma = ir.Function(module, ir.FunctionType(self.vt, [self.vt] * 3), f"llvm.fma.{suffix}")
        mask = ir.VectorType(ir.IntType(1), self.w)
        self.masked_load = ir.Function(module, ir.FunctionType(
            self.vt, [PTR, I32, mask, self.vt]), f"llvm.masked.load.{suffix}.p0")
        self.masked_store = ir.Function(module, ir.FunctionType(
            ir.VoidType(), [self.vt, PTR, I32, mask]), f"llvm.masked.store.{suffix}.p0")
        self.macro = self._function(module, f"{name}.block", MACRO_ARGS, "internal")
        self.fn = self._function(module, name, ARG_NAMES, None)

    def _function(self, module: ir.Module, name: str, names: Sequence[str],
                  linkage: str | None) -> ir.Function:
        types = [PTR if n in POINTER_ARGS else I64 for n in names]
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), types), name)
        if linkage:
            fn.linkage = linkage
        for arg, n in zip(fn.args, names):
            arg.name = n
            if arg.type == PTR:
                arg.add_attribute("noalias")
        return fn

    def _begin(self, fn: ir.Function) -> None:
        """Emit into fn from now on, with its own stack tile for edge stores."""
        self.b = ir.IRBuilder(fn.append_basic_block("entry"))
        tile = self.b.alloca(ir.ArrayType(self.t, self.cfg.mr * self.cfg.nr), name="tile")
        tile.align = 64
        tile.type = PTR  # an opaque pointer, like every other pointer in this module
        self.tile = tile

    # ---- small helpers -------------------------------------------------------------
    def gep(self, p: ir.Value, idx: ir.Value | int) -> ir.Value:
        idx = c64(idx) if isinstance(idx, int) else idx
        return self.b.gep(p, [idx], source_etype=self.t)

    def byte_gep(self, p: ir.Value, nbytes: ir.Value) -> ir.Value:
        return self.b.gep(p, [nbytes], source_etype=ir.IntType(8))

    def imin(self, x: ir.Value, y: ir.Value) -> ir.Value:
        return self.b.select(self.b.icmp_signed("<", x, y), x, y)

    def splat(self, s: ir.Value) -> ir.Value:
        v = self.b.insert_element(ir.Constant(self.vt, ir.Undefined), s, ir.Constant(I32, 0))
        return self.b.shuffle_vector(v, ir.Constant(self.vt, ir.Undefined),
                                     ir.Constant(ir.VectorType(I32, self.w), None))

    def round_down(self, x: ir.Value, m: int) -> ir.Value:
        return self.b.sub(x, self.b.srem(x, c64(m)))

    def ceil_div(self, x: ir.Value, d: ir.Value | int) -> ir.Value:
        """ceil(x / d) for x >= 0, d > 0."""
        if isinstance(d, int):
            return self.b.sdiv(self.b.add(x, c64(d - 1)), c64(d))
        return self.b.sdiv(self.b.add(x, self.b.sub(d, c64(1))), d)

    def round_up(self, x: ir.Value, m: int) -> ir.Value:
        return self.b.mul(self.ceil_div(x, m), c64(m))

    @contextmanager
    def loop(self, start: ir.Value, stop: ir.Value, step: ir.Value | int,
             once: bool = False) -> Iterator[ir.Value]:
        """for i in range(start, stop, step); `once` makes it a do-while (runs at least once)."""
        b = self.b
        step = c64(step) if isinstance(step, int) else step
        pre = b.block
        head = None if once else b.append_basic_block("head")
        body, done = b.append_basic_block("body"), b.append_basic_block("done")
        b.branch(body if once else head)
        b.position_at_end(body if once else head)
        i = b.phi(I64, "i")
        i.add_incoming(start, pre)
        if not once:
            b.cbranch(b.icmp_signed("<", i, stop), body, done)
            b.position_at_end(body)
        yield i
        nxt = b.add(i, step)
        i.add_incoming(nxt, b.block)
        if once:
            b.cbranch(b.icmp_signed("<", nxt, stop), body, done)
        else:
            b.branch(head)
        b.position_at_end(done)

    def carried(self, start: ir.Value, stop: ir.Value, step: int, state: Sequence[ir.Value],
                body: Callable[[list[ir.Value]], list[ir.Value]]) -> tuple[ir.Value, list]:
        """Loop carrying `state` through phis: state = body(state) while i < stop."""
        b = self.b
        pre = b.block
        head, loop, done = (b.append_basic_block(s) for s in ("khead", "kbody", "kdone"))
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64, "k")
        phis = [b.phi(v.type) for v in state]
        for p, v in zip([i, *phis], [start, *state]):
            p.add_incoming(v, pre)
        b.cbranch(b.icmp_signed("<", i, stop), loop, done)
        b.position_at_end(loop)
        new = body(list(phis))
        for p, v in zip([i, *phis], [b.add(i, c64(step)), *new]):
            p.add_incoming(v, b.block)
        b.branch(head)
        b.position_at_end(done)
        return i, list(phis)

    # ---- microkernel -----------------------------------------------------------------
    def emit_kernel(self, a: ir.Value, a_rs: ir.Value, a_ks: ir.Value, bp: ir.Value,
                    b_ks: ir.Value, kc: ir.Value, b_align: int, mr: int,
                    nv: int) -> list[list[ir.Value]]:
        """mr x (nv vectors) accumulators of sum_k A[i, k] * B[k, j].

        A row i is at a + i*a_rs and steps by a_ks per k; B steps by b_ks per k.
        """
        cfg, b = self.cfg, self.b
        rows = [b.mul(c64(i), a_rs) for i in range(mr)]

        def step(state: list[ir.Value]) -> list[ir.Value]:
            pa, pb, *acc = state
            bv = [b.load(self.gep(pb, v * self.w), typ=self.vt, align=b_align)
                  for v in range(nv)]
            for i in range(mr):
                s = self.splat(b.load(self.gep(pa, rows[i]), typ=self.t, align=self.es))
                for v in range(nv):
                    acc[i * nv + v] = b.call(self.fma, [s, bv[v], acc[i * nv + v]])
            return [self.gep(pa, a_ks), self.gep(pb, b_ks), *acc]

        def unrolled(state: list[ir.Value]) -> list[ir.Value]:
            for _ in range(cfg.k_unroll):
                state = step(state)
            return state

        zero = ir.Constant(self.vt, None)
        state = [a, bp] + [zero] * (mr * nv)
        main_stop = b.sub(kc, c64(cfg.k_unroll - 1))
        k, state = self.carried(c64(0), main_stop, cfg.k_unroll, state, unrolled)
        if cfg.k_unroll > 1:
            _, state = self.carried(k, kc, 1, state, step)
        acc = state[2:]
        return [acc[i * nv:(i + 1) * nv] for i in range(mr)]

    def emit_prefetch_c(self, c: ir.Value, rsc: ir.Value, mr: int, nv: int) -> None:
        """Prefetch the C tile (mr rows of nv vectors) for writing: +5-9% at large n
        (PERF-NOTES 1)."""
        lines = -(-nv * self.cfg.vector_bytes // 64)
        for i in range(mr):
            row = self.gep(c, self.b.mul(c64(i), rsc))
            for line in range(lines):
                p = self.gep(row, line * 64 // self.es)
                self.b.call(self.prefetch, [p, ir.Constant(I32, 1), ir.Constant(I32, 3),
                                            ir.Constant(I32, 1)])

    # ---- tile store ------------------------------------------------------------------
    def emit_store_tile(self, acc: list[list[ir.Value]], dst: ir.Value, rs: ir.Value,
                        add_dst: ir.Value, mask: ir.Value | None = None) -> None:
        """dst[i, j] = (dst[i, j] if add_dst) + acc[i, j]: the one place the GEMM stores
        accumulators. With `mask` (tiles one vector wide), only its lanes.

        One straight-line store whatever `add_dst`: the old value is loaded always and a
        select keeps what applies (a tile store runs once per KC-deep microkernel, so that
        costs ~1%)."""
        b = self.b
        align = ir.Constant(I32, self.es)
        always_add = self.cfg.accumulate
        for i, acc_row in enumerate(acc):
            p_row = self.gep(dst, b.mul(c64(i), rs))
            for v, x in enumerate(acc_row):
                p = self.gep(p_row, v * self.w)
                old = (b.load(p, typ=self.vt, align=self.es) if mask is None else
                       b.call(self.masked_load, [p, align, mask, ir.Constant(self.vt, None)]))
                x = b.fadd(old, x) if always_add else b.select(add_dst, b.fadd(old, x), x)
                if mask is None:
                    b.store(x, p, align=self.es)
                else:
                    b.call(self.masked_store, [x, p, align, mask])

    def emit_finish(self, blk: _Block, row: ir.Value, rows: ir.Value) -> None:
        """The epilogue's `finish` on rows [row, row + rows) of the block, if there is one
        and its K block is the last. Not inlined: each epilogue would need a GEMM of its own,
        0.25-0.65 s of compiling."""
        b = self.b
        epi = self.macro.args[-1]
        with b.if_then(b.and_(blk.last, b.icmp_unsigned("!=", epi, ir.Constant(PTR, None)))):
            finish = b.load(epi, typ=FINISH_TYPE.as_pointer())  # typed: llvmlite's call needs it
            strip = self.gep(blk.c, b.add(b.mul(row, blk.rsc), blk.jc))
            b.call(finish, [strip, blk.rsc, row, blk.jc, rows, blk.nc, epi])

    def emit_write_tile(self, acc: list[list[ir.Value]], c: ir.Value, rsc: ir.Value,
                        mr_eff: ir.Value, nr_eff: ir.Value, first: ir.Value) -> None:
        """Store a tile to C; edge tiles go through the stack tile (rows as wide as the tile)
        so the store stays vector."""
        b = self.b
        width = c64(len(acc[0]) * self.w)
        edge = b.or_(b.icmp_signed("<", mr_eff, c64(len(acc))),
                     b.icmp_signed("<", nr_eff, width))
        need_c = self.reads_c(first)
        with b.if_then(b.and_(edge, need_c)):
            self.emit_copy(c, rsc, self.tile, width, mr_eff, nr_eff)
        dst = b.select(edge, self.tile, c)
        rs = b.select(edge, width, rsc)
        self.emit_store_tile(acc, dst, rs, need_c)
        with b.if_then(edge):
            self.emit_copy(self.tile, width, c, rsc, mr_eff, nr_eff)

    def reads_c(self, first: ir.Value) -> ir.Value:
        """Whether a tile's store adds to C: every K block after the first, or always."""
        return ir.Constant(ir.IntType(1), 1) if self.cfg.accumulate else self.b.not_(first)

    def emit_copy(self, src: ir.Value, src_rs: ir.Value, dst: ir.Value, dst_rs: ir.Value,
                  rows: ir.Value, cols: ir.Value, src_cs: ir.Value | None = None) -> None:
        """Scalar copy of a rows x cols block (edges only); source columns `src_cs` apart."""
        b = self.b
        with self.loop(c64(0), rows, 1) as i:
            s_row = self.gep(src, b.mul(i, src_rs))
            d_row = self.gep(dst, b.mul(i, dst_rs))
            with self.loop(c64(0), cols, 1) as j:
                x = b.load(self.gep(s_row, j if src_cs is None else b.mul(j, src_cs)),
                           typ=self.t, align=self.es)
                b.store(x, self.gep(d_row, j), align=self.es)

    # ---- packing ---------------------------------------------------------------------
    def emit_panel_copy(self, src: ir.Value, s_short: ir.Value, s_long: ir.Value,
                        valid: ir.Value, pad: int, n_long: ir.Value, dst: ir.Value) -> None:
        """dst[l*pad + s] = src[l*s_long + min(s, valid-1)*s_short] for l < n_long, s < pad.

        Padding repeats the last valid row/column: padded lanes only feed discarded results,
        and repeating avoids both zero-fill passes and denormal garbage.
        """
        b = self.b
        last = b.sub(valid, c64(1))
        offs = [b.mul(self.imin(c64(s), last), s_short) for s in range(pad)]
        with self.loop(c64(0), n_long, 1) as l:
            s_row = self.gep(src, b.mul(l, s_long))
            d_row = self.gep(dst, b.mul(l, c64(pad)))
            for s in range(pad):
                x = b.load(self.gep(s_row, offs[s]), typ=self.t, align=self.es)
                b.store(x, self.gep(d_row, s), align=self.es)

    def emit_pack_a(self, a: ir.Value, rsa: ir.Value, csa: ir.Value, mc: ir.Value,
                    kc: ir.Value, dst: ir.Value) -> None:
        """A[0:mc, 0:kc] -> MR-row micro-panels, each kc x MR (k-major)."""
        b, mr = self.b, self.cfg.mr
        with self.loop(c64(0), mc, mr) as p:
            valid = self.imin(c64(mr), b.sub(mc, p))
            self.emit_panel_copy(self.gep(a, b.mul(p, rsa)), rsa, csa, valid, mr, kc,
                                 self.gep(dst, b.mul(p, kc)))

    def emit_pack_b(self, bsrc: ir.Value, rsb: ir.Value, csb: ir.Value, kc: ir.Value,
                    nc: ir.Value, dst: ir.Value) -> None:
        """B[0:kc, 0:nc] -> NR-column micro-panels, each kc x NR; vector copy when csb == 1."""
        b, nr = self.b, self.cfg.nr
        with b.if_else(b.icmp_signed("==", csb, c64(1))) as (rows, other):
            with rows:
                self.emit_row_panels(bsrc, rsb, kc, nc, dst)
            with other:
                with self.loop(c64(0), nc, nr) as p:
                    valid = self.imin(c64(nr), b.sub(nc, p))
                    src = self.gep(bsrc, b.mul(p, csb))
                    d = self.gep(dst, b.mul(p, kc))
                    transposed = b.and_(b.icmp_signed("==", rsb, c64(1)),
                                        b.icmp_signed("==", valid, c64(nr)))
                    with b.if_else(transposed) as (columns, scalar):
                        with columns:
                            b.call(self.pack_columns, [src, csb, kc, d])
                        with scalar:
                            self.emit_panel_copy(src, csb, rsb, valid, nr, kc, d)

    def emit_row_panels(self, bsrc: ir.Value, rsb: ir.Value, kc: ir.Value, nc: ir.Value,
                        dst: ir.Value) -> None:
        """Full NR-column panels of a B with contiguous rows, row by row: each source row
        is read front to back once (panel by panel, kc rows would be read a few lines at a
        time); the last nc % NR columns as one masked panel."""
        b, nr = self.b, self.cfg.nr
        nfull = self.round_down(nc, nr)
        with self.loop(c64(0), kc, 1) as k, self.loop(c64(0), nfull, nr) as p:
            s_row = self.gep(bsrc, b.add(b.mul(k, rsb), p))
            d_row = self.gep(dst, b.add(b.mul(p, kc), b.mul(k, c64(nr))))
            for v in range(self.nv):
                x = b.load(self.gep(s_row, v * self.w), typ=self.vt, align=self.es)
                b.store(x, self.gep(d_row, v * self.w), align=min(64, self.cfg.vector_bytes))
        self.emit_edge_panel(bsrc, rsb, kc, nc, nfull, self.gep(dst, b.mul(nfull, kc)))

    def emit_edge_panel(self, bsrc: ir.Value, rsb: ir.Value, kc: ir.Value, n: ir.Value,
                        nfull: ir.Value, dst: ir.Value) -> None:
        """Columns nfull..n of a B with contiguous rows (fewer than NR) as one padded panel."""
        b = self.b
        with b.if_then(b.icmp_signed("<", nfull, n)):
            self.emit_vector_panel(self.gep(bsrc, nfull), rsb, b.sub(n, nfull), kc, dst)

    def emit_transposed_panel(self, src: ir.Value, csb: ir.Value, kc: ir.Value,
                              dst: ir.Value) -> None:
        """dst[k*NR + j] = B[k, j] for a full panel of a B whose columns are contiguous (a
        transposed row-major array: the gradient's `ct @ w.T`). W x W blocks are loaded as W
        vectors along k and transposed in registers. Scalar copies would read NR source rows
        per k lying a power of two apart, all in one L1 set: 1024^2 @ (1024^2).T took 14%
        longer than @ 1024^2 (10.5 vs 9.1 ms). The W source rows of a block are read front
        to back before the next W (not NR rows a line at a time): +1-2%, 128x256 @ (256^2).T
        235 -> 238 GFLOP/s."""
        b, w, nr = self.b, self.w, self.cfg.nr
        k_end = self.round_down(kc, w)
        with self.loop(c64(0), c64(nr), w) as first, self.loop(c64(0), k_end, w) as k:
            rows = [b.load(self.gep(src, b.add(b.mul(b.add(first, c64(r)), csb), k)),
                           typ=self.vt, align=self.es) for r in range(w)]
            for t, row in enumerate(self.transpose(rows)):
                at = b.add(b.mul(b.add(k, c64(t)), c64(nr)), first)
                b.store(row, self.gep(dst, at), align=self.es)
        with b.if_then(b.icmp_signed("<", k_end, kc)):
            self.emit_panel_copy(self.gep(src, k_end), csb, c64(1), c64(nr), nr,
                                 b.sub(kc, k_end), self.gep(dst, b.mul(k_end, c64(nr))))

    def emit_transposed_rows(self, a: ir.Value, csa: ir.Value, mc: ir.Value, kc: ir.Value,
                             dst: ir.Value) -> None:
        """dst[i*kc + k] = A[i, k] for an A whose rows are columns in memory (rsa == 1: the
        gradient's `x.T @ ct`), by W x W register transposes: the block is then read like a
        row-major A in place. Packing it into MR-row panels read MR scalars per k from source
        rows often a power of two apart (one L1 set): A.T @ B at 256 took 138 us, now 132
        (A @ B: 130). k runs outside i, so W source rows are read front to back at a time,
        not kc rows a line each (too many streams for the prefetchers): A.T @ B at 1024
        221-226 -> 228 GFLOP/s (A @ B 236)."""
        b, w = self.b, self.w
        rows_end = self.round_down(mc, w)
        k_end = self.round_down(kc, w)
        with self.loop(c64(0), k_end, w) as k, self.loop(c64(0), rows_end, w) as i:
            columns = [b.load(self.gep(a, b.add(b.mul(b.add(k, c64(t)), csa), i)),
                              typ=self.vt, align=self.es) for t in range(w)]
            for r, row in enumerate(self.transpose(columns)):
                at = b.add(b.mul(b.add(i, c64(r)), kc), k)
                b.store(row, self.gep(dst, at), align=self.es)
        with b.if_then(b.icmp_signed("<", k_end, kc)):
            self.emit_copy(self.gep(a, b.mul(k_end, csa)), c64(1), self.gep(dst, k_end), kc,
                           rows_end, b.sub(kc, k_end), csa)
        with b.if_then(b.icmp_signed("<", rows_end, mc)):
            self.emit_copy(self.gep(a, rows_end), c64(1), self.gep(dst, b.mul(rows_end, kc)),
                           kc, b.sub(mc, rows_end), kc, csa)

    def transpose(self, rows: list[ir.Value]) -> list[ir.Value]:
        """The W x W transpose of W vectors: log2(W) rounds of pairwise two-source shuffles
        (one vpermt2ps each on AVX-512)."""
        b, w = self.b, self.w
        rows = list(rows)
        half = w // 2
        while half:
            low = [lane if not lane & half else w + lane - half for lane in range(w)]
            high = [lane + half if not lane & half else w + lane for lane in range(w)]
            for i in range(w):
                if not i & half:
                    x, y = rows[i], rows[i + half]
                    rows[i] = b.shuffle_vector(x, y, ir.Constant(ir.VectorType(I32, w), low))
                    rows[i + half] = b.shuffle_vector(x, y,
                                                      ir.Constant(ir.VectorType(I32, w), high))
            half //= 2
        return rows

    def emit_vector_panel(self, src: ir.Value, rsb: ir.Value, valid: ir.Value, kc: ir.Value,
                          dst: ir.Value) -> None:
        """dst[k*NR + j] = B[k, j] for j < valid, else 0: masked vector loads, so an edge
        panel costs NR / W instructions a row instead of NR scalar copies."""
        b = self.b
        masks = [lanes_below(self.b, valid, self.w, v * self.w) for v in range(self.nv)]
        zero = ir.Constant(self.vt, None)
        with self.loop(c64(0), kc, 1) as k:
            s_row = self.gep(src, b.mul(k, rsb))
            d_row = self.gep(dst, b.mul(k, c64(self.cfg.nr)))
            for v, mask in enumerate(masks):
                x = b.call(self.masked_load, [self.gep(s_row, v * self.w),
                                              ir.Constant(I32, self.es), mask, zero])
                b.store(x, self.gep(d_row, v * self.w), align=min(64, self.cfg.vector_bytes))

    # ---- loop nests ------------------------------------------------------------------
    def emit_body(self) -> ir.Function:
        """Entry: choose the direct (unpacked) or the packed path at run time, from the sizes."""
        self._emit_block_function()
        self._emit_transposing_packers()
        self._begin(self.fn)
        cfg, b = self.cfg, self.b
        a, rsa, csa, bm, rsb, csb, c, rsc, m, n, k, scratch, _ = self.fn.args
        with b.if_then(b.or_(b.icmp_signed("<=", m, c64(0)), b.icmp_signed("<=", n, c64(0)))):
            b.ret_void()
        fits = b.icmp_signed("<=", b.mul(b.mul(k, n), c64(self.es)), c64(cfg.direct_b_bytes))
        direct = b.and_(b.and_(fits, b.icmp_signed("==", csb, c64(1))),
                        b.icmp_signed("<=", k, c64(cfg.kc)))
        with b.if_else(direct) as (yes, no):
            with yes:
                self.emit_direct(scratch)
            with no:
                self.emit_packed(scratch, c64(0), m)
        b.ret_void()
        return self.fn

    def _emit_transposing_packers(self) -> None:
        """`name.pack_columns` and `name.pack_rows`: the register-transposing packers as
        functions of their own. Inlined in the GEMM entry they more than doubled its code
        generation time (82 -> 186 ms); apart, 124 ms (f32, Zen5, light pipeline)."""
        module = self.fn.module
        self.pack_columns = self._function(module, f"{self.fn.name}.pack_columns",
                                           ("src", "csb", "kc", "dst"), "internal")
        self._begin(self.pack_columns)
        self.emit_transposed_panel(*self.pack_columns.args)
        self.b.ret_void()
        self.pack_rows = self._function(module, f"{self.fn.name}.pack_rows",
                                        ("src", "csa", "mc", "kc", "dst"), "internal")
        self._begin(self.pack_rows)
        self.emit_transposed_rows(*self.pack_rows.args)
        self.b.ret_void()

    def _emit_block_function(self) -> None:
        """`name.block`: the ir -> jr tile loops, emitted once and called by both paths.

        A rows at a + i*a_rs step a_ks per k; micro-panel ir starts at a + ir*a_step
        (even_rows: a_step == a_rs, A is not in MR-row panels). B micro-panel jr < nfull is
        at b + jr*b_step stepping b_ks per k; later columns come from the padded panel
        b_edge (k stride NR)."""
        self._begin(self.macro)
        cfg, b = self.cfg, self.b
        (a, a_step, a_rs, a_ks, even_rows, bm, b_step, b_ks, b_edge, nfull,
         c, rsc, row0, col0, mc, nc, kc, first, last, _) = self.macro.args

        def b_panel(jr: ir.Value) -> tuple[ir.Value, ir.Value, int]:
            full = b.icmp_signed("<", jr, nfull)
            return (b.select(full, self.gep(bm, b.mul(jr, b_step)), b_edge),
                    b.select(full, b_ks, c64(cfg.nr)), self.es)

        blk = _Block(c, rsc, col0, nc, kc, b.icmp_signed("!=", first, c64(0)),
                     b.icmp_signed("!=", last, c64(0)), b.icmp_signed("!=", even_rows, c64(0)))
        self._emit_macro_tile(blk, row0, mc, (a, a_step, a_rs, a_ks), b_panel)
        b.ret_void()

    def _call_block(self, *args: ir.Value) -> None:
        args += (self.fn.args[-1],)  # epi
        self.b.call(self.macro, [c64(x) if isinstance(x, int) else x for x in args])

    def emit_direct(self, bp: ir.Value) -> None:
        """B in L2 (rows contiguous): read A and B in place; one block, no K split.

        Only the last N % NR columns of B are copied, to a padded panel in scratch.
        """
        a, rsa, csa, bm, rsb, _, c, rsc, m, n, k, _, _ = self.fn.args
        nfull = self.round_down(n, self.cfg.nr)
        self.emit_edge_panel(bm, rsb, k, n, nfull, bp)
        self._call_block(a, rsa, rsa, csa, 1, bm, 1, rsb, bp, nfull, c, rsc, 0, 0, m, n, k, 1,
                         1)

    def emit_packed(self, bp: ir.Value, m_lo: ir.Value, m_hi: ir.Value) -> None:
        """Goto/BLIS nest jc -> pc -> pack B -> ic -> (pack A) -> block over rows [m_lo, m_hi).

        A with unit column stride is read in place: its MR x KC micro-panel stays in L1 while
        jr sweeps the packed B block in L2, so packing it only costs time (5% at n=512).
        A packed block follows B's in scratch (`bp`). The ic loop is the unit a thread can
        own: with B packed once and shared, a thread runs the same ic loop over its own row
        range with its own A buffer.
        """
        cfg, b = self.cfg, self.b
        a, rsa, csa, bm, rsb, csb, c, rsc, _, n, k, _, _ = self.fn.args
        a_in_place = b.icmp_signed("==", csa, c64(1))
        kc_max = b.select(a_in_place, c64(cfg.kc), c64(cfg.a_packed_kc))
        k_blocks = self.ceil_div(k, kc_max)
        k_blocks = b.select(b.icmp_signed("<", k_blocks, c64(1)), c64(1), k_blocks)  # K = 0
        kc_step = self.ceil_div(k, k_blocks)  # gemm.k_step
        nc_step = b.select(a_in_place, c64(cfg.nc), c64(cfg.a_packed_nc))
        b_bytes = b.mul(b.mul(self.imin(kc_step, k),
                              self.imin(nc_step, self.round_up(n, cfg.nr))), c64(self.es))
        ap = self.byte_gep(bp, self.round_up(b_bytes, 64))
        with self.loop(c64(0), n, nc_step) as jc:
            nc = self.imin(nc_step, b.sub(n, jc))
            with self.loop(c64(0), k, kc_step, once=True) as pc:
                kc = self.imin(kc_step, b.sub(k, pc))
                first = b.zext(b.icmp_signed("==", pc, c64(0)), I64)
                last = b.zext(b.icmp_signed(">=", b.add(pc, kc), k), I64)
                self.emit_pack_b(self.gep(bm, b.add(b.mul(pc, rsb), b.mul(jc, csb))),
                                 rsb, csb, kc, nc, bp)
                b_args = (bp, kc, cfg.nr, bp, nc, c, rsc)
                with self.loop(m_lo, m_hi, cfg.mc) as ic:
                    mc = self.imin(c64(cfg.mc), b.sub(m_hi, ic))
                    a_blk = self.gep(a, b.add(b.mul(ic, rsa), b.mul(pc, csa)))
                    with b.if_else(a_in_place) as (in_place, packed):
                        with in_place:
                            self._call_block(a_blk, rsa, rsa, 1, 1, *b_args, ic, jc, mc, nc, kc,
                                             first, last)
                        with packed:
                            with b.if_else(b.icmp_signed("==", rsa, c64(1))) as (rows, panels):
                                with rows:  # A = x.T: copied to row-major, then as in place
                                    b.call(self.pack_rows, [a_blk, csa, mc, kc, ap])
                                    self._call_block(ap, kc, kc, 1, 1, *b_args, ic, jc, mc, nc,
                                                     kc, first, last)
                                with panels:
                                    self.emit_pack_a(a_blk, rsa, csa, mc, kc, ap)
                                    self._call_block(ap, kc, 1, cfg.mr, 0, *b_args, ic, jc, mc,
                                                     nc, kc, first, last)

    def _emit_macro_tile(self, blk: _Block, ic: ir.Value, mc: ir.Value,
                         a_src: tuple[ir.Value, ...], b_panel: BPanel) -> None:
        """ir -> jr over one MC x NC block; a_src = (base, step per row, row stride, k stride),
        b_panel(jr) = (B micro-panel, k stride, alignment).

        The last mc % MR rows get a kernel of exactly that height: A read in place must not
        be read past row M, and no FMA is spent on padding rows. With A's rows evenly spaced,
        they join the last full MR rows in one tall row of tiles half as wide
        (`_emit_tall_row`).
        """
        cfg, b = self.cfg, self.b
        start = self._emit_narrow_rows(blk, ic, mc, a_src, b_panel) if self.nv > 1 else c64(0)
        rest = b.sub(mc, start)
        full = b.add(start, self.round_down(rest, cfg.mr))
        left = b.sub(mc, full)
        tall = b.and_(b.and_(blk.even_rows, b.icmp_signed(">", blk.nc, c64(self.w))),
                      b.and_(b.icmp_signed(">", left, c64(0)),
                             b.icmp_signed(">=", b.sub(full, start), c64(cfg.mr))))
        last_full = b.select(tall, b.sub(full, c64(cfg.mr)), full)
        with self.loop(start, last_full, cfg.mr) as ir_:
            self._emit_tile_row(blk, ic, ir_, self.imin(c64(cfg.mr), b.sub(mc, ir_)), a_src,
                                b_panel, cfg.mr)
        done = b.append_basic_block("rows_done")
        switch = b.switch(b.select(tall, b.add(left, c64(cfg.mr)), left), done)
        for rows in range(1, 2 * cfg.mr):
            if rows == cfg.mr:
                continue
            case = b.append_basic_block(f"rows{rows}")
            switch.add_case(c64(rows), case)
            b.position_at_end(case)
            if rows < cfg.mr:
                self._emit_tile_row(blk, ic, full, c64(rows), a_src, b_panel, rows)
            else:
                self._emit_tall_row(blk, ic, last_full, rows, a_src, b_panel)
            b.branch(done)
        b.position_at_end(done)

    def _emit_tall_row(self, blk: _Block, ic: ir.Value, ir_: ir.Value, rows: int,
                       a_src: tuple[ir.Value, ...], b_panel: BPanel) -> None:
        """`rows` (MR + 1 to 2 MR - 1) rows of A against the block in tiles NR / 2 wide.

        Every row of tiles streams the whole B block from L2, which supplies about 26 bytes
        a cycle on Zen5: MR rows of FMAs need 21, so a row of 2-4 remainder rows alone runs
        at that limit, not at the FMA rate (128x784 @ 784x256: the last 2 rows took 7.8 us,
        a full row of 6 9.6). Tall tiles half as wide need fewer bytes per FMA than MR-row
        tiles do.
        """
        b = self.b
        base, step, a_rs, a_ks = a_src
        a_panel = (self.gep(base, b.mul(ir_, step)), a_rs, a_ks)
        row = b.add(ic, ir_)
        vectors = self.nv // 2
        with self.loop(c64(0), blk.nc, vectors * self.w) as jt:
            offset = b.srem(jt, c64(self.cfg.nr))  # the left or right half of a B panel
            panel, b_ks, b_align = b_panel(b.sub(jt, offset))
            self._emit_tile(blk, row, jt, c64(rows), a_panel,
                            (self.gep(panel, offset), b_ks, b_align), rows, vectors)
        self.emit_finish(blk, row, c64(rows))

    def _emit_narrow_rows(self, blk: _Block, ic: ir.Value, mc: ir.Value,
                          a_src: tuple[ir.Value, ...], b_panel: BPanel) -> ir.Value:
        """A block one vector wide (a 10-class head: C is M x 10) in tiles of `narrow_mr`
        rows: an MR-row tile keeps too few FMAs in flight and loads almost as often as it
        multiplies. Needs A rows evenly spaced (in place or row-copied, not MR panels).
        Returns the rows done; the rest go through the MR-row tiles."""
        cfg, b = self.cfg, self.b
        tall = cfg.narrow_mr
        base, step, a_rs, a_ks = a_src
        narrow = b.and_(b.icmp_signed("<=", blk.nc, c64(self.w)), blk.even_rows)
        rows = b.select(narrow, self.round_down(mc, tall), c64(0))
        mask = lanes_below(b, blk.nc, self.w)
        b_ptr, b_ks, b_align = b_panel(c64(0))
        need_c = self.reads_c(blk.first)
        with self.loop(c64(0), rows, tall) as ir_:
            row = b.add(ic, ir_)
            c_tile = self.gep(blk.c, b.add(b.mul(row, blk.rsc), blk.jc))
            self.emit_prefetch_c(c_tile, blk.rsc, tall, 1)
            acc = self.emit_kernel(self.gep(base, b.mul(ir_, step)), a_rs, a_ks, b_ptr, b_ks,
                                   blk.kc, b_align, tall, 1)
            self.emit_store_tile(acc, c_tile, blk.rsc, need_c, mask)
            self.emit_finish(blk, row, c64(tall))
        return rows

    def _emit_tile_row(self, blk: _Block, ic: ir.Value, ir_: ir.Value, mr_eff: ir.Value,
                       a_src: tuple[ir.Value, ...], b_panel: BPanel, mr: int) -> None:
        """One micro-panel of A (in L1) against every packed B micro-panel of the block.

        With full-height tiles, the last nc % NR columns get a kernel only as many vectors
        wide as they need: a 10-column C (a classifier head) costs one vector per row, not
        NR / W (4x less work with 6x64 tiles; 128x256 @ 256x10: 20.5 -> 8.3 us).
        """
        cfg, b = self.cfg, self.b
        base, step, a_rs, a_ks = a_src
        a_panel = (self.gep(base, b.mul(ir_, step)), a_rs, a_ks)
        row = b.add(ic, ir_)
        if mr < cfg.mr or self.nv == 1:
            with self.loop(c64(0), blk.nc, cfg.nr) as jr:
                self._emit_tile(blk, row, jr, mr_eff, a_panel, b_panel(jr), mr, self.nv)
        else:
            rest = b.srem(blk.nc, c64(cfg.nr))
            narrow = b.icmp_signed("<=", rest, c64(cfg.nr - self.w))  # an edge fewer vectors wide
            wide = b.select(narrow, b.sub(blk.nc, rest), blk.nc)
            with self.loop(c64(0), wide, cfg.nr) as jr:
                self._emit_tile(blk, row, jr, mr_eff, a_panel, b_panel(jr), mr, self.nv)
            done = b.append_basic_block("cols_done")
            vectors = b.select(narrow, self.ceil_div(rest, self.w),
                               c64(0))
            switch = b.switch(vectors, done)
            for nv in range(1, self.nv):
                case = b.append_basic_block(f"cols{nv}")
                switch.add_case(c64(nv), case)
                b.position_at_end(case)
                self._emit_tile(blk, row, wide, mr_eff, a_panel, b_panel(wide), mr, nv)
                b.branch(done)
            b.position_at_end(done)
        self.emit_finish(blk, row, mr_eff)

    def _emit_tile(self, blk: _Block, row: ir.Value, jr: ir.Value, mr_eff: ir.Value,
                   a_panel: tuple[ir.Value, ir.Value, ir.Value],
                   b_src: tuple[ir.Value, ir.Value, int], mr: int, nv: int) -> None:
        """The mr x (nv vectors) tile at block column jr: accumulate over kc, then store.
        b_src = (B at column jr, its k stride, alignment)."""
        b = self.b
        col = b.add(blk.jc, jr)
        c_tile = self.gep(blk.c, b.add(b.mul(row, blk.rsc), col))
        self.emit_prefetch_c(c_tile, blk.rsc, mr, nv)
        b_ptr, b_ks, b_align = b_src
        acc = self.emit_kernel(*a_panel, b_ptr, b_ks, blk.kc, b_align, mr, nv)
        self.emit_write_tile(acc, c_tile, blk.rsc, mr_eff,
                             self.imin(c64(nv * self.w), b.sub(blk.nc, jr)), blk.first)


@dataclass
class _Block:
    """Values shared by every tile of one (jc, pc) block."""

    c: ir.Value
    rsc: ir.Value
    jc: ir.Value
    nc: ir.Value
    kc: ir.Value
    first: ir.Value
    last: ir.Value
    even_rows: ir.Value  # A's rows evenly spaced (not MR-row panels): tall narrow tiles allowed

"""Where the time of the fused `sigmoid(a*b+c)*2` goes: compute or memory.

Run: `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. taskset -c 0 python3 benchmarks/sigmoid_probe.py`

The fused body, as the code generator emits it (its `<UNROLL*W x float>` main-loop vectors,
see runtime/codegen.py), runs over working sets from L1-resident (2K elements: 32 KB for
three inputs and the output) through L2 and L3 to DRAM-sized ones. Each kernel call sweeps
its arrays `reps` times, so even the smallest size is timed without per-call overhead. Next to
it, `fused nt` is the same body with non-temporal (streaming) stores of the 64-byte aligned
output, and `(a*b+c)*2` on the same arrays is what the memory traffic alone costs. The last
columns time the real `jit` call (a fresh output array per call) and numpy's expression.
"""
from __future__ import annotations

import ctypes

import llvmlite.ir as ir
import numpy as np

import jit
from benchmarks.vecmath_probe import best_of
from runtime import codegen, engine, vecmath

SIZES = (1 << 11, 1 << 14, 1 << 16, 1 << 18, 1 << 20, 1 << 22, 1 << 24)
ELEMENTS_PER_CALL = 1 << 24  # reps * n


def fused(b: ir.IRBuilder, xs: list) -> ir.Value:
    """sigmoid(a*b+c)*2 (a*b+c not contracted: the code generator keeps IEEE arithmetic)."""
    a, bb, c = xs
    two = ir.Constant(a.type, [2.0] * a.type.count)
    return b.fmul(vecmath.emit_logistic(b, b.fadd(b.fmul(a, bb), c)), two)


def fma_only(b: ir.IRBuilder, xs: list) -> ir.Value:
    """(a*b+c)*2: the loads and the store of the fused kernel, almost no arithmetic."""
    a, bb, c = xs
    return b.fmul(b.fadd(b.fmul(a, bb), c), ir.Constant(a.type, [2.0] * a.type.count))


def build(bodies: dict[str, tuple[object, bool]], width: int) -> tuple[engine.NativeModule, dict]:
    """Compile `void name(ptr out, ptr a, ptr b, ptr c, i64 n, i64 reps)`: reps sweeps of a
    <width x float> map over n elements (n a multiple of width). bodies: name -> (body,
    streaming); a streaming kernel's out must be 64-byte aligned."""
    module = ir.Module()
    module.triple = engine.host().triple
    i64, ptr, f32 = ir.IntType(64), ir.PointerType(), ir.FloatType()
    zero = ir.Constant(i64, 0)
    nontemporal = module.add_metadata([ir.Constant(ir.IntType(32), 1)])
    sfence = ir.Function(module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse.sfence")
    for name, (body, streaming) in bodies.items():
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [ptr] * 4 + [i64, i64]), name)
        for arg in fn.args[:4]:
            arg.add_attribute("noalias")
        out, *ins, n, reps = fn.args
        entry, outer, loop, latch, done = (fn.append_basic_block(s) for s in
                                           ("entry", "outer", "loop", "latch", "done"))
        b = ir.IRBuilder(entry)
        b.branch(outer)
        b.position_at_end(outer)
        r = b.phi(i64)
        r.add_incoming(zero, entry)
        b.branch(loop)
        b.position_at_end(loop)
        i = b.phi(i64)
        i.add_incoming(zero, outer)
        vty = ir.VectorType(f32, width)
        xs = [b.load(b.gep(p, [i], source_etype=f32), typ=vty, align=4) for p in ins]
        store = b.store(body(b, xs), b.gep(out, [i], source_etype=f32),
                        align=64 if streaming else 4)
        if streaming:
            store.set_metadata("nontemporal", nontemporal)
        nxt = b.add(i, ir.Constant(i64, width))
        i.add_incoming(nxt, loop)
        b.cbranch(b.icmp_signed("<", nxt, n), loop, latch)
        b.position_at_end(latch)
        r_next = b.add(r, ir.Constant(i64, 1))
        r.add_incoming(r_next, latch)
        b.cbranch(b.icmp_signed("<", r_next, reps), outer, done)
        b.position_at_end(done)
        if streaming:
            b.call(sfence, [])
        b.ret_void()
    text = str(module).replace(") {", ") #0 {")
    text += f"\nattributes #0 = {{ {engine.function_attributes()} }}\n"
    native = engine.compile_llvm(text, "O3")
    proto = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 4, ctypes.c_int64, ctypes.c_int64)
    return native, {name: proto(native.address(name)) for name in bodies}


def aligned_empty(n: int) -> np.ndarray:
    """n float32 starting at a 64-byte boundary (aligned non-temporal stores need it)."""
    raw = np.empty(n + 16, np.float32)
    skip = (-raw.ctypes.data % 64) // 4
    return raw[skip:skip + n]


def main() -> None:
    h = engine.host()
    width = h.vector_bytes // 4 * codegen.UNROLL
    print(f"host {h.cpu}, <{width} x float>, Gelem/s (best of 30, interleaved)")
    native, ks = build({"fused": (fused, False), "fused_nt": (fused, True),
                        "fma_only": (fma_only, False)}, width)  # keep native alive
    f = jit.jit(lambda a, b, c: jit.sigmoid(a * b + c) * 2)
    rng = np.random.default_rng(0)
    print(f"{'n':>8} {'MB':>5} {'fused':>7} {'fused nt':>9} {'fma_only':>9} {'jit call':>9} "
          f"{'numpy':>7}")
    for n in SIZES:
        a, bm, c = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
        out = aligned_empty(n)
        reps = max(1, ELEMENTS_PER_CALL // n)
        ptrs = [v.ctypes.data for v in (out, a, bm, c)]

        def repeat(call):  # each result is dropped before the next call, as in a benchmark loop
            def run():
                for _ in range(reps):
                    call()
            return run

        runs = {"fused": lambda: ks["fused"](*ptrs, n, reps),
                "fused_nt": lambda: ks["fused_nt"](*ptrs, n, reps),
                "fma_only": lambda: ks["fma_only"](*ptrs, n, reps),
                "jit": repeat(lambda: f(a, bm, c)),
                "numpy": repeat(lambda: 1 / (1 + np.exp(-(a * bm + c))) * 2)}
        if n < 1 << 16:  # the call's own overhead would dominate
            del runs["jit"], runs["numpy"]
        f(a, bm, c)
        best = best_of(runs, reps=30 if n <= 1 << 20 else 10)
        rate = {k: n * reps / t / 1e9 for k, t in best.items()}
        print(f"{n:>8} {16 * n / 2 ** 20:5.2f} {rate['fused']:7.2f} {rate['fused_nt']:9.2f} "
              f"{rate['fma_only']:9.2f}"
              + "".join(f" {rate[k]:{w}.2f}" if k in rate else f" {'-':>{w}}"
                        for k, w in (("jit", 9), ("numpy", 7))))


if __name__ == "__main__":
    main()

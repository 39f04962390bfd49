"""Throughput probe for runtime.vecmath: Gelem/s of our exp/logistic kernels against numpy.

Run: `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. python3 benchmarks/vecmath_probe.py`
Timings are interleaved (ours, numpy, ours, ...) keeping the best of each, so a briefly busy
machine skews both sides alike.
"""
from __future__ import annotations

import ctypes
import time

import llvmlite.ir as ir
import numpy as np

from runtime import engine, vecmath

N = 1 << 20


def build(kernels: dict[str, tuple[int, int, object]]) -> tuple[engine.NativeModule, dict]:
    """Compile f32 map kernels `void name(ptr out, ptr in0, ..., i64 n)`.

    kernels: name -> (number of inputs, vector width, body(b, inputs) -> value). The vector
    loop assumes n is a multiple of the width, which holds for the sizes probed here. Returns
    the native module (keep it alive while calling) and the ctypes functions by name.
    """
    module = ir.Module()
    module.triple = engine.host().triple
    i64, ptr, f32 = ir.IntType(64), ir.PointerType(), ir.FloatType()
    for name, (arity, width, body) in kernels.items():
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [ptr] * (arity + 1) + [i64]), name)
        for arg in fn.args[:-1]:
            arg.add_attribute("noalias")
        out, *ins, n = fn.args
        entry, loop, done = (fn.append_basic_block(s) for s in ("entry", "loop", "done"))
        b = ir.IRBuilder(entry)
        b.branch(loop)
        b.position_at_end(loop)
        i = b.phi(i64)
        i.add_incoming(ir.Constant(i64, 0), entry)
        vty = ir.VectorType(f32, width)
        xs = [b.load(b.gep(p, [i], source_etype=f32), typ=vty, align=4) for p in ins]
        b.store(body(b, xs), b.gep(out, [i], source_etype=f32), align=4)
        nxt = b.add(i, ir.Constant(i64, width))
        i.add_incoming(nxt, loop)
        b.cbranch(b.icmp_signed("<", nxt, n), loop, done)
        b.position_at_end(done)
        b.ret_void()
    text = str(module).replace(") {", ") #0 {") + f"\nattributes #0 = {{ {engine.function_attributes()} }}\n"
    native = engine.compile_llvm(text, "O3")
    proto = {a: ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * (a + 1), ctypes.c_int64) for a, _, _ in kernels.values()}
    return native, {name: proto[a](native.address(name)) for name, (a, _, _) in kernels.items()}


def fused_sigmoid(b: ir.IRBuilder, xs: list) -> ir.Value:
    """sigmoid(a*b+c)*2 as the code generator would fuse it."""
    a, bb, c = xs
    t = b.call(_fma(b, a.type), [a, bb, c])
    two = ir.Constant(a.type, [2.0] * a.type.count)
    return b.fmul(vecmath.emit_logistic(b, t), two)


def _fma(b: ir.IRBuilder, ty: ir.VectorType) -> ir.Function:
    # llvmlite's declare_intrinsic cannot mangle vector types.
    name = f"llvm.fma.v{ty.count}f32"
    return b.module.globals.get(name) or ir.Function(b.module, ir.FunctionType(ty, [ty] * 3), name)


def best_of(runs: dict[str, object], reps: int = 30) -> dict[str, float]:
    """Best wall time of each callable, interleaved."""
    best = {k: float("inf") for k in runs}
    for _ in range(reps):
        for k, f in runs.items():
            t = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t)
    return best


def main() -> None:
    h = engine.host()
    print(f"host {h.cpu}, vector bytes {h.vector_bytes}, n = {N}")
    rng = np.random.default_rng(0)
    x = rng.uniform(-20, 20, N).astype(np.float32)
    a, bm, c = (rng.standard_normal(N).astype(np.float32) for _ in range(3))
    out, tmp = np.empty_like(x), np.empty_like(x)
    native, ks = build({  # native keeps the machine code alive
        "exp16": (1, 16, lambda b, xs: vecmath.emit_exp(b, xs[0])),
        "exp8": (1, 8, lambda b, xs: vecmath.emit_exp(b, xs[0])),
        "logistic16": (1, 16, lambda b, xs: vecmath.emit_logistic(b, xs[0])),
        "logistic8": (1, 8, lambda b, xs: vecmath.emit_logistic(b, xs[0])),
        "fused16": (3, 16, fused_sigmoid),
        "fused8": (3, 8, fused_sigmoid),
    })
    po, px, pa, pb, pc = (v.ctypes.data for v in (out, x, a, bm, c))

    def np_logistic():
        np.negative(x, out=tmp)
        np.exp(tmp, out=tmp)
        np.add(tmp, 1, out=tmp)
        np.divide(1, tmp, out=out)

    groups = {
        "exp": {"ours <16 x float>": lambda: ks["exp16"](po, px, N),
                "ours <8 x float>": lambda: ks["exp8"](po, px, N),
                "numpy np.exp(out=)": lambda: np.exp(x, out=out)},
        "logistic": {"ours <16 x float>": lambda: ks["logistic16"](po, px, N),
                     "ours <8 x float>": lambda: ks["logistic8"](po, px, N),
                     "numpy 4 ufuncs in place": np_logistic},
        "sigmoid(a*b+c)*2": {"ours fused <16 x float>": lambda: ks["fused16"](po, pa, pb, pc, N),
                             "ours fused <8 x float>": lambda: ks["fused8"](po, pa, pb, pc, N),
                             "numpy expression": lambda: 1 / (1 + np.exp(-(a * bm + c))) * 2},
    }
    with np.errstate(over="ignore"):
        for title, runs in groups.items():
            best = best_of(runs)
            base = best[list(runs)[-1]]
            print(f"{title}:")
            for k, t in best.items():
                print(f"  {k:26s} {N / t / 1e9:6.2f} Gelem/s  {base / t:5.2f}x numpy")


if __name__ == "__main__":
    main()

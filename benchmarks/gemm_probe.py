"""Single-thread GEMM probe: runtime.gemm vs numpy (OpenBLAS limited to 1 thread).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. python3 benchmarks/gemm_probe.py

Numpy and our kernel run interleaved (machines are shared and noisy) and each reports the
median over rounds. "kernel" times the native code alone (a native loop calls it `reps`
times); "call" adds the ctypes call of GemmKernel.__call__ with a preallocated output.
Config fields can be overridden for tuning, e.g. `--set mc=240 --set kc=384`.
"""
from __future__ import annotations

import argparse
import ctypes
import dataclasses
import os
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from runtime import engine, gemm
from runtime.gemm_ir import ARG_NAMES, POINTER_ARGS

DEFAULT = [("float32", str(n)) for n in (64, 128, 256, 512, 1024, 2048)] + \
    [("float64", "256"), ("float64", "1024")]


def shape_of(text: str) -> tuple[int, int, int]:
    """M, K, N from "n" (square) or "MxKxN"."""
    sizes = [int(s) for s in text.split("x")]
    return (sizes * 3)[:3] if len(sizes) == 1 else tuple(sizes)


def repeat_driver() -> ctypes.CFUNCTYPE:
    """Native `rep(fn, args..., reps)`: calls fn reps times, so timing excludes ctypes."""
    params = ", ".join(f"{'ptr' if n in POINTER_ARGS else 'i64'} %{n}" for n in ARG_NAMES)
    text = f"""
define void @rep(ptr %f, {params}, i64 %reps) {{
entry:
  br label %loop
loop:
  %i = phi i64 [0, %entry], [%i1, %loop]
  call void %f({params})
  %i1 = add i64 %i, 1
  %more = icmp slt i64 %i1, %reps
  br i1 %more, label %loop, label %done
done:
  ret void
}}"""
    module = engine.compile_llvm(text, pipeline="none")
    argtypes = [ctypes.c_void_p] + gemm._ARGTYPES + [ctypes.c_int64]
    fn = ctypes.CFUNCTYPE(None, *argtypes)(module.address("rep"))
    fn.module = module  # keep the machine code alive with the function
    return fn


def time_per_call(run, reps: int) -> float:
    t = time.perf_counter()
    run(reps)
    return (time.perf_counter() - t) / reps


def probe(dtype: str, m: int, k: int, n: int, kern: gemm.GemmKernel, rep, rounds: int,
          transposed: str = "") -> dict[str, float]:
    """GFLOP/s of numpy, the kernel alone and the kernel through ctypes; `transposed` names
    the operands ("a", "b", "ab") stored transposed (a.T @ b: the gradient's x.T @ ct)."""
    rng = np.random.default_rng(n)
    a = rng.standard_normal((k, m) if "a" in transposed else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if "b" in transposed else (k, n)).astype(dtype)
    a, b = (a.T if "a" in transposed else a), (b.T if "b" in transposed else b)
    c = np.empty((m, n), dtype)
    kern(a, b, out=c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-3 if dtype == "float32" else 1e-9,
                               atol=1e-3 * k)
    scratch = kern.scratch(gemm.scratch_bytes(kern.config, m, n, k))
    es = a.itemsize
    args = (a.ctypes.data, a.strides[0] // es, a.strides[1] // es,
            b.ctypes.data, b.strides[0] // es, b.strides[1] // es,
            c.ctypes.data, n, m, n, k, scratch.ctypes.data, None)
    fptr = ctypes.cast(kern.fn, ctypes.c_void_p).value
    flops = 2 * m * n * k
    reps = max(1, int(0.02 * 100e9 / flops))

    def numpy_run(r):
        for _ in range(r):
            a @ b

    def call_run(r):
        for _ in range(r):
            kern(a, b, out=c)

    times = {"numpy": [], "kernel": [], "call": []}
    for _ in range(rounds):
        times["numpy"].append(time_per_call(numpy_run, reps))
        times["kernel"].append(time_per_call(lambda r: rep(fptr, *args, r), reps))
        times["call"].append(time_per_call(call_run, reps))
    return {name: flops / statistics.median(v) / 1e9 for name, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--only", nargs="*",
                        help="dtype:n (square) or dtype:MxKxN, e.g. float32:64 float32:128x784x256")
    parser.add_argument("--set", action="append", default=[], help="config field=int")
    parser.add_argument("--transposed", default="", choices=("", "a", "b", "ab"),
                        help="operands stored transposed (a: x.T @ ct, b: ct @ w.T)")
    opts = parser.parse_args()
    cases = [tuple(s.split(":")) for s in opts.only] if opts.only else DEFAULT
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            print(f"warning: {var}={os.environ[var]} is set (run under env -u {var})")
    overrides = {k: int(v) for k, v in (s.split("=") for s in opts.set)}
    rep = repeat_driver()
    with threadpool_limits(1, user_api="blas"):
        info = [(i["internal_api"], i.get("architecture"), i["num_threads"])
                for i in threadpool_info() if i["user_api"] == "blas"]
        print(f"numpy BLAS (api, kernel core, threads): {info}")
        kernels: dict[str, gemm.GemmKernel] = {}
        for dtype, shape in cases:
            if dtype not in kernels:
                cfg = dataclasses.replace(gemm.gemm_config(dtype), **overrides)
                t = time.perf_counter()
                kernels[dtype] = gemm.GemmKernel(cfg)
                print(f"{cfg}\n  compile {1e3 * (time.perf_counter() - t):.0f} ms")
            r = probe(dtype, *shape_of(shape), kernels[dtype], rep, opts.rounds,
                      opts.transposed)
            print(f"{dtype} {shape:>12s}  numpy {r['numpy']:6.1f}  kernel {r['kernel']:6.1f} "
                  f"({r['kernel'] / r['numpy']:.2f}x)  call {r['call']:6.1f} "
                  f"({r['call'] / r['numpy']:.2f}x)  GFLOP/s", flush=True)


if __name__ == "__main__":
    main()

"""Where a workload's time goes, kernel by kernel: its program compiled with the time-stamp
counter read around every kernel call.

    python -m benchmarks.kernel_profile mlp_step [--calls 300]

Prints each kernel's time per call (the counter's rate measured against perf_counter), its
share of the call, the GFLOP/s of matmul kernels and what each kernel computes. Run it on an
otherwise idle core (taskset -c N); it is a looking glass, not a benchmark: the table of
record is `python -m benchmarks`.
"""
from __future__ import annotations

import argparse
import ctypes
import time

import numpy as np

import jit
from benchmarks.workloads import select
from ir.loops import MatmulKernel
from jit import pytree
from runtime import engine
from runtime.native import NativeExecutable


def counter_hz(seconds: float = 0.05) -> float:
    """Ticks per second of the counter the profiled kernels read (llvm.readcyclecounter)."""
    module = engine.compile_llvm("""
define i64 @ticks() {
  %t = call i64 @llvm.readcyclecounter()
  ret i64 %t
}
declare i64 @llvm.readcyclecounter()
""", pipeline="none")
    ticks = ctypes.CFUNCTYPE(ctypes.c_int64)(module.address("ticks"))
    t0, c0 = time.perf_counter(), ticks()
    time.sleep(seconds)
    t1, c1 = time.perf_counter(), ticks()
    return (c1 - c0) / (t1 - t0)


def profile(name: str, calls: int) -> None:
    matches = select(name)
    workload = next((w for w in matches if w.name == name), matches[0])
    inputs = workload.inputs(np.random.default_rng(0))
    lowered = jit.jit(workload.build(jit)).lower(*inputs)
    program = lowered.entry.compiled().program
    leaves = pytree.flatten(inputs)[0] + list(lowered.entry.traced.captured)
    executable = NativeExecutable(program, profile=True)
    executable(leaves)
    before = executable.kernel_ticks()
    start = time.perf_counter()
    for _ in range(calls):
        executable(leaves)
    wall = (time.perf_counter() - start) / calls
    hz = counter_hz()
    seconds = [(after - b) / hz / calls for after, b in zip(executable.kernel_ticks(), before)]
    print(f"{workload.title}: {wall * 1e6:.1f} us a call, kernels {sum(seconds) * 1e6:.1f} us "
          f"(counter at {hz / 1e9:.3f} GHz, {calls} calls)")
    for kernel, s in zip(program.kernels, seconds):
        rate = ""
        if isinstance(kernel, MatmulKernel):
            flops = 2 * kernel.m * kernel.n * kernel.k * int(np.prod(kernel.batch, dtype=int))
            rate = f"{flops / s / 1e9:6.0f} GFLOP/s" if s else ""
        print(f"  {kernel.name:>4} {s * 1e6:8.1f} us {100 * s / wall:5.1f}%  {rate:>14}  "
              f"{', '.join(kernel.computes)[:90]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", help="a name of `python -m benchmarks --only`")
    parser.add_argument("--calls", type=int, default=300)
    opts = parser.parse_args()
    profile(opts.workload, opts.calls)


if __name__ == "__main__":
    main()

"""What the numbers were measured on: CPU, versions, BLAS kernel, and the load other
processes put on the machine while we ran (shared machines make that the main noise source)."""
from __future__ import annotations

import os
import platform
import resource
import time
from dataclasses import dataclass
from importlib import metadata

import numpy as np


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def llvm_host() -> dict:
    """The CPU name and features tensorjit compiles for (from LLVM, not /proc)."""
    from runtime import engine
    host = engine.host()
    return {"cpu": host.cpu, "vector_bytes": host.vector_bytes,
            **{f: host.has(f) for f in ("avx2", "fma", "avx512f")}}


def blas_info() -> list[dict]:
    """Which BLAS numpy runs and with which kernel ("architecture") and thread count."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("internal_api", "version", "architecture", "num_threads", "threading_layer")
    return [{k: info.get(k) for k in keys} for info in threadpool_info()
            if info.get("user_api") == "blas"]


def pin_to_one_cpu() -> None:
    """Run this process (and every thread any library starts) on one CPU: the one sure way to
    hold every system to one core (XLA's CPU runtime, for one, ignores its thread flags)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def limit_blas_threads() -> bool:
    """One BLAS thread for the rest of this process; False without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return False
    threadpool_limits(limits=1)
    return True


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict:
    import llvmlite
    found = {"python": platform.python_version(), "numpy": np.__version__,
             "llvmlite": llvmlite.__version__, "tensorjit": _version("tensorjit") or "source"}
    for dist in ("jax", "torch", "numba", "threadpoolctl", "matplotlib"):
        found[dist] = _version(dist)
    return found


def loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


_PEAK_CHAINS = 16        # independent FMA chains: more than latency x pipes on any x86 core
_PEAK_ITERATIONS = 1 << 20


def _fma_loop(dtype: str):
    """A native loop of `_PEAK_CHAINS` independent vector FMAs per iteration, at the widest
    vector the code generator uses: nothing but FMAs, so its rate is the core's peak."""
    import ctypes

    from runtime import engine
    host = engine.host()
    bits = 32 if dtype == "float32" else 64
    ty = "float" if bits == 32 else "double"
    lanes = host.vector_bytes * 8 // bits
    vec, fma = f"<{lanes} x {ty}>", f"@llvm.fma.v{lanes}f{bits}"
    chains = "\n".join([f"  %a{i} = phi {vec} [zeroinitializer, %entry], [%b{i}, %loop]"
                         for i in range(_PEAK_CHAINS)]
                        + [f"  %b{i} = call {vec} {fma}({vec} %a{i}, {vec} %x, {vec} %x)"
                           for i in range(_PEAK_CHAINS)])
    total = "\n".join(f"  %s{i + 1} = fadd {vec} %s{i}, %b{i}" for i in range(_PEAK_CHAINS))
    text = f"""
declare {vec} {fma}({vec}, {vec}, {vec})
define {ty} @peak(i64 %n, {ty} %v) #0 {{
entry:
  %x0 = insertelement {vec} undef, {ty} %v, i32 0
  %x = shufflevector {vec} %x0, {vec} undef, <{lanes} x i32> zeroinitializer
  br label %loop
loop:
  %i = phi i64 [0, %entry], [%j, %loop]
{chains}
  %j = add i64 %i, 1
  %more = icmp slt i64 %j, %n
  br i1 %more, label %loop, label %done
done:
  %s0 = fadd {vec} zeroinitializer, zeroinitializer
{total}
  %r = extractelement {vec} %s{_PEAK_CHAINS}, i32 0
  ret {ty} %r
}}
attributes #0 = {{ {engine.function_attributes()} "min-legal-vector-width"="{lanes * bits}" }}
"""
    module = engine.compile_llvm(text, pipeline="none")
    ctype = ctypes.c_float if bits == 32 else ctypes.c_double
    fn = ctypes.CFUNCTYPE(ctype, ctypes.c_int64, ctype)(module.address("peak"))
    return fn, module, lanes


def fma_peak_gflops() -> dict[str, float]:
    """The measured FMA peak of one core, per float dtype (best of 7 runs of ~10 ms): the
    ceiling the matmul rows' GFLOP/s are a fraction of."""
    peaks = {}
    for dtype in ("float32", "float64"):
        fn, _module, lanes = _fma_loop(dtype)
        fn(1000, 1e-3)
        best = min(_seconds(lambda: fn(_PEAK_ITERATIONS, 1e-3)) for _ in range(7))
        peaks[dtype] = _PEAK_ITERATIONS * _PEAK_CHAINS * lanes * 2 / best / 1e9
    return peaks


def _seconds(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def machine_info() -> dict:
    return {"cpu_model": cpu_model(), "cores": os.cpu_count(), "llvm_host": llvm_host(),
            "fma_peak_gflops": fma_peak_gflops(), "blas": blas_info(), "versions": versions(),
            "loadavg_at_start": loadavg()}


@dataclass(frozen=True)
class CpuSnapshot:
    wall: float
    busy: float   # CPU-seconds every process spent (user, nice, system, irq, softirq, steal)
    own: float    # CPU-seconds of this process and the children it has waited for


def _jiffies_busy() -> float:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def snapshot() -> CpuSnapshot:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    return CpuSnapshot(time.monotonic(), _jiffies_busy(), own)


def foreign_cpus(start: CpuSnapshot, end: CpuSnapshot) -> float:
    """Average number of CPUs kept busy by other processes (or stolen by the hypervisor)
    between two snapshots; /proc/stat ticks at 10 ms, so short windows are approximate."""
    wall = end.wall - start.wall
    if wall <= 0:
        return 0.0
    return max(0.0, (end.busy - start.busy) - (end.own - start.own)) / wall

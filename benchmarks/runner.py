"""One workload in a child process, so that a crash of one system (or of the compiler) costs a
row rather than the run. The parent reads events from stdout, one JSON object a line after
EVENT; the last `start` event before a crash names the system that was running.

    python -m benchmarks.runner time NAME [--quick] [--threads 1|all] [--skip SYSTEM,...]
    python -m benchmarks.runner first-call NAME SYSTEM
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import traceback
from typing import Any

import numpy as np

from benchmarks import harness, machine
from benchmarks.systems import SYSTEMS, NotSupported, System, by_name
from benchmarks.workloads import WORKLOADS, Workload, to_float64

EVENT = "BENCH-EVENT "


def emit(**event: Any) -> None:
    print(EVENT + json.dumps(event), flush=True)


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".strip()


def _inputs(w: Workload) -> tuple[tuple, Any]:
    inputs = w.inputs(np.random.default_rng(0))
    return inputs, w.numpy()(*to_float64(inputs))


def check_system(system: System, w: Workload, inputs: tuple, ref: Any) -> Any:
    """Prepare the system's call, run it once and check it; returns the call if correct.
    Emits the outcome; a wrong result is never timed."""
    emit(event="start", system=system.name, phase="check")
    reason = system.unavailable()
    if reason:
        emit(event="status", system=system.name, status="skipped", note=reason)
        return None
    try:
        run = system.prepare(w, inputs)
        start = time.perf_counter()
        out = run()
        first = time.perf_counter() - start
        worst = harness.check(system.to_numpy(out), ref, w.reduce_len)
        del out
        gc.collect()  # heap damage done by this system's call shows now, blamed on it
    except NotSupported as e:
        emit(event="status", system=system.name, status="n/a", note=str(e))
        return None
    except harness.WrongResult as e:
        emit(event="status", system=system.name, status="failed", error=f"wrong result: {e}")
        return None
    except Exception as e:  # any error of a system is a failed row, reported with its message
        traceback.print_exc(file=sys.stderr)
        emit(event="status", system=system.name, status="failed", error=_error(e))
        return None
    emit(event="status", system=system.name, status="ok", first_call=first, error_ratio=worst)
    return run


def time_workload(w: Workload, settings: harness.Settings, one_thread: bool,
                  skip: frozenset[str] = frozenset()) -> None:
    inputs, ref = _inputs(w)
    runners, systems = {}, {}
    for system in (s for s in SYSTEMS if s.name not in skip):
        if system.unavailable() is None:
            system.configure(one_thread)
        run = check_system(system, w, inputs, ref)
        if run is not None:
            runners[system.name], systems[system.name] = run, system
    emit(event="start", system=",".join(runners), phase="timing")
    timings = harness.interleaved(runners, settings)
    for name, timing in timings.items():
        try:  # the last call must be right too (a reused output buffer, say)
            harness.check(systems[name].to_numpy(runners[name]()), ref, w.reduce_len)
        except harness.WrongResult as e:
            emit(event="status", system=name, status="failed",
                 error=f"wrong result after timing: {e}")
            continue
        emit(event="timing", system=name, **timing)


def first_call(w: Workload, system: System) -> None:
    """Time the first call in this (fresh) process: tracing, compiling and one run."""
    emit(event="start", system=system.name, phase="first-call")
    start = time.perf_counter()
    inputs, ref = _inputs(w)
    try:
        run = system.prepare(w, inputs)  # imports the system; timed apart from the first call
    except NotSupported as e:
        emit(event="status", system=system.name, status="n/a", note=str(e))
        return
    imported = time.perf_counter() - start
    start = time.perf_counter()
    out = run()
    seconds = time.perf_counter() - start
    harness.check(system.to_numpy(out), ref, w.reduce_len)
    extra = {}
    if system.name == "tensorjit":
        import jit
        extra = jit.jit(w.build(jit)).lower(*inputs).compile().stats
    emit(event="first_call", system=system.name, seconds=seconds, import_seconds=imported,
         stats={k: v for k, v in extra.items() if isinstance(v, (int, float, str))})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.runner")
    parser.add_argument("mode", choices=("time", "first-call"))
    parser.add_argument("name", choices=sorted(WORKLOADS))
    parser.add_argument("system", nargs="?")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", choices=("1", "all"), default="1")
    parser.add_argument("--skip", default="", help="systems not to run (they crashed before)")
    args = parser.parse_args(argv)
    w = WORKLOADS[args.name]
    if args.threads == "1":
        machine.pin_to_one_cpu()
    if args.mode == "first-call":
        first_call(w, by_name(args.system))
        return
    if args.threads == "1":
        machine.limit_blas_threads()  # without threadpoolctl, OPENBLAS_NUM_THREADS=1 acts
    time_workload(w, harness.Settings.of(args.quick), args.threads == "1",
                  frozenset(args.skip.split(",")))


if __name__ == "__main__":
    main()

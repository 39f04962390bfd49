"""Running rows: one child process per timed workload (benchmarks.runner) and fresh processes
for first-call times, turning their events (or their crash) into one row each."""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import machine
from benchmarks.harness import Settings
from benchmarks.runner import EVENT
from benchmarks.systems import FIRST_CALL_SYSTEMS, SYSTEMS, by_name
from benchmarks.workloads import Workload

TIMEOUT = 900  # seconds for one child: far above any row's time, a hang becomes a failure
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
               "TENSORJIT_NUM_THREADS", "NUMBA_NUM_THREADS")


def child_env(threads: str, **extra: str) -> dict[str, str]:
    """The children's environment: one thread for every library with --threads 1 (set before
    they load, so it holds even without threadpoolctl)."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    if threads == "1":
        env.update({k: "1" for k in THREAD_VARS})
    env.update(extra)
    return env


def _run_child(args: list[str], env: dict[str, str]) -> tuple[list[dict], str | None]:
    """Run `python -m benchmarks.runner ARGS`; returns its events and, if it did not exit
    cleanly, why (with the end of its stderr)."""
    cmd = [sys.executable, "-m", "benchmarks.runner", *args]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return [], f"timed out after {TIMEOUT} s"
    events = [json.loads(line[len(EVENT):]) for line in proc.stdout.splitlines()
              if line.startswith(EVENT)]
    if proc.returncode == 0:
        return events, None
    code = proc.returncode
    how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
    tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
    return events, f"process {how}: {tail}" if tail else f"process {how}"


def time_row(w: Workload, threads: str, quick: bool) -> dict:
    """Time a workload in a child; when the child crashes, blame the systems it was running
    and run the workload again without them, so the others still get their numbers."""
    systems: dict[str, dict] = {s.name: {"status": "not run"} for s in SYSTEMS}
    crashed: set[str] = set()
    while True:
        args = ["time", w.name, "--threads", threads, "--skip", ",".join(sorted(crashed))]
        events, crash = _run_child(args + (["--quick"] if quick else []), child_env(threads))
        running, phase = _apply_events(events, systems)
        if not crash:
            return {"systems": systems}
        # Timed together, a crash can't be pinned on one system; numpy is the least likely.
        blamed = [n for n in running if n != "numpy"] or running
        last_try = not blamed or bool(crashed & set(blamed))  # skipping would not help
        if last_try:
            blamed = [n for n, r in systems.items() if r["status"] in ("not run", "ok")]
        together = f" (timed together with {', '.join(running)})" if len(running) > 1 else ""
        for name in blamed:
            systems[name] = {"status": "failed",
                             "error": f"crashed during its {phase}{together}: {crash}"}
        if last_try:
            return {"systems": systems}
        crashed.update(blamed)


def _apply_events(events: list[dict], systems: dict[str, dict]) -> tuple[list[str], str]:
    """Record a child's outcomes in `systems`; returns what it was running last, and the
    phase (check or timing), which is what a crash is blamed on."""
    running: list[str] = []
    phase = "startup"
    for e in events:
        if e["event"] == "start":
            running, phase = [n for n in e["system"].split(",") if n], e["phase"]
        elif e["event"] == "status":
            systems[e["system"]] = {k: v for k, v in e.items() if k not in ("event", "system")}
            running = []
        elif e["event"] == "timing":
            systems[e["system"]].update(seconds=e["median"], samples=e["samples"],
                                        loops=e["loops"])
    return running, phase


def first_call_row(w: Workload, runs: int) -> dict:
    """Median first-call time over fresh processes, each with an empty compile cache; for
    tensorjit also with a warm cache when it writes one."""
    systems: dict[str, dict] = {s.name: {"status": "n/a"} for s in SYSTEMS}
    for name in FIRST_CALL_SYSTEMS:
        reason = by_name(name).unavailable()
        systems[name] = {"status": "skipped", "note": reason} if reason \
            else _first_calls(w.first_call_of, name, runs)
    return {"systems": systems}


def _first_calls(target: str, system: str, runs: int) -> dict:
    cold: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="tj-bench-cache-") as root:
        for i in range(runs):
            cache = Path(root, f"cold{i}")
            cache.mkdir()
            result = _first_call(target, system, cache)
            if result.get("status") == "n/a":
                return result
            if "error" in result:
                return {"status": "failed", "error": result["error"]}
            cold.append(result)
        row = {"status": "ok", "seconds": statistics.median(r["seconds"] for r in cold),
               "runs": [r["seconds"] for r in cold], "import_seconds": cold[-1]["import_seconds"],
               "stats": cold[-1]["stats"], "cache": "cold"}
        if system != "tensorjit":
            return row
        if not any(cache.iterdir()):
            row["note"] = "warm cache not available yet (nothing written to TENSORJIT_CACHE_DIR)"
            return row
        warm = [_first_call(target, system, cache) for _ in range(runs)]
        if any("error" in r for r in warm):
            row["note"] = "warm-cache run failed: " + next(r["error"] for r in warm if "error" in r)
        else:
            row["warm_seconds"] = statistics.median(r["seconds"] for r in warm)
    return row


def _first_call(target: str, system: str, cache: Path) -> dict:
    env = child_env("all", TENSORJIT_CACHE_DIR=str(cache),
                    TORCHINDUCTOR_CACHE_DIR=str(cache / "inductor"))
    events, crash = _run_child(["first-call", target, system], env)
    done = [e for e in events if e["event"] == "first_call"]
    unsupported = [e for e in events if e["event"] == "status" and e["status"] == "n/a"]
    if unsupported and not crash:
        return {"status": "n/a", "note": unsupported[0]["note"]}
    if crash or not done:
        return {"error": crash or "no result"}
    return done[0]


def run_row(w: Workload, threads: str, quick: bool) -> dict:
    """One row: its systems' results, its wall time and the foreign load while it ran."""
    start = machine.snapshot()
    t0 = time.perf_counter()
    if w.first_call_of:
        row = first_call_row(w, Settings.of(quick).first_call_runs)
    else:
        row = time_row(w, threads, quick)
    end = machine.snapshot()
    return {"name": w.name, "title": w.title, "flops": w.flops, "dtype": w.dtype,
            "per_call": w.per_call,
            "first_call": bool(w.first_call_of), "wall_seconds": time.perf_counter() - t0,
            "foreign_cpus": machine.foreign_cpus(start, end), **row}

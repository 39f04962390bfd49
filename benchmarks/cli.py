"""The suite's options and main loop: select rows, run each in its own process with a progress
line on stderr, then print the table and write the JSON and the plot."""
from __future__ import annotations

import argparse
import sys
import time

from benchmarks import machine, report, suite
from benchmarks.workloads import WORKLOADS, select


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true",
                   help="fewer, shorter samples (the whole suite in a few minutes)")
    p.add_argument("--only", metavar="NAME,...",
                   help="workloads to run; a prefix selects several (e.g. matmul). "
                        "Known: " + ", ".join(WORKLOADS))
    p.add_argument("--threads", choices=("1", "all"), default="1",
                   help="threads for numpy's BLAS and every system (default: 1)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument("--plot", metavar="PATH", help="write a PNG of the speedups over numpy")
    return p.parse_args(argv)


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None, removed_env: str = "") -> None:
    args = parse(argv)
    try:
        workloads = select(args.only)
    except ValueError as e:
        sys.exit(f"python -m benchmarks: {e}")
    if args.threads == "1":
        machine.limit_blas_threads()  # as the children do, so the header shows their setting
    info = {"command": " ".join(["python -m benchmarks", *sys.argv[1:]]),
            "quick": args.quick, "threads": args.threads, "openblas_removed": removed_env,
            "machine": machine.machine_info()}
    print(report.header(info), flush=True)
    start, t0 = machine.snapshot(), time.perf_counter()
    rows = []
    for i, w in enumerate(workloads, 1):
        progress(f"[{i:2d}/{len(workloads)}] {w.name} ...")
        row = suite.run_row(w, args.threads, args.quick)
        failed = [s for s, r in row["systems"].items() if r["status"] == "failed"]
        progress(f"        {row['wall_seconds']:.1f} s" +
                 (f", FAILED: {', '.join(failed)}" if failed else ""))
        rows.append(row)
    info["duration_seconds"] = time.perf_counter() - t0
    info["foreign_cpus"] = machine.foreign_cpus(start, machine.snapshot())
    info["loadavg_at_end"] = machine.loadavg()
    print()
    print(report.table(rows, info["machine"]["fma_peak_gflops"]))
    for line in report.notes(rows):
        print(line)
    print(report.footer(info))
    if args.json:
        report.write_json(info, rows, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        problem = report.plot(rows, args.plot, report.plot_title(info))
        print(problem or f"wrote {args.plot}")

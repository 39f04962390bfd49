"""Showing a run: the header (machine, versions, load), the table of medians and speedups over
numpy, the failures, and the JSON and PNG forms of the same results."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CELL = 20  # width of a system's column, before the space that always separates columns


def fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def speedup(row: dict, system: str) -> float | None:
    """numpy's time over the system's, from the same run (> 1: faster than numpy)."""
    base, other = row["systems"]["numpy"], row["systems"][system]
    if base.get("seconds") and other.get("seconds"):
        return base["seconds"] / other["seconds"]
    return None


def _cell(row: dict, system: str) -> str:
    r = row["systems"][system]
    status = r["status"]
    if status == "failed":
        return "FAILED"
    if status != "ok" or "seconds" not in r:
        return {"skipped": "skipped", "n/a": "n/a"}.get(status, "-")
    text = fmt_time(r["seconds"])
    if row["first_call"]:
        warm = r.get("warm_seconds")
        return text + (f" / {fmt_time(warm)} warm" if warm else " cold")
    ratio = speedup(row, system)
    return text if system == "numpy" or ratio is None else f"{text} {ratio:5.2f}x"


def _gflops(row: dict, peaks: dict[str, float]) -> str:
    """numpy's and tensorjit's GFLOP/s, and tensorjit's as a fraction of the core's peak."""
    if not row["flops"]:
        return ""
    rates = [row["flops"] / s / 1e9 if s else None
             for s in (row["systems"][name].get("seconds") for name in ("numpy", "tensorjit"))]
    text = " / ".join(f"{r:.0f}" if r else "-" for r in rates)
    peak = peaks.get(row.get("dtype", "float32"))
    return text + (f" ({rates[1] / peak:.0%})" if rates[1] and peak else "")


def shown_systems(rows: list[dict]) -> list[str]:
    """numpy, tensorjit, and the peers that ran somewhere (the rest get a note)."""
    names = list(rows[0]["systems"]) if rows else ["numpy", "tensorjit"]
    return [n for n in names if n in ("numpy", "tensorjit")
            or any(r["systems"][n]["status"] in ("ok", "failed") for r in rows)]


def table(rows: list[dict], peaks: dict[str, float]) -> str:
    """The results; `peaks` (GFLOP/s per dtype) adds tensorjit's fraction of the FMA peak."""
    systems = shown_systems(rows)
    width = max([len("workload")] + [len(r["title"]) for r in rows])
    head = f"{'workload':<{width}}  " + "".join(f" {s:>{CELL}}" for s in systems) + \
        f"  {'GFLOP/s np / tj (peak)':>22}  {'load':>5}"
    lines = [head, "-" * len(head)]
    for row in rows:
        lines.append(f"{row['title']:<{width}}  "
                     + "".join(f" {_cell(row, s):>{CELL}}" for s in systems)
                     + f"  {_gflops(row, peaks):>22}  {row['foreign_cpus']:5.2f}")
    return "\n".join(lines)


def notes(rows: list[dict]) -> list[str]:
    """Failures with their errors, skipped peers with the reason, and other remarks."""
    out, skipped = [], {}
    for row in rows:
        for system, r in row["systems"].items():
            if r["status"] == "failed":
                out.append(f"FAILED {system} on {row['name']}: {r['error']}")
            elif r["status"] == "skipped":
                skipped.setdefault(system, r.get("note", ""))
            elif r["status"] == "ok" and row["first_call"]:
                stats = r.get("stats", {})
                compiled = f", compile_seconds {stats['compile_seconds']:.3f} s, " \
                    f"{stats.get('kernels')} kernels" if "compile_seconds" in stats else ""
                runs = ", ".join(map(fmt_time, r["runs"]))
                setup = fmt_time(r["import_seconds"])
                out.append(f"{system} {row['name']}: first calls {runs} (after {setup} of imports "
                           f"and setup{compiled}){'; ' + r['note'] if r.get('note') else ''}")
    out += [f"{system}: skipped ({why})" for system, why in skipped.items()]
    return out


def header(info: dict) -> str:
    m, v = info["machine"], info["machine"]["versions"]
    host = m["llvm_host"]
    feats = " ".join(f for f in ("avx2", "fma", "avx512f") if host.get(f))
    blas = ", ".join(f"{b['internal_api']} {b['version']} kernel {b['architecture']}, "
                     f"threads {b['num_threads']}" for b in m["blas"]) or \
        "unknown (threadpoolctl is not installed; --threads 1 sets OPENBLAS_NUM_THREADS=1)"
    removed = info["openblas_removed"] or "none were set"
    lines = [
        f"machine: {m['cpu_model']}, {m['cores']} cores; LLVM host {host['cpu']} ({feats})",
        "versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val),
        f"numpy BLAS: {blas}; removed for this run: {removed}",
        f"threads: {info['threads']}; mode: {'quick' if info['quick'] else 'full'}; "
        f"loadavg at start: {' '.join(str(x) for x in m['loadavg_at_start'])}",
        "FMA peak of one core, measured: " + ", ".join(
            f"{dtype} {gflops:.0f} GFLOP/s" for dtype, gflops in m["fma_peak_gflops"].items()),
        "times are medians; 'Nx' = numpy time / system time (>1: faster than numpy); "
        "load = CPUs busy with other processes during the row",
    ]
    return "\n".join(lines)


def footer(info: dict) -> str:
    return (f"foreign load over the run: {info['foreign_cpus']:.2f} CPUs; loadavg at end: "
            f"{' '.join(str(x) for x in info['loadavg_at_end'])}; "
            f"total time {info['duration_seconds']:.0f} s")


def plot_title(info: dict) -> str:
    m = info["machine"]
    return (f"tensorjit vs numpy ({info['threads']} thread{'s' if info['threads'] != '1' else ''}"
            f"), {m['cpu_model']} {m['llvm_host']['cpu']}, {m['cores']} cores, "
            f"foreign load {info['foreign_cpus']:.1f} CPUs")


def write_json(info: dict, rows: list[dict], path: str) -> None:
    Path(path).write_text(json.dumps({**info, "rows": rows}, indent=1))


def plot(rows: list[dict], path: str, title: str = "") -> str | None:
    """A PNG of each system's speedup over numpy per workload; returns why not, if it can't."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return "matplotlib is not installed (pip install 'tensorjit[bench]'); no plot written"
    systems = [s for s in shown_systems(rows) if s != "numpy"]
    timed = [r for r in rows if not r["first_call"]]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(timed) * max(1, len(systems)) + 1.5))
    bar = 0.8 / max(1, len(systems))
    for i, system in enumerate(systems):
        ys = [k + i * bar for k in range(len(timed))]
        values: list[Any] = [speedup(r, system) for r in timed]
        drawn = [(y, v) for y, v in zip(ys, values) if v]
        # bars grow from 1 (parity with numpy): right when faster, left when slower
        ax.barh([y for y, _ in drawn], [v - 1 for _, v in drawn], left=1, height=bar,
                label=system)
        for y, v in drawn:
            ax.text(v, y, f" {v:.2f}x " if v >= 1 else f" {v:.2f}x", va="center",
                    ha="left" if v >= 1 else "right", fontsize=7)
        for y, v, r in zip(ys, values, timed):
            if v is None and r["systems"][system]["status"] == "failed":
                ax.text(1, y, f" {system} FAILED", va="center", fontsize=7, color="red")
    ax.set_yticks([k + bar * (len(systems) - 1) / 2 for k in range(len(timed))])
    ax.set_yticklabels([r["title"] for r in timed], fontsize=8)
    ax.set_ylim(len(timed) - bar / 2, -bar / 2 - 0.2)  # top to bottom, FAILED rows too
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("speedup over numpy (numpy time / system time; log scale)")
    shown = [v for r in timed for v in (speedup(r, s) for s in systems) if v] or [1.0]
    lo, hi = min(min(shown), 1.0) / 1.5, max(max(shown), 1.0) * 1.5
    ax.set_xlim(lo, hi)
    ticks = [t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)
             if lo <= t <= hi]
    ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}x"))
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06 - 0.4 / fig.get_figheight()),
              ncol=len(systems), fontsize=8, frameon=False)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return None

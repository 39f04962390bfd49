"""Checking results and timing them: a result is compared with a float64 reference before it
is timed, and systems are timed interleaved so that a burst of foreign load hits all alike."""
from __future__ import annotations

import gc
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


class WrongResult(AssertionError):
    """A system's result disagrees with the reference: it must not be timed or reported."""


@dataclass(frozen=True)
class Settings:
    rounds: int          # timed samples per system (the median is reported)
    warmup: int          # untimed rounds before them
    min_sample: float    # seconds: fast workloads loop many calls per sample
    first_call_runs: int  # fresh processes per first-call (compile time) measurement

    @staticmethod
    def of(quick: bool) -> "Settings":
        return QUICK if quick else FULL


QUICK = Settings(rounds=5, warmup=1, min_sample=0.01, first_call_runs=1)
FULL = Settings(rounds=25, warmup=2, min_sample=0.1, first_call_runs=5)


def leaves(tree: Any) -> list[Any]:
    """The leaves of a result (tuples, lists and dicts nest), in a fixed order."""
    if isinstance(tree, (tuple, list)):
        return [leaf for item in tree for leaf in leaves(item)]
    if isinstance(tree, dict):
        return [leaf for key in sorted(tree) for leaf in leaves(tree[key])]
    return [tree]


def tolerance(dtype: np.dtype, reduce_len: int) -> float:
    """Relative tolerance for a result whose elements each sum `reduce_len` products: rounding
    errors of a float32 dot product grow about like sqrt(K) units of 1e-4 or less."""
    base = 1e-4 if np.dtype(dtype) == np.float32 else 1e-10
    return base * math.sqrt(max(1, reduce_len))


def check(got: Any, ref: Any, reduce_len: int = 1) -> float:
    """Raise WrongResult unless every leaf of `got` matches the float64 reference `ref`.

    An element passes when |got - ref| <= tol * (|ref| + rms(ref)): relative where values are
    large, and measured against the typical magnitude where they cancel to near zero.
    Returns the worst error as a fraction of the tolerance (<= 1 when correct).
    """
    got_leaves, ref_leaves = leaves(got), leaves(ref)
    if len(got_leaves) != len(ref_leaves):
        raise WrongResult(f"expected {len(ref_leaves)} results, got {len(got_leaves)}")
    worst = 0.0
    for i, (g, r) in enumerate(zip(got_leaves, ref_leaves)):
        g, r = np.asarray(g), np.asarray(r, dtype=np.float64)
        if g.shape != r.shape:
            raise WrongResult(f"result {i}: expected shape {r.shape}, got {g.shape}")
        if not np.issubdtype(g.dtype, np.floating):
            raise WrongResult(f"result {i}: expected a float result, got {g.dtype}")
        tol = tolerance(g.dtype, reduce_len)
        scale = float(np.sqrt(np.mean(r * r))) if r.size else 0.0
        allowed = tol * (np.abs(r) + scale) + np.finfo(g.dtype).tiny
        with np.errstate(invalid="ignore"):
            ratio = np.abs(g.astype(np.float64) - r) / allowed
        ratio = np.where(np.isnan(ratio), np.inf, ratio)
        at = np.unravel_index(int(np.argmax(ratio)), r.shape) if r.size else ()
        bad = float(ratio[at]) if r.size else 0.0
        if bad > 1.0:
            raise WrongResult(
                f"result {i} (shape {r.shape}) at index {tuple(int(j) for j in at)}: got "
                f"{g[at]!r}, expected {r[at]!r} (allowed error {allowed[at]:.3g}, rtol {tol:.2g}); "
                f"{int(np.count_nonzero(ratio > 1))} of {r.size} elements are off")
        worst = max(worst, bad)
    return worst


def _sample(run: Callable[[], Any], loops: int) -> float:
    start = time.perf_counter()
    for _ in range(loops):
        run()
    return (time.perf_counter() - start) / loops


def calibrate(run: Callable[[], Any], min_sample: float) -> int:
    """Calls per sample so that one sample lasts at least `min_sample` seconds."""
    loops = 1
    while True:
        elapsed = _sample(run, loops) * loops
        if elapsed >= min_sample or loops >= 1 << 24:
            return loops
        loops = max(loops * 2, int(loops * 1.2 * min_sample / max(elapsed, 1e-9)))


def interleaved(runners: dict[str, Callable[[], Any]], settings: Settings,
                on_round: Callable[[int], None] | None = None) -> dict[str, dict]:
    """Time every runner in turns (A, B, A, B, ...; the first of a round rotates), with the
    garbage collector off during samples. Returns per runner the median seconds per call,
    the samples and the calls per sample."""
    loops = {name: calibrate(run, settings.min_sample) for name, run in runners.items()}
    samples: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for r in range(settings.warmup + settings.rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            gc.disable()
            try:
                seconds = _sample(runners[name], loops[name])
            finally:
                gc.enable()
            if r >= settings.warmup:
                samples[name].append(seconds)
        if on_round is not None:
            on_round(r)
    return {name: {"median": statistics.median(samples[name]), "samples": samples[name],
                   "loops": loops[name]} for name in names}

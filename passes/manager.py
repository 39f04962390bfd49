"""Runs named passes in order; verifies after each under tests; dumps each stage when asked.

`TENSORJIT_DUMP=DIR` writes the IR after every pass (and, from the runtime, every later stage)
to DIR. `TENSORJIT_VERIFY=1` (set by the test suite) runs `ir.verify` after every pass.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Callable, Sequence

from ir import Function, verify
from passes.cse import cse
from passes.dce import dce
from passes.simplify import simplify

Pass = Callable[[Function], Function]

OPTIMIZE: tuple[tuple[str, Pass], ...] = (
    ("simplify", simplify),
    ("cse", cse),
    ("dce", dce),
)

_dump_counter = itertools.count()


def dump(fn_name: str, stage: str, text: str) -> None:
    """Write one stage's text to $TENSORJIT_DUMP, numbered in the order stages were made."""
    directory = os.environ.get("TENSORJIT_DUMP")
    if not directory:
        return
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    (path / f"{next(_dump_counter):04d}-{fn_name}-{stage}.txt").write_text(text)


def run_pipeline(fn: Function, pipeline: Sequence[tuple[str, Pass]] = OPTIMIZE,
                 rounds: int = 1) -> Function:
    """Run the passes in order, the whole sequence again (up to `rounds` times) while it
    changes something; a later round dumps only the passes that changed the program."""
    check = os.environ.get("TENSORJIT_VERIFY") == "1"
    dump(fn.name, "input", str(fn))
    for round_number in range(rounds):
        start = fn
        for name, pass_fn in pipeline:
            result = pass_fn(fn)
            if check:
                verify(result)
            if round_number == 0 or result != fn:
                dump(result.name, name, str(result))
            fn = result
        if fn == start:
            break
    return fn


def optimize(fn: Function) -> Function:
    """The default pipeline to a fixed point (CSE can make simplifications: two equal ops
    merged make `where(c, x, x)`): what `lower(...).as_text("optimized")` shows."""
    return run_pipeline(fn, OPTIMIZE, rounds=4)

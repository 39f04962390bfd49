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


def run_pipeline(fn: Function, pipeline: Sequence[tuple[str, Pass]] = OPTIMIZE) -> Function:
    check = os.environ.get("TENSORJIT_VERIFY") == "1"
    dump(fn.name, "input", str(fn))
    for name, pass_fn in pipeline:
        fn = pass_fn(fn)
        if check:
            verify(fn)
        dump(fn.name, name, str(fn))
    return fn


def optimize(fn: Function) -> Function:
    """The default pipeline: what `lower(...).as_text("optimized")` shows."""
    return run_pipeline(fn, OPTIMIZE)

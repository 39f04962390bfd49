"""IR -> IR transformations. Each pass is a pure function in a module named after it."""
from passes.autodiff import vjp
from passes.cse import cse
from passes.dce import dce
from passes.lower import lower
from passes.manager import OPTIMIZE, dump, optimize, run_pipeline
from passes.simplify import simplify

__all__ = ["OPTIMIZE", "cse", "dce", "dump", "lower", "optimize", "run_pipeline", "simplify",
           "vjp"]

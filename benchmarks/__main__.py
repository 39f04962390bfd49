"""`python -m benchmarks`: tensorjit against numpy (and JAX, PyTorch, numba when installed).

numpy must be timed without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, which this kind of machine
sets for old OpenBLAS builds and which slow a current one. They only take effect when OpenBLAS
loads, so the suite re-executes itself without them before numpy is imported; the removed
values are passed on for the report.
"""
import os
import sys

OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
REMOVED = "TENSORJIT_BENCH_REMOVED_ENV"


def reexec_without_openblas_overrides() -> None:
    removed = [f"{k}={os.environ[k]}" for k in OVERRIDES if k in os.environ]
    if removed:
        env = {k: v for k, v in os.environ.items() if k not in OVERRIDES}
        env[REMOVED] = " ".join(removed)
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks", *sys.argv[1:]], env)


if __name__ == "__main__":
    reexec_without_openblas_overrides()
    from benchmarks.cli import main
    main(removed_env=os.environ.get(REMOVED, ""))

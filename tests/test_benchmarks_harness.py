"""The benchmark suite runs end to end, and its checker refuses wrong results (no timings are
asserted: they depend on the machine and its load)."""
import io
import json
import os
import re
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from benchmarks import harness, runner, workloads
from benchmarks.systems import NotSupported, System

ROOT = Path(__file__).resolve().parents[1]


def test_quick_run_of_one_tiny_workload_prints_its_row():
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--only",
                           "dispatch_add_one"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    row = re.search(r"^x \+ 1, 8 floats \(per call\)\s+(.*)$", proc.stdout, re.M)
    assert row, proc.stdout
    assert re.search(r"[\d.]+ [nµm]?s\s+[\d.]+ [nµm]?s\s+[\d.]+x", row.group(1)), row.group(0)
    assert "OPENBLAS_CORETYPE" not in proc.stdout.split("removed for this run:")[0]


def test_checker_refuses_a_wrong_result():
    ref = np.linspace(-1, 1, 16).reshape(4, 4)
    wrong = ref.astype(np.float32)
    wrong[1, 2] += 1e-2
    with pytest.raises(harness.WrongResult, match=r"index \(1, 2\)"):
        harness.check(wrong, ref)
    with pytest.raises(harness.WrongResult, match="shape"):
        harness.check(wrong[:2], ref)
    nan = ref.astype(np.float32)
    nan[0, 0] = np.nan
    with pytest.raises(harness.WrongResult):
        harness.check(nan, ref)
    assert harness.check(ref.astype(np.float32), ref) <= 1.0


class _Wrong(System):
    name = "wrong"

    def prepare(self, w, inputs):
        return lambda: w.numpy()(*inputs) + 1e-3


def test_runner_does_not_time_a_wrong_system():
    w = workloads.WORKLOADS["dispatch_add_one"]
    inputs = w.inputs(np.random.default_rng(0))
    ref = w.numpy()(*workloads.to_float64(inputs))
    out = io.StringIO()
    with redirect_stdout(out):
        run = runner.check_system(_Wrong(), w, inputs, ref)
    assert run is None
    events = [json.loads(line[len(runner.EVENT):]) for line in out.getvalue().splitlines()]
    assert events[-1]["status"] == "failed" and "wrong result" in events[-1]["error"]


class _Unsupported(System):
    name = "unsupported"

    def prepare(self, w, inputs):
        raise NotSupported(f"no version of {w.name}")


def test_first_call_of_a_workload_a_system_lacks_is_not_applicable():
    out = io.StringIO()
    with redirect_stdout(out):
        runner.first_call(workloads.WORKLOADS["dispatch_add_one"], _Unsupported())
    events = [json.loads(line[len(runner.EVENT):]) for line in out.getvalue().splitlines()]
    assert events[-1]["status"] == "n/a" and "no version" in events[-1]["note"]


def _finite_difference(f, args, i, eps=1e-6):
    grad = np.zeros_like(args[i])
    for idx in np.ndindex(args[i].shape):
        hi = [a.copy() for a in args]
        lo = [a.copy() for a in args]
        hi[i][idx] += eps
        lo[i][idx] -= eps
        grad[idx] = (f(*hi) - f(*lo)) / (2 * eps)
    return grad


def test_handwritten_numpy_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    value, (da, db) = workloads.sum_sigmoid_matmul_grads_numpy(a, b)
    f = lambda a, b: workloads.sum_sigmoid_matmul_grads_numpy(a, b)[0]  # noqa: E731
    np.testing.assert_allclose(da, _finite_difference(f, [a, b], 0), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, _finite_difference(f, [a, b], 1), rtol=1e-6, atol=1e-8)

    params, x, labels = workloads.to_float64(
        workloads.mlp_inputs(rng, sizes=(5, 4, 3, 3), batch=6))
    loss, new = workloads.mlp_step_numpy(params, x, labels)
    for k in range(len(params)):
        def loss_of(p, k=k):
            ps = list(params)
            ps[k] = p
            return workloads.mlp_step_numpy(tuple(ps), x, labels)[0]
        grad = (params[k] - new[k]) / workloads.LR
        np.testing.assert_allclose(grad, _finite_difference(loss_of, [params[k]], 0),
                                   rtol=1e-5, atol=1e-8)


class _WrongLater(System):
    """Right on the first call, wrong afterwards: the re-check after timing must catch it."""
    name = "wrong-later"

    def prepare(self, w, inputs):
        calls = []

        def run():
            calls.append(1)
            return w.numpy()(*inputs) + (0 if len(calls) == 1 else 1e-3)
        return run


def test_runner_drops_a_timing_whose_last_result_is_wrong(monkeypatch):
    monkeypatch.setattr(runner, "SYSTEMS", [runner.SYSTEMS[0], _WrongLater()])
    out = io.StringIO()
    with redirect_stdout(out):
        runner.time_workload(workloads.WORKLOADS["dispatch_add_one"],
                             harness.Settings(rounds=1, warmup=0, min_sample=0.0,
                                              first_call_runs=1), one_thread=True)
    events = [json.loads(line[len(runner.EVENT):]) for line in out.getvalue().splitlines()]
    timed = {e["system"] for e in events if e["event"] == "timing"}
    assert timed == {"numpy"}
    assert any(e.get("status") == "failed" and "after timing" in e["error"] for e in events)


def test_kernel_profile_accounts_for_every_kernel():
    from benchmarks import kernel_profile
    out = io.StringIO()
    with redirect_stdout(out):
        kernel_profile.profile("sum_sigmoid_matmul_grad_64", calls=3)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("sum(sigmoid(A@B)) +grads n=64:")
    kernels = [line for line in lines[1:] if re.match(r"\s+k\d+\s+[\d.]+ us", line)]
    assert len(kernels) == 4  # three matmuls and the fused sigmoid kernel
    assert sum("GFLOP/s" in line for line in kernels) == 3

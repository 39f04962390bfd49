"""The persistent compile cache (runtime/disk_cache.py): hits across processes, corrupt and
truncated entries, the off switch, the size bound, concurrent writers, environment changes
and an unwritable directory. Every test uses its own cache directory."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import jit
from runtime import disk_cache

ROOT = Path(__file__).resolve().parents[2]

# A matmul with a fused epilogue (its callback's address reaches the GEMM at run time), a
# constant reaching the code through the entry's `self`, vector math.
SCRIPT = textwrap.dedent("""
    import hashlib, json
    import numpy as np
    import jit
    x = np.linspace(-1, 1, 512 * 64, dtype=np.float32).reshape(512, 64)
    w = np.linspace(1, -1, 64 * 512, dtype=np.float32).reshape(64, 512)
    b = np.linspace(0, 1, 512, dtype=np.float32)
    c = np.linspace(-2, 2, 64, dtype=np.float32)
    step = jit.jit(lambda x, w, b: (jit.relu(x @ w + b), jit.sigmoid(x) * c))
    lowered = step.lower(x, w, b)
    out = [np.asarray(o) for o in step(x, w, b)]
    x64 = x.astype(np.float64)
    want = [np.maximum(x64 @ w + b, 0), 1 / (1 + np.exp(-x64)) * c]
    print(json.dumps({"cache": lowered.compile().stats["cache"],
                      "digest": hashlib.sha256(b"".join(o.tobytes() for o in out)).hexdigest(),
                      "close": all(np.allclose(o, r, rtol=1e-4, atol=1e-4)
                                   for o, r in zip(out, want)),
                      "llvm": "define" in lowered.as_text("llvm")}))
""")


def run(cache: Path, **env: str) -> tuple[dict, list[str]]:
    """SCRIPT in a fresh process on `cache`: its result and its cache lookups (stderr)."""
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=_env(cache, **env))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr.splitlines()


def _env(cache: Path, **extra: str) -> dict:
    env = {**os.environ, "TENSORJIT_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT),
           "TENSORJIT_CACHE_DEBUG": "1", **extra}
    env.pop("TENSORJIT_CACHE", None)
    return env


def entries(cache: Path) -> list[Path]:
    return sorted(cache.glob(f"*{disk_cache.SUFFIX}"))


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TENSORJIT_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("TENSORJIT_CACHE", raising=False)
    monkeypatch.delenv("TENSORJIT_CACHE_MAX_BYTES", raising=False)
    return tmp_path


def fresh_program(scale: float):
    """A program no other test compiled (its constant differs), so it misses the in-memory
    cache and reaches the disk cache."""
    x = np.arange(5, dtype=np.float32)
    return jit.jit(lambda x: x * scale + 1).lower(x).compile(), x


def test_a_second_process_loads_every_module_and_computes_the_same(tmp_path):
    first, lookups = run(tmp_path)
    assert first["cache"] == "miss" and first["close"] and first["llvm"]
    assert lookups and all("miss" in line for line in lookups)
    assert len(entries(tmp_path)) == 2  # the program and the GEMM it calls
    second, lookups = run(tmp_path)
    assert second == {**first, "cache": "hit"}
    assert len(lookups) == 2 and all(line.endswith(": hit") for line in lookups)
    assert sorted(tmp_path.iterdir()) == entries(tmp_path)  # no temp files left


def test_a_truncated_entry_is_recompiled_with_a_warning(tmp_path):
    first, _ = run(tmp_path)
    for path in entries(tmp_path):
        path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    done = subprocess.run([sys.executable, "-W", "always", "-c", SCRIPT], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == first
    assert done.stderr.count("corrupt compile cache entry") == 2
    assert run(tmp_path)[0]["cache"] == "hit"  # rewritten whole


def test_two_processes_compiling_at_once_both_succeed_and_leave_whole_entries(tmp_path):
    racers = [subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=_env(tmp_path)) for _ in range(2)]
    results = [json.loads(p.communicate(timeout=120)[0]) for p in racers]
    assert all(p.returncode == 0 for p in racers)
    assert results[0]["digest"] == results[1]["digest"] and results[0]["close"]
    assert sorted(tmp_path.iterdir()) == entries(tmp_path)  # no temp files left
    assert run(tmp_path)[0] == {**results[0], "cache": "hit"}


def test_stats_say_whether_the_code_came_from_the_cache(cache):
    compiled, x = fresh_program(3.0)
    assert compiled.stats["cache"] == "miss" and compiled.stats["compile_seconds"] > 0
    assert len(entries(cache)) == 1
    assert compiled(x).tolist() == (x * 3 + 1).tolist()


def test_turned_off_it_writes_nothing(cache, monkeypatch):
    monkeypatch.setenv("TENSORJIT_CACHE", "0")
    compiled, x = fresh_program(5.0)
    assert compiled.stats["cache"] == "off"
    assert compiled(x).tolist() == (x * 5 + 1).tolist()
    assert not any(cache.iterdir())


def test_an_unwritable_directory_means_no_cache_and_one_warning(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("TENSORJIT_CACHE_DIR", str(blocker / "cache"))
    with pytest.warns(RuntimeWarning, match="cannot write the compile cache"):
        compiled, x = fresh_program(7.0)
    assert compiled(x).tolist() == (x * 7 + 1).tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again, _ = fresh_program(9.0)
    assert again.stats["cache"] == "off"


def store(cache: Path, source: str, size: int, mtime: float) -> Path:
    entry = disk_cache.entry(source, source)
    entry.store(b"x" * size)
    os.utime(entry.path, (mtime, mtime))
    return entry.path


def test_the_size_bound_evicts_the_least_recently_used_entries(cache, monkeypatch):
    size = len(disk_cache._pack(b"x" * 1000))
    monkeypatch.setenv("TENSORJIT_CACHE_MAX_BYTES", str(int(3.5 * size)))
    old = store(cache, "old", 1000, 1_000)
    used = store(cache, "used", 1000, 2_000)
    newer = store(cache, "newer", 1000, 3_000)
    assert disk_cache.entry("used", "used").load() == b"x" * 1000  # a hit refreshes its mtime
    newest = disk_cache.entry("newest", "newest")
    newest.store(b"x" * 1000)  # over the bound: down to 3/4 of it, oldest first
    assert not old.exists() and not newer.exists()
    assert used.exists() and newest.path.exists()


def test_an_entry_written_in_another_environment_is_a_miss_that_says_why(cache, monkeypatch,
                                                                         capsys):
    monkeypatch.setenv("TENSORJIT_CACHE_DEBUG", "1")
    disk_cache.entry("program", "program @f").store(b"code")
    env = disk_cache.environment()
    monkeypatch.setattr(disk_cache, "environment", lambda: {**env, "llvm": "99.0.0"})
    moved = disk_cache.entry("program", "program @f")
    assert moved.load() is None
    assert f"program @f: miss: compiled before with another llvm {env['llvm']!r} -> '99.0.0'" \
        in capsys.readouterr().err
    assert disk_cache.entry("other", "program @g").load() is None
    assert "program @g: miss: not compiled before" in capsys.readouterr().err


def test_the_key_separates_sources_and_environments(monkeypatch):
    key = disk_cache.key("program a")
    assert key == disk_cache.key("program a") != disk_cache.key("program b")
    env = disk_cache.environment()
    monkeypatch.setattr(disk_cache, "environment", lambda: {**env, "cpu": "another"})
    changed = disk_cache.key("program a")
    assert changed.split("-")[0] == key.split("-")[0] and changed != key

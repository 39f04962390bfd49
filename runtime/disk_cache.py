"""The persistent compile cache: object code of LLVM modules, kept on disk across processes.

Where: `$TENSORJIT_CACHE_DIR`, else `$XDG_CACHE_HOME/tensorjit`, else `~/.cache/tensorjit`;
`TENSORJIT_CACHE=0` turns it off. One file per module, named by `key`, holding a checksum, the
compiling environment (to explain misses) and the object code MCJIT emitted. Loading that code
in another process is sound because it refers to every per-process address by a symbol that
MCJIT resolves at load time (runtime/pyabi.py, the GEMMs' names) or through the entry's `self`.

Nothing here can fail a compile: a corrupt entry is deleted and recompiled with a warning; an
unwritable directory means no cache, with one warning; concurrent writers each replace the
file atomically with a complete entry; and after each write the least recently used entries
(by mtime, which a hit refreshes) go until the directory fits `TENSORJIT_CACHE_MAX_BYTES`.
`TENSORJIT_CACHE_DEBUG=1` prints every lookup to stderr, with the reason for each miss.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

import llvmlite
import llvmlite.binding as llvm
import numpy as np

from runtime import engine, gemm

MAGIC = b"tensorjit-cache 1\n"
SUFFIX = ".tjo"
TEMP_PREFIX = ".tmp-"
DEFAULT_MAX_BYTES = 256 << 20
LOW_WATER = 0.75          # eviction leaves the entries at this fraction of the bound
RESCAN_SECONDS = 60       # how long a process trusts its estimate of the directory's size
ABANDONED_SECONDS = 3600  # a temp file this old was left by a writer that died
_ROOT = Path(__file__).resolve().parent.parent
_COMPILER_SOURCES = ("ir", "passes", "runtime")
_unwritable: set[Path] = set()
_estimates: dict[Path, tuple[float, int]] = {}  # directory: (when scanned, bytes since)


@dataclass(frozen=True)
class Settings:
    """Where the cache lives and how large it may grow."""

    directory: Path
    max_bytes: int


def settings() -> Settings | None:
    """The cache's directory and size bound, read from the environment at each compile (so a
    test can point it elsewhere); None when the cache is off or its directory unwritable."""
    if os.environ.get("TENSORJIT_CACHE", "1") == "0":
        return None
    configured = os.environ.get("TENSORJIT_CACHE_DIR")
    if configured:
        directory = Path(configured)
    elif os.environ.get("XDG_CACHE_HOME"):
        directory = Path(os.environ["XDG_CACHE_HOME"]) / "tensorjit"
    else:
        try:
            directory = Path.home() / ".cache" / "tensorjit"
        except RuntimeError:  # no home directory to put it in
            return None
    if directory in _unwritable:
        return None
    limit = os.environ.get("TENSORJIT_CACHE_MAX_BYTES", str(DEFAULT_MAX_BYTES))
    if not limit.isdigit():
        raise ValueError(f"TENSORJIT_CACHE_MAX_BYTES must be a number of bytes, got {limit!r}")
    return Settings(directory, int(limit))


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sources_hash() -> str:
    digest = hashlib.sha256()
    for package in _COMPILER_SOURCES:
        for path in sorted((_ROOT / package).rglob("*.py")):
            digest.update(str(path.relative_to(_ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _package_version() -> str:
    try:
        return metadata.version("tensorjit")
    except metadata.PackageNotFoundError:  # run from a checkout without installing
        return "uninstalled"


@functools.cache
def environment() -> dict[str, str]:
    """Everything besides a module's own source that shapes its machine code: our compiler
    (package version, and a hash of the sources that lower, emit and compile code), LLVM, the
    host CPU and its cache sizes (GEMM blocking and streaming stores follow them), and the
    CPython and numpy whose object layouts the entry reads."""
    h = engine.host()
    return {"tensorjit": _package_version(), "sources": _sources_hash(),
            "llvmlite": llvmlite.__version__,
            "llvm": ".".join(map(str, llvm.llvm_version_info)),
            "triple": h.triple, "cpu": h.cpu, "features": h.features,
            "caches": ",".join(map(str, gemm.cache_sizes())),
            "python": sys.version, "numpy": np.__version__}


def key(source: str) -> str:
    """The cache key of a module whose code is determined by `source` (the caller's complete
    description of what it compiles: runtime/native.py uses the loop program and its GEMM
    symbols, or a GEMM's configuration) together with `environment()`.

    `<sha256 of source>-<sha256 of the environment>`, truncated: the two halves keep apart what
    a miss can be blamed on, a new program or a changed compiler, LLVM, CPU or Python."""
    env = json.dumps(environment(), sort_keys=True).encode()
    return f"{_digest(source.encode())[:32]}-{_digest(env)[:16]}"


def _pack(code: bytes) -> bytes:
    body = json.dumps(environment(), sort_keys=True).encode() + b"\n" + code
    return MAGIC + _digest(body).encode() + b"\n" + body


def _unpack(data: bytes) -> tuple[dict, bytes] | None:
    """The environment and object code of an entry's bytes; None unless they are intact."""
    if not data.startswith(MAGIC):
        return None
    checksum, _, body = data[len(MAGIC):].partition(b"\n")
    if checksum != _digest(body).encode():
        return None
    env, _, code = body.partition(b"\n")
    return json.loads(env), code


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:  # already gone (another process evicted it), or not ours to remove
        pass


def _debug(what: str, message: Callable[[], str]) -> None:
    """Print a lookup's outcome under TENSORJIT_CACHE_DEBUG=1 (made only then: explaining a
    miss reads the directory)."""
    if os.environ.get("TENSORJIT_CACHE_DEBUG") == "1":
        print(f"tensorjit cache: {what}: {message()}", file=sys.stderr)


def _why_missing(directory: Path, entry_key: str) -> str:
    """A miss explained: a new source, or which part of the environment changed since an entry
    of the same source was written."""
    if not directory.is_dir():
        return "miss: no cache directory yet"
    source_half = entry_key.split("-")[0]
    for path in directory.glob(f"{source_half}-*{SUFFIX}"):
        try:
            unpacked = _unpack(path.read_bytes())
        except OSError:
            continue
        if unpacked is not None:
            old, new = unpacked[0], environment()
            changed = [f"{k} {old.get(k)!r} -> {new[k]!r}" if len(str(new[k])) < 40 else k
                       for k in new if old.get(k) != new[k]]
            return f"miss: compiled before with another {', '.join(changed)}"
    return "miss: not compiled before"


def _evict(settings_: Settings) -> int:
    """When the entries outgrow `max_bytes`, delete the least recently used until they fit in
    `LOW_WATER` of it (so a full cache is not scanned again at the next write); also delete
    temp files that writers which died left behind. Returns the bytes left."""
    entries = []
    for path in settings_.directory.iterdir():
        try:
            status = path.stat()
        except OSError:  # removed meanwhile by another process
            continue
        if path.name.startswith(TEMP_PREFIX):
            if time.time() - status.st_mtime > ABANDONED_SECONDS:
                _remove(path)
        elif path.name.endswith(SUFFIX):
            entries.append((status.st_mtime, status.st_size, path))
    total = sum(size for _, size, _ in entries)
    if total > settings_.max_bytes:
        for _, size, path in sorted(entries):
            if total <= settings_.max_bytes * LOW_WATER:
                break
            _remove(path)
            total -= size
    return total


def _keep_in_bounds(settings_: Settings, written: int) -> None:
    """Evict when the directory may have outgrown its bound: by this process's estimate (its
    size at the last scan plus what this process wrote since), or when that scan is older than
    `RESCAN_SECONDS`, as other processes write too. Scanning at every write cost O(entries)."""
    directory, now = settings_.directory, time.monotonic()
    scanned_at, size = _estimates.get(directory, (None, 0))
    if (scanned_at is not None and now - scanned_at < RESCAN_SECONDS
            and size + written <= settings_.max_bytes):
        _estimates[directory] = scanned_at, size + written
    else:
        _estimates[directory] = now, _evict(settings_)


def _warn_unwritable(directory: Path, error: OSError) -> None:
    if directory not in _unwritable:
        _unwritable.add(directory)
        warnings.warn(f"tensorjit: cannot write the compile cache in {directory} ({error}); "
                      f"compiling without a disk cache", RuntimeWarning, stacklevel=2)


@dataclass(frozen=True)
class Entry:
    """One module's place in the cache (an `engine.ObjectStore`)."""

    settings: Settings
    key: str
    what: str  # the module, for messages: "program @f", "GEMM tj_gemm_f32"

    @property
    def path(self) -> Path:
        return self.settings.directory / f"{self.key}{SUFFIX}"

    def load(self) -> bytes | None:
        """The cached object code, or None; a corrupt entry is removed, with a warning."""
        try:
            data = self.path.read_bytes()
        except OSError:
            _debug(self.what, lambda: _why_missing(self.settings.directory, self.key))
            return None
        unpacked = _unpack(data)
        if unpacked is None:
            warnings.warn(f"tensorjit: corrupt compile cache entry {self.path} (bad checksum); "
                          f"recompiling {self.what}", RuntimeWarning, stacklevel=2)
            _remove(self.path)
            return None
        try:
            os.utime(self.path)  # least recently used goes first
        except OSError:
            pass
        _debug(self.what, lambda: "hit")
        return unpacked[1]

    def store(self, code: bytes) -> None:
        """Write the entry atomically: a temp file in the same directory, renamed over the
        entry, so readers and concurrent writers only ever see complete entries."""
        directory, packed = self.settings.directory, _pack(code)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(dir=directory, prefix=TEMP_PREFIX)
            try:
                with os.fdopen(handle, "wb") as file:
                    file.write(packed)
                os.replace(temp, self.path)
            except BaseException:
                _remove(Path(temp))
                raise
            _keep_in_bounds(self.settings, len(packed))
        except OSError as error:
            _warn_unwritable(directory, error)


def entry(source: str, what: str) -> Entry | None:
    """The cache entry of a module compiled from `source` (see `key`); None when the cache
    is off."""
    current = settings()
    return None if current is None else Entry(current, key(source), what)

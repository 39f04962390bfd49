"""The one owner of LLVM: initialisation, the host target, and LLVM IR text -> machine code.

Everything that compiles native code goes through `compile_llvm` (or `compile_cached`, which
may load the object code instead: runtime/disk_cache.py), so the choice of target machine,
optimisation pipeline and JIT lives in one place.
"""
from __future__ import annotations

import functools
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Protocol

import llvmlite.binding as llvm

_lock = threading.Lock()


@dataclass(frozen=True)
class HostTarget:
    """What the code generators may assume about the machine they run on."""

    triple: str
    cpu: str
    features: str
    vector_bytes: int  # widest vector register the generated code should use

    def has(self, feature: str) -> bool:
        return f"+{feature}" in self.features.split(",")


@functools.cache
def host() -> HostTarget:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    features = llvm.get_host_cpu_features().flatten()
    enabled = set(features.split(","))
    width = 64 if "+avx512f" in enabled else 32 if {"+avx2", "+fma"} <= enabled else 16
    return HostTarget(llvm.get_process_triple(), llvm.get_host_cpu_name(), features, width)


def target_machine(opt: int = 3) -> llvm.TargetMachine:
    """A fresh target machine for the host (MCJIT takes ownership of the one it is given)."""
    h = host()
    target = llvm.Target.from_triple(h.triple)
    return target.create_target_machine(cpu=h.cpu, features=h.features, opt=opt, jit=True)


def function_attributes() -> str:
    """Attributes that let LLVM use every host feature inside a function."""
    h = host()
    return f'"target-cpu"="{h.cpu}" "target-features"="{h.features}"'


def _optimize(module: llvm.ModuleRef, tm: llvm.TargetMachine, pipeline: str) -> None:
    if pipeline == "O3":
        pto = llvm.create_pipeline_tuning_options(speed_level=3)
        pb = llvm.create_pass_builder(tm, pto)
        pb.getModulePassManager().run(module, pb)
    elif pipeline == "light":
        # Hand-vectorised templates need only cleanup: ~10x cheaper than O3 at the same speed.
        pto = llvm.create_pipeline_tuning_options(speed_level=1)
        pb = llvm.create_pass_builder(tm, pto)
        pm = llvm.create_new_module_pass_manager()
        pm.add_sroa_pass()
        pm.add_instruction_combine_pass()
        pm.add_simplify_cfg_pass()
        pm.run(module, pb)
    elif pipeline != "none":
        raise ValueError(f"unknown LLVM pipeline {pipeline!r}; expected 'O3', 'light' or 'none'")


@contextmanager
def _without_loop_strength_reduction():
    """Code generation without LLVM's loop strength reduction, for our modules only (its
    switch is process-global, so it is restored for other llvmlite users, e.g. numba; our
    compiles hold `_lock`). LSR rewrites the GEMM's per-row A addresses into one chain of
    dependent adds: a 24-row tile spent 23 cycles a k on it against 12 for its FMAs. Without
    it (Zen5, gemm_probe): 128x256 @ 256x10 85 -> 130 GFLOP/s, n=256 257 -> 263, n=1024
    243 -> 249, the f32 GEMM module compiles in 135 ms, not 180; elementwise kernels and the
    other shapes measure the same."""
    llvm.set_option("tensorjit", "-disable-lsr=1")
    try:
        yield
    finally:
        llvm.set_option("tensorjit", "-disable-lsr=0")


class ObjectStore(Protocol):
    """Where a module's object code is kept between processes (runtime/disk_cache.Entry)."""

    def load(self) -> bytes | None: ...

    def store(self, code: bytes) -> None: ...


def _parse_optimized(llvm_ir: str, tm: llvm.TargetMachine, pipeline: str) -> llvm.ModuleRef:
    module = llvm.parse_assembly(llvm_ir)
    module.verify()
    _optimize(module, tm, pipeline)
    return module


def _empty_module(tm: llvm.TargetMachine) -> llvm.ModuleRef:
    """A module with no code, for an engine whose object code comes from the object cache."""
    module = llvm.parse_assembly("")
    module.triple = host().triple
    module.data_layout = str(tm.target_data)
    return module


class NativeModule:
    """Machine code for one LLVM module, kept alive as long as this object is.

    With a `store`, MCJIT's object cache reads the object code from it when it holds one
    (`cache == "hit"`: the IR is then neither optimised nor compiled, nor even produced:
    `make_ir` runs only if someone asks for the LLVM or assembly text) and hands it the object
    code it compiled otherwise ("miss"); without one, `cache` is "off". The code refers to
    per-process addresses by symbol only, resolved when MCJIT loads it, so it is position-free.
    """

    def __init__(self, make_ir: Callable[[], str], pipeline: str = "O3",
                 store: ObjectStore | None = None):
        self._make_ir = make_ir
        self._pipeline = pipeline
        self._inspected: tuple[llvm.ModuleRef, llvm.TargetMachine] | None = None
        cached = store.load() if store is not None else None
        self.cache = "off" if store is None else "miss" if cached is None else "hit"
        compiled: list[bytes] = []
        with _lock:
            tm = target_machine()
            module = (_parse_optimized(make_ir(), tm, pipeline) if cached is None
                      else _empty_module(tm))
            self._engine = llvm.create_mcjit_compiler(module, tm)
            if store is not None:
                self._engine.set_object_cache(lambda _module, code: compiled.append(code),
                                              lambda _module: cached)
            with _without_loop_strength_reduction():
                self._engine.finalize_object()
        for code in compiled:  # written here, not in LLVM's callback, which swallows errors
            store.store(code)

    def address(self, name: str, variable: bool = False) -> int:
        """Where a function (or, with `variable`, a global variable) of the module lives."""
        addr = (self._engine.get_global_value_address(name) if variable
                else self._engine.get_function_address(name))
        if not addr:
            raise KeyError(f"no {'variable' if variable else 'function'} {name!r} in the "
                           "native module")
        return addr

    def _inspection(self) -> tuple[llvm.ModuleRef, llvm.TargetMachine]:
        """The optimised module made again, for reading: the JIT's own copy is consumed by code
        generation (or, on a cache hit, never made)."""
        if self._inspected is None:
            llvm_ir = self._make_ir()
            with _lock:
                tm = target_machine()
                self._inspected = _parse_optimized(llvm_ir, tm, self._pipeline), tm
        return self._inspected

    @property
    def optimized_ir(self) -> str:
        return str(self._inspection()[0])

    def assembly(self) -> str:
        module, tm = self._inspection()
        with _lock, _without_loop_strength_reduction():
            return tm.emit_assembly(module)


def compile_llvm(llvm_ir: str, pipeline: str = "O3") -> NativeModule:
    """Parse, verify, optimise and JIT-compile LLVM IR text for the host."""
    return NativeModule(lambda: llvm_ir, pipeline)


def compile_cached(make_ir: Callable[[], str], pipeline: str,
                   store: ObjectStore | None) -> NativeModule:
    """`compile_llvm` of `make_ir()`, through `store`'s object code when it has it."""
    return NativeModule(make_ir, pipeline, store)

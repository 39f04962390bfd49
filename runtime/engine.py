"""The one owner of LLVM: initialisation, the host target, and LLVM IR text -> machine code.

Everything that compiles native code goes through `compile_llvm`, so the choice of target
machine, optimisation pipeline and JIT lives in one place.
"""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

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


class NativeModule:
    """Machine code for one LLVM module, kept alive as long as this object is."""

    def __init__(self, llvm_ir: str, pipeline: str = "O3"):
        self.llvm_ir = llvm_ir
        with _lock:
            module = llvm.parse_assembly(llvm_ir)
            module.verify()
            tm = target_machine()
            _optimize(module, tm, pipeline)
            self.optimized_ir = str(module)
            self._engine = llvm.create_mcjit_compiler(module, tm)
            self._engine.finalize_object()
            self._tm = tm
            self._module = module

    def address(self, name: str) -> int:
        addr = self._engine.get_function_address(name)
        if not addr:
            raise KeyError(f"no function {name!r} in the native module")
        return addr

    def assembly(self) -> str:
        return self._tm.emit_assembly(self._module)


def compile_llvm(llvm_ir: str, pipeline: str = "O3") -> NativeModule:
    """Parse, verify, optimise and JIT-compile LLVM IR text for the host."""
    return NativeModule(llvm_ir, pipeline)

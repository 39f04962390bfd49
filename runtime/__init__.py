"""Code generation and execution: loop programs in, callables on numpy arrays out.
Imports `ir` only; knows nothing of Python tracing."""
from runtime.executable import InterpretedExecutable
from runtime.native import NativeExecutable, compile_program

__all__ = ["InterpretedExecutable", "NativeExecutable", "compile_program"]

"""Code generation and execution: IR functions in, callables on numpy arrays out.
Imports `ir` only; knows nothing of Python tracing."""
from runtime.executable import Executable, compile_cached, compile_function

__all__ = ["Executable", "compile_cached", "compile_function"]

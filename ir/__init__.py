"""The tensor IR: types, values, ops, functions; text printing and parsing; the verifier; the
numpy reference interpreter. Imports nothing else of tensorjit."""
from ir import ops as _ops  # noqa: F401  (fills the registry)
from ir.builder import Builder
from ir.core import (DTYPES, DType, DenseConst, Function, Literal, Location, Op, Operand,
                     TensorType, Value, bool_, dtype_of, f32, f64, i32, i64)
from ir.registry import REGISTRY, OpDef, OpTypeError, opdef
from ir.text import IRParseError, parse, to_text
from ir.verify import VerifyError, verify
from ir.interpreter import interpret

__all__ = [
    "Builder", "DTYPES", "DType", "DenseConst", "Function", "IRParseError", "Literal", "Location",
    "Op", "OpDef", "OpTypeError", "Operand", "REGISTRY", "TensorType", "Value", "VerifyError",
    "bool_", "dtype_of", "f32", "f64", "i32", "i64", "interpret", "opdef", "parse", "to_text",
    "verify",
]

"""The tensor IR's data: dtypes, tensor types, SSA values, literals, ops and functions.

Everything here is immutable plain data, so a pass can share what it does not change and two
functions compare equal exactly when they print the same text.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Union

import numpy as np


@dataclass(frozen=True)
class DType:
    """An element type; `name` is the IR spelling, `numpy` the matching numpy dtype."""

    name: str
    numpy: np.dtype = field(compare=False, repr=False)

    @property
    def is_float(self) -> bool:
        return self.numpy.kind == "f"

    @property
    def is_int(self) -> bool:
        return self.numpy.kind == "i"

    @property
    def is_bool(self) -> bool:
        return self.numpy.kind == "b"

    @property
    def itemsize(self) -> int:
        return self.numpy.itemsize

    def __str__(self) -> str:
        return self.name


f32 = DType("f32", np.dtype(np.float32))
f64 = DType("f64", np.dtype(np.float64))
i32 = DType("i32", np.dtype(np.int32))
i64 = DType("i64", np.dtype(np.int64))
bool_ = DType("bool", np.dtype(np.bool_))

DTYPES: dict[str, DType] = {d.name: d for d in (f32, f64, i32, i64, bool_)}
_BY_NUMPY = {d.numpy: d for d in DTYPES.values()}


def dtype_of(spec: Any) -> DType:
    """Our DType for a DType, an IR name ('f32') or anything numpy accepts as a dtype."""
    if isinstance(spec, DType):
        return spec
    if isinstance(spec, str) and spec in DTYPES:
        return DTYPES[spec]
    try:
        np_dtype = np.dtype(spec)
    except TypeError as err:
        raise TypeError(f"unknown dtype {spec!r}; expected one of float32, float64, int32, "
                        f"int64, bool") from err
    if np_dtype not in _BY_NUMPY:
        raise TypeError(f"unsupported dtype {np_dtype}; expected one of float32, float64, "
                        f"int32, int64, bool")
    return _BY_NUMPY[np_dtype]


@dataclass(frozen=True)
class TensorType:
    dtype: DType
    shape: tuple[int, ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __str__(self) -> str:
        return f"{self.dtype.name}[{','.join(map(str, self.shape))}]"


@dataclass(frozen=True)
class Value:
    """An SSA value: a function parameter or the result of one op."""

    name: str
    type: TensorType

    def __str__(self) -> str:
        return f"%{self.name}"


@dataclass(frozen=True)
class Literal:
    """A scalar constant written inline as an operand (`mul %x, 2.0`); it broadcasts."""

    value: Union[bool, int, float]
    dtype: DType

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", self.dtype.numpy.type(self.value).item())

    @property
    def type(self) -> TensorType:
        return TensorType(self.dtype, ())

    def __eq__(self, other: object) -> bool:
        # NaN literals must compare equal for `parse(print(f)) == f`; 0.0 and -0.0 must not
        # (they print differently, and CSE must not merge `mul %x, 0.0` with `mul %x, -0.0`).
        if not isinstance(other, Literal) or self.dtype != other.dtype:
            return False
        a, b = self.value, other.value
        if a != a or b != b:
            return a != a and b != b
        return a == b and (a != 0 or not self.dtype.is_float
                           or math.copysign(1.0, a) == math.copysign(1.0, b))

    def __hash__(self) -> int:
        return hash((self.dtype, "nan" if self.value != self.value else self.value))


Operand = Union[Value, Literal]


@dataclass(frozen=True, eq=False)
class DenseConst:
    """A tensor-valued attribute (the payload of `constant`), compared by type and bytes."""

    array: np.ndarray

    def __post_init__(self) -> None:
        # np.array, not np.ascontiguousarray: the latter turns a 0-d array into shape (1,).
        arr = np.array(self.array, order="C")
        arr.setflags(write=False)
        object.__setattr__(self, "array", arr)
        # The text spells every NaN `nan`, so equality treats all NaNs (any sign or payload)
        # alike, as Literal does; otherwise `parse(to_text(f)) == f` fails on folded -nan.
        canonical = arr
        if arr.dtype.kind == "f" and np.isnan(arr).any():
            canonical = np.where(np.isnan(arr), np.array(np.nan, arr.dtype), arr)
        object.__setattr__(self, "_key", canonical.tobytes())

    @property
    def type(self) -> TensorType:
        return TensorType(dtype_of(self.array.dtype), tuple(self.array.shape))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, DenseConst) and self.type == other.type
                and self._key == other._key)

    def __hash__(self) -> int:
        return hash((self.type, self._key))


@dataclass(frozen=True)
class Location:
    file: str
    line: int

    def __str__(self) -> str:
        # Quoted as the parser reads it back (JSON), so quotes and backslashes survive.
        return f"loc({json.dumps(self.file, ensure_ascii=False)}:{self.line})"


@dataclass(frozen=True)
class Op:
    """One operation: `result = name operands {attrs} : type loc(...)`."""

    name: str
    operands: tuple[Operand, ...]
    attrs: Mapping[str, Any]
    result: Value
    loc: Location | None = None

    @property
    def type(self) -> TensorType:
        return self.result.type

    def attr_key(self) -> tuple:
        """A hashable form of the attributes, for CSE and caches."""
        return tuple(sorted(self.attrs.items()))


@dataclass(frozen=True)
class Function:
    name: str
    params: tuple[Value, ...]
    ops: tuple[Op, ...]
    results: tuple[Value, ...]

    @property
    def result_types(self) -> tuple[TensorType, ...]:
        return tuple(r.type for r in self.results)

    def __str__(self) -> str:
        from ir.text import to_text
        return to_text(self)

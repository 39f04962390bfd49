"""Builds functions op by op, running each op's type rule as it goes.

Tracing, autodiff rules and passes all build IR through this one class, so every op that exists
was type-checked when it was made. `b.add(x, y)` is `b.emit("add", x, y)` for any registered op.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import numpy as np

from ir.core import DenseConst, DType, Function, Literal, Location, Op, Operand, TensorType, Value
from ir.core import bool_, dtype_of, f32, i32
from ir.registry import REGISTRY, opdef


def default_literal_dtype(operands: Sequence[Operand], result_dtype: DType | None) -> DType | None:
    """The dtype an untyped literal operand takes: that of its op's data operands.

    The first non-bool Value decides (so `where %c, %x, 0.0` reads 0.0 as %x's dtype); with no
    Value operands, the result's dtype. The printer omits a literal's dtype exactly when this
    rule recovers it, and the parser applies the same rule.
    """
    values = [o for o in operands if isinstance(o, Value)]
    for v in values:
        if not v.type.dtype.is_bool:
            return v.type.dtype
    if values:
        return values[0].type.dtype
    return result_dtype


def literal_dtype_at(op_name: str, index: int, operands: Sequence[Operand],
                     result_dtype: DType | None) -> DType | None:
    """`default_literal_dtype` for the operand at `index`, except where the op fixes it:
    `where`'s condition is bool."""
    if op_name == "where" and index == 0:
        return bool_
    return default_literal_dtype(operands, result_dtype)


def normalize_attr(value: Any) -> Any:
    """Attributes are hashable plain data: tuples, ints, floats, bools, strings, DTypes."""
    if isinstance(value, np.ndarray):
        return DenseConst(value)
    if isinstance(value, (list, tuple)):
        return tuple(normalize_attr(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


class Builder:
    def __init__(self, name: str = "main"):
        self.name = name
        self.params: list[Value] = []
        self.ops: list[Op] = []
        self.loc: Location | None = None
        self._next_id = 0
        self._param_names: set[str] = set()
        self._producers: dict[str, Op] = {}

    def param(self, type: TensorType, name: str = "arg") -> Value:
        unique, n = name, 1
        while unique in self._param_names:
            unique, n = f"{name}_{n}", n + 1
        self._param_names.add(unique)
        value = Value(unique, type)
        self.params.append(value)
        return value

    def literal(self, value: bool | int | float, like: Sequence[Operand] = (),
                dtype: DType | None = None) -> Literal:
        """A Python scalar as an operand beside `like`: of `dtype` if given, else of their
        Values' dtype, else of their literals' (so `eq(<f64 literal>, 0)` compares two f64),
        else of its Python type."""
        dtype = dtype or default_literal_dtype(like, None)
        if dtype is None:
            literals = [o for o in like if isinstance(o, Literal)]
            dtype = next((o.dtype for o in literals if not o.dtype.is_bool),
                         literals[0].dtype if literals else None)
        if dtype is None:
            dtype = bool_ if isinstance(value, bool) else i32 if isinstance(value, int) else f32
        return Literal(value, dtype)

    def emit(self, name: str, *operands: Any, loc: Location | None = None, **attrs: Any) -> Value:
        definition = opdef(name)
        values = [o for o in operands if isinstance(o, (Value, Literal))]
        resolved = tuple(o if isinstance(o, (Value, Literal)) else self.literal(
            o, values, bool_ if name == "where" and i == 0 else None)
            for i, o in enumerate(operands))
        clean = {k: normalize_attr(v) for k, v in attrs.items()}
        type_ = definition.type_rule(resolved, clean)
        result = Value(str(self._next_id), type_)
        self._next_id += 1
        op = Op(name, resolved, clean, result, loc if loc is not None else self.loc)
        self.ops.append(op)
        self._producers[result.name] = op
        return result

    def producer(self, operand: Operand) -> Op | None:
        """The op of this builder that made `operand`; None for parameters and literals."""
        return self._producers.get(operand.name) if isinstance(operand, Value) else None

    def __getattr__(self, name: str):
        if name in REGISTRY:
            return lambda *operands, **attrs: self.emit(name, *operands, **attrs)
        raise AttributeError(name)

    @contextlib.contextmanager
    def location(self, loc: Location | None) -> Iterator[None]:
        saved, self.loc = self.loc, loc
        try:
            yield
        finally:
            self.loc = saved

    def replay(self, fn: Function, args: Sequence[Operand]) -> dict[str, Operand]:
        """Emit `fn`'s ops with its parameters bound to `args`; maps each old name to its new value."""
        if len(args) != len(fn.params):
            raise TypeError(f"@{fn.name} takes {len(fn.params)} arguments, got {len(args)}")
        env: dict[str, Operand] = {p.name: a for p, a in zip(fn.params, args)}
        for op in fn.ops:
            operands = [env[o.name] if isinstance(o, Value) else o for o in op.operands]
            env[op.result.name] = self.emit(op.name, *operands, loc=op.loc, **op.attrs)
        return env

    def inline(self, fn: Function, args: Sequence[Operand]) -> list[Operand]:
        """Emit `fn`'s ops with its parameters bound to `args`; returns its results."""
        env = self.replay(fn, args)
        return [env[r.name] for r in fn.results]

    def build(self, results: Sequence[Value]) -> Function:
        return Function(self.name, tuple(self.params), tuple(self.ops), tuple(results))

    # Shape helpers shared by derivative rules and the tracer.

    def full(self, shape: Sequence[int], value: bool | int | float, dtype: Any) -> Value:
        return self.broadcast_to(Literal(value, dtype_of(dtype)), shape=tuple(shape))

    def zeros_like(self, x: Operand) -> Value:
        return self.full(x.type.shape, 0, x.type.dtype)

    def cast_to(self, x: Operand, dtype: DType) -> Operand:
        return x if x.type.dtype == dtype else self.cast(x, dtype=dtype)

    def reshape_to(self, x: Value, shape: Sequence[int]) -> Value:
        return x if x.type.shape == tuple(shape) else self.reshape(x, shape=tuple(shape))

    def broadcast_to_shape(self, x: Operand, shape: Sequence[int]) -> Operand:
        if isinstance(x, Literal) or x.type.shape == tuple(shape):
            return x
        return self.broadcast_to(x, shape=tuple(shape))

    def sum_to_shape(self, x: Value, shape: Sequence[int]) -> Value:
        """Undo numpy broadcasting: sum `x` over the axes that broadcasting from `shape` added."""
        shape = tuple(shape)
        if x.type.shape == shape:
            return x
        lead = len(x.type.shape) - len(shape)
        axes = tuple(range(lead)) + tuple(
            lead + i for i, n in enumerate(shape) if n == 1 and x.type.shape[lead + i] != 1)
        summed = self.reduce_sum(x, axes=axes) if axes else x
        return self.reshape_to(summed, shape)

    def expand_reduced(self, x: Value, in_shape: Sequence[int], axes: Sequence[int]) -> Value:
        """Broadcast a reduction's result back over the reduced axes of `in_shape`."""
        kept = tuple(1 if i in axes else n for i, n in enumerate(in_shape))
        return self.broadcast_to_shape(self.reshape_to(x, kept), in_shape)

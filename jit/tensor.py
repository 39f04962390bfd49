"""`Tensor`: one class for eager values and traced ones.

An eager Tensor holds a numpy array; a traced one holds an IR value of a live trace. Every op
goes through `bind`, which emits IR when any operand is traced and otherwise computes at once
with the op's reference semantics, recording the step for `backward()` when an operand
requires grad. So user code runs unchanged under `jit` and `grad`.
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from ir import Builder, DenseConst, Operand, TensorType, Value, dtype_of
from ir.interpreter import literal_array, run_op
from jit import autograd
from jit.trace import Trace, concretization_error, innermost, user_location


class Tensor:
    __array_priority__ = 1000  # numpy defers `ndarray + Tensor` to Tensor.__radd__
    __hash__ = object.__hash__  # `==` is elementwise, identity is the hash (as in PyTorch)

    # Defaults shared by every instance, so wrapping a result sets only what differs.
    _data: np.ndarray | None = None
    _value: Value | None = None
    _trace: Trace | None = None
    _weak = False
    _node: autograd.Node | None = None
    grad: "Tensor | None" = None
    requires_grad = False
    _version = 0   # in-place updates so far; backward() refuses graphs that saw an older one

    def __init__(self, data: Any, dtype: Any = None, requires_grad: bool = False):
        if isinstance(data, Tensor):
            array = data.numpy()
        elif isinstance(data, (np.ndarray, np.generic)):
            array = np.asarray(data)
        else:
            if data is None or isinstance(data, (str, bytes)) or _has_none(data):
                raise TypeError(f"Tensor() expects numbers, nested lists of numbers, numpy "
                                f"arrays or Tensors, got {data!r:.60}")
            array = np.array(data, dtype=np.float32 if dtype is None else None)
            if array.dtype == object:
                raise TypeError(f"Tensor() expects numbers, nested lists of numbers, numpy "
                                f"arrays or Tensors, got {type(data).__name__}")
        target = dtype_of(array.dtype if dtype is None else dtype)
        self._data = np.array(array, dtype=target.numpy, order="C")  # a copy: later writes to
        # the caller's array must not change this tensor
        if requires_grad:
            if not target.is_float:
                raise TypeError(f"only floating-point tensors can require gradients, got "
                                f"dtype {target.numpy}")
            self.requires_grad = True

    @classmethod
    def _wrap(cls, data: np.ndarray | None = None, *, value: Value | None = None,
              trace: Trace | None = None, weak: bool = False) -> "Tensor":
        t = object.__new__(cls)
        t._data = data
        if value is not None:
            t._value, t._trace = value, trace
        if weak:
            t._weak = True
        return t

    # Attributes --------------------------------------------------------------------------------

    @property
    def type(self) -> TensorType:
        if self._value is not None:
            return self._value.type
        return TensorType(dtype_of(self._data.dtype), self._data.shape)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self) -> np.dtype:
        return self.type.dtype.numpy

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return self.type.size

    @property
    def is_traced(self) -> bool:
        return self._value is not None

    @property
    def T(self) -> "Tensor":
        return ops.transpose(self)

    # Conversion --------------------------------------------------------------------------------

    def _concrete(self, construct: str) -> np.ndarray:
        if self._value is not None:
            raise concretization_error(construct, self)
        return self._data

    def numpy(self) -> np.ndarray:
        return self._concrete(".numpy()")

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        data = self._concrete("conversion to a numpy array")
        return data if dtype is None else data.astype(dtype)

    def item(self) -> bool | int | float:
        data = self._concrete(".item()")
        if data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {data.shape}")
        return data.item()

    def tolist(self) -> Any:
        return self._concrete(".tolist()").tolist()

    def __bool__(self) -> bool:
        return bool(self._concrete("bool() of a tensor (an `if`, `while`, `and`, `or`, `not` "
                                   "or `assert` on it)"))

    def __float__(self) -> float:
        return float(self._one("float()"))

    def __int__(self) -> int:
        return int(self._one("int()"))

    def __index__(self) -> int:
        data = self._one("use as an index")
        if not self.type.dtype.is_int:
            raise TypeError(f"only integer tensors can be used as an index, got {self.dtype}")
        return int(data)

    def _one(self, construct: str) -> Any:
        data = self._concrete(construct)
        if data.size != 1:
            raise TypeError(f"{construct} needs a tensor with one element, got shape {data.shape}")
        return data.reshape(()).item()

    def __repr__(self) -> str:
        if self._value is not None:
            return f"Tensor<traced {self.type}>"
        body = np.array2string(self._data, separator=", ", prefix="Tensor(")
        if self._data.size == 0 and self._data.shape != (0,):  # as numpy: [] needs its shape
            body += f", shape={self._data.shape}"
        extra = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({body}, dtype={self._data.dtype}{extra})"

    def __format__(self, spec: str) -> str:
        """f"{loss:.4f}" formats a one-element tensor's value, as PyTorch and numpy do."""
        if not spec:
            return repr(self)
        if self.size != 1:
            raise TypeError(f"format spec {spec!r} needs a one-element tensor, got shape "
                            f"{self.shape}")
        return format(self._one(f"formatting with {spec!r}"), spec)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self) -> Iterator["Tensor"]:
        if not self.shape:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    # Autograd ----------------------------------------------------------------------------------

    def detach(self) -> "Tensor":
        return Tensor._wrap(self._data, value=self._value, trace=self._trace)

    def backward(self, gradient: Any = None) -> None:
        autograd.backward(self, gradient)

    # In-place updates (`p -= lr * p.grad` under `no_grad`, as in PyTorch) --------------------

    def _update(self, op, other: Any, name: str) -> "Tensor":
        if self._value is not None:  # traced: a functional update, as in JAX
            return op(self, other)
        if self._node is not None or self.requires_grad and autograd.grad_enabled():
            raise RuntimeError(f"in-place {name} on a tensor that requires grad: update leaves "
                               f"inside `with jit.no_grad():`, as in PyTorch")
        with autograd.no_grad():
            result = op(self, other)
        if result.shape != self.shape:
            raise ValueError(f"in-place {name}: the result has shape {result.shape}, the "
                             f"tensor {self.shape}")
        if not np.can_cast(result.dtype, self.dtype, "same_kind"):
            raise TypeError(f"in-place {name}: cannot store a {result.dtype} result in a "
                            f"{self.dtype} tensor")
        np.copyto(self._data, result._data, casting="same_kind")
        self._version += 1
        return self

    def __iadd__(self, other): return self._update(ops.add, other, "+=")
    def __isub__(self, other): return self._update(ops.sub, other, "-=")
    def __imul__(self, other): return self._update(ops.mul, other, "*=")
    def __itruediv__(self, other): return self._update(ops.div, other, "/=")

    def __setitem__(self, index: Any, value: Any) -> None:
        """`x[i] = v` on eager tensors, with numpy's semantics (the same rules as `+=`)."""
        if self._value is not None:
            raise TypeError("item assignment on a traced tensor: build the new value instead "
                            "(jit.where, jit.concatenate), as under JAX")
        if self._node is not None or self.requires_grad and autograd.grad_enabled():
            raise RuntimeError("item assignment on a tensor that requires grad: update leaves "
                               "inside `with jit.no_grad():`, as in PyTorch")
        source = value.numpy() if isinstance(value, Tensor) else value
        if isinstance(index, Tensor):
            index = index.numpy()
        self._data[index] = source
        self._version += 1

    def zero_(self) -> "Tensor":
        """Fill with zeros in place (`p.grad.zero_()`)."""
        return self._update(lambda x, _: ops.mul(x, 0), 0, "zero_")

    # Operators ---------------------------------------------------------------------------------

    def __add__(self, other): return ops.add(self, other)
    def __radd__(self, other): return ops.add(other, self)
    def __sub__(self, other): return ops.sub(self, other)
    def __rsub__(self, other): return ops.sub(other, self)
    def __mul__(self, other): return ops.mul(self, other)
    def __rmul__(self, other): return ops.mul(other, self)
    def __truediv__(self, other): return ops.div(self, other)
    def __rtruediv__(self, other): return ops.div(other, self)
    def __pow__(self, other): return ops.pow(self, other)
    def __rpow__(self, other): return ops.pow(other, self)
    def __matmul__(self, other): return ops.matmul(self, other)
    def __rmatmul__(self, other): return ops.matmul(other, self)
    def __neg__(self): return ops.neg(self)
    def __pos__(self): return self
    def __abs__(self): return ops.abs(self)
    def __lt__(self, other): return ops.less(self, other)
    def __le__(self, other): return ops.less_equal(self, other)
    def __gt__(self, other): return ops.greater(self, other)
    def __ge__(self, other): return ops.greater_equal(self, other)
    def __eq__(self, other): return ops.equal(self, other)  # type: ignore[override]
    def __ne__(self, other): return ops.not_equal(self, other)  # type: ignore[override]
    def __getitem__(self, index): return ops.getitem(self, index)

    # Methods -----------------------------------------------------------------------------------

    def sum(self, axis=None, keepdims=False): return ops.sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return ops.mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return ops.max(self, axis, keepdims)
    def min(self, axis=None, keepdims=False): return ops.min(self, axis, keepdims)
    def exp(self): return ops.exp(self)
    def log(self): return ops.log(self)
    def sqrt(self): return ops.sqrt(self)
    def abs(self): return ops.abs(self)
    def tanh(self): return ops.tanh(self)
    def sigmoid(self): return ops.sigmoid(self)
    def relu(self): return ops.relu(self)
    def flatten(self): return ops.reshape(self, (-1,))
    def astype(self, dtype): return ops.astype(self, dtype)

    def reshape(self, *shape):
        return ops.reshape(self, shape[0] if len(shape) == 1 and not isinstance(shape[0], int)
                           else shape)

    def transpose(self, *axes):
        return ops.transpose(self, (axes[0] if len(axes) == 1 and not isinstance(axes[0], int)
                                    else axes) or None)


def _has_none(data: Any) -> bool:
    """None anywhere in nested lists (numpy would read it as NaN)."""
    if isinstance(data, (list, tuple)):
        return any(_has_none(d) for d in data)
    return data is None


def lift(trace: Trace, x: Any) -> Operand | Any:
    """An operand of `trace` for `x`: its own value, a capture, or a baked-in constant."""
    if not isinstance(x, Tensor):
        return x
    if x._trace is trace:
        return x._value
    if x._trace is not None:
        return trace.capture(x)
    return trace.builder.constant(value=DenseConst(x._data))


def bind(name: str, *operands: Any, context: tuple = (), **attrs: Any) -> Tensor:
    """Apply the IR op `name`: traced operands -> emit IR; all concrete -> compute now.

    `context` names tensors whose trace an op without tensor operands (`iota`) belongs to.
    """
    trace = innermost(operands + tuple(context))
    if trace is not None:
        values = [lift(trace, o) for o in operands]
        value = trace.builder.emit(name, *values, loc=user_location(), **attrs)
        return Tensor._wrap(value=value, trace=trace)
    return _eager(name, operands, attrs)


def _eager(name: str, operands: tuple, attrs: dict) -> Tensor:
    b = Builder("eager")
    stand_ins = [b.param(o.type) if isinstance(o, Tensor) else o for o in operands]
    b.emit(name, *stand_ins, **attrs)
    op = b.ops[-1]
    arrays = [o._data if isinstance(o, Tensor) else literal_array(lit)
              for o, lit in zip(operands, op.operands)]
    out = Tensor._wrap(run_op(op, arrays))
    if autograd.grad_enabled() and out.type.dtype.is_float and any(
            isinstance(o, Tensor) and o.requires_grad for o in operands):
        # (comparisons and integer casts end the graph: their results carry no gradient)
        inputs = tuple(o if isinstance(o, Tensor) else lit
                       for o, lit in zip(operands, op.operands))
        autograd.record(out, autograd.Node(name, op.attrs, inputs, user_location()))
    return out


from jit import ops  # noqa: E402  (ops builds on Tensor; Tensor's methods call ops)

"""The functional ops of the user API, with numpy's signatures, broadcasting and promotion.

Each op here checks its arguments, promotes dtypes, broadcasts explicitly and then `bind`s IR
primitives, so the IR below only ever sees same-shape, same-dtype operands. Composite ops
(`softmax`, `mse_loss`, `cross_entropy`, ...) are written with the primitives and so work
eagerly, traced and differentiated without any rule of their own.
"""
from __future__ import annotations

import builtins
import operator
from typing import Any, Sequence

import numpy as np

from ir import DType, bool_, dtype_of, f32, i32
from jit.tensor import Tensor, bind, lift
from jit.trace import innermost

_SCALARS = (bool, int, float)


# Arguments, promotion and broadcasting ---------------------------------------------------------

def as_tensor(x: Any, op: str = "op") -> Tensor | bool | int | float:
    """Tensors pass, Python scalars stay weak scalars, numpy data and lists become Tensors.

    numpy scalars are checked first: np.float64 is a subclass of Python's float, but it is
    not weak (it acts as a 0-d array)."""
    if isinstance(x, (np.ndarray, np.generic, list, tuple)):
        return Tensor(x)
    if isinstance(x, Tensor) or isinstance(x, _SCALARS):
        return x
    raise TypeError(f"{op}: expected a Tensor, numpy array or Python scalar, got "
                    f"{type(x).__name__}")


def _weak_kind(x: Any) -> str | None:
    if isinstance(x, Tensor):
        return x.type.dtype.numpy.kind if x._weak else None
    return "b" if isinstance(x, bool) else "i" if isinstance(x, int) else "f"


def result_dtype(xs: Sequence[Any]) -> DType:
    """numpy's promotion for tensors; Python scalars are weak and take the tensors' dtype,
    except a float with integer/bool tensors (float32) and an int with bool tensors (int32)."""
    strong = [x.dtype for x in xs if isinstance(x, Tensor) and not x._weak]
    weak = {_weak_kind(x) for x in xs} - {None}
    if strong:
        dtype = dtype_of(np.result_type(*strong))
        if "f" in weak and not dtype.is_float:
            return f32
        if "i" in weak and dtype.is_bool:
            return i32
        return dtype
    return f32 if "f" in weak else i32 if "i" in weak else bool_


def _lift_all(xs: Sequence[Any]) -> list[Any]:
    """Bring every tensor into the innermost trace among them (before any eager work)."""
    trace = innermost(xs)
    if trace is None:
        return list(xs)
    return [Tensor._wrap(value=lift(trace, x), trace=trace, weak=x._weak)
            if isinstance(x, Tensor) and x._trace is not trace else x for x in xs]


def astype(x: Any, dtype: Any) -> Tensor:
    x = as_tensor(x, "astype")
    target = dtype_of(dtype)
    if not isinstance(x, Tensor):
        return Tensor(np.asarray(x, dtype=target.numpy))
    if x.type.dtype == target:
        return x
    return bind("cast", x, dtype=target)


def broadcast_shapes(op: str, *shapes: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ValueError(f"{op}: shapes {' and '.join(str(list(s)) for s in shapes)} do not "
                         f"broadcast together") from None


def prepare(op: str, *xs: Any, dtype: DType | None = None) -> tuple[list[Any], bool]:
    """Promote and broadcast the operands of an elementwise op; Python scalars stay literals.

    Returns the operands and whether the result is weak (every input was a weak scalar).
    """
    xs = _lift_all([as_tensor(x, op) for x in xs])
    weak = builtins.all(_weak_kind(x) is not None for x in xs)
    target = dtype or result_dtype(xs)
    if not builtins.any(isinstance(x, Tensor) for x in xs):
        xs[0] = Tensor._wrap(np.asarray(xs[0], dtype=target.numpy), weak=True)
    shape = broadcast_shapes(op, *(x.shape for x in xs if isinstance(x, Tensor)))
    out = []
    for x in xs:
        if isinstance(x, Tensor):
            x = astype(x, target)
            if x.shape != shape:
                x = bind("broadcast_to", x, shape=shape)
        out.append(x)
    return out, weak


def _elementwise(name: str, *xs: Any, dtype: DType | None = None) -> Tensor:
    operands, weak = prepare(name, *xs, dtype=dtype)
    out = bind(name, *operands)
    out._weak = weak and not out.type.dtype.is_bool
    return out


def _float_dtype(*xs: Any) -> DType:
    dtype = result_dtype([as_tensor(x) for x in xs])
    return dtype if dtype.is_float else f32


# Elementwise -----------------------------------------------------------------------------------

def add(x, y): return _elementwise("add", x, y)
def sub(x, y): return _elementwise("sub", x, y)
def mul(x, y): return _elementwise("mul", x, y)
def div(x, y): return _elementwise("div", x, y, dtype=_float_dtype(x, y))
def pow(x, y): return _elementwise("pow", x, y)  # noqa: A001  (numpy's name)
def maximum(x, y): return _elementwise("maximum", x, y)
def minimum(x, y): return _elementwise("minimum", x, y)
def less(x, y): return _elementwise("lt", x, y)
def less_equal(x, y): return _elementwise("le", x, y)
def greater(x, y): return _elementwise("gt", x, y)
def greater_equal(x, y): return _elementwise("ge", x, y)
def equal(x, y): return _elementwise("eq", x, y)
def not_equal(x, y): return _elementwise("ne", x, y)
def neg(x): return _elementwise("neg", x)
def abs(x): return _elementwise("abs", x)  # noqa: A001
def exp(x): return _elementwise("exp", x, dtype=_float_dtype(x))
def log(x): return _elementwise("log", x, dtype=_float_dtype(x))
def sqrt(x): return _elementwise("sqrt", x, dtype=_float_dtype(x))
def tanh(x): return _elementwise("tanh", x, dtype=_float_dtype(x))
def sigmoid(x): return _elementwise("logistic", x, dtype=_float_dtype(x))
def stop_gradient(x): return _elementwise("stop_gradient", x)


def relu(x):
    """max(x, 0) with gradient 0 at 0 (as PyTorch and JAX)."""
    return where(greater(x, 0), x, 0)


def where(cond, x, y):
    cond, x, y = _lift_all([as_tensor(t, "where") for t in (cond, x, y)])
    if not isinstance(cond, Tensor) or not cond.type.dtype.is_bool:
        cond = not_equal(cond, 0)
    (x, y), _ = prepare("where", x, y)
    shape = broadcast_shapes("where", cond.shape, *(t.shape for t in (x, y)
                                                    if isinstance(t, Tensor)))
    cond, x, y = (bind("broadcast_to", t, shape=shape)
                  if isinstance(t, Tensor) and t.shape != shape else t for t in (cond, x, y))
    return bind("where", cond, x, y)


# Reductions ------------------------------------------------------------------------------------

def normalize_axis(op: str, axis: int, ndim: int) -> int:
    try:
        index = operator.index(axis)
    except TypeError:
        raise TypeError(f"{op}: axis must be an int, got {type(axis).__name__}") from None
    if not -ndim <= index < ndim:
        raise ValueError(f"{op}: axis {axis} is out of range for a tensor of rank {ndim}")
    return index % ndim


def normalize_axes(op: str, axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = [normalize_axis(op, a, ndim) for a in (axis if isinstance(axis, (tuple, list))
                                                  else (axis,))]
    if len(set(axes)) != len(axes):
        raise ValueError(f"{op}: repeated axis in {axis}")
    return tuple(sorted(axes))


def _reduce(name: str, op: str, x: Any, axis: Any, keepdims: bool) -> Tensor:
    x = as_tensor(x, op)
    x = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
    axes = normalize_axes(op, axis, x.ndim)
    out = bind(name, x, axes=axes)
    if keepdims:
        out = reshape(out, tuple(1 if i in axes else n for i, n in enumerate(x.shape)))
    return out


def sum(x, axis=None, keepdims=False):  # noqa: A001
    x = as_tensor(x, "sum")
    if isinstance(x, Tensor) and x.type.dtype.is_bool:
        x = astype(x, i32)
    return _reduce("reduce_sum", "sum", x, axis, keepdims)


def mean(x, axis=None, keepdims=False):
    x = astype(x, _float_dtype(x))
    count = int(np.prod([x.shape[a] for a in normalize_axes("mean", axis, x.ndim)]))
    return div(sum(x, axis, keepdims), float(count))


def _extremum(name: str, op: str, x: Any, axis: Any, keepdims: bool) -> Tensor:
    x = as_tensor(x, op)
    x = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
    axes = normalize_axes(op, axis, x.ndim)
    if builtins.any(x.shape[a] == 0 for a in axes):
        raise ValueError(f"{op}: reduction over an empty axis of a tensor of shape "
                         f"{list(x.shape)} has no identity")
    if x.type.dtype.is_bool:
        return astype(_reduce(name, op, astype(x, i32), axis, keepdims), bool_)
    return _reduce(name, op, x, axis, keepdims)


def max(x, axis=None, keepdims=False): return _extremum("reduce_max", "max", x, axis, keepdims)  # noqa: A001,E501
def min(x, axis=None, keepdims=False): return _extremum("reduce_min", "min", x, axis, keepdims)  # noqa: A001,E501


def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))), computed around the maximum so that large inputs do not overflow."""
    x = astype(x, _float_dtype(x))
    axis = normalize_axes("logsumexp", axis, x.ndim)   # (errors name logsumexp, not max)
    m = stop_gradient(max(x, axis, keepdims=True))
    m = where(less(abs(m), np.inf), m, 0)  # all -inf (or inf) slices: no shift
    out = add(log(sum(exp(sub(x, m)), axis, keepdims=True)), m)
    return out if keepdims else reshape(out, tuple(
        n for i, n in enumerate(x.shape) if i not in axis))


def log_softmax(x, axis=-1):
    """(x - m) - log(sum(exp(x - m))): subtracting the maximum first keeps the small
    log-probabilities exact where x - logsumexp(x) would cancel (large logits in f32)."""
    x = astype(x, _float_dtype(x))
    axis = normalize_axis("log_softmax", axis, x.ndim)
    m = stop_gradient(max(x, axis, keepdims=True))
    shifted = sub(x, where(less(abs(m), np.inf), m, 0))
    return sub(shifted, log(sum(exp(shifted), axis, keepdims=True)))


def softmax(x, axis=-1):
    x = astype(x, _float_dtype(x))
    axis = normalize_axis("softmax", axis, x.ndim)
    e = exp(sub(x, stop_gradient(max(x, axis, keepdims=True))))
    return div(e, sum(e, axis, keepdims=True))


# Layout ----------------------------------------------------------------------------------------

def _tensor(x: Any, op: str) -> Tensor:
    x = as_tensor(x, op)
    return x if isinstance(x, Tensor) else Tensor(np.asarray(x))


def reshape(x, shape):
    x = _tensor(x, "reshape")
    shape = (shape,) if isinstance(shape, int) else tuple(operator.index(n) for n in shape)
    if shape.count(-1) > 1 or builtins.any(n < -1 for n in shape):
        raise ValueError(f"reshape: invalid shape {list(shape)} (at most one -1, others >= 0)")
    if -1 in shape:
        known = int(np.prod([n for n in shape if n != -1]))
        if known == 0 or x.size % known:
            raise ValueError(f"reshape: cannot reshape {x.type} to {list(shape)}")
        shape = tuple(x.size // known if n == -1 else n for n in shape)
    if int(np.prod(shape)) != x.size:
        raise ValueError(f"reshape: cannot reshape {x.type} to {list(shape)}")
    return x if shape == x.shape else bind("reshape", x, shape=shape)


def transpose(x, axes=None):
    x = _tensor(x, "transpose")
    perm = tuple(reversed(range(x.ndim))) if axes is None else tuple(
        normalize_axis("transpose", a, x.ndim) for a in axes)
    if sorted(perm) != list(range(x.ndim)):
        raise ValueError(f"transpose: axes {list(axes)} are not a permutation of the axes "
                         f"of {x.type}")
    return x if perm == tuple(range(x.ndim)) else bind("transpose", x, perm=perm)


def broadcast_to(x, shape):
    x = _tensor(x, "broadcast_to")
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    lead = len(shape) - x.ndim
    if lead < 0 or builtins.any(n not in (1, shape[lead + i]) for i, n in enumerate(x.shape)):
        raise ValueError(f"broadcast_to: cannot broadcast {x.type} to {list(shape)}")
    return x if x.shape == shape else bind("broadcast_to", x, shape=shape)


def concatenate(xs, axis=0):
    if not isinstance(xs, (list, tuple)) or not xs:
        raise ValueError("concatenate: expected a non-empty sequence of tensors")
    tensors = _lift_all([_tensor(x, "concatenate") for x in xs])
    if builtins.any(t.ndim == 0 for t in tensors):
        raise ValueError("concatenate: zero-dimensional tensors cannot be concatenated")
    dtype = result_dtype(tensors)
    axis = normalize_axis("concatenate", axis, tensors[0].ndim)
    first = tensors[0]
    for t in tensors[1:]:
        if t.ndim != first.ndim or builtins.any(
                a != b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != axis):
            raise ValueError(f"concatenate: shapes {list(first.shape)} and {list(t.shape)} "
                             f"differ outside axis {axis}")
    return bind("concatenate", *(astype(t, dtype) for t in tensors), axis=axis)


def stack(xs, axis=0):
    if not isinstance(xs, (list, tuple)) or not xs:
        raise ValueError("stack: expected a non-empty sequence of tensors")
    tensors = [_tensor(x, "stack") for x in xs]
    if len({t.shape for t in tensors}) != 1:
        raise ValueError(f"stack: all tensors must have one shape, got "
                         f"{[list(t.shape) for t in tensors]}")
    axis = normalize_axis("stack", axis, tensors[0].ndim + 1)
    shape = tensors[0].shape[:axis] + (1,) + tensors[0].shape[axis:]
    return concatenate([reshape(t, shape) for t in tensors], axis)


def getitem(x: Tensor, index: Any) -> Tensor:
    """Basic indexing: ints (negative too), slices, None and one Ellipsis."""
    items = list(index) if isinstance(index, tuple) else [index]
    for item in items:
        if isinstance(item, (bool, np.bool_, list, np.ndarray)) or (
                isinstance(item, Tensor) and item.ndim):
            raise IndexError("only integers, slices, None and ... are valid indices "
                             "(advanced indexing with arrays or masks is not supported)")
    # identity, not `==`: an index may be a Tensor, whose == is elementwise
    ellipses = [k for k, item in enumerate(items) if item is Ellipsis]
    if len(ellipses) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    consuming = builtins.sum(1 for i in items if i is not None and i is not Ellipsis)
    if consuming > x.ndim:
        raise IndexError(f"too many indices for a tensor of rank {x.ndim}: {consuming} given")
    at = ellipses[0] if ellipses else len(items)
    items[at:at + 1] = [slice(None)] * (x.ndim - consuming)
    starts, sizes, steps, shape, axis = [], [], [], [], 0
    for item in items:
        if item is None:
            shape.append(1)
            continue
        n = x.shape[axis]
        if isinstance(item, slice):
            start, stop, step = item.indices(n)
            size = len(range(start, stop, step))
            starts.append(start if size else 0)
            sizes.append(size)
            steps.append(step)
            shape.append(size)
        else:
            i = operator.index(item)
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for axis {axis} with size {n}")
            starts.append(i % n)
            sizes.append(1)
            steps.append(1)
        axis += 1
    out = x
    if tuple(sizes) != x.shape or builtins.any(s != 1 for s in steps):
        out = bind("slice", x, starts=tuple(starts), sizes=tuple(sizes), steps=tuple(steps))
    return reshape(out, tuple(shape))


# Contraction -----------------------------------------------------------------------------------

def matmul(x, y):
    """numpy's matmul: 1-D operands gain then lose an axis; batch dimensions broadcast."""
    a, b = (_tensor(t, "matmul") for t in (x, y))
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul: scalar operands are not allowed; use * instead")
    described = f"{a.type} @ {b.type}"
    dtype = result_dtype([a, b])
    if dtype.is_bool:
        raise TypeError(f"matmul: boolean operands are not supported: {described}")
    a, b = _lift_all([astype(a, dtype), astype(b, dtype)])
    a2 = reshape(a, (1,) + a.shape) if a.ndim == 1 else a
    b2 = reshape(b, b.shape + (1,)) if b.ndim == 1 else b
    if a2.shape[-1] != b2.shape[-2]:
        raise ValueError(f"matmul: inner dimensions differ: {described}")
    try:
        batch = tuple(np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]))
    except ValueError:
        raise ValueError(f"matmul: batch dimensions {list(a2.shape[:-2])} and "
                         f"{list(b2.shape[:-2])} do not broadcast: {described}") from None
    a2 = broadcast_to(a2, batch + a2.shape[-2:])
    b2 = broadcast_to(b2, batch + b2.shape[-2:])
    out = bind("matmul", a2, b2)
    shape = batch + (a.shape[-2:-1] if a.ndim > 1 else ()) + (b.shape[-1:] if b.ndim > 1 else ())
    return reshape(out, shape)


def dot(x, y):
    """matmul for 1-D and 2-D operands."""
    a, b = (_tensor(t, "dot") for t in (x, y))
    if not (1 <= a.ndim <= 2 and 1 <= b.ndim <= 2):
        raise ValueError(f"dot: expected 1-D or 2-D operands, got {a.type} and {b.type}; "
                         f"use matmul for batches")
    return matmul(a, b)


# Losses ----------------------------------------------------------------------------------------

def mse_loss(pred, target):
    """Mean of squared differences; shapes broadcast as in numpy."""
    d = sub(pred, target)
    return mean(mul(d, d))


def cross_entropy(logits, labels):
    """Mean negative log-likelihood of integer class `labels` [N] under `logits` [N, C]."""
    logits = astype(_tensor(logits, "cross_entropy"), _float_dtype(logits))
    labels = _tensor(labels, "cross_entropy")
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"cross_entropy: expected logits [N, C] and labels [N], got "
                         f"{logits.type} and {labels.type}")
    if not labels.type.dtype.is_int:
        raise TypeError(f"cross_entropy: labels must be integers, got {labels.type}")
    n, c = logits.shape
    if not labels.is_traced and labels.size:
        bad = labels.numpy()[(labels.numpy() < 0) | (labels.numpy() >= c)]
        if bad.size:
            raise ValueError(f"cross_entropy: label {bad[0]} is outside [0, {c})")
    classes = bind("iota", shape=(n, c), axis=1, dtype=labels.type.dtype,
                   context=(logits, labels))
    one_hot = equal(classes, reshape(labels, (n, 1)))
    picked = sum(where(one_hot, log_softmax(logits, axis=1), 0), axis=1)
    return neg(mean(picked))

"""Reductions, layout ops, matmul and the source ops (`constant`, `iota`).

Layout ops move or replicate elements without arithmetic; each one's derivative is the layout
op that moves the cotangent back (`slice` <-> `slice_scatter`, `broadcast_to` -> `reduce_sum`).
"""
from __future__ import annotations

import numpy as np

from ir.core import DenseConst, Literal, TensorType, Value, dtype_of
from ir.registry import OpDef, OpTypeError, register


def _one(name, operands):
    if len(operands) != 1:
        raise OpTypeError(f"{name}: expected 1 operand, got {len(operands)}")
    return operands[0].type


def _check_axes(name: str, axes, ndim: int) -> tuple[int, ...]:
    axes = tuple(axes)
    if any(not 0 <= a < ndim for a in axes) or len(set(axes)) != len(axes) \
            or list(axes) != sorted(axes):
        raise OpTypeError(f"{name}: axes {list(axes)} are not distinct sorted axes of a rank-"
                          f"{ndim} operand")
    return axes


# Reductions ------------------------------------------------------------------------------------

def _reduce_rule(name):
    def rule(operands, attrs):
        t = _one(name, operands)
        if t.dtype.is_bool:
            raise OpTypeError(f"{name}: expected a numeric operand, got {t}")
        axes = _check_axes(name, attrs["axes"], t.ndim)
        return TensorType(t.dtype, tuple(n for i, n in enumerate(t.shape) if i not in axes))
    return rule


def _reduce_sum_vjp(b, ops, out, ct, attrs):
    return (b.expand_reduced(ct, ops[0].type.shape, attrs["axes"]),)


def _reduce_extremum_vjp(b, ops, out, ct, attrs):
    """Tied extrema share the cotangent equally (as JAX and torch.amax do)."""
    (x,), axes = ops, attrs["axes"]
    is_extremum = b.eq(x, b.expand_reduced(out, x.type.shape, axes))
    count = b.reduce_sum(b.cast(is_extremum, dtype=x.type.dtype), axes=axes)
    share = b.expand_reduced(b.div(ct, count), x.type.shape, axes)
    return (b.where(is_extremum, share, 0),)


def _reduce_ref(fn):
    return lambda x, axes: fn(x, axis=tuple(axes)).astype(x.dtype, copy=False)


def _reduce_extremum_ref(fn, negative_zero_wins: bool):
    """np.max or np.min, with a result of zero signed as IEEE 754-2019 orders zeros (-0 < +0),
    as the native code's llvm.maximum/minimum do (and `maximum`/`minimum`): a max is -0 only
    when no +0 takes part, a min whenever a -0 does; numpy's sign depends on its order."""
    plain = _reduce_ref(fn)

    def reference(x, axes):
        result = plain(x, axes)
        if result.dtype.kind != "f":
            return result
        axes, zero, signed = tuple(axes), x == 0, np.signbit(x)
        negative = (np.any(zero & signed, axis=axes) if negative_zero_wins
                    else ~np.any(zero & ~signed, axis=axes))
        return np.where(result == 0, np.where(negative, -0.0, 0.0), result).astype(x.dtype)
    return reference


register(OpDef("reduce_sum", "reduce", _reduce_rule("reduce_sum"),
               lambda x, axes: np.sum(x, axis=tuple(axes), dtype=x.dtype),
               _reduce_sum_vjp, 1, ("axes",)))
register(OpDef("reduce_max", "reduce", _reduce_rule("reduce_max"),
               _reduce_extremum_ref(np.max, False), _reduce_extremum_vjp, 1, ("axes",)))
register(OpDef("reduce_min", "reduce", _reduce_rule("reduce_min"),
               _reduce_extremum_ref(np.min, True), _reduce_extremum_vjp, 1, ("axes",)))


# Layout ----------------------------------------------------------------------------------------

def _reshape_rule(operands, attrs):
    t = _one("reshape", operands)
    shape = tuple(attrs["shape"])
    if any(n < 0 for n in shape) or int(np.prod(shape, dtype=np.int64)) != t.size:
        raise OpTypeError(f"reshape: cannot reshape {t} to {list(shape)}")
    return TensorType(t.dtype, shape)


def _transpose_rule(operands, attrs):
    t = _one("transpose", operands)
    perm = tuple(attrs["perm"])
    if sorted(perm) != list(range(t.ndim)):
        raise OpTypeError(f"transpose: {list(perm)} is not a permutation of the axes of {t}")
    return TensorType(t.dtype, tuple(t.shape[p] for p in perm))


def _transpose_vjp(b, ops, out, ct, attrs):
    return (b.transpose(ct, perm=tuple(np.argsort(attrs["perm"]).tolist())),)


def _broadcast_rule(operands, attrs):
    t = _one("broadcast_to", operands)
    shape = tuple(attrs["shape"])
    lead = len(shape) - t.ndim
    if lead < 0 or any(n not in (1, shape[lead + i]) for i, n in enumerate(t.shape)):
        raise OpTypeError(f"broadcast_to: cannot broadcast {t} to {list(shape)}")
    return TensorType(t.dtype, shape)


def _broadcast_vjp(b, ops, out, ct, attrs):
    x = ops[0]
    return (b.sum_to_shape(ct, x.type.shape) if isinstance(x, Value) else None,)


def _slice_indices(shape, starts, sizes, steps) -> tuple:
    """numpy basic indices for `slice`; element i of an axis is x[start + i * step]."""
    index = []
    for n, start, size, step in zip(shape, starts, sizes, steps):
        if size == 0:
            index.append(slice(0, 0))
            continue
        last = start + (size - 1) * step
        if step == 0 or not (0 <= start < n and 0 <= last < n):
            raise OpTypeError(f"slice: start {start}, size {size}, step {step} leave an axis "
                              f"of length {n}")
        stop = last + (1 if step > 0 else -1)
        index.append(slice(start, stop if stop >= 0 else None, step))
    return tuple(index)


def _slice_rule(operands, attrs):
    t = _one("slice", operands)
    starts, sizes, steps = (tuple(attrs[k]) for k in ("starts", "sizes", "steps"))
    if not len(starts) == len(sizes) == len(steps) == t.ndim:
        raise OpTypeError(f"slice: need one start, size and step per axis of {t}")
    _slice_indices(t.shape, starts, sizes, steps)
    return TensorType(t.dtype, sizes)


def _slice_ref(x, starts, sizes, steps):
    return x[_slice_indices(x.shape, starts, sizes, steps)]


def _slice_scatter_rule(operands, attrs):
    t = _one("slice_scatter", operands)
    shape, starts, steps = (tuple(attrs[k]) for k in ("shape", "starts", "steps"))
    if not len(shape) == len(starts) == len(steps) == t.ndim:
        raise OpTypeError(f"slice_scatter: need one size, start and step per axis of {t}")
    _slice_indices(shape, starts, t.shape, steps)
    return TensorType(t.dtype, shape)


def _slice_scatter_ref(x, shape, starts, steps):
    """Zeros of `shape` with `x` written at the slice: the transpose of `slice`."""
    out = np.zeros(shape, dtype=x.dtype)
    out[_slice_indices(shape, starts, x.shape, steps)] = x
    return out


def _slice_vjp(b, ops, out, ct, attrs):
    return (b.slice_scatter(ct, shape=ops[0].type.shape, starts=attrs["starts"],
                            steps=attrs["steps"]),)


def _slice_scatter_vjp(b, ops, out, ct, attrs):
    return (b.slice(ct, starts=attrs["starts"], sizes=ops[0].type.shape, steps=attrs["steps"]),)


def _concatenate_rule(operands, attrs):
    if not operands or any(isinstance(o, Literal) for o in operands):
        raise OpTypeError("concatenate: expected one or more tensor operands")
    first = operands[0].type
    axis = attrs["axis"]
    if not 0 <= axis < first.ndim:
        raise OpTypeError(f"concatenate: axis {axis} is out of range for {first}")
    for o in operands[1:]:
        t = o.type
        if t.dtype != first.dtype or t.ndim != first.ndim or any(
                a != b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != axis):
            raise OpTypeError(f"concatenate: {t} does not match {first} outside axis {axis}")
    size = sum(o.type.shape[axis] for o in operands)
    return TensorType(first.dtype, first.shape[:axis] + (size,) + first.shape[axis + 1:])


def _concatenate_vjp(b, ops, out, ct, attrs):
    axis, offset, cts = attrs["axis"], 0, []
    for o in ops:
        shape = o.type.shape
        starts = tuple(offset if i == axis else 0 for i in range(len(shape)))
        cts.append(b.slice(ct, starts=starts, sizes=shape, steps=(1,) * len(shape)))
        offset += shape[axis]
    return tuple(cts)


register(OpDef("reshape", "layout", _reshape_rule, lambda x, shape: np.reshape(x, shape),
               lambda b, ops, out, ct, attrs: (b.reshape_to(ct, ops[0].type.shape),), 1,
               ("shape",)))
register(OpDef("transpose", "layout", _transpose_rule, lambda x, perm: np.transpose(x, perm),
               _transpose_vjp, 1, ("perm",)))
register(OpDef("broadcast_to", "layout", _broadcast_rule,
               lambda x, shape: np.broadcast_to(x, shape), _broadcast_vjp, 1, ("shape",)))
register(OpDef("slice", "layout", _slice_rule, _slice_ref, _slice_vjp, 1,
               ("starts", "sizes", "steps")))
register(OpDef("slice_scatter", "layout", _slice_scatter_rule, _slice_scatter_ref,
               _slice_scatter_vjp, 1, ("shape", "starts", "steps")))
register(OpDef("concatenate", "layout", _concatenate_rule,
               lambda *xs, axis: np.concatenate(xs, axis=axis), _concatenate_vjp, None,
               ("axis",)))


# Contraction -----------------------------------------------------------------------------------

def _matmul_rule(operands, attrs):
    if len(operands) != 2 or any(isinstance(o, Literal) for o in operands):
        raise OpTypeError("matmul: expected two tensor operands")
    a, b = (o.type for o in operands)
    if a.ndim < 2 or a.ndim != b.ndim or a.shape[:-2] != b.shape[:-2]:
        raise OpTypeError(f"matmul: expected [..., M, K] @ [..., K, N] with equal batch "
                          f"dimensions, got {a} @ {b}")
    if a.shape[-1] != b.shape[-2]:
        raise OpTypeError(f"matmul: inner dimensions differ: {a} @ {b}")
    if a.dtype != b.dtype or a.dtype.is_bool:
        raise OpTypeError(f"matmul: expected numeric operands of one dtype, got {a} @ {b}")
    return TensorType(a.dtype, a.shape[:-1] + b.shape[-1:])


def _swap_last(b, x):
    perm = tuple(range(x.type.ndim - 2)) + (x.type.ndim - 1, x.type.ndim - 2)
    return b.transpose(x, perm=perm)


def _matmul_vjp(b, ops, out, ct, attrs):
    x, y = ops
    return b.matmul(ct, _swap_last(b, y)), b.matmul(_swap_last(b, x), ct)


register(OpDef("matmul", "contraction", _matmul_rule, np.matmul, _matmul_vjp, 2))


# Sources ---------------------------------------------------------------------------------------

def _constant_rule(operands, attrs):
    if operands or not isinstance(attrs.get("value"), DenseConst):
        raise OpTypeError("constant: expected no operands and a dense `value` attribute")
    return attrs["value"].type


def _iota_rule(operands, attrs):
    shape, axis = tuple(attrs["shape"]), attrs["axis"]
    if operands or not 0 <= axis < len(shape):
        raise OpTypeError(f"iota: expected no operands and an axis of {list(shape)}")
    return TensorType(dtype_of(attrs["dtype"]), shape)


def _iota_ref(shape, axis, dtype):
    index = np.arange(shape[axis], dtype=dtype_of(dtype).numpy)
    view = index.reshape([-1 if i == axis else 1 for i in range(len(shape))])
    return np.broadcast_to(view, shape)


register(OpDef("constant", "source", _constant_rule, lambda value: value.array, None, 0,
               ("value",)))
register(OpDef("iota", "source", _iota_rule, _iota_ref, None, 0, ("shape", "axis", "dtype")))

"""`jit`, `make_ir` and the staged view of a compiled function (`lower`).

Tracing turns a Python function and an input signature into an IR function (`Traced`);
`call_traced` runs one, either by inlining it into the innermost live trace (so `jit` and
`grad` compose in any order) or by executing it natively on concrete inputs, recording the call
as one step for eager `backward()`.
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

import passes
from ir import Function, Literal, TensorType, dtype_of, f32, i32, bool_, to_text
from ir.dot import to_dot
from jit import autograd
from jit.execution import executable_for
from jit.pytree import LEAF, TreeDef, flatten, leaf_paths, leaves_matching, unflatten
from jit.tensor import Tensor, lift
from jit.trace import innermost, new_trace, user_location

STAGES = ("traced", "optimized", "loops", "llvm", "asm")


@dataclass(frozen=True)
class Traced:
    """A traced Python function: IR whose parameters are the flat input leaves, then the
    outer-trace tensors it captured."""

    fn: Function
    out_tree: TreeDef
    captured: tuple[Tensor, ...] = ()


def leaf_type(x: Any) -> tuple[TensorType, bool]:
    """The abstract type of an input leaf and whether it is weak (a Python scalar)."""
    if isinstance(x, Tensor):
        return x.type, x._weak
    # numpy scalars first: np.float64 subclasses float but is not weak
    if isinstance(x, (np.ndarray, np.generic)):
        return TensorType(dtype_of(x.dtype), tuple(np.shape(x))), False
    if isinstance(x, bool):
        return TensorType(bool_, ()), True
    if isinstance(x, int):
        return TensorType(i32, ()), True
    if isinstance(x, float):
        return TensorType(f32, ()), True
    raise TypeError(f"expected Tensors, numpy arrays or Python scalars as arguments, got "
                    f"{type(x).__name__}")


def _arg_names(fn: Callable, count: int) -> list[str]:
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    return [params[i].name if i < len(params) else f"arg{i}" for i in range(count)]


def trace(fn: Callable, args: Sequence[Any], static_argnums: tuple[int, ...] = (),
          name: str | None = None) -> Traced:
    """Run `fn` on abstract tensors standing for the non-static `args`, recording IR."""
    names = _arg_names(fn, len(args))
    dynamic = [i for i in range(len(args)) if i not in static_argnums]
    with new_trace(name or getattr(fn, "__name__", "f").replace("<lambda>", "lambda")) as t:
        traced_args = list(args)
        for i in dynamic:
            leaves, tree = flatten(args[i])
            tracers = []
            for leaf, path in zip(leaves, leaf_paths(args[i], names[i])):
                type_, weak = leaf_type(leaf)
                tracers.append(Tensor._wrap(value=t.builder.param(type_, path), trace=t, weak=weak))
            traced_args[i] = unflatten(tree, tracers)
        out = fn(*traced_args)
        out_leaves, out_tree = flatten(out)
        results = []
        for leaf in out_leaves:
            results.append(lift(t, _as_input(leaf, leaf_type(leaf)[0])))
    return Traced(t.builder.build(results), out_tree, tuple(t.captured))


def _as_input(x: Any, type_: TensorType) -> Any:
    if isinstance(x, Tensor):
        return x
    return Tensor._wrap(np.asarray(x, dtype=type_.dtype.numpy))


def call_traced(fn: Function, args: Sequence[Any],
                executable: Callable[[], Any] | None = None) -> list[Tensor]:
    """Run a traced function on one input per parameter (leaves, then captures).

    Inside a live trace its IR is inlined there; on concrete inputs it executes (compiled once
    per program) and, when an input requires grad, records the call for `backward()`.
    """
    inputs = [_as_input(x, p.type) for x, p in zip(args, fn.params)]
    trace_ = innermost(inputs)
    if trace_ is not None:
        b = trace_.builder
        operands = [lift(trace_, x) for x in inputs]
        results = b.inline(fn, operands)
        results = [b.full((), r.value, r.dtype) if isinstance(r, Literal) else r for r in results]
        return [Tensor._wrap(value=r, trace=trace_) for r in results]
    run = executable() if executable is not None else executable_for(fn)
    outs = [Tensor._wrap(a) for a in run([x._data for x in inputs])]
    if autograd.grad_enabled() and any(x.requires_grad for x in inputs):
        call, loc = object(), user_location()
        for i, out in enumerate(outs):
            if out.type.dtype.is_float:
                autograd.record(out, autograd.Node("call", {}, tuple(inputs), loc, fn, i, call))
    return outs


def static_positions(static_argnums: tuple[int, ...], nargs: int) -> tuple[int, ...]:
    """`static_argnums` as non-negative positions of this call (negative ones count from the
    end, as in JAX); one past the arguments is an error."""
    positions = []
    for i in static_argnums:
        if not -nargs <= i < nargs:
            raise ValueError(f"static_argnums names argument {i}, but the function was called "
                             f"with {nargs} positional arguments")
        positions.append(i % nargs)
    return tuple(positions)


def _signature_key(args: Sequence[Any], static_argnums: tuple[int, ...]) -> tuple:
    parts = []
    for i, a in enumerate(args):
        if i in static_argnums:
            try:
                hash(a)
            except TypeError:
                raise TypeError(f"static argument {i} must be hashable, got "
                                f"{type(a).__name__}") from None
            parts.append(("static", a))
        else:
            leaves, tree = flatten(a)
            parts.append((tree, tuple(leaf_type(x) for x in leaves)))
    return tuple(parts)


def _fast_key(args: Sequence[Any]) -> tuple | None:
    """The signature of a call whose arguments are all numpy arrays or concrete tensors that
    need no gradient, else None (the general path handles it)."""
    key = []
    for a in args:
        if type(a) is np.ndarray:
            key.append((a.shape, a.dtype))
        elif type(a) is Tensor and a._data is not None and not a.requires_grad and not a._weak:
            key.append((a._data.shape, a._data.dtype))
        else:
            return None
    return tuple(key)


def _wrap_outputs(tree: Any, outs: Sequence[np.ndarray]) -> Any:
    if tree is LEAF:
        return Tensor._wrap(outs[0])
    return unflatten(tree, [Tensor._wrap(o) for o in outs])


@dataclass
class _Entry:
    traced: Traced
    executable: Any = None

    def compiled(self):
        if self.executable is None:
            self.executable = executable_for(self.traced.fn)
        return self.executable


class JittedFunction:
    """A function compiled once per input signature (pytree structure, shapes, dtypes, static
    values) and run natively afterwards."""

    def __init__(self, fn: Callable, static_argnums: int | Sequence[int] = ()):
        functools.update_wrapper(self, fn, updated=())
        self._fn = fn
        self._static = (static_argnums,) if isinstance(static_argnums, int) \
            else tuple(static_argnums)
        self._cache: dict[tuple, _Entry] = {}
        self._fast: dict[tuple, _Entry] = {}   # plain-array calls: (shape, dtype) per argument
        # The last call whose leaves were plain arrays: (native entry, argument structure or
        # None when the arguments are the leaves, output structure).
        self._hot: tuple | None = None

    def _entry(self, args: Sequence[Any]) -> _Entry:
        static = static_positions(self._static, len(args))
        key = _signature_key(args, static)
        entry = self._cache.get(key)
        if entry is None:
            entry = self._cache[key] = _Entry(trace(self._fn, args, static))
        return entry

    def _leaves(self, args: Sequence[Any]) -> list[Any]:
        static = static_positions(self._static, len(args))
        leaves: list[Any] = []
        for i, a in enumerate(args):
            if i not in static:
                leaves += flatten(a)[0]
        return leaves

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        hot = self._hot
        if hot is not None and not kwargs:  # the native entry itself checks the leaves
            run, in_tree, out_tree = hot
            if in_tree is None:
                outs = run(*args)
            else:
                leaves = leaves_matching(in_tree, args)
                outs = NotImplemented if leaves is None else run(*leaves)
            if outs is not NotImplemented:
                return _wrap_outputs(out_tree, outs)
        if kwargs:  # keywords (and then defaults) become positions, their values traced as in JAX
            args = self._positional(args, kwargs)
        key = _fast_key(args) if not self._static else None
        entry = self._fast.get(key) if key is not None else None
        if entry is not None:  # every argument a plain array: no pytrees, tracing or autograd
            self._hot = (entry.executable.entry, None, entry.traced.out_tree)
            outs = entry.executable([a if type(a) is np.ndarray else a._data for a in args])
            return _wrap_outputs(entry.traced.out_tree, outs)
        entry = self._entry(args)
        result = self._run(entry, args)
        if self._static or entry.traced.captured:
            return result
        if key is not None:
            self._fast[key] = entry
        else:  # a pytree of plain arrays: the hot path compares its structure, then the leaves
            leaves, tree = flatten(args)
            if all(type(a) is np.ndarray for a in leaves):
                self._hot = (entry.executable.entry, tree, entry.traced.out_tree)
        return result

    def _positional(self, args: tuple, kwargs: dict) -> tuple:
        try:
            bound = inspect.signature(self._fn).bind(*args, **kwargs)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{getattr(self._fn, '__name__', 'function')}: {err}") from None
        bound.apply_defaults()
        if bound.kwargs:
            raise TypeError(f"{getattr(self._fn, '__name__', 'function')}: keyword-only and "
                            f"**kwargs parameters cannot be jitted: {sorted(bound.kwargs)}")
        return bound.args

    def _run(self, entry: _Entry, args: Sequence[Any]) -> Any:
        traced = entry.traced
        outs = call_traced(traced.fn, self._leaves(args) + list(traced.captured), entry.compiled)
        return unflatten(entry.traced.out_tree, outs)

    def lower(self, *args: Any) -> "Lowered":
        return Lowered(self, self._entry(args))


@dataclass
class Lowered:
    """One traced signature of a jitted function, every stage of it printable."""

    jitted: JittedFunction
    entry: _Entry
    _optimized: Function | None = field(default=None, repr=False)

    @property
    def traced(self) -> Function:
        return self.entry.traced.fn

    @property
    def optimized(self) -> Function:
        if self._optimized is None:
            self._optimized = passes.optimize(self.traced)
        return self._optimized

    def as_text(self, stage: str = "optimized") -> str:
        if stage == "traced":
            return to_text(self.traced)
        if stage == "optimized":
            return to_text(self.optimized)
        if stage in STAGES:
            return self.entry.compiled().stage_text(stage)
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")

    def as_dot(self, stage: str = "optimized") -> str:
        """The traced or optimized program as a Graphviz graph."""
        if stage not in ("traced", "optimized"):
            raise ValueError(f"as_dot shows the 'traced' or 'optimized' stage, not {stage!r}")
        return to_dot(self.traced if stage == "traced" else self.optimized)

    def compile(self) -> "Compiled":
        return Compiled(self.jitted, self.entry)


class Compiled:
    """The executable of one lowered signature: call it like the jitted function."""

    def __init__(self, jitted: JittedFunction, entry: _Entry):
        self._jitted = jitted
        self._entry = entry
        self.stats = dict(entry.compiled().stats)

    def __call__(self, *args: Any) -> Any:
        if self._jitted._entry(args) is not self._entry:
            raise TypeError("this compiled function was lowered for other argument shapes, "
                            "dtypes or static values; lower it again for these")
        return self._jitted._run(self._entry, args)


def jit(fn: Callable | None = None, *, static_argnums: int | Sequence[int] = ()):
    """Compile `fn` for each input signature; usable as `@jit` and `@jit(static_argnums=...)`."""
    if fn is None:
        return lambda f: JittedFunction(f, static_argnums)
    return JittedFunction(fn, static_argnums)


def make_ir(fn: Callable, static_argnums: int | Sequence[int] = ()) -> Callable[..., Function]:
    """`make_ir(f)(*args)`: the traced IR of `f` for these arguments (like jax.make_jaxpr)."""
    static = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
    return lambda *args: trace(fn, args, static_positions(static, len(args))).fn

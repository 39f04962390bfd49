"""Hypothesis strategies for random, well-typed IR programs drawn from the op registry.

`programs()` builds functions op by op through `ir.Builder` (so every op passes its type rule
when it is made), choosing among the registered ops. Elementwise ops are handled generically
(the dtypes each accepts are found by probing its type rule); every other op has a recipe in
`RECIPES` below, and `missing_recipes()` names registered ops that have none, so a test fails
when an op is added without teaching the generator about it.

`arguments(fn)` draws numpy inputs for a function's parameters. Both are meant to be reused:
the text round trip uses them now, the native backend's fuzzer (native vs interpreter) and
gradient fuzzing later (`programs(ops=DIFFERENTIABLE, dtypes=FLOATS)`).

Value domains the generator keeps to, because the numpy reference has no answer outside them:
integer `pow` only gets a literal exponent in [0, 3] (numpy raises on negative integer
exponents); `reduce_max`/`reduce_min` never reduce an empty axis. Casts from float to integer
of NaN, infinity or out-of-range values are undefined in numpy and LLVM alike: a fuzzer that
compares backends should draw finite, moderate inputs (`arguments(fn, special=False)`) or skip
such programs.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Sequence

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import ir
from ir import DTYPES, Builder, DenseConst, DType, Literal, Location, OpTypeError, TensorType, Value

ALL_DTYPES = tuple(DTYPES)                       # ("f32", "f64", "i32", "i64", "bool")
FLOATS = ("f32", "f64")
DIFFERENTIABLE = tuple(name for name, d in ir.REGISTRY.items() if d.vjp is not None)

SPECIAL_FLOATS = (math.nan, math.inf, -math.inf)
SIMPLE_FLOATS = (0.0, -0.0, 1.0, -1.0, 2.0, 0.5)   # the identities simplification rules look for
NAMES = ("x", "y", "w", "arg", "a.b", "ct0", "x_1", "v2")
FILES = ("model.py", "dir/sub file.py", 'we"ird\\name.py', "ünï.py", "<stdin>")


# Probing the registry -----------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def accepted_dtypes(name: str) -> tuple[str, ...]:
    """The dtypes an elementwise op's type rule accepts for all-same-dtype operands."""
    definition = ir.REGISTRY[name]
    ok = []
    for dt in ALL_DTYPES:
        operands = [Value(f"p{i}", TensorType(DTYPES[dt], (2,))) for i in range(definition.arity)]
        try:
            definition.type_rule(operands, {})
        except (OpTypeError, KeyError):
            continue
        ok.append(dt)
    return tuple(ok)


def _generic_elementwise(name: str) -> bool:
    definition = ir.REGISTRY[name]
    return (definition.kind == "elementwise" and not definition.attrs
            and definition.arity is not None and name not in RECIPES)


def missing_recipes() -> list[str]:
    """Registered ops the generator cannot make."""
    return [n for n in ir.REGISTRY if n not in RECIPES and not _generic_elementwise(n)]


# The generator's state ------------------------------------------------------------------------

@dataclass
class Config:
    dtypes: tuple[str, ...] = ALL_DTYPES
    max_rank: int = 3
    max_dim: int = 3
    min_dim: int = 1
    max_params: int = 4
    literals: bool = True
    special_literals: bool = True
    locations: bool = True


@dataclass
class Context:
    """The builder, the values made so far, and helpers that recipes draw operands with."""

    draw: Callable
    config: Config
    b: Builder = field(default_factory=lambda: Builder("main"))
    pool: list[Value] = field(default_factory=list)

    # types

    def dtype(self, allowed: Collection[str] = ALL_DTYPES) -> DType | None:
        choices = [d for d in self.config.dtypes if d in allowed]
        return DTYPES[self.draw(st.sampled_from(choices))] if choices else None

    def shape(self, min_rank: int = 0, max_rank: int | None = None) -> tuple[int, ...]:
        max_rank = self.config.max_rank if max_rank is None else max_rank
        return tuple(self.draw(st.lists(
            st.integers(self.config.min_dim, self.config.max_dim),
            min_size=min_rank, max_size=max(min_rank, max_rank))))

    # operands

    def pick(self, accept: Callable[[Value], bool]) -> Value | None:
        """An existing value that `accept`s, or None; later values are likelier (chains)."""
        candidates = [v for v in self.pool if accept(v)]
        if not candidates:
            return None
        # past max_params (a soft limit) reuse whenever possible; before, sometimes go fresh
        if len(self.b.params) < self.config.max_params and self.draw(st.integers(0, 3)) == 0:
            return None
        return candidates[-1 - self.draw(st.integers(0, len(candidates) - 1)) // 2]

    def param(self, type_: TensorType) -> Value:
        value = self.b.param(type_, self.draw(st.sampled_from(NAMES)))
        self.pool.append(value)
        return value

    def value(self, type_: TensorType) -> Value:
        """A value of exactly `type_`: an existing one, or a new parameter."""
        found = self.pick(lambda v: v.type == type_)
        if found is not None:
            return found
        return self.param(type_)

    def start(self, dtypes: Collection[str], min_rank: int = 0) -> Value | None:
        """A first operand: an existing value of an allowed dtype, or a new parameter."""
        found = self.pick(lambda v: v.type.dtype.name in dtypes and v.type.ndim >= min_rank)
        if found is not None:
            return found
        dtype = self.dtype(dtypes)
        return None if dtype is None else self.param(TensorType(dtype, self.shape(min_rank)))

    def scalar(self, dtype: DType) -> bool | int | float:
        if dtype.is_bool:
            return self.draw(st.booleans())
        if dtype.is_int:
            bits = 31 if dtype.name == "i32" else 63
            return self.draw(st.one_of(st.integers(-3, 3),
                                       st.integers(-(2 ** bits), 2 ** bits - 1)))
        floats = st.one_of(st.sampled_from(SIMPLE_FLOATS),
                           st.floats(-1e6, 1e6, width=32 if dtype.name == "f32" else 64))
        if self.config.special_literals:
            floats = st.one_of(floats, st.sampled_from(SPECIAL_FLOATS))
        return self.draw(floats)

    def literal(self, dtype: DType) -> Literal:
        return Literal(self.scalar(dtype), dtype)

    def operand(self, type_: TensorType) -> Value | Literal:
        """A value of `type_`, or (sometimes, if enabled) a literal of its dtype."""
        if self.config.literals and self.draw(st.integers(0, 3)) == 0:
            return self.literal(type_.dtype)
        return self.value(type_)

    def emit(self, name: str, operands: Sequence, attrs: dict) -> Value:
        loc = None
        if self.config.locations and self.draw(st.booleans()):
            loc = Location(self.draw(st.sampled_from(FILES)), self.draw(st.integers(1, 10_000)))
        result = self.b.emit(name, *operands, loc=loc, **attrs)
        self.pool.append(result)
        return result


# Recipes: (context) -> (operands, attrs), or None when this op cannot be made here ---------------

Recipe = Callable[[Context], "tuple[list, dict] | None"]


def elementwise(ctx: Context, name: str):
    arity = ir.REGISTRY[name].arity
    first = ctx.start(accepted_dtypes(name))
    if first is None:
        return None
    if name == "pow" and not first.type.dtype.is_float:
        return [first, Literal(ctx.draw(st.integers(0, 3)), first.type.dtype)], {}
    operands = [first] + [ctx.operand(first.type) for _ in range(arity - 1)]
    at = ctx.draw(st.integers(0, arity - 1))            # the Value need not come first
    operands[0], operands[at] = operands[at], operands[0]
    return operands, {}


def _where(ctx: Context):
    data = ctx.start(ALL_DTYPES)
    if data is None:
        return None
    cond_type = TensorType(ir.bool_, data.type.shape)
    cond = ctx.pick(lambda v: v.type == cond_type)
    if cond is None:
        if "bool" in ctx.config.dtypes:
            cond = ctx.param(cond_type)
        else:
            cond = ctx.emit("gt", [data, Literal(ctx.scalar(data.type.dtype), data.type.dtype)], {})
    if ctx.config.literals and ctx.draw(st.integers(0, 9)) == 0:
        cond = Literal(ctx.draw(st.booleans()), ir.bool_)
    other = ctx.operand(data.type)
    return ([cond, data, other] if ctx.draw(st.booleans()) else [cond, other, data]), {}


def _cast(ctx: Context):
    x = ctx.start(ALL_DTYPES)
    dtype = ctx.dtype()
    return (None if x is None or dtype is None else ([x], {"dtype": dtype}))


def _reduce(ctx: Context, name: str):
    x = ctx.start([d for d in ALL_DTYPES if d != "bool"])
    if x is None:
        return None
    axes = [a for a in range(x.type.ndim) if ctx.draw(st.booleans())]
    if name != "reduce_sum":
        axes = [a for a in axes if x.type.shape[a] > 0]
    return [x], {"axes": tuple(axes)}


def _factor_shape(ctx: Context, size: int) -> tuple[int, ...]:
    """A random shape with `size` elements (ones inserted anywhere)."""
    if size == 0:
        return ctx.shape(min_rank=1)[:-1] + (0,)
    factors, n, p = [], size, 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    rank = ctx.draw(st.integers(1 if factors else 0, max(ctx.config.max_rank, 1)))
    dims = [1] * rank
    for f in factors:
        dims[ctx.draw(st.integers(0, rank - 1))] *= f
    return tuple(dims)


def _reshape(ctx: Context):
    x = ctx.start(ALL_DTYPES)
    return None if x is None else ([x], {"shape": _factor_shape(ctx, x.type.size)})


def _transpose(ctx: Context):
    x = ctx.start(ALL_DTYPES)
    if x is None:
        return None
    return [x], {"perm": tuple(ctx.draw(st.permutations(range(x.type.ndim))))}


def _broadcast_to(ctx: Context):
    x = ctx.start(ALL_DTYPES)
    if x is None:
        return None
    lead = ctx.shape(max_rank=max(0, ctx.config.max_rank - x.type.ndim))
    grown = tuple(ctx.draw(st.integers(1, ctx.config.max_dim)) if n == 1 and ctx.draw(st.booleans())
                  else n for n in x.type.shape)
    if ctx.config.literals and ctx.draw(st.integers(0, 7)) == 0:
        return [ctx.literal(x.type.dtype)], {"shape": lead + grown}
    return [x], {"shape": lead + grown}


def _axis_slice(ctx: Context, n: int) -> tuple[int, int, int]:
    """(start, size, step) that stay inside an axis of length n (n > 0)."""
    step = ctx.draw(st.sampled_from((1, 1, 2, -1, -2)))
    start = ctx.draw(st.integers(0, n - 1))
    room = (n - 1 - start) // step + 1 if step > 0 else start // -step + 1
    return start, ctx.draw(st.integers(min(1, room) if ctx.config.min_dim else 0, room)), step


def _slice(ctx: Context):
    x = ctx.start(ALL_DTYPES)
    if x is None or 0 in x.type.shape:
        return None
    starts, sizes, steps = zip(*(_axis_slice(ctx, n) for n in x.type.shape)) if x.type.ndim \
        else ((), (), ())
    return [x], {"starts": tuple(starts), "sizes": tuple(sizes), "steps": tuple(steps)}


def _slice_scatter(ctx: Context):
    x = ctx.start(ALL_DTYPES)
    if x is None:
        return None
    shape, starts, steps = [], [], []
    for size in x.type.shape:
        step = ctx.draw(st.sampled_from((1, 2, -1, -2)))
        extra = ctx.draw(st.integers(0, 1))
        if step > 0:
            start = ctx.draw(st.integers(0, 1))
            n = start + max(size - 1, 0) * step + 1 + extra
        else:
            start = max(size - 1, 0) * -step + ctx.draw(st.integers(0, 1))
            n = start + 1 + extra
        shape.append(n)
        starts.append(start)
        steps.append(step)
    return [x], {"shape": tuple(shape), "starts": tuple(starts), "steps": tuple(steps)}


def _concatenate(ctx: Context):
    first = ctx.start(ALL_DTYPES, min_rank=1)
    if first is None:
        return None
    axis = ctx.draw(st.integers(0, first.type.ndim - 1))
    operands = [first]
    for _ in range(ctx.draw(st.integers(0, 2))):
        shape = list(first.type.shape)
        shape[axis] = ctx.draw(st.integers(ctx.config.min_dim, ctx.config.max_dim))
        operands.append(ctx.value(TensorType(first.type.dtype, tuple(shape))))
    order = ctx.draw(st.permutations(range(len(operands))))
    return [operands[i] for i in order], {"axis": axis}


def _matmul(ctx: Context):
    x = ctx.start([d for d in ALL_DTYPES if d != "bool"], min_rank=2)
    if x is None:
        return None
    n = ctx.draw(st.integers(ctx.config.min_dim, ctx.config.max_dim))
    y = ctx.value(TensorType(x.type.dtype, x.type.shape[:-2] + (x.type.shape[-1], n)))
    return [x, y], {}


def _constant(ctx: Context):
    dtype = ctx.dtype()
    if dtype is None:
        return None
    shape = ctx.shape()
    if dtype.is_float:
        elements = st.floats(width=32 if dtype.name == "f32" else 64,
                             allow_nan=ctx.config.special_literals,
                             allow_infinity=ctx.config.special_literals)
        array = ctx.draw(hnp.arrays(dtype.numpy, shape, elements=elements))
    else:
        array = ctx.draw(hnp.arrays(dtype.numpy, shape))
    return [], {"value": DenseConst(array)}


def _iota(ctx: Context):
    dtype = ctx.dtype([d for d in ALL_DTYPES if d != "bool"])
    if dtype is None:
        return None
    shape = ctx.shape(min_rank=1)
    return [], {"shape": shape, "axis": ctx.draw(st.integers(0, len(shape) - 1)), "dtype": dtype}


RECIPES: dict[str, Recipe] = {
    "where": _where,
    "cast": _cast,
    "reduce_sum": functools.partial(_reduce, name="reduce_sum"),
    "reduce_max": functools.partial(_reduce, name="reduce_max"),
    "reduce_min": functools.partial(_reduce, name="reduce_min"),
    "reshape": _reshape,
    "transpose": _transpose,
    "broadcast_to": _broadcast_to,
    "slice": _slice,
    "slice_scatter": _slice_scatter,
    "concatenate": _concatenate,
    "matmul": _matmul,
    "constant": _constant,
    "iota": _iota,
}


def make_op(ctx: Context, name: str) -> Value | None:
    """Emit one `name` op into the context (None when its recipe found nothing to apply to)."""
    recipe = RECIPES.get(name)
    made = recipe(ctx) if recipe is not None else elementwise(ctx, name)
    if made is None:
        return None
    operands, attrs = made
    return ctx.emit(name, operands, attrs)


# Public strategies ----------------------------------------------------------------------------

@st.composite
def programs(draw, ops: Collection[str] | None = None, *, min_ops: int = 1, max_ops: int = 6,
             **config: Any) -> ir.Function:
    """A random well-typed function built from `ops` (default: every registered op).

    Keyword arguments set `Config` fields: dtypes, max_rank, max_dim, min_dim (0 allows empty
    tensors), max_params, literals, special_literals (nan, inf), locations.
    """
    cfg = Config(**config)
    names = sorted(ops if ops is not None else ir.REGISTRY)
    unknown = [n for n in names if n not in ir.REGISTRY or n in missing_recipes()]
    if unknown:
        raise ValueError(f"programs(): no recipe for ops {unknown}")
    ctx = Context(draw, cfg)
    ctx.b.name = draw(st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,8}", fullmatch=True))
    n_ops = draw(st.integers(min_ops, max_ops))
    made = 0
    for _ in range(4 * n_ops):
        if made == n_ops:
            break
        if make_op(ctx, draw(st.sampled_from(names))) is not None:
            made += 1
    if not ctx.b.ops:
        # nothing applied (e.g. only float ops but dtypes excluded floats): a lone parameter
        first = ctx.start(cfg.dtypes) or ctx.param(TensorType(DTYPES[cfg.dtypes[0]], ()))
        return ctx.b.build([first])
    produced = [op.result for op in ctx.b.ops]
    extra = draw(st.lists(st.sampled_from(ctx.pool), max_size=2, unique=True))
    results = [produced[-1]] + [v for v in extra if v is not produced[-1]]
    return ctx.b.build(results)


def array_for(type_: TensorType, special: bool = False) -> st.SearchStrategy[np.ndarray]:
    dtype = type_.dtype
    if dtype.is_float:
        elements = st.one_of(st.floats(-4, 4, width=32 if dtype.name == "f32" else 64),
                             st.sampled_from((0.0, -0.0)))
        if special:
            elements = st.one_of(elements, st.sampled_from(SPECIAL_FLOATS))
    elif dtype.is_int:
        elements = st.integers(-5, 5)
    else:
        elements = st.booleans()
    return hnp.arrays(dtype.numpy, type_.shape, elements=elements)


@st.composite
def arguments(draw, fn: ir.Function, special: bool = False) -> list[np.ndarray]:
    """One numpy array per parameter of `fn`: small values (signed zeros included); with
    `special`, also nan and infinities."""
    return [draw(array_for(p.type, special)) for p in fn.params]

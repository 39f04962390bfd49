"""`jit`: caching and retracing, static arguments, pytrees, weak Python scalars, errors for
Python control flow on traced values, and the staged view (`lower`, `make_ir`)."""
import numpy as np
import pytest

import ir
import jit
from jit import Tensor


class Counted:
    """A function that counts how often it is traced (a Python side effect runs only then)."""

    def __init__(self, fn):
        self.fn, self.traces = fn, 0

    def __call__(self, *args):
        self.traces += 1
        return self.fn(*args)


# Caching and retracing ------------------------------------------------------------------------------

def test_same_signature_traces_once_new_shape_or_dtype_once_more():
    counted = Counted(lambda x, y: x * y + 1.0)
    f = jit.jit(counted)
    x, y = np.ones((2, 3), np.float32), np.full((2, 3), 2.0, np.float32)
    np.testing.assert_array_equal(f(x, y).numpy(), 3.0)
    f(x * 5, y)                                  # new values, same signature
    f(Tensor(x), Tensor(y))                      # Tensors and arrays of one type: one signature
    assert counted.traces == 1
    f(np.ones((4, 3), np.float32), np.ones((4, 3), np.float32))   # new shape
    assert counted.traces == 2
    f(np.ones((4, 3), np.float32), np.ones((4, 3), np.float32))
    assert counted.traces == 2
    out = f(np.ones((2, 3), np.float64), np.ones((2, 3), np.float64))   # new dtype
    assert counted.traces == 3 and out.dtype == np.float64
    f(x, y)                                      # the first signature is still cached
    assert counted.traces == 3


def test_python_scalars_are_weak_values_not_retraced():
    counted = Counted(lambda x, s: x * s)
    f = jit.jit(counted)
    x = np.ones(3, np.float32)
    for s in (2.0, 3.5, -1.0):
        out = f(x, s)
        np.testing.assert_array_equal(out.numpy(), s)
        assert out.dtype == np.float32               # weak: takes x's dtype
    assert counted.traces == 1
    f(x, 4)                                          # an int is another signature (once)
    f(x, 5)
    assert counted.traces == 2
    assert f(np.ones(3, np.float64), 2.0).dtype == np.float64


def test_python_scalar_argument_is_a_weak_0d_parameter_in_the_ir():
    fn = jit.jit(lambda x, s: x * s).lower(np.ones(2, np.float32), 2.0).traced
    assert [str(p.type) for p in fn.params] == ["f32[2]", "f32[]"]
    assert [op.name for op in fn.ops] == ["broadcast_to", "mul"]


def test_pytree_structure_is_part_of_the_signature():
    counted = Counted(lambda d: d["a"] * 2)
    f = jit.jit(counted)
    f({"a": np.ones(2)})
    f({"a": np.zeros(2)})
    assert counted.traces == 1
    f({"a": np.ones(2), "b": np.ones(2)})
    assert counted.traces == 2


def test_jit_functions_are_cached_per_object_and_keep_their_name():
    def loss(x):
        return x.sum()

    f = jit.jit(loss)
    assert f.__name__ == "loss" and f.__wrapped__ is loss
    assert f(np.arange(3.0)).item() == 3.0


# Static arguments -----------------------------------------------------------------------------------

def test_static_argnums_forms_and_retracing_per_value():
    counted = Counted(lambda x, n, mode: x * n if mode == "scale" else x + n)
    f = jit.jit(counted, static_argnums=(1, 2))
    x = np.ones(2)
    np.testing.assert_array_equal(f(x, 3, "scale").numpy(), 3.0)
    np.testing.assert_array_equal(f(x, 3, "shift").numpy(), 4.0)
    f(x, 3, "scale")
    assert counted.traces == 2
    np.testing.assert_array_equal(f(x, 4, "scale").numpy(), 4.0)
    assert counted.traces == 3

    @jit.jit(static_argnums=1)
    def power(x, k):
        for _ in range(k - 1):         # Python control flow on a static value
            x = x * x
        return x

    np.testing.assert_array_equal(power(np.full(2, 2.0), 3).numpy(), 16.0)


def test_static_argument_must_be_hashable():
    f = jit.jit(lambda x, opts: x, static_argnums=1)
    with pytest.raises(TypeError, match="static argument 1 must be hashable, got list"):
        f(np.ones(2), [1, 2])


# Pytrees ------------------------------------------------------------------------------------------

def test_pytrees_in_and_out():
    @jit.jit
    def f(params, batch):
        w, b = params["w"], params["b"]
        x, (y,) = batch
        out = x @ w + b
        return {"out": out, "extras": [out.sum(), (y * 2, None)], "const": 1.5}

    params = {"w": np.ones((3, 2)), "b": np.array([0.5, -0.5])}
    batch = [np.ones((4, 3)), (np.arange(4.0),)]
    result = f(params, batch)
    assert sorted(result) == ["const", "extras", "out"]
    np.testing.assert_array_equal(result["out"].numpy(), np.ones((4, 3)) @ np.ones((3, 2))
                                  + [0.5, -0.5])
    total, (double, nothing) = result["extras"]
    assert isinstance(result["extras"], list) and nothing is None
    assert total.item() == 24.0
    np.testing.assert_array_equal(double.numpy(), np.arange(4.0) * 2)
    assert isinstance(result["const"], Tensor) and result["const"].item() == 1.5


def test_pytree_leaves_become_named_parameters():
    fn = jit.make_ir(lambda p, xs: p["w"] * xs[1])({"w": np.ones(2)}, (np.ones(2), np.ones(2)))
    assert [p.name for p in fn.params] == ["p_w", "xs_0", "xs_1"]


def test_outputs_may_be_python_scalars_or_inputs():
    f = jit.jit(lambda x: (x, 3.0, 2))
    x, three, two = f(np.arange(2.0))
    np.testing.assert_array_equal(x.numpy(), [0.0, 1.0])
    assert three.shape == () and three.dtype == np.float32 and three.item() == 3.0
    assert two.dtype == np.int32 and two.item() == 2


def test_closed_over_tensors_are_constants():
    w = Tensor(np.array([1.0, 2.0]))
    scale = Tensor(3.0)
    f = jit.jit(lambda x: x * w * scale)
    np.testing.assert_array_equal(f(np.ones(2)).numpy(), [3.0, 6.0])
    assert [op.name for op in f.lower(np.ones(2)).traced.ops].count("constant") == 2
    assert f(np.ones(2)).shape == (2,)
    assert jit.jit(lambda x: x * scale)(np.float64(2.0)).shape == ()


def test_strided_and_read_only_inputs():
    f = jit.jit(lambda x, y: x * 2 + y)
    a = np.arange(24.0).reshape(4, 6)
    b = np.ones((4, 3))
    for x in (a[:, ::2], a[::-1, 1::2], a[:, 3:]):
        np.testing.assert_array_equal(f(x, b).numpy(), x * 2 + b)
    frozen = np.ones((4, 3))
    frozen.setflags(write=False)
    np.testing.assert_array_equal(f(frozen, b).numpy(), 3.0)
    np.testing.assert_array_equal(f(np.broadcast_to(np.arange(3.0), (4, 3)), b).numpy(),
                                  np.broadcast_to(np.arange(3.0) * 2 + 1, (4, 3)))


# Python control flow on traced values -------------------------------------------------------------

def _line_of(fn, marker: str) -> int:
    import inspect
    lines, start = inspect.getsourcelines(fn)
    return start + next(i for i, line in enumerate(lines) if marker in line)


def branchy(x):
    if x > 0:                       # marker: if
        return x
    return -x


def floaty(x):
    return x * float(x)             # marker: float


def itemy(x):
    return x * x.item()             # marker: item


def loopy(x, n):
    for _ in range(n):              # marker: range
        x = x * 2
    return x


def numpyish(x):
    return np.asarray(x) * 2        # marker: asarray


@pytest.mark.parametrize("fn,args,construct,marker", [
    (branchy, (np.float32(1.0),), "bool() of a tensor", "marker: if"),
    (floaty, (np.ones(()),), "float() needs a concrete value", "marker: float"),
    (itemy, (np.ones(()),), ".item() needs a concrete value", "marker: item"),
    (loopy, (np.ones(()), 3), "use as an index needs a concrete value", "marker: range"),
    (numpyish, (np.ones(2),), "conversion to a numpy array", "marker: asarray"),
], ids=["if", "float", "item", "range-of-python-int", "np.asarray"])
def test_tracer_error_names_construct_line_and_way_out(fn, args, construct, marker):
    for transform in (jit.jit, lambda f: jit.grad(lambda *a: jit.sum(f(*a)))):
        with pytest.raises(jit.TracerError) as info:
            transform(fn)(*args)
        message = str(info.value)
        assert isinstance(info.value, TypeError)
        assert construct in message
        assert f"{__file__.split('/')[-1]}:{_line_of(fn, marker)}" in message
        assert marker in message                          # the source line itself
        assert "static_argnums" in message and "jit.where" in message


def test_the_way_out_works():
    f = jit.jit(lambda x: jit.where(x > 0, x, -x))
    np.testing.assert_array_equal(f(np.array([-2.0, 3.0])).numpy(), [2.0, 3.0])
    g = jit.jit(loopy, static_argnums=1)
    np.testing.assert_array_equal(g(np.ones(()), 3).numpy(), 8.0)


def test_a_tracer_that_escapes_its_trace_is_an_error():
    leaked = []
    jit.jit(lambda x: leaked.append(x) or x)(np.ones(2))
    with pytest.raises(jit.TracerError, match="escaped the jit or grad call"):
        leaked[0] + 1


# Staged view ------------------------------------------------------------------------------------

def test_lower_shows_traced_and_optimized_text_without_running():
    traces = []

    def scale(x):
        traces.append(1)
        return x * 1.0 + 0.0 * x

    f = jit.jit(scale)
    lowered = f.lower(np.ones(3, np.float32))
    traced = lowered.as_text("traced")
    assert traced.startswith("func @scale(%x: f32[3]) -> f32[3] {")
    assert ir.parse(traced) == lowered.traced
    optimized = lowered.as_text("optimized")
    assert "mul %x, 1.0" in traced and "mul %x, 1.0" not in optimized
    assert ir.parse(optimized) == lowered.optimized
    assert len(traces) == 1
    f(np.ones(3, np.float32))                # lowering filled the cache: no second trace
    assert len(traces) == 1


def test_lower_unknown_stage():
    with pytest.raises(ValueError, match="unknown stage 'bogus'; expected one of traced, "
                                         "optimized, loops, llvm, asm"):
        jit.jit(lambda x: x).lower(np.ones(1)).as_text("bogus")


def test_compile_returns_a_callable_with_stats():
    lowered = jit.jit(lambda x: x * 2).lower(np.ones(2, np.float32))
    compiled = lowered.compile()
    np.testing.assert_array_equal(compiled(np.ones(2, np.float32)).numpy(), 2.0)
    assert isinstance(compiled.stats["compile_seconds"], float)
    assert isinstance(compiled.stats["kernels"], int)
    assert isinstance(compiled.stats["scratch_bytes"], int)
    with pytest.raises(TypeError, match="lowered for other argument shapes"):
        compiled(np.ones(3, np.float32))


def test_make_ir_returns_the_traced_function():
    fn = jit.make_ir(lambda x, y: jit.exp(x) @ y)(np.ones((2, 3), np.float32),
                                                   np.ones((3,), np.float32))
    assert isinstance(fn, ir.Function)
    assert str(fn) == ir.to_text(fn)
    assert [op.name for op in fn.ops] == ["exp", "reshape", "matmul", "reshape"]
    assert all(op.loc is not None and op.loc.file.endswith("test_jit_api.py") for op in fn.ops)
    ir.verify(fn)
    static = jit.make_ir(lambda x, k: x * k, static_argnums=1)(np.ones(2), 3)
    assert len(static.params) == 1 and static.ops[-1].operands[1] == ir.Literal(3.0, ir.f64)


def test_negative_static_argnums_count_from_the_end():
    traces = []

    def f(x, n):
        traces.append(n)
        return x * n

    g = jit.jit(f, static_argnums=-1)
    assert g(np.ones(2, np.float32), 3).tolist() == [3.0, 3.0]
    assert g(np.ones(2, np.float32), 4).tolist() == [4.0, 4.0]
    assert traces == [3, 4]


def test_static_argnums_beyond_the_arguments_is_an_error():
    g = jit.jit(lambda x: x, static_argnums=1)
    with pytest.raises(ValueError, match="static_argnums names argument 1"):
        g(np.ones(2))


def test_keyword_arguments_bind_to_their_positions():
    def scale(x, factor, offset=0.0):
        return x * factor + offset

    f = jit.jit(scale, static_argnums=2)
    x = np.ones(3, np.float32)
    assert f(x, factor=2.0).tolist() == [2.0, 2.0, 2.0]
    assert f(x, 2.0, offset=1.0).tolist() == [3.0, 3.0, 3.0]
    with pytest.raises(TypeError, match="scale: got an unexpected keyword argument 'bad'"):
        f(x, factor=2.0, bad=1)

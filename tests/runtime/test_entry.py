"""The native entry's contract (runtime/entry.py): it checks its arguments itself, allocates
outputs (or takes back its own that nobody holds), and answers NotImplemented for anything
it cannot take as it is, which the executable then converts."""
import pickle
import sys
import threading
import weakref

import numpy as np
import pytest

import passes
import runtime
from ir import Builder, TensorType, f32, f64
from jit import Tensor, jit


def _function(build, *shapes, dtype=f32):
    b = Builder("f")
    params = [b.param(TensorType(dtype, shape)) for shape in shapes]
    return b.build(build(b, *params))


def _compile(build, *shapes):
    return runtime.compile_program(passes.lower(passes.optimize(_function(build, *shapes))))


@pytest.fixture(scope="module")
def scale():
    return _compile(lambda b, x: [b.mul(x, 2.0)], (2, 3))


@pytest.fixture(scope="module")
def matmul():
    return _compile(lambda b, x, y: [b.matmul(x, y)], (40, 30), (30, 50))


def test_entry_returns_a_tuple_of_fresh_outputs(scale):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    first, = scale.entry(x)
    second, = scale.entry(x)
    np.testing.assert_array_equal(first, x * 2)
    assert first is not second and not np.shares_memory(first, second)
    assert not np.shares_memory(first, x)
    assert first.flags.c_contiguous and first.flags.writeable and first.flags.owndata


def test_an_output_nobody_holds_is_reused(scale):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    first, = scale.entry(x)
    first_id = id(first)
    first[...] = -1  # whatever the caller did to it, the next result is computed afresh
    del first
    again, = scale.entry(x)
    assert id(again) == first_id
    np.testing.assert_array_equal(again, x * 2)


def test_outputs_still_seen_anywhere_are_never_reused(scale):
    """A held result, a view of one, and a result changed in shape, dtype or writeability
    keep their memory; the two generations serve `params = step(params)` loops."""
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    held, = scale.entry(x)
    view = scale.entry(x)[0][1:]
    for result in (scale.entry(x)[0] for _ in range(4)):
        assert not np.shares_memory(result, held) and not np.shares_memory(result, view)
    np.testing.assert_array_equal(held, x * 2)
    np.testing.assert_array_equal(view, (x * 2)[1:])

    def reshape(a):
        a.shape = (3, 2)

    def retype(a):
        a.dtype = np.int32

    def freeze(a):
        a.flags.writeable = False

    for change in (reshape, retype, freeze):
        changed, = scale.entry(x)
        change(changed)
        alive = weakref.ref(changed)
        del changed  # only the entry's list of recent outputs holds it now
        result, = scale.entry(x)
        assert result is not alive()  # (the list may drop it: nobody can use it again)
        assert result.shape == (2, 3) and result.dtype == np.float32 and result.flags.writeable

    params, = scale.entry(x)
    seen = set()
    for _ in range(6):
        params, = scale.entry(params)
        seen.add(id(params))
    assert len(seen) == 2  # two arrays alternate: the last result is the next call's input
    np.testing.assert_array_equal(params, x * 2 ** 7)


@pytest.mark.parametrize("args", [
    (),
    (np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32)),
    (np.zeros((2, 3), np.float64),),
    (np.zeros((3, 2), np.float32),),
    (np.zeros((2, 3, 1), np.float32),),
    (np.zeros((3, 2), np.float32).T,),
    (np.zeros((2, 6), np.float32)[:, ::2],),
    ([[0.0] * 3] * 2,),
    (np.float32(1),),
    (Tensor(np.zeros((2, 3), np.float32)),),
    (None,),
], ids=["none", "two", "f64", "shape", "ndim", "transposed", "strided", "list", "scalar",
        "tensor", "None"])
def test_entry_refuses_what_it_cannot_take_as_it_is(scale, args):
    assert scale.entry(*args) is NotImplemented


def test_entry_refuses_unaligned_and_noncanonical_dtype_but_the_executable_converts(scale):
    raw = np.frombuffer(bytes(25), dtype=np.uint8)[1:].view(np.float32).reshape(2, 3)
    assert not raw.flags.aligned
    pickled = pickle.loads(pickle.dumps(np.ones((2, 3), np.float32)))
    swapped = np.ones((2, 3), ">f4")
    for x in (raw, pickled, swapped):
        if x is not pickled or x.dtype is not np.dtype(np.float32):
            assert scale.entry(x) is NotImplemented
        np.testing.assert_array_equal(scale([x])[0], np.asarray(x, np.float32) * 2)


@pytest.mark.parametrize("x", [
    np.ones((3, 2), np.float32).T, np.ones((2, 6), np.float64)[:, ::2], [[1, 1, 1]] * 2,
    np.ones((4, 3), np.float32)[::2],
], ids=["transposed", "strided-f64", "list", "rows"])
def test_executable_converts_once(scale, x):
    np.testing.assert_array_equal(scale([x])[0], np.full((2, 3), 2, np.float32))


def test_size_one_dimension_with_any_stride_is_contiguous():
    f = jit(lambda x: x * 2)
    x = np.ones((4, 4), np.float32)[::2][:1]  # shape (1, 4), row stride 32: numpy calls it C
    assert x.strides[0] != 16 and x.flags.c_contiguous
    np.testing.assert_array_equal(f(x).numpy(), np.full((1, 4), 2, np.float32))
    np.testing.assert_array_equal(f(x).numpy(), np.full((1, 4), 2, np.float32))


def test_executable_rejects_wrong_shapes_and_counts(scale):
    with pytest.raises(ValueError, match=r"expected an input of shape \(2, 3\), got \(3, 2\)"):
        scale([np.zeros((3, 2), np.float32)])
    with pytest.raises(ValueError, match="expected 1 inputs, got 2"):
        scale([np.zeros((2, 3)), np.zeros((2, 3))])


def test_entry_keeps_reference_counts(scale):
    x = np.ones((2, 3), np.float32)
    dtype = np.dtype(np.float32)
    for _ in range(3):
        out = scale.entry(x)
    before = sys.getrefcount(x), sys.getrefcount(dtype)
    for _ in range(1000):
        out = scale.entry(x)
    assert (sys.getrefcount(x), sys.getrefcount(dtype)) == before
    plain = (np.ones(3),)
    # the output is held by its tuple and by the entry's list of recent outputs
    assert sys.getrefcount(out) == 2 and sys.getrefcount(out[0]) == sys.getrefcount(plain[0]) + 1
    for _ in range(100):
        scale.entry(np.zeros(3))
    assert sys.getrefcount(NotImplemented) > 1


def test_outputs_never_alias_inputs_or_each_other():
    x = np.arange(4, dtype=np.float32)
    for fn in (lambda x: x, lambda x: (x, x), lambda x: (x * 2, x * 2)):
        f = jit(fn)
        for _ in range(3):  # first call, fast path, native-entry path
            outs = f(x)
            outs = outs if isinstance(outs, tuple) else (outs,)
            arrays = [o.numpy() for o in outs] + [x]
            assert not any(np.shares_memory(p, q)
                           for i, p in enumerate(arrays) for q in arrays[i + 1:])


def test_zero_dimensional_and_empty_arrays():
    f = jit(lambda x, y: (x * 2, y + 1))
    for _ in range(3):
        a, b = f(np.float32(3) * np.ones((), np.float32), np.ones((0, 5), np.float64))
        assert a.numpy().shape == () and a.numpy() == 6
        assert b.numpy().shape == (0, 5) and b.numpy().dtype == np.float64


def test_concurrent_calls_share_the_scratch_safely(matmul):
    rng = np.random.default_rng(0)
    cases = [(rng.standard_normal((40, 30), np.float32), rng.standard_normal((30, 50), np.float32))
             for _ in range(4)]
    wrong = []

    def work(x, y):
        want = x.astype(np.float64) @ y
        for _ in range(200):
            got, = matmul.entry(x, y)
            if not np.allclose(got, want, rtol=1e-4, atol=1e-4):
                wrong.append(got)

    threads = [threading.Thread(target=work, args=case) for case in cases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong


def test_jit_switches_signatures_and_argument_kinds():
    f = jit(lambda x, y: x @ y + 1)
    a32, a64 = np.ones((3, 4), np.float32), np.ones((3, 4), np.float64)
    b32 = np.full((4, 2), 2, np.float32)
    for _ in range(3):
        for x, y in ((a32, b32), (a64, b32), (Tensor(a32), b32), (a32.T.copy().T, b32)):
            want = np.asarray(x.numpy() if isinstance(x, Tensor) else x) @ b32 + 1
            got = f(x, y).numpy()
            np.testing.assert_allclose(got, want)
            assert got.dtype == want.dtype
        assert f(x=a32, y=b32).numpy().shape == (3, 2)


def test_interpreted_executable_has_the_same_entry_contract(scale):
    interp = runtime.InterpretedExecutable(
        _function(lambda b, x: [b.mul(x, x)], (2,), dtype=f64))
    assert interp.entry(np.ones(2, np.float32)) is NotImplemented
    assert interp.entry(np.ones(3)) is NotImplemented
    out, = interp.entry(np.full(2, 3.0))
    np.testing.assert_array_equal(out, [9.0, 9.0])


def test_jit_pytree_calls_check_their_structure_before_the_fast_entry():
    f = jit(lambda p: p[0] * 2 if isinstance(p, tuple) else p[1] * 3)
    g = jit(lambda d: d["a"] - d[next(k for k in d if k != "a")])
    a, b = np.ones(3, np.float32), np.full(3, 5, np.float32)
    for _ in range(3):
        np.testing.assert_array_equal(f((a, b)).numpy(), 2 * a)
        np.testing.assert_array_equal(f([a, b]).numpy(), 3 * b)
        np.testing.assert_array_equal(g({"a": a, "b": b}).numpy(), a - b)
        np.testing.assert_array_equal(g({"a": a, "c": b}).numpy(), a - b)
        np.testing.assert_array_equal(g({"a": b, "c": a}).numpy(), b - a)
        np.testing.assert_array_equal(f((Tensor(a), b)).numpy(), 2 * a)

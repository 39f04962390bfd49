"""The eager Tensor API of SPEC.md: construction, dtypes and promotion, attributes,
conversions, repr, operators, methods, indexing, iteration and Python's builtin sum."""
import numpy as np
import pytest

import jit
from jit import Tensor


def T(values, dtype):
    return Tensor(np.array(values, dtype=dtype))


# Construction -------------------------------------------------------------------------------------

@pytest.mark.parametrize("data,dtype,expected", [
    ([[1, 2], [3, 4]], None, np.float32),          # lists -> float32, like torch.Tensor
    ([True, False], None, np.float32),
    (3, None, np.float32),
    (2.5, None, np.float32),
    (np.arange(3), None, np.int64),                # numpy arrays keep their dtype
    (np.arange(3, dtype=np.int32), None, np.int32),
    (np.ones(2, np.float64), None, np.float64),
    (np.array([True]), None, np.bool_),
    (np.float64(2.0), None, np.float64),           # numpy scalars too
    (np.int32(7), None, np.int32),
    ([1, 2], "int64", np.int64),
    ([1.5, 2.5], np.float64, np.float64),
    ([1.7, -1.7], jit.int32, np.int32),
    (np.arange(3), "float32", np.float32),
    (Tensor([1.0, 2.0]), None, np.float32),
    (Tensor([1.0, 2.0]), "float64", np.float64),
    ([Tensor(1.0), Tensor(2.0)], None, np.float32),
])
def test_construction_dtypes(data, dtype, expected):
    t = Tensor(data, dtype=dtype)
    assert t.dtype == expected
    np.testing.assert_array_equal(t.numpy(), np.array(data.numpy() if isinstance(data, Tensor)
                                                      else data).astype(expected))


def test_construction_copies():
    a = np.zeros(2, np.float32)
    t = Tensor(a)
    a[0] = 5
    assert t.tolist() == [0.0, 0.0]
    u = Tensor(t)
    t.numpy()[1] = 3     # numpy() shares memory, as torch's does; the copy u does not
    assert u.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("data,dtype,error,message", [
    (np.ones(2, np.float16), None, TypeError, "unsupported dtype float16"),
    (np.ones(2, np.uint8), None, TypeError, "unsupported dtype uint8"),
    ([1, 2], "complex64", TypeError, "unsupported dtype complex64"),
    ([1, 2], "float", TypeError, None),
    ([1, 2], "nonsense", TypeError, "unknown dtype 'nonsense'"),
    (None, None, TypeError, "Tensor() expects numbers"),
    ([1.0, None], None, TypeError, "Tensor() expects numbers"),
    ("abc", None, TypeError, "Tensor() expects numbers"),
    ({"a": 1}, None, TypeError, None),
    ([[1, 2], [3]], None, ValueError, "inhomogeneous"),
])
def test_construction_errors(data, dtype, error, message):
    if dtype == "float":    # Python's float is float64: allowed
        assert Tensor(data, dtype=float).dtype == np.float64
        return
    with pytest.raises(error) as info:
        Tensor(data, dtype=dtype)
    if message:
        assert message in str(info.value)


@pytest.mark.parametrize("dtype", ["int32", "int64", "bool"])
def test_requires_grad_on_a_non_float_dtype_is_a_type_error(dtype):
    with pytest.raises(TypeError, match=f"only floating-point tensors can require gradients, "
                                        f"got dtype {dtype}"):
        Tensor([1, 0], dtype=dtype, requires_grad=True)


# Promotion ------------------------------------------------------------------------------------------

F32, F64, I32, I64, B = (np.float32, np.float64, np.int32, np.int64, np.bool_)
ARRAYS = {"f32": T([1, 2], F32), "f64": T([1, 2], F64), "i32": T([1, 2], I32),
          "i64": T([1, 2], I64), "bool": T([True, False], B)}

PROMOTION = [
    # two tensors: numpy's rules
    ("f32", "f64", F64), ("f32", "i32", F64), ("f32", "i64", F64), ("f32", "bool", F32),
    ("i32", "i64", I64), ("i32", "bool", I32), ("bool", "bool", B), ("f64", "i32", F64),
    # weak Python scalars take the tensor's dtype ...
    ("f32", 2, F32), ("f32", 2.5, F32), ("f32", True, F32), ("i32", 2, I32), ("i64", 2, I64),
    ("bool", True, B), ("f64", 2.5, F64),
    # ... except a float with an integer or bool tensor (float32) and an int with bool (int32)
    ("i32", 2.5, F32), ("i64", 2.5, F32), ("bool", 2.5, F32), ("bool", 2, I32),
    # numpy scalars are not weak: 0-d arrays
    ("f32", np.float64(2), F64), ("i32", np.float64(2), F64), ("f32", np.float32(2), F32),
    ("i32", np.int64(2), I64), ("bool", np.float64(2), F64), ("i32", np.float32(2), F64),
    ("f32", np.array(2.0), F64), ("i32", np.array([1, 2], I32), I32),
]


@pytest.mark.parametrize("a,b,expected", PROMOTION,
                         ids=[f"{a}-{b!r}" for a, b, _ in PROMOTION])
def test_promotion(a, b, expected):
    x = ARRAYS[a]
    y = ARRAYS[b] if isinstance(b, str) else b
    for result in (x + y, y + x, x * y, jit.maximum(x, y)):
        assert result.dtype == expected


@pytest.mark.parametrize("a,b,expected", [
    ("i32", "i32", F32), ("i64", "i64", F32), ("i32", 2, F32), ("bool", "bool", F32),
    ("f64", 2, F64), ("f32", "f32", F32), ("i32", "f64", F64),
])
def test_true_division_of_integers_gives_float32(a, b, expected):
    x = ARRAYS[a]
    y = ARRAYS[b] if isinstance(b, str) else b
    assert (x / y).dtype == expected
    assert (y / x).dtype == expected


def test_weak_scalars_under_jit_keep_the_tensor_dtype():
    @jit.jit
    def f(x):
        return x * 2 + 0.5

    assert f(np.ones(2, np.float32)).dtype == np.float32
    assert f(np.ones(2, np.float64)).dtype == np.float64
    assert f(np.ones(2, np.int32)).dtype == np.float32


@pytest.mark.parametrize("dtype,op,expected", [
    (I32, "sum", I32), (I64, "sum", I64), (B, "sum", I32), (F32, "sum", F32),
    (I32, "mean", F32), (I64, "mean", F32), (B, "mean", F32), (F64, "mean", F64),
    (I32, "max", I32), (B, "max", B), (B, "min", B), (F32, "min", F32),
])
def test_reductions_keep_the_dtype(dtype, op, expected):
    x = Tensor(np.array([[1, 0], [1, 1]], dtype=dtype))
    out = getattr(x, op)()
    assert out.dtype == expected
    np.testing.assert_allclose(out.item(), getattr(np, op)(x.numpy()))
    assert getattr(x, op)(axis=0).dtype == expected


@pytest.mark.parametrize("op", ["exp", "log", "sqrt", "tanh", "sigmoid"])
def test_transcendentals_of_integers_give_float32(op):
    x = T([1, 2], I32)
    assert getattr(x, op)().dtype == F32


def test_comparisons_give_bool_without_gradient():
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    for result in (x < 2, x <= 2, x > 2, x >= 2, x == 2, x != 2, 2 < x, np.float32(2) == x):
        assert result.dtype == B and not result.requires_grad
    np.testing.assert_array_equal((x >= 2).numpy(), [False, True, True])
    np.testing.assert_array_equal((2 == x).numpy(), [False, True, False])


# Attributes and conversions ----------------------------------------------------------------------

def test_attributes():
    x = Tensor(np.zeros((2, 3, 4), np.float64), requires_grad=True)
    assert x.shape == (2, 3, 4) and x.ndim == 3 and x.size == 24
    assert x.dtype == np.float64 and isinstance(x.dtype, np.dtype)
    assert x.requires_grad is True and x.grad is None
    assert x.T.shape == (4, 3, 2)                     # .T reverses every axis, any rank
    np.testing.assert_array_equal(x.T.numpy(), x.numpy().T)
    assert Tensor(1.0).shape == () and Tensor(1.0).ndim == 0 and Tensor(1.0).size == 1
    assert Tensor(np.zeros((0, 3))).size == 0


def test_conversions():
    x = Tensor([[1.5]])
    assert x.item() == 1.5 and isinstance(x.item(), float)
    assert float(x) == 1.5 and int(x) == 1 and bool(x) is True
    assert bool(Tensor([0.0])) is False
    assert Tensor(np.array([3], np.int64)).item() == 3
    assert isinstance(Tensor(np.array([3], np.int64)).item(), int)
    assert x.tolist() == [[1.5]]
    assert Tensor(np.array([[1, 2]], np.int32)).tolist() == [[1, 2]]
    a = np.asarray(Tensor([1.0, 2.0]))
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    assert np.asarray(Tensor([1.0]), dtype=np.float64).dtype == np.float64
    assert isinstance(Tensor([1.0]).numpy(), np.ndarray)
    assert [10, 20, 30][Tensor(np.array(1))] == 20               # __index__


@pytest.mark.parametrize("convert,error,message", [
    (lambda: Tensor([1.0, 2.0]).item(), ValueError, "item() needs a tensor with one element, "
                                                    "got shape (2,)"),
    (lambda: float(Tensor([1.0, 2.0])), TypeError, "float() needs a tensor with one element"),
    (lambda: int(Tensor(np.zeros((2, 2)))), TypeError, "int() needs a tensor with one element"),
    (lambda: bool(Tensor([1.0, 2.0])), ValueError, "ambiguous"),
    (lambda: [1, 2][Tensor(1.0)], TypeError, "only integer tensors can be used as an index"),
])
def test_conversion_errors(convert, error, message):
    with pytest.raises(error) as info:
        convert()
    assert message in str(info.value)


@pytest.mark.parametrize("tensor,text", [
    (Tensor([[1, 2], [3, 4]]), "Tensor([[1., 2.],\n        [3., 4.]], dtype=float32)"),
    (Tensor(1.0), "Tensor(1., dtype=float32)"),
    (Tensor(np.array([0, 1, 2])), "Tensor([0, 1, 2], dtype=int64)"),
    (Tensor(np.array([True, False])), "Tensor([ True, False], dtype=bool)"),
    (Tensor([0.5], requires_grad=True), "Tensor([0.5], dtype=float32, requires_grad=True)"),
    (Tensor(np.zeros((0, 2))), "Tensor([], shape=(0, 2), dtype=float64)"),
])
def test_repr_reads_like_numpy(tensor, text):
    assert repr(tensor) == text


def test_repr_of_a_traced_tensor_names_its_type():
    seen = []
    jit.jit(lambda x: seen.append(repr(x)) or x)(np.ones((2, 3), np.float32))
    assert seen == ["Tensor<traced f32[2,3]>"]


# Operators and methods ----------------------------------------------------------------------------

A = np.array([[1.0, -2.0, 3.0], [0.5, 4.0, -1.5]])
B2 = np.array([[2.0, 0.5, -1.0], [1.0, 2.0, 3.0]])
OPERATORS = [
    ("add", lambda a, b: a + b), ("sub", lambda a, b: a - b), ("mul", lambda a, b: a * b),
    ("div", lambda a, b: a / b), ("pow", lambda a, b: abs(a) ** b), ("neg", lambda a, b: -a),
    ("pos", lambda a, b: +a), ("abs", lambda a, b: abs(a)), ("matmul", lambda a, b: a @ b.T),
    ("radd", lambda a, b: 2 + a), ("rsub", lambda a, b: 2 - a), ("rmul", lambda a, b: 2 * a),
    ("rdiv", lambda a, b: 2 / a), ("rpow", lambda a, b: 2 ** a),
    ("broadcast-row", lambda a, b: a + b[0]), ("broadcast-col", lambda a, b: a * b[:, :1]),
    ("chained", lambda a, b: (a - b) * (a + b) / 4 - a ** 2),
]


@pytest.mark.parametrize("name,fn", OPERATORS, ids=[o[0] for o in OPERATORS])
def test_operators_match_numpy(name, fn):
    got = fn(Tensor(A), Tensor(B2))
    np.testing.assert_allclose(got.numpy(), fn(A, B2), rtol=1e-12)
    assert got.dtype == np.float64


def test_numpy_arrays_on_the_left_defer_to_tensor():
    for got in (A + Tensor(B2), A - Tensor(B2), A * Tensor(B2), A @ Tensor(B2.T), A > Tensor(B2)):
        assert isinstance(got, Tensor)
    np.testing.assert_allclose((A @ Tensor(B2.T)).numpy(), A @ B2.T)


METHODS = [
    ("sum", lambda t: t.sum(), lambda a: a.sum()),
    ("sum-axis", lambda t: t.sum(axis=1), lambda a: a.sum(axis=1)),
    ("sum-axes-keepdims", lambda t: t.sum(axis=(0, -1), keepdims=True),
     lambda a: a.sum(axis=(0, -1), keepdims=True)),
    ("mean", lambda t: t.mean(axis=0), lambda a: a.mean(axis=0)),
    ("max", lambda t: t.max(), lambda a: a.max()),
    ("max-axis-keepdims", lambda t: t.max(axis=-1, keepdims=True),
     lambda a: a.max(axis=-1, keepdims=True)),
    ("min-axes", lambda t: t.min(axis=(0, 1)), lambda a: a.min(axis=(0, 1))),
    ("exp", lambda t: t.exp(), np.exp),
    ("log", lambda t: abs(t).log(), lambda a: np.log(abs(a))),
    ("sqrt", lambda t: abs(t).sqrt(), lambda a: np.sqrt(abs(a))),
    ("abs", lambda t: t.abs(), np.abs),
    ("tanh", lambda t: t.tanh(), np.tanh),
    ("sigmoid", lambda t: t.sigmoid(), lambda a: 1 / (1 + np.exp(-a))),
    ("relu", lambda t: t.relu(), lambda a: np.maximum(a, 0)),
    ("reshape-args", lambda t: t.reshape(3, 2), lambda a: a.reshape(3, 2)),
    ("reshape-tuple", lambda t: t.reshape((3, -1)), lambda a: a.reshape((3, -1))),
    ("reshape-minus-one", lambda t: t.reshape(-1), lambda a: a.reshape(-1)),
    ("reshape-list", lambda t: t.reshape([1, 6, 1]), lambda a: a.reshape([1, 6, 1])),
    ("flatten", lambda t: t.flatten(), lambda a: a.flatten()),
    ("transpose", lambda t: t.transpose(), lambda a: a.transpose()),
    ("transpose-args", lambda t: t.transpose(1, 0), lambda a: a.transpose(1, 0)),
    ("transpose-tuple", lambda t: t.transpose((1, 0)), lambda a: a.transpose((1, 0))),
    ("T", lambda t: t.T, lambda a: a.T),
    ("astype-int", lambda t: t.astype("int32"), lambda a: a.astype(np.int32)),
    ("astype-bool", lambda t: t.astype(jit.bool_), lambda a: a.astype(bool)),
    ("astype-same", lambda t: t.astype(np.float64), lambda a: a),
    ("detach", lambda t: t.detach(), lambda a: a),
]


@pytest.mark.parametrize("name,method,reference", METHODS, ids=[m[0] for m in METHODS])
def test_methods_match_numpy(name, method, reference):
    got = method(Tensor(A))
    want = reference(A)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)


def test_3d_transpose_without_axes_reverses_them():
    x = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(Tensor(x).transpose().numpy(), x.transpose())
    np.testing.assert_array_equal(Tensor(x).transpose(2, 0, 1).numpy(), x.transpose(2, 0, 1))


# Indexing and iteration ---------------------------------------------------------------------------

X = np.arange(24.0).reshape(2, 3, 4)
INDICES = [1, -1, (0, 2), (-1, -3, -4), slice(None, None, -1), (slice(None), slice(1, None, 2)),
           (Ellipsis, -1), (None, 0), (0, None, Ellipsis, None), (slice(-2, None), Ellipsis, 1),
           (slice(None, None, -2), slice(None, None, -1), slice(3, 0, -2)), slice(5, 10),
           (Ellipsis,), (0, slice(1, 1)), (1, 2, 3), (Ellipsis, None)]


@pytest.mark.parametrize("index", INDICES, ids=[repr(i) for i in INDICES])
def test_getitem_matches_numpy(index):
    got = Tensor(X)[index]
    np.testing.assert_array_equal(got.numpy(), X[index])
    assert got.shape == X[index].shape
    np.testing.assert_array_equal(jit.jit(lambda x: x[index])(X).numpy(), X[index])


def test_getitem_with_a_0d_integer_tensor():
    np.testing.assert_array_equal(Tensor(X)[Tensor(np.array(1)), ..., Tensor(np.array(-1))]
                                  .numpy(), X[1, ..., -1])


@pytest.mark.parametrize("index,error,message", [
    (2, IndexError, "index 2 is out of bounds for axis 0 with size 2"),
    ((0, -4), IndexError, "index -4 is out of bounds for axis 1 with size 3"),
    ((0, 0, 0, 0), IndexError, "too many indices for a tensor of rank 3: 4 given"),
    ((Ellipsis, 0, Ellipsis), IndexError, "a single ellipsis"),
    (np.array([0, 1]), IndexError, "advanced indexing"),
    ([0, 1], IndexError, "advanced indexing"),
    (True, IndexError, "advanced indexing"),
    (Tensor(np.array([0, 1])), IndexError, "advanced indexing"),
    (slice(None, None, 0), ValueError, "slice step cannot be zero"),
    (0.5, TypeError, "cannot be interpreted as an integer"),
])
def test_getitem_errors(index, error, message):
    with pytest.raises(error) as info:
        Tensor(X)[index]
    assert message in str(info.value)


def test_iteration_and_len():
    t = Tensor(X)
    assert len(t) == 2
    rows = list(t)
    assert len(rows) == 2 and all(isinstance(r, Tensor) for r in rows)
    np.testing.assert_array_equal(rows[1].numpy(), X[1])
    assert [float(v) for v in Tensor([1.0, 2.0])] == [1.0, 2.0]
    with pytest.raises(TypeError, match="len\\(\\) of a 0-d tensor"):
        len(Tensor(1.0))
    with pytest.raises(TypeError, match="iteration over a 0-d tensor"):
        iter(Tensor(1.0))


def test_builtin_sum():
    x = Tensor([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(sum(x).numpy(), [4.0, 6.0])           # over the first axis
    assert sum(x.flatten()).item() == 10.0
    assert sum([Tensor(1.0), Tensor(2.5)]).item() == 3.5
    assert sum(x.flatten()).dtype == np.float32
    assert sum(Tensor(np.array([1, 2], np.int32))).dtype == np.int32


def test_tensors_hash_by_identity():
    a, b = Tensor([1.0]), Tensor([1.0])
    assert len({a, b}) == 2 and {a: 1}[a] == 1


def test_format_spec_formats_a_one_element_tensor_like_a_number():
    assert f"{Tensor(1.23456):.3f}" == "1.235"
    assert f"{Tensor([[2.5]]):.1f}" == "2.5"
    assert f"{Tensor([1.0, 2.0])}" == repr(Tensor([1.0, 2.0]))


def test_format_spec_needs_one_concrete_element():
    with pytest.raises(TypeError, match="needs a one-element tensor"):
        f"{Tensor([1.0, 2.0]):.2f}"
    with pytest.raises(jit.TracerError, match="formatting with '.2f'"):
        jit.jit(lambda x: f"{x:.2f}")(1.0)

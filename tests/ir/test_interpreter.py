"""The reference interpreter on hand-checked examples: it is every other stage's oracle."""
import math

import numpy as np
import pytest

import ir
from ir import Builder, Literal, TensorType, bool_, f32, f64, i32, i64


def run_text(text, *args):
    fn = ir.verify(ir.parse(text))
    return ir.interpret(fn, [np.asarray(a) for a in args])


def one_op(name, *operands, out_dtype=None, **attrs):
    """Run one op on numpy inputs (arrays become parameters, scalars literals)."""
    b = Builder("f")
    values = [b.param(TensorType(ir.dtype_of(a.dtype), a.shape), f"p{i}")
              if isinstance(a, np.ndarray) else a for i, a in enumerate(operands)]
    fn = b.build([b.emit(name, *values, **attrs)])
    (out,) = ir.interpret(ir.verify(fn), [a for a in operands if isinstance(a, np.ndarray)])
    assert out.shape == fn.results[0].type.shape
    assert out.dtype == fn.results[0].type.dtype.numpy
    return out


def test_spec_example_by_hand():
    text = """
    func @loss(%w: f32[2,1], %x: f32[3,2], %y: f32[3,1]) -> f32[] {
      %0 = matmul %x, %w : f32[3,1]          loc("model.py":4)
      %1 = sub %0, %y : f32[3,1]
      %2 = mul %1, %1 : f32[3,1]
      %3 = reduce_sum %2 {axes = [0, 1]} : f32[]
      %4 = div %3, 3.0 : f32[]
      return %4
    }"""
    w = np.array([[1], [2]], np.float32)
    x = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    y = np.array([[0], [0], [1]], np.float32)
    # x @ w = [1, 2, 3]; minus y = [1, 2, 2]; squares 1 + 4 + 4 = 9; / 3 = 3
    (out,) = run_text(text, w, x, y)
    assert out.dtype == np.float32 and out.shape == () and out == 3.0


CASES = [
    # (op, operands, attrs, expected)
    ("slice", [np.arange(6, dtype=np.int32)], dict(starts=(5,), sizes=(3,), steps=(-2,)),
     np.array([5, 3, 1], np.int32)),
    ("slice", [np.arange(12, dtype=np.float32).reshape(3, 4)],
     dict(starts=(2, 0), sizes=(2, 2), steps=(-1, 3)), np.array([[8, 11], [4, 7]], np.float32)),
    ("slice", [np.arange(4.0)], dict(starts=(0,), sizes=(0,), steps=(1,)), np.zeros(0)),
    ("slice_scatter", [np.array([1.0, 2.0])], dict(shape=(5,), starts=(4,), steps=(-3,)),
     np.array([0, 2.0, 0, 0, 1.0])),
    ("broadcast_to", [np.array([[1], [2]], np.int64)], dict(shape=(2, 2, 3)),
     np.array([[[1, 1, 1], [2, 2, 2]]] * 2, np.int64)),
    ("broadcast_to", [Literal(7, i32)], dict(shape=(2,)), np.array([7, 7], np.int32)),
    ("iota", [], dict(shape=(2, 3), axis=1, dtype=i64), np.array([[0, 1, 2]] * 2, np.int64)),
    ("iota", [], dict(shape=(2, 1), axis=0, dtype=f32), np.array([[0], [1]], np.float32)),
    ("transpose", [np.arange(6).reshape(1, 2, 3)], dict(perm=(2, 0, 1)),
     np.arange(6).reshape(1, 2, 3).transpose(2, 0, 1)),
    ("reshape", [np.arange(6)], dict(shape=(3, 1, 2)), np.arange(6).reshape(3, 1, 2)),
    ("concatenate", [np.array([[1.0]]), np.array([[2.0, 3.0]])], dict(axis=1),
     np.array([[1.0, 2.0, 3.0]])),
    ("reduce_sum", [np.ones((2, 3), np.int32)], dict(axes=(0,)), np.array([2, 2, 2], np.int32)),
    ("reduce_sum", [np.ones((2, 3), np.float32)], dict(axes=()), np.ones((2, 3), np.float32)),
    ("reduce_max", [np.array([[1.0, 5.0], [5.0, -np.inf]])], dict(axes=(0, 1)), np.array(5.0)),
    ("reduce_min", [np.array([[3, -2], [7, 1]], np.int32)], dict(axes=(1,)),
     np.array([-2, 1], np.int32)),
    ("reduce_max", [np.array([1.0, np.nan, 2.0])], dict(axes=(0,)), np.array(np.nan)),
    ("matmul", [np.arange(12.0).reshape(2, 2, 3), np.ones((2, 3, 1))], {},
     np.array([[[3.0], [12.0]], [[21.0], [30.0]]])),
    ("matmul", [np.array([[1, 2]], np.int32), np.array([[3], [4]], np.int32)], {},
     np.array([[11]], np.int32)),
    ("cast", [np.array([-1.7, 2.5, 0.0], np.float32)], dict(dtype=i32), np.array([-1, 2, 0], np.int32)),
    ("cast", [np.array([0, 3], np.int32)], dict(dtype=bool_), np.array([False, True])),
    ("cast", [np.array([0.1], np.float64)], dict(dtype=f32), np.array([0.1], np.float32)),
    ("where", [np.array([True, False]), np.array([1.0, 2.0]), Literal(math.nan, f64)], {},
     np.array([1.0, np.nan])),
    ("where", [Literal(False, bool_), np.array([1, 2], np.int32), np.array([3, 4], np.int32)],
     {}, np.array([3, 4], np.int32)),
    ("add", [np.array([2 ** 31 - 1], np.int32), Literal(1, i32)], {},
     np.array([-2 ** 31], np.int32)),                          # integers wrap
    ("pow", [np.array([2, -3], np.int64), Literal(3, i64)], {}, np.array([8, -27], np.int64)),
    ("pow", [np.array([0.0, -8.0]), Literal(0.0, f64)], {}, np.array([1.0, 1.0])),
    ("div", [np.array([1.0, -1.0, 0.0], np.float32), Literal(0.0, f32)], {},
     np.array([np.inf, -np.inf, np.nan], np.float32)),
    ("sub", [Literal(1.0, f32), np.array([0.5], np.float32)], {}, np.array([0.5], np.float32)),
    ("log", [np.array([0.0, -1.0, 1.0])], {}, np.array([-np.inf, np.nan, 0.0])),
    ("sqrt", [np.array([4.0, -0.0], np.float32)], {}, np.array([2.0, -0.0], np.float32)),
    ("logistic", [np.array([-1000.0, 0.0, 1000.0])], {}, np.array([0.0, 0.5, 1.0])),
    ("logistic", [np.array([-100.0])], {}, np.array([math.exp(-100) / (1 + math.exp(-100))])),
    ("tanh", [np.array([-30.0, 0.0, 0.5])], {}, np.array([-1.0, 0.0, math.tanh(0.5)])),
    ("exp", [np.array([1.0], np.float32)], {}, np.array([np.float32(math.e)])),
    ("abs", [np.array([-2, 0, 3], np.int32)], {}, np.array([2, 0, 3], np.int32)),
    ("sign", [np.array([-2.0, 0.0, 3.0])], {}, np.array([-1.0, 0.0, 1.0])),
    ("neg", [np.array([0.0])], {}, np.array([-0.0])),
    ("maximum", [np.array([1, 5], np.int32), np.array([3, 2], np.int32)], {},
     np.array([3, 5], np.int32)),
    ("minimum", [np.array([True, False]), np.array([True, True])], {}, np.array([True, False])),
    ("maximum", [np.array([np.nan, 1.0]), np.array([0.0, np.nan])], {}, np.array([np.nan, np.nan])),
    ("lt", [np.array([1.0, np.nan]), Literal(2.0, f64)], {}, np.array([True, False])),
    ("ne", [np.array([np.nan]), np.array([np.nan])], {}, np.array([True])),
    ("eq", [np.array([1, 2], np.int64), Literal(2, i64)], {}, np.array([False, True])),
    ("ge", [np.array([False, True]), np.array([True, True])], {}, np.array([False, True])),
    ("stop_gradient", [np.array([1.5])], {}, np.array([1.5])),
    ("mul", [np.array([True, False]), np.array([True, True])], {}, np.array([True, False])),
    ("add", [np.array([True, False]), np.array([True, False])], {}, np.array([True, False])),
]


@pytest.mark.parametrize("name,operands,attrs,expected", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_op_by_hand(name, operands, attrs, expected):
    out = one_op(name, *operands, **attrs)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == expected.dtype
    # signed zeros are part of the answer (a NaN's sign is not)
    if out.dtype.kind == "f":
        zeros = expected == 0
        np.testing.assert_array_equal(np.signbit(out[zeros]), np.signbit(expected[zeros]))


def test_transcendentals_of_f32_round_once_from_f64():
    x = np.float32(0.1) * np.arange(1, 50, dtype=np.float32)
    for name, exact in (("exp", np.exp), ("log", np.log), ("tanh", np.tanh), ("sqrt", np.sqrt)):
        out = one_op(name, x)
        np.testing.assert_array_equal(out, exact(x.astype(np.float64)).astype(np.float32))


def test_results_are_fresh_writable_contiguous_arrays():
    b = Builder("f")
    x = b.param(TensorType(f32, (2, 3)), "x")
    t = b.transpose(x, perm=(1, 0))
    fn = b.build([t, x, b.broadcast_to(Literal(1.0, f32), shape=(2, 2))])
    arg = np.arange(6, dtype=np.float32).reshape(2, 3)
    out_t, out_x, out_b = ir.interpret(fn, [arg])
    assert out_t.flags.c_contiguous and out_b.flags.writeable
    np.testing.assert_array_equal(out_t, arg.T)
    np.testing.assert_array_equal(out_x, arg)


def test_a_value_used_twice_and_several_results():
    text = """func @f(%x: f64[2]) -> (f64[2], f64[]) {
      %0 = mul %x, %x : f64[2]
      %1 = add %0, %x : f64[2]
      %2 = reduce_sum %1 {axes = [0]} : f64[]
      return %1, %2
    }"""
    out, total = run_text(text, np.array([2.0, -1.0]))
    np.testing.assert_array_equal(out, [6.0, 0.0])
    assert total == 6.0


@pytest.mark.parametrize("args,message", [
    ([np.zeros(2, np.float32)], "takes 2 arguments, got 1"),
    ([np.zeros(2, np.float64), np.zeros(2, np.float32)], "argument %x expects f32[2], got float64[2]"),
    ([np.zeros(2, np.float32), np.zeros(3, np.float32)], "argument %y expects f32[2], got float32[3]"),
])
def test_interpret_checks_its_arguments(args, message):
    fn = ir.parse("func @f(%x: f32[2], %y: f32[2]) -> f32[2] {\n  %0 = add %x, %y : f32[2]\n"
                  "  return %0\n}")
    with pytest.raises(TypeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ir.interpret(fn, args)

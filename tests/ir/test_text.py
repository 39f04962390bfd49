"""The IR's text form: round trip over random programs, golden text, parse errors."""
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings

import ir
from ir import Builder, DenseConst, Literal, Location, TensorType, f32, f64, i32, i64, bool_
from tests.strategies import programs


def round_trip(fn: ir.Function) -> None:
    text = ir.to_text(fn)
    parsed = ir.parse(text)
    assert parsed == fn, f"{text}\nparsed back as\n{ir.to_text(parsed)}"
    assert ir.to_text(parsed) == text
    assert str(fn) == text


# Round trip ------------------------------------------------------------------------------------

@settings(max_examples=150)
@given(programs())
def test_round_trip_random_programs(fn):
    ir.verify(fn)
    round_trip(fn)


@settings(max_examples=40)
@given(programs(min_ops=4, max_ops=10))
def test_round_trip_larger_random_programs(fn):
    round_trip(fn)


@settings(max_examples=40)
@given(programs(min_dim=0, max_ops=4))
def test_round_trip_random_programs_with_empty_tensors(fn):
    ir.verify(fn)
    round_trip(fn)


@settings(max_examples=40)
@given(programs(dtypes=("f32", "f64"), literals=True, max_ops=8))
def test_round_trip_random_float_programs(fn):
    round_trip(fn)


@pytest.mark.parametrize("dtype,value", [
    (f32, math.nan), (f32, math.inf), (f32, -math.inf), (f32, -0.0), (f32, 1e-45),
    (f32, 3.4028234663852886e38), (f32, 0.1), (f64, 5e-324), (f64, 1.7976931348623157e308),
    (f64, -math.nan), (f64, 1 / 3), (i32, -2 ** 31), (i32, 2 ** 31 - 1), (i64, -2 ** 63),
    (i64, 2 ** 63 - 1), (bool_, True), (bool_, False),
])
def test_round_trip_literals(dtype, value):
    b = Builder("f")
    x = b.param(TensorType(dtype, (2,)), "x")
    # the literal once with its default dtype (printed bare) and once typed (`2.0:f64`)
    y = b.eq(x, Literal(value, dtype))
    z = b.where(y, Literal(value, dtype), x)
    w = b.lt(Literal(value, dtype), Literal(value, dtype))
    round_trip(b.build([y, z, w]))


@pytest.mark.parametrize("array", [
    np.array([-np.nan, np.nan, np.inf, -np.inf, -0.0, 0.0], np.float32),
    np.array([np.nan], np.float64).view(np.uint64) | np.uint64(1),   # a NaN with a payload
    np.array(2.5, np.float64),                                      # 0-d stays 0-d
    np.zeros((0, 3), np.float32),
    np.array([[True, False]]),
    np.array([-2 ** 63, 2 ** 63 - 1], np.int64),
], ids=["specials", "nan-payload", "0-d", "empty", "bool", "int64-extremes"])
def test_round_trip_dense_constants(array):
    if array.dtype == np.uint64:
        array = array.view(np.float64)
    b = Builder("f")
    c = b.constant(value=array)
    assert c.type.shape == array.shape
    round_trip(b.build([c]))


def test_constant_does_not_freeze_or_alias_the_callers_array():
    array = np.ones(3, np.float32)
    const = DenseConst(array)
    array[0] = 5
    assert array.flags.writeable
    assert const.array[0] == 1


@pytest.mark.parametrize("file", ["model.py", 'a "quoted" name.py', "C:\\dir\\model.py",
                                  "ünïcode.py", "tab\there.py"])
def test_round_trip_locations(file):
    b = Builder("f")
    x = b.param(TensorType(f32, (2,)), "x")
    y = b.emit("neg", x, loc=Location(file, 12))
    round_trip(b.build([y]))


def test_round_trip_functions_with_no_params_and_many_results():
    b = Builder("g.h_1")
    c = b.iota(shape=(2, 3), axis=1, dtype=i64)
    d = b.cast(c, dtype=f64)
    round_trip(b.build([c, d, c]))


# Golden text -----------------------------------------------------------------------------------

SPEC_EXAMPLE = """\
func @loss(%w: f32[4,1], %x: f32[8,4], %y: f32[8,1]) -> f32[] {
  %0 = matmul %x, %w : f32[8,1]             loc("model.py":4)
  %1 = sub %0, %y : f32[8,1]
  %2 = mul %1, %1 : f32[8,1]
  %3 = reduce_sum %2 {axes = [0, 1]} : f32[]
  %4 = div %3, 8.0 : f32[]
  return %4
}
"""


def spec_example() -> ir.Function:
    b = Builder("loss")
    w = b.param(TensorType(f32, (4, 1)), "w")
    x = b.param(TensorType(f32, (8, 4)), "x")
    y = b.param(TensorType(f32, (8, 1)), "y")
    p = b.emit("matmul", x, w, loc=Location("model.py", 4))
    d = b.sub(p, y)
    s = b.reduce_sum(b.mul(d, d), axes=[0, 1])
    return b.build([b.div(s, 8.0)])


def test_golden_spec_example():
    fn = spec_example()
    assert ir.to_text(fn) == SPEC_EXAMPLE
    assert ir.parse(SPEC_EXAMPLE) == fn
    ir.verify(ir.parse(SPEC_EXAMPLE))


GOLDEN_ATTRS = """\
func @attrs(%x: i32[2,3], %c: bool[3,2]) -> (f64[3,2], bool[], i32[2]) {
  %0 = transpose %x {perm = [1, 0]} : i32[3,2]
  %1 = cast %0 {dtype = f64} : f64[3,2]
  %2 = where %c, %1, nan : f64[3,2]
  %3 = constant {value = dense<f32[2] [1.5, -inf]>} : f32[2]
  %4 = slice %x {sizes = [1, 2], starts = [1, 2], steps = [1, -2]} : i32[1,2]
  %5 = reshape %4 {shape = [2]} : i32[2]
  %6 = lt 1:i32, 2:i32 : bool[]
  %7 = add %5, -7 : i32[2]
  return %2, %6, %7
}
"""


def test_golden_attributes_literals_and_several_results():
    b = Builder("attrs")
    x = b.param(TensorType(i32, (2, 3)), "x")
    c = b.param(TensorType(bool_, (3, 2)), "c")
    t = b.transpose(x, perm=(1, 0))
    w = b.where(c, b.cast(t, dtype=f64), math.nan)
    b.constant(value=np.array([1.5, -np.inf], np.float32))
    s = b.reshape(b.slice(x, starts=(1, 2), sizes=(1, 2), steps=(1, -2)), shape=(2,))
    lt = b.lt(1, 2)
    fn = b.build([w, lt, b.add(s, -7)])
    assert ir.to_text(fn) == GOLDEN_ATTRS
    assert ir.parse(GOLDEN_ATTRS) == fn
    ir.verify(fn)


def test_hand_written_text_may_use_integers_for_float_literals():
    fn = ir.parse("func @f(%x: f32[2]) -> f32[2] {\n  %0 = mul %x, 2 : f32[2]\n  return %0\n}\n")
    assert fn.ops[0].operands[1] == Literal(2.0, f32)


# Parse errors ----------------------------------------------------------------------------------

HEAD = "func @f(%x: f32[2]) -> f32[2] {\n"
PARSE_ERRORS = [
    # (text, message fragment, line, column)
    (HEAD + "  %0 = add %x, %y : f32[2]\n  return %0\n}\n", "use of undefined value %y", 2, 16),
    (HEAD + "  %0 = add %x, $ : f32[2]\n  return %0\n}\n", "unexpected character '$'", 2, 16),
    (HEAD + "  %0 = add %x, 1.0 : f16[2]\n  return %0\n}\n", "expected a dtype", 2, 22),
    (HEAD + "  %0 = neg %x : f32[2]\n  %0 = neg %x : f32[2]\n  return %0\n}\n",
     "value %0 is defined twice", 3, 3),
    (HEAD + "  %0 = neg %x : f32[2]\n  return %0\n", "found end of input", 4, 1),
    (HEAD + "  return\n}\n", "types differ from the signature", 2, 3),
    (HEAD + "  return %x\n}\nfunc", "expected the end of the text", 4, 1),
    ("func @f() -> f32[2] {\n  %0 = constant {value = dense<f32[2] [1.0]>} : f32[2]\n"
     "  return %0\n}\n", "needs 2 elements, got 1", 2, 44),
    (HEAD + "  %0 = neg %x\n  return %0\n}\n", "expected ','", 3, 3),
    (HEAD + "  %0 = %x\n  return %0\n}\n", "expected an op name", 2, 8),
    (HEAD + "  neg %x : f32[2]\n  return %0\n}\n", "expected an op like", 2, 3),
    ("func f(%x: f32[2]) -> f32[2] {\n  return %x\n}\n", "expected a function name", 1, 6),
    ("func @f(%x: f32[2.5]) -> f32[2] {\n  return %x\n}\n", "expected a dimension", 1, 17),
    ("func @f(%x: f32[-1]) -> f32[2] {\n  return %x\n}\n", "expected a dimension", 1, 17),
    ("func @f(%x: i32[2]) -> i32[2] {\n  %0 = add %x, 99999999999 : i32[2]\n  return %0\n}\n",
     "99999999999 is not a value of dtype i32", 2, 16),
    ("func @f(%x: i32[2]) -> i32[2] {\n  %0 = add %x, 1.5 : i32[2]\n  return %0\n}\n",
     "1.5 is not a value of dtype i32", 2, 16),
    ("func @f(%x: i32[2]) -> i32[2] {\n  %0 = add %x, nan : i32[2]\n  return %0\n}\n",
     "nan is not a value of dtype i32", 2, 16),
    ("func @f() -> i64[1] {\n  %0 = constant {value = dense<i64[1] [inf]>} : i64[1]\n"
     "  return %0\n}\n", "inf is not a value of dtype i64", 2, 40),
    (HEAD + '  %0 = neg %x : f32[2]  loc("a.py":1.5)\n  return %0\n}\n',
     "expected a line number", 2, 36),
    (HEAD + '  %0 = neg %x : f32[2]  loc("a\\q.py":1)\n  return %0\n}\n',
     "malformed string escape", 2, 29),
    (HEAD + "  %0 = reduce_sum %x {axes = [0], axes = [0]} : f32[]\n  return %x\n}\n",
     "attribute 'axes' is given twice", 2, 35),
    ("", "expected 'func', found end of input", 1, 1),
]


@pytest.mark.parametrize("text,fragment,line,col", PARSE_ERRORS,
                         ids=[e[1][:30] for e in PARSE_ERRORS])
def test_parse_errors(text, fragment, line, col):
    with pytest.raises(ir.IRParseError) as info:
        ir.parse(text)
    err = info.value
    assert isinstance(err, ValueError)
    message = str(err)
    assert fragment in message
    assert (err.line, err.col) == (line, col)
    first, *rest = message.splitlines()
    assert first.endswith(f"at line {line}, column {col}")
    if line <= len(text.splitlines()):
        source, caret = rest
        assert source == "  " + text.splitlines()[line - 1]
        assert caret == "  " + " " * (col - 1) + "^"


def test_parse_accepts_comments_and_blank_lines():
    text = "// a comment\n\n" + SPEC_EXAMPLE.replace("  return", "  // the end\n  return")
    assert ir.parse(text) == spec_example()


def test_parse_does_not_type_check_but_verify_does():
    fn = ir.parse(HEAD + "  %0 = exp %x : f64[2]\n  return %x\n}\n")
    with pytest.raises(ir.VerifyError, match=re.escape("`%0 = exp %x : f64[2]`")):
        ir.verify(fn)


def test_a_bare_literal_condition_of_where_is_bool():
    fn = ir.parse("func @f(%x: f32[2], %y: f32[2]) -> f32[2] {\n"
                  "  %0 = where true, %x, %y : f32[2]\n"
                  "  return %0\n}\n")
    assert fn.ops[0].operands[0] == ir.Literal(True, ir.bool_)
    assert ir.verify(fn) is fn
    assert "where true, %x, %y" in ir.to_text(fn)

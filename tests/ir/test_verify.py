"""`ir.verify`: every invariant it guards, each broken once; the message names the op."""
import pytest
from hypothesis import given, settings

import ir
from ir import Function, Literal, Op, TensorType, Value, f32, f64, i32
from tests.strategies import programs


def T(*shape, dtype=f32):
    return TensorType(dtype, shape)


X = Value("x", T(2))
Y3 = Value("y", T(3))
A, B = Value("a", T(2, 3)), Value("b", T(2, 3))
I = Value("i", T(2, dtype=i32))


def fn(ops, params=(X,), results=None):
    results = results if results is not None else [ops[-1].result]
    return Function("f", tuple(params), tuple(ops), tuple(results))


def op(name, operands, type_, attrs=None, result="0"):
    return Op(name, tuple(operands), attrs or {}, Value(result, type_))


BROKEN = [
    # (function, fragments the message must contain)
    (fn([op("add", (X, X), T(3))]),
     ["`%0 = add %x, %x : f32[3]`", "the type rule gives f32[2], the op says f32[3]"]),
    (fn([op("add", (X, Y3), T(2))], params=(X, Y3)),
     ["`%0 = add %x, %y : f32[2]`", "operand shapes differ: f32[2], f32[3]"]),
    (fn([op("exp", (I,), T(2, dtype=i32))], params=(I,)),
     ["`%0 = exp %i : i32[2]`", "expected floating-point operands"]),
    (fn([op("where", (X, X, X), T(2))]), ["where", "the condition must be bool"]),
    (fn([op("matmul", (A, B), T(2, 3))], params=(A, B)),
     ["`%0 = matmul %a, %b : f32[2,3]`", "inner dimensions differ"]),
    (fn([op("neg", (X, X), T(2))]), ["`%0 = neg %x, %x", "expected 1 operands, got 2"]),
    # undefined values, use before definition, a value used at another type
    (fn([op("add", (X, Value("z", T(2))), T(2))]),
     ["`%0 = add %x, %z : f32[2]`", "%z is not defined before it is used"]),
    (fn([op("neg", (Value("1", T(2)),), T(2)), op("neg", (X,), T(2), result="1")]),
     ["`%0 = neg %1 : f32[2]`", "not defined before it is used"]),
    (fn([op("neg", (Value("x", T(2, dtype=f64)),), T(2, dtype=f64))]),
     ["`%0 = neg %x : f64[2]`", "has another type there"]),
    (fn([], results=[Value("q", T(2))]), ["@f returns %q, which is not defined"]),
    # duplicates
    (fn([op("neg", (X,), T(2)), op("neg", (X,), T(2))]), ["`%0 = neg %x", "defined twice"]),
    (fn([op("neg", (X,), T(2), result="x")]), ["`%x = neg %x", "value %x is defined twice"]),
    (fn([], params=(X, X), results=[X]), ["@f parameters", "value %x is defined twice"]),
    # attributes: missing, extra, out of range, of the wrong kind
    (fn([op("reduce_sum", (X,), T())]),
     ["`%0 = reduce_sum %x : f32[]`", "expected attributes ['axes'], got []"]),
    (fn([op("neg", (X,), T(2), {"axes": (0,)})]),
     ["`%0 = neg %x {axes = [0]}", "expected attributes [], got ['axes']"]),
    (fn([op("reduce_sum", (X,), T(), {"axes": (1,)})]),
     ["reduce_sum %x {axes = [1]}", "not distinct sorted axes"]),
    (fn([op("reduce_sum", (X,), T(), {"axes": 0})]), ["reduce_sum %x {axes = 0}"]),
    (fn([op("transpose", (X,), T(2), {"perm": (1,)})]), ["transpose", "not a permutation"]),
    (fn([op("reshape", (X,), T(3), {"shape": (3,)})]), ["reshape", "cannot reshape f32[2]"]),
    (fn([op("broadcast_to", (X,), T(3), {"shape": (3,)})]), ["broadcast_to", "cannot broadcast"]),
    (fn([op("slice", (X,), T(2), {"starts": (1,), "sizes": (2,), "steps": (1,)})]),
     ["`%0 = slice %x", "leave an axis of length 2"]),
    (fn([op("slice_scatter", (X,), T(2), {"shape": (2,), "starts": (1,), "steps": (1,)})]),
     ["slice_scatter"]),
    (fn([op("constant", (), T(2), {"value": 3})]), ["constant", "dense `value` attribute"]),
    (fn([op("iota", (), T(2, dtype=i32), {"shape": (2,), "axis": 1, "dtype": i32})]),
     ["iota", "an axis of [2]"]),
    (fn([op("concatenate", (), T(2), {"axis": 0})]), ["concatenate", "one or more tensor"]),
    (fn([op("cast", (X,), T(2), {"dtype": "complex64"})]), ["cast", "unsupported dtype"]),
    # unknown ops and operands that are not IR at all
    (fn([op("frobnicate", (X,), T(2))]), ["`%0 = frobnicate %x", "unknown op 'frobnicate'"]),
    (fn([op("neg", (3.0,), T(2))]), ["neg", "operand 3.0 is neither a value nor a literal"]),
]


@pytest.mark.parametrize("function,fragments", BROKEN, ids=[f[1][-1][:40] for f in BROKEN])
def test_verify_rejects(function, fragments):
    with pytest.raises(ir.VerifyError) as info:
        ir.verify(function)
    assert isinstance(info.value, ValueError)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize("function,fragments", BROKEN[:6], ids=[f[1][-1][:40] for f in BROKEN[:6]])
def test_verify_rejects_parsed_text(function, fragments):
    """The same broken functions written as text parse (the parser does not type-check) and
    then fail verification with the same message."""
    with pytest.raises(ir.VerifyError) as info:
        ir.verify(ir.parse(ir.to_text(function)))
    for fragment in fragments:
        assert fragment in str(info.value)


@settings(max_examples=60)
@given(programs())
def test_verify_accepts_every_generated_program(fn):
    assert ir.verify(fn) is fn


def test_literal_operands_are_type_checked():
    bad = fn([op("add", (X, Literal(1, i32)), T(2))])
    with pytest.raises(ir.VerifyError, match="operand dtypes differ"):
        ir.verify(bad)

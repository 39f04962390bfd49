"""cse and dce as IR text in, IR text out; the pipeline preserves what random programs compute,
verifies after every pass under tests, and dumps every stage when asked."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ir
import passes
from passes import manager
from tests.strategies import arguments, programs


def func(signature: str, *body: str) -> str:
    return f"func @f{signature} {{\n" + "".join(f"  {line}\n" for line in body) + "}\n"


SIG = "(%x: f32[2], %y: f32[2]) -> (f32[2], f32[2])"

CSE = [
    ("same op and operands",
     func(SIG, "%0 = mul %x, %y : f32[2]", "%1 = mul %x, %y : f32[2]", "%2 = exp %0 : f32[2]",
          "%3 = exp %1 : f32[2]", "return %2, %3"),
     func(SIG, "%0 = mul %x, %y : f32[2]", "%1 = exp %0 : f32[2]", "return %1, %1")),
    ("equal literals, NaN included",
     func(SIG, "%0 = add %x, nan : f32[2]", "%1 = add %x, nan : f32[2]", "return %0, %1"),
     func(SIG, "%0 = add %x, nan : f32[2]", "return %0, %0")),
    ("equal attributes",
     func("(%x: f32[2,3]) -> (f32[2], f32[2])", "%0 = reduce_sum %x {axes = [1]} : f32[2]",
          "%1 = reduce_sum %x {axes = [1]} : f32[2]", "return %0, %1"),
     func("(%x: f32[2,3]) -> (f32[2], f32[2])", "%0 = reduce_sum %x {axes = [1]} : f32[2]",
          "return %0, %0")),
    ("equal constants",
     func("() -> (f32[2], f32[2])", "%0 = constant {value = dense<f32[2] [1.0, nan]>} : f32[2]",
          "%1 = constant {value = dense<f32[2] [1.0, nan]>} : f32[2]", "return %0, %1"),
     func("() -> (f32[2], f32[2])", "%0 = constant {value = dense<f32[2] [1.0, nan]>} : f32[2]",
          "return %0, %0")),
]

CSE_KEEPS = [
    ("operand order", func(SIG, "%0 = sub %x, %y : f32[2]", "%1 = sub %y, %x : f32[2]",
                           "return %0, %1")),
    ("signed zeros", func(SIG, "%0 = mul %x, 0.0 : f32[2]", "%1 = mul %x, -0.0 : f32[2]",
                          "return %0, %1")),
    ("literal dtypes", func("(%x: f32[2]) -> (bool[], bool[])", "%0 = lt 1.0:f32, 2.0:f32 : bool[]",
                            "%1 = lt 1.0:f64, 2.0:f64 : bool[]", "return %0, %1")),
    ("attributes", func("(%x: f32[2,3]) -> (f32[2], f32[3])",
                        "%0 = reduce_sum %x {axes = [1]} : f32[2]",
                        "%1 = reduce_sum %x {axes = [0]} : f32[3]", "return %0, %1")),
]


@pytest.mark.parametrize("name,before,after", CSE, ids=[c[0] for c in CSE])
def test_cse(name, before, after):
    out = passes.dce(passes.cse(ir.parse(before)))
    assert ir.to_text(out) == after
    ir.verify(out)


@pytest.mark.parametrize("name,text", CSE_KEEPS, ids=[c[0] for c in CSE_KEEPS])
def test_cse_keeps_different_ops_apart(name, text):
    assert ir.to_text(passes.cse(ir.parse(text))) == text


DCE = [
    ("unused chain",
     func("(%x: f32[2]) -> f32[2]", "%0 = exp %x : f32[2]", "%1 = log %0 : f32[2]",
          "%2 = neg %x : f32[2]", "return %2"),
     func("(%x: f32[2]) -> f32[2]", "%0 = neg %x : f32[2]", "return %0")),
    ("parameters stay even when unused",
     func("(%x: f32[2], %unused: i32[3]) -> f32[2]", "%0 = add %x, 1.0 : f32[2]",
          "%1 = mul %x, 2.0 : f32[2]", "return %1"),
     func("(%x: f32[2], %unused: i32[3]) -> f32[2]", "%0 = mul %x, 2.0 : f32[2]",
          "return %0")),
    ("returning a parameter",
     func("(%x: f32[2]) -> (f32[2], f32[2])", "%0 = exp %x : f32[2]", "return %x, %x"),
     func("(%x: f32[2]) -> (f32[2], f32[2])", "return %x, %x")),
    ("renumbers in order",
     func("(%x: f32[2]) -> f32[2]", "%a = exp %x : f32[2]", "%b = neg %x : f32[2]",
          "%c = neg %b : f32[2]", "return %c"),
     func("(%x: f32[2]) -> f32[2]", "%0 = neg %x : f32[2]", "%1 = neg %0 : f32[2]",
          "return %1")),
]


@pytest.mark.parametrize("name,before,after", DCE, ids=[c[0] for c in DCE])
def test_dce(name, before, after):
    out = passes.dce(ir.parse(before))
    assert ir.to_text(out) == after
    ir.verify(out)


def test_optimize_pipeline_on_a_gradient_shaped_program():
    before = func("(%x: f32[3], %y: f32[3]) -> f32[3]",
                  "%0 = broadcast_to 1.0 {shape = []} : f32[]",
                  "%1 = mul %x, %y : f32[3]",
                  "%2 = reduce_sum %1 {axes = [0]} : f32[]",
                  "%3 = reshape %0 {shape = [1]} : f32[1]",
                  "%4 = broadcast_to %3 {shape = [3]} : f32[3]",
                  "%5 = mul %4, %y : f32[3]",
                  "%6 = mul %4, %y : f32[3]",
                  "%7 = add %5, %6 : f32[3]",
                  "return %7")
    after = func("(%x: f32[3], %y: f32[3]) -> f32[3]", "%0 = add %y, %y : f32[3]", "return %0")
    assert ir.to_text(passes.optimize(ir.parse(before))) == after


# Semantics over random programs ------------------------------------------------------------------

def _assert_same(want: np.ndarray, got: np.ndarray) -> None:
    """Bitwise equal up to NaN payloads: values, NaN positions and the signs of zeros."""
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    if got.dtype.kind == "f":
        zeros = want == 0
        np.testing.assert_array_equal(np.signbit(got[zeros]), np.signbit(want[zeros]))


def _undefined_cast(fn: ir.Function) -> bool:
    """float -> int casts of nan/inf/huge values are undefined; such programs are skipped."""
    return any(op.name == "cast" and not op.attrs["dtype"].is_float
               and op.operands[0].type.dtype.is_float for op in fn.ops)


PIPELINES = {"simplify": passes.simplify, "cse": passes.cse, "dce": passes.dce,
             "optimize": passes.optimize}


@pytest.mark.parametrize("name", sorted(PIPELINES))
@settings(max_examples=120)
@given(fn=programs(min_ops=2, max_ops=8), data=st.data())
def test_passes_preserve_results_of_random_programs(name, fn, data):
    args = data.draw(arguments(fn, special=not _undefined_cast(fn)), label="args")
    want = ir.interpret(fn, args)
    out = ir.verify(PIPELINES[name](fn))
    assert out.params == fn.params and out.result_types == fn.result_types
    for w, g in zip(want, ir.interpret(out, args)):
        _assert_same(w, g)


@settings(max_examples=60)
@given(fn=programs(min_ops=2, max_ops=8))
def test_optimize_is_idempotent(fn):
    once = passes.optimize(fn)
    assert passes.optimize(once) == once


# The manager -------------------------------------------------------------------------------------

def test_manager_verifies_after_every_pass_under_tests(monkeypatch):
    assert manager.os.environ.get("TENSORJIT_VERIFY") == "1"

    def broken(fn):
        op = fn.ops[0]
        bad = ir.Op(op.name, op.operands, op.attrs, ir.Value("0", ir.TensorType(ir.f64, (2,))))
        return ir.Function(fn.name, fn.params, (bad,), (bad.result,))

    fn = ir.parse(func("(%x: f32[2]) -> f32[2]", "%0 = exp %x : f32[2]", "return %0"))
    with pytest.raises(ir.VerifyError, match="exp"):
        passes.run_pipeline(fn, (("simplify", passes.simplify), ("broken", broken)))


def test_optimize_simplifies_what_cse_exposes():
    # CSE merges the two abs ops; only then is where(c, a, a) = a visible to simplify.
    fn = ir.parse(func("(%x: f32[2], %c: bool[2]) -> f32[2]", "%0 = abs %x : f32[2]",
                       "%1 = abs %x : f32[2]", "%2 = where %c, %0, %1 : f32[2]", "return %2"))
    assert [op.name for op in passes.optimize(fn).ops] == ["abs"]


def test_dump_writes_every_stage_in_order(tmp_path, monkeypatch):
    monkeypatch.setenv("TENSORJIT_DUMP", str(tmp_path))
    fn = ir.parse(func("(%x: f32[2]) -> f32[2]", "%0 = mul %x, 1.0 : f32[2]", "return %0"))
    out = passes.optimize(fn)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert [f.split("-", 1)[1] for f in files] == ["f-input.txt", "f-simplify.txt", "f-cse.txt",
                                                   "f-dce.txt"]
    assert (tmp_path / files[0]).read_text() == ir.to_text(fn)
    assert (tmp_path / files[-1]).read_text() == ir.to_text(out)
    assert ir.parse((tmp_path / files[1]).read_text()) is not None


def test_no_dump_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("TENSORJIT_DUMP", raising=False)
    monkeypatch.chdir(tmp_path)
    passes.optimize(ir.parse(func("(%x: f32[2]) -> f32[2]", "return %x")))
    assert list(tmp_path.iterdir()) == []

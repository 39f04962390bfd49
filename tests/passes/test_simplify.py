"""simplify: IR text in, expected IR text out, one case per rule (and rules that must not
fire); every output still verifies and computes what its input did.

Simplify leaves the ops it bypassed for DCE, so the expected texts are those of
`dce(simplify(f))`."""
import importlib

import numpy as np
import pytest

import ir
import passes

simplify_module = importlib.import_module("passes.simplify")


def func(signature: str, *body: str) -> str:
    return f"func @f{signature} {{\n" + "".join(f"  {line}\n" for line in body) + "}\n"


XY = "(%x: f32[2,3], %y: f32[2,3]) -> f32[2,3]"
X = "(%x: f32[2,3]) -> f32[2,3]"

CASES = [
    # (rule, input, expected output)
    ("fold_literals",
     func("() -> f32[]", "%0 = add 1.5, 2.0 : f32[]", "%1 = mul %0, 4.0 : f32[]", "return %1"),
     func("() -> f32[]", "%0 = broadcast_to 14.0 {shape = []} : f32[]", "return %0")),
    ("fold_literals-int-wraps",
     func("(%x: i32[]) -> i32[]", "%0 = add 2147483647, 1 : i32[]", "%1 = mul %x, %0 : i32[]",
          "return %1"),
     func("(%x: i32[]) -> i32[]", "%0 = mul %x, -2147483648 : i32[]", "return %0")),
    ("fold_splats",
     func(X, "%0 = broadcast_to 2.0 {shape = [2,3]} : f32[2,3]", "%1 = exp %0 : f32[2,3]",
          "%2 = mul %x, %1 : f32[2,3]", "return %2"),
     func(X, "%0 = broadcast_to 7.389056205749512 {shape = [2, 3]} : f32[2,3]",
          "%1 = mul %x, %0 : f32[2,3]", "return %1")),
    ("scalar_constant",
     func("(%x: f32[]) -> f32[]", "%0 = constant {value = dense<f32[] [3.0]>} : f32[]",
          "%1 = mul %x, %0 : f32[]", "return %1"),
     func("(%x: f32[]) -> f32[]", "%0 = mul %x, 3.0 : f32[]", "return %0")),
    ("add_zero",
     func(X, "%0 = add %x, -0.0 : f32[2,3]", "%1 = sub %0, 0.0 : f32[2,3]",
          "%2 = add -0.0, %1 : f32[2,3]", "return %2"),
     func(X, "return %x")),
    ("add_zero-integers",
     func("(%x: i32[2]) -> i32[2]", "%0 = add 0, %x : i32[2]", "%1 = sub %0, 0 : i32[2]",
          "return %1"),
     func("(%x: i32[2]) -> i32[2]", "return %x")),
    ("add_zero-splat",
     func(X, "%0 = broadcast_to -0.0 {shape = [2, 3]} : f32[2,3]", "%1 = add %x, %0 : f32[2,3]",
          "return %1"),
     func(X, "return %x")),
    ("mul_one",
     func(X, "%0 = mul %x, 1.0 : f32[2,3]", "%1 = mul 1.0, %0 : f32[2,3]",
          "%2 = div %1, 1.0 : f32[2,3]", "%3 = pow %2, 1.0 : f32[2,3]", "return %3"),
     func(X, "return %x")),
    ("mul_one-splat",
     func(X, "%0 = reshape 1.0 {shape = [1]} : f32[1]",
          "%1 = broadcast_to %0 {shape = [2, 3]} : f32[2,3]", "%2 = mul %1, %x : f32[2,3]",
          "return %2"),
     func(X, "return %x")),
    ("mul_minus_one",
     func(X, "%0 = mul %x, -1.0 : f32[2,3]", "return %0"),
     func(X, "%0 = neg %x : f32[2,3]", "return %0")),
    ("square",
     func(X, "%0 = pow %x, 2.0 : f32[2,3]", "return %0"),
     func(X, "%0 = mul %x, %x : f32[2,3]", "return %0")),
    ("double_negation",
     func(X, "%0 = neg %x : f32[2,3]", "%1 = neg %0 : f32[2,3]", "return %1"),
     func(X, "return %x")),
    ("add_negation",
     func(XY, "%0 = neg %y : f32[2,3]", "%1 = add %x, %0 : f32[2,3]",
          "%2 = sub %1, %0 : f32[2,3]", "return %2"),
     func(XY, "%0 = sub %x, %y : f32[2,3]", "%1 = add %0, %y : f32[2,3]", "return %1")),
    ("same_type_layout",
     func(X, "%0 = reshape %x {shape = [2, 3]} : f32[2,3]",
          "%1 = broadcast_to %0 {shape = [2, 3]} : f32[2,3]",
          "%2 = cast %1 {dtype = f32} : f32[2,3]", "%3 = transpose %2 {perm = [0, 1]} : f32[2,3]",
          "%4 = reduce_max %3 {axes = []} : f32[2,3]", "return %4"),
     func(X, "return %x")),
    ("same_type_layout-int-sum",
     func("(%x: i64[2]) -> i64[2]", "%0 = reduce_sum %x {axes = []} : i64[2]", "return %0"),
     func("(%x: i64[2]) -> i64[2]", "return %x")),
    ("splat_layout",
     func("() -> f32[3,2]", "%0 = reshape 1.5 {shape = [1]} : f32[1]",
          "%1 = broadcast_to %0 {shape = [2, 3]} : f32[2,3]",
          "%2 = transpose %1 {perm = [1, 0]} : f32[3,2]", "return %2"),
     func("() -> f32[3,2]", "%0 = broadcast_to 1.5 {shape = [3, 2]} : f32[3,2]", "return %0")),
    ("layout_chain",
     func("(%x: f32[6]) -> f32[3,2]", "%0 = reshape %x {shape = [2, 3]} : f32[2,3]",
          "%1 = reshape %0 {shape = [3, 2]} : f32[3,2]", "return %1"),
     func("(%x: f32[6]) -> f32[3,2]", "%0 = reshape %x {shape = [3, 2]} : f32[3,2]",
          "return %0")),
    ("layout_chain-broadcast",
     func("(%x: f32[3]) -> f32[4,2,3]", "%0 = broadcast_to %x {shape = [2, 3]} : f32[2,3]",
          "%1 = broadcast_to %0 {shape = [4, 2, 3]} : f32[4,2,3]", "return %1"),
     func("(%x: f32[3]) -> f32[4,2,3]", "%0 = broadcast_to %x {shape = [4, 2, 3]} : f32[4,2,3]",
          "return %0")),
    ("transpose_chain",
     func("(%x: f32[2,3,4]) -> f32[3,2,4]", "%0 = transpose %x {perm = [2, 0, 1]} : f32[4,2,3]",
          "%1 = transpose %0 {perm = [2, 1, 0]} : f32[3,2,4]", "return %1"),
     func("(%x: f32[2,3,4]) -> f32[3,2,4]",
          "%0 = transpose %x {perm = [1, 0, 2]} : f32[3,2,4]", "return %0")),
    ("transpose_chain-to-identity",
     func(X, "%0 = transpose %x {perm = [1, 0]} : f32[3,2]",
          "%1 = transpose %0 {perm = [1, 0]} : f32[2,3]", "return %1"),
     func(X, "return %x")),
    ("where_same",
     func("(%c: bool[2], %x: f32[2]) -> f32[2]", "%0 = where %c, %x, %x : f32[2]", "return %0"),
     func("(%c: bool[2], %x: f32[2]) -> f32[2]", "return %x")),
    ("where_constant",
     func(XY, "%0 = where true:bool, %x, %y : f32[2,3]",
          "%1 = where false:bool, %x, 0.0 : f32[2,3]",
          "%2 = add %0, %1 : f32[2,3]", "return %2"),
     func(XY, "%0 = broadcast_to 0.0 {shape = [2, 3]} : f32[2,3]", "%1 = add %x, %0 : f32[2,3]",
          "return %1")),
    ("whole_slice",
     func(X, "%0 = slice %x {sizes = [2, 3], starts = [0, 0], steps = [1, 1]} : f32[2,3]",
          "return %0"),
     func(X, "return %x")),
]

UNCHANGED = [
    # rewrites that would change a result for some input
    ("x*0 (inf*0 is nan)", func(X, "%0 = mul %x, 0.0 : f32[2,3]", "return %0")),
    ("x+0.0 (-0.0+0.0 is +0.0)", func(X, "%0 = add %x, 0.0 : f32[2,3]", "return %0")),
    ("0.0+x", func(X, "%0 = add 0.0, %x : f32[2,3]", "return %0")),
    ("x-(-0.0)", func(X, "%0 = sub %x, -0.0 : f32[2,3]", "return %0")),
    ("x-x (inf-inf is nan)", func(X, "%0 = sub %x, %x : f32[2,3]", "return %0")),
    ("x/x", func(X, "%0 = div %x, %x : f32[2,3]", "return %0")),
    ("float sum over no axes", func(X, "%0 = reduce_sum %x {axes = []} : f32[2,3]", "return %0")),
    ("reversing slice",
     func("(%x: f32[3]) -> f32[3]", "%0 = slice %x {sizes = [3], starts = [2], steps = [-1]} : f32[3]",
          "return %0")),
    ("1/x", func(X, "%0 = div 1.0, %x : f32[2,3]", "return %0")),
    ("x**0 stays (0**0, nan**0 are 1 but the rule set does not have it)",
     func(X, "%0 = pow %x, 0.0 : f32[2,3]", "return %0")),
]


def _run_both(before: ir.Function, after: ir.Function) -> None:
    rng = np.random.default_rng(0)
    args = []
    for p in before.params:
        base = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.5, -2.0, 3.0])
        values = rng.choice(base, p.type.shape) if p.type.dtype.is_float else \
            rng.integers(-5, 5, p.type.shape) if p.type.dtype.is_int else \
            rng.integers(0, 2, p.type.shape).astype(bool)
        args.append(np.asarray(values, p.type.dtype.numpy))
    for want, got in zip(ir.interpret(before, args), ir.interpret(after, args)):
        np.testing.assert_array_equal(got, want)
        if got.dtype.kind == "f":
            np.testing.assert_array_equal(np.signbit(got[got == 0]), np.signbit(want[want == 0]))


@pytest.mark.parametrize("rule,before,after", CASES, ids=[c[0] for c in CASES])
def test_rule(rule, before, after):
    fn = ir.verify(ir.parse(before))
    out = passes.dce(passes.simplify(fn))
    assert ir.to_text(out) == after
    ir.verify(out)
    _run_both(fn, out)


@pytest.mark.parametrize("name,text", UNCHANGED, ids=[c[0] for c in UNCHANGED])
def test_rewrites_that_would_change_results_are_not_made(name, text):
    fn = ir.parse(text)
    assert ir.to_text(passes.simplify(fn)) == text


def test_every_rule_has_a_case_and_a_docstring():
    names = {r.__name__ for r in simplify_module.RULES}
    covered = {c[0].split("-")[0] for c in CASES}
    assert names <= covered, f"rules without a test case: {sorted(names - covered)}"
    for rule in simplify_module.RULES:
        assert rule.__doc__ and "->" in rule.__doc__, rule.__name__


def test_simplify_keeps_locations_of_ops_it_keeps():
    text = func(X, '%0 = mul %x, 1.0 : f32[2,3]  loc("a.py":1)',
                '%1 = exp %0 : f32[2,3]                 loc("a.py":2)', "return %1")
    out = passes.dce(passes.simplify(ir.parse(text)))
    assert ir.to_text(out) == func(X, f'{"%0 = exp %x : f32[2,3]":<40}  loc("a.py":2)', "return %0")

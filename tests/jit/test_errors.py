"""Every error case of SPEC.md's Errors section: the exception type, and a message that says
what was expected and what was given."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import ir
import jit
from jit import Tensor

ROOT = Path(__file__).resolve().parents[2]


def eager_and_jitted(fn, *args):
    """The same call eagerly and under jit (errors must not depend on the mode)."""
    return [lambda: fn(*[Tensor(a) if isinstance(a, np.ndarray) else a for a in args]),
            lambda: jit.jit(fn)(*args)]


CASES = [
    # --- shape mismatches: ValueError with both shapes
    ("add-shapes", lambda x, y: x + y, (np.ones(2), np.ones(3)), ValueError,
     ["add: shapes [2] and [3] do not broadcast together"]),
    ("mul-shapes", lambda x, y: x * y, (np.ones((2, 3)), np.ones((3, 2))), ValueError,
     ["mul: shapes [2, 3] and [3, 2]"]),
    ("where-shapes", lambda c, x: jit.where(c, x, 0.0), (np.ones(2, bool), np.ones(3)),
     ValueError, ["where: shapes [2] and [3]"]),
    ("matmul-inner", lambda x, y: x @ y, (np.ones((2, 3)), np.ones((2, 3))), ValueError,
     ["matmul: inner dimensions differ: f64[2,3] @ f64[2,3]"]),
    ("matmul-batch", jit.matmul, (np.ones((2, 2, 3)), np.ones((3, 3, 1))), ValueError,
     ["batch dimensions [2] and [3]", "f64[2,2,3] @ f64[3,3,1]"]),
    ("matmul-scalar", jit.matmul, (np.ones(()), np.ones(3)), ValueError,
     ["matmul: scalar operands are not allowed"]),
    ("dot-rank", jit.dot, (np.ones((2, 2, 2)), np.ones((2, 2))), ValueError,
     ["dot: expected 1-D or 2-D operands, got f64[2,2,2] and f64[2,2]"]),
    ("reshape", lambda x: x.reshape(4, -1), (np.ones((2, 3)),), ValueError,
     ["reshape: cannot reshape f64[2,3] to [4, -1]"]),
    ("reshape-two-minus-ones", lambda x: x.reshape(-1, -1), (np.ones(4),), ValueError,
     ["at most one -1"]),
    ("broadcast_to", lambda x: jit.broadcast_to(x, (3, 3)), (np.ones((2, 3)),), ValueError,
     ["broadcast_to: cannot broadcast f64[2,3] to [3, 3]"]),
    ("concatenate", lambda x, y: jit.concatenate([x, y]), (np.ones((2, 3)), np.ones((2, 4))),
     ValueError, ["concatenate: shapes [2, 3] and [2, 4] differ outside axis 0"]),
    ("stack", lambda x, y: jit.stack([x, y]), (np.ones(2), np.ones(3)), ValueError,
     ["stack: all tensors must have one shape, got [[2], [3]]"]),
    ("mse_loss", jit.mse_loss, (np.ones((2, 3)), np.ones((3, 2))), ValueError,
     ["shapes [2, 3] and [3, 2]"]),
    ("cross_entropy-shapes", jit.cross_entropy, (np.ones((2, 3)), np.array([0, 1, 2])),
     ValueError, ["expected logits [N, C] and labels [N], got f64[2,3] and i64[3]"]),
    ("transpose-perm", lambda x: x.transpose(0, 0), (np.ones((2, 3)),), ValueError,
     ["transpose: axes [0, 0] are not a permutation of the axes of f64[2,3]"]),
    # --- axis out of range: ValueError
    ("sum-axis", lambda x: x.sum(axis=2), (np.ones((2, 3)),), ValueError,
     ["sum: axis 2 is out of range for a tensor of rank 2"]),
    ("max-axis", lambda x: x.max(axis=-3), (np.ones((2, 3)),), ValueError,
     ["max: axis -3 is out of range"]),
    ("mean-axis", lambda x: jit.mean(x, axis=(0, 5)), (np.ones((2, 3)),), ValueError,
     ["mean: axis 5 is out of range"]),
    ("softmax-axis", lambda x: jit.softmax(x, axis=2), (np.ones((2, 3)),), ValueError,
     ["softmax: axis 2 is out of range"]),
    ("logsumexp-axis", lambda x: jit.logsumexp(x, axis=-3), (np.ones((2, 3)),), ValueError,
     ["logsumexp: axis -3 is out of range"]),
    ("concatenate-axis", lambda x: jit.concatenate([x, x], axis=1), (np.ones(2),), ValueError,
     ["concatenate: axis 1 is out of range for a tensor of rank 1"]),
    ("repeated-axis", lambda x: x.sum(axis=(1, -1)), (np.ones((2, 3)),), ValueError,
     ["sum: repeated axis"]),
    # --- index out of range: IndexError
    ("index", lambda x: x[3], (np.ones(3),), IndexError,
     ["index 3 is out of bounds for axis 0 with size 3"]),
    ("index-negative", lambda x: x[:, -4], (np.ones((2, 3)),), IndexError,
     ["index -4 is out of bounds for axis 1 with size 3"]),
    ("too-many-indices", lambda x: x[0, 0], (np.ones(3),), IndexError,
     ["too many indices for a tensor of rank 1: 2 given"]),
    # --- unknown dtypes: TypeError
    ("astype-unknown", lambda x: x.astype("float16"), (np.ones(2),), TypeError,
     ["unsupported dtype float16; expected one of float32, float64, int32, int64, bool"]),
    ("matmul-bool", jit.matmul, (np.ones((2, 2), bool), np.ones((2, 2), bool)), TypeError,
     ["matmul: boolean operands are not supported"]),
    ("cross_entropy-float-labels", jit.cross_entropy, (np.ones((2, 3)), np.array([0.0, 1.0])),
     TypeError, ["cross_entropy: labels must be integers, got f64[2]"]),
]


@pytest.mark.parametrize("name,fn,args,error,fragments", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_error(name, fn, args, error, fragments, mode):
    call = eager_and_jitted(fn, *args)[mode == "jit"]
    with pytest.raises(error) as info:
        call()
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize("make,error,fragments", [
    (lambda: Tensor([1, 2], dtype="float16"), TypeError, ["unsupported dtype float16"]),
    (lambda: Tensor([1, 2], dtype="nonsense"), TypeError, ["unknown dtype 'nonsense'"]),
    (lambda: Tensor(np.ones(2, np.uint16)), TypeError, ["unsupported dtype uint16"]),
    (lambda: jit.jit(lambda x: x)(np.ones(2, np.float16)), TypeError,
     ["unsupported dtype float16"]),
    (lambda: jit.jit(lambda x: x)("text"), TypeError,
     ["expected Tensors, numpy arrays or Python scalars as arguments, got str"]),
    (lambda: Tensor([1, 2], dtype="int32", requires_grad=True), TypeError,
     ["only floating-point tensors can require gradients, got dtype int32"]),
    (lambda: Tensor(np.array([True]), requires_grad=True), TypeError,
     ["only floating-point tensors can require gradients, got dtype bool"]),
], ids=["dtype-f16", "dtype-name", "dtype-uint16", "jit-f16-arg", "jit-str-arg",
        "requires_grad-int", "requires_grad-bool"])
def test_dtype_errors(make, error, fragments):
    with pytest.raises(error) as info:
        make()
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize("transform", ["grad", "value_and_grad", "jit(grad)"])
@pytest.mark.parametrize("fn,args,fragments", [
    (lambda x: x * 2, (np.ones(3),), ["needs a function whose output is one floating-point "
                                      "element, got f64[3]", "use vjp"]),
    (lambda x: jit.sum(x).astype("int32"), (np.ones(3),), ["got i32[]"]),
    (lambda x: (x.sum(), x.sum()), (np.ones(3),), ["got f64[], f64[]"]),
    (lambda x: jit.sum(x * 1.0), (np.ones(3, np.int32),),
     ["argument 0 has a leaf of type i32[3]; only floating-point arguments can be "
      "differentiated"]),
    (lambda x: x * 1.0, (3,), ["argument 0 has a leaf of type i32[]"]),
], ids=["more-than-one-element", "integer-output", "two-outputs", "int-argument",
        "python-int-argument"])
def test_gradient_errors(transform, fn, args, fragments):
    make = {"grad": jit.grad, "value_and_grad": jit.value_and_grad,
            "jit(grad)": lambda f: jit.jit(jit.grad(f))}[transform]
    with pytest.raises(TypeError) as info:
        make(fn)(*args)
    name = "value_and_grad" if transform == "value_and_grad" else "grad"
    assert str(info.value).startswith(name)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_argnums_out_of_range():
    with pytest.raises(ValueError, match="argnums 2 names argument 2, but the function was "
                                         "called with 1 arguments"):
        jit.grad(lambda x: jit.sum(x), argnums=2)(np.ones(2))


def test_has_aux_needs_a_pair():
    with pytest.raises(TypeError, match=r"has_aux=True needs the function to return a pair "
                                        r"\(output, aux\)"):
        jit.grad(lambda x: jit.sum(x), has_aux=True)(np.ones(2))


def test_cross_entropy_label_out_of_range_in_eager_mode():
    with pytest.raises(ValueError, match=r"cross_entropy: label 3 is outside \[0, 3\)"):
        jit.cross_entropy(Tensor(np.ones((2, 3))), Tensor(np.array([0, 3])))
    with pytest.raises(ValueError, match=r"label -1 is outside \[0, 3\)"):
        jit.cross_entropy(np.ones((2, 3)), np.array([-1, 0]))


def test_backward_errors():
    with pytest.raises(RuntimeError, match="without a gradient needs a one-element tensor"):
        (Tensor([1.0, 2.0], requires_grad=True) * 2).backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor([1.0]).sum().backward()


@pytest.mark.parametrize("fn,args,fragments", [
    (lambda x: np.sin(x), (np.ones(2),), ["conversion to a numpy array needs a concrete value"]),
    (lambda x: __import__("math").exp(x), (np.ones(()),), ["float() needs a concrete value"]),
], ids=["numpy-function", "math-function"])
def test_unsupported_operation_in_a_traced_function(fn, args, fragments):
    with pytest.raises(jit.TracerError) as info:
        jit.jit(fn)(*args)
    for fragment in fragments + ["jit.where", "static_argnums"]:
        assert fragment in str(info.value)


def test_unsupported_operator_is_a_type_error():
    with pytest.raises(TypeError, match=r"unsupported operand type\(s\) for %: 'Tensor' and "
                                        r"'int'"):
        jit.jit(lambda x: x % 2)(np.ones(2))


def test_tracer_error_is_a_type_error():
    assert issubclass(jit.TracerError, TypeError)


def test_ir_parse_error_has_line_and_column():
    with pytest.raises(ir.IRParseError) as info:
        ir.parse("func @f(%x: f32[2]) -> f32[2] {\n  %0 = add %x, %y : f32[2]\n  return %0\n}")
    assert isinstance(info.value, ValueError)
    assert "use of undefined value %y at line 2, column 16" in str(info.value)
    assert str(info.value).splitlines()[-1] == "  " + " " * 15 + "^"


def test_verify_error_names_the_op():
    fn = ir.parse("func @f(%x: f32[2]) -> f32[2] {\n  %0 = exp %x : f64[2]\n  return %x\n}")
    with pytest.raises(ir.VerifyError) as info:
        ir.verify(fn)
    assert isinstance(info.value, ValueError)
    assert str(info.value) == ("`%0 = exp %x : f64[2]`: the type rule gives f32[2], the op says "
                               "f64[2]")


CACHE_SCRIPT = textwrap.dedent("""
    import sys, warnings
    import numpy as np
    import jit
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        out = jit.jit(lambda x: x * 2 + 1)(np.arange(3, dtype=np.float32))
    print(out.tolist())
    print([str(w.message) for w in caught])
""")


def test_a_corrupt_cache_entry_is_recompiled_with_a_warning(tmp_path):
    env = {**os.environ, "TENSORJIT_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    env.pop("TENSORJIT_CACHE", None)

    def run():
        done = subprocess.run([sys.executable, "-c", CACHE_SCRIPT], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    assert run()[0] == "[1.0, 3.0, 5.0]"
    entries = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert entries, "the first run wrote nothing to TENSORJIT_CACHE_DIR"
    for p in entries:
        p.write_bytes(b"\x00garbage" * 8)
    result, warnings_ = run()
    assert result == "[1.0, 3.0, 5.0]"
    assert "cache" in warnings_.lower()

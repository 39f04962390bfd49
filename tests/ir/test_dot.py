import shutil
import subprocess

import numpy as np
import pytest

import jit


def test_as_dot_has_a_node_per_value_and_an_edge_per_use():
    lowered = jit.jit(lambda x: jit.sum(x * 2.0)).lower(np.ones(3, np.float32))
    dot = lowered.as_dot("traced")
    assert dot.startswith('digraph "lambda"')
    assert '"x" [label="%x: f32[3]"' in dot
    assert '"x" -> "0";' in dot and '"0" -> "1";' in dot and '"1" -> "return0";' in dot
    assert "mul 2.0\\nf32[3]" in dot


def test_as_dot_rejects_stages_it_cannot_draw():
    lowered = jit.jit(lambda x: x + 1).lower(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="'traced' or 'optimized'"):
        lowered.as_dot("llvm")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_graphviz_accepts_the_graph():
    lowered = jit.jit(jit.softmax).lower(np.ones((2, 3), np.float32))
    subprocess.run(["dot", "-Tsvg"], input=lowered.as_dot().encode(), check=True,
                   capture_output=True)

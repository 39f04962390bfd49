import numpy as np

import jit
from jit import execution


def test_the_program_cache_keeps_a_bounded_number_of_programs(monkeypatch):
    monkeypatch.setattr(execution, "CACHE_ENTRIES", 3)
    for n in range(1, 8):  # each shape is a new program
        x = jit.Tensor(np.ones(n), requires_grad=True)
        (x * 2.0).sum().backward()
        assert x.grad.numpy().tolist() == [2.0] * n
    assert len(execution._cache) <= 3


def test_a_cached_program_is_reused_not_recompiled():
    x = np.arange(5.0)
    fn = jit.make_ir(lambda v: v * 3.0)(x)
    assert execution.executable_for(fn) is execution.executable_for(jit.make_ir(lambda v: v * 3.0)(x))

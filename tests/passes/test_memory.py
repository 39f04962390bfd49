"""The arena planner's contract (ir/loops.py, ARENA_ALIGN): temps live at the same time never
share a byte up to the next multiple of ARENA_ALIGN after their ends, which generated code
may read and write whole vectors over."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ir import f32
from ir.loops import ARENA_ALIGN, Buffer
from passes.memory import plan_arena


@st.composite
def temps_with_lifetimes(draw):
    count = draw(st.integers(1, 12))
    buffers, producer, users = {}, {}, {}
    for i in range(count):
        name = f"t{i}"
        buffers[name] = Buffer(name, f32, (draw(st.integers(0, 100)),), "temp")
        first = draw(st.integers(0, 8))
        producer[name] = first
        users[name] = {first + draw(st.integers(0, 4))}
    return buffers, producer, users


def padded_end(buffer: Buffer) -> int:
    return buffer.offset + -(-buffer.nbytes // ARENA_ALIGN) * ARENA_ALIGN


@given(temps_with_lifetimes())
def test_temps_live_together_never_share_their_padded_bytes(case):
    buffers, producer, users = case
    planned, size = plan_arena(buffers, producer, users)
    lives = {n: (producer[n], max(users[n])) for n in buffers}
    temps = [planned[n] for n in buffers]
    assert size % ARENA_ALIGN == 0
    for a in temps:
        assert a.offset % ARENA_ALIGN == 0 and padded_end(a) <= size
        for b in temps:
            (a0, a1), (b0, b1) = lives[a.name], lives[b.name]
            if a is b or a1 < b0 or b1 < a0 or not a.nbytes or not b.nbytes:
                continue
            assert padded_end(a) <= b.offset or padded_end(b) <= a.offset, (a, b)


def test_temps_of_disjoint_lifetimes_share_the_arena():
    buffers = {n: Buffer(n, f32, (16,), "temp") for n in ("a", "b")}
    planned, size = plan_arena(buffers, {"a": 0, "b": 2}, {"a": {1}, "b": {3}})
    assert planned["a"].offset == planned["b"].offset == 0 and size == ARENA_ALIGN

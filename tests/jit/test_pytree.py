"""jit.pytree: `leaves_matching` (the jitted call's hot path) agrees with `flatten` on every
pair of trees (the leaves when the structures are equal, None otherwise); `unflatten` inverts
`flatten`."""
from __future__ import annotations

from collections import namedtuple

from hypothesis import given
from hypothesis import strategies as st

from jit import pytree

Pair = namedtuple("Pair", "x y")  # a leaf, as in flatten

leaves = st.one_of(st.integers(0, 3), st.builds(Pair, st.integers(), st.integers()))
trees = st.recursive(
    st.one_of(leaves, st.none()),
    lambda children: st.one_of(st.tuples(children, children), st.lists(children, max_size=3),
                               st.tuples(children),
                               st.dictionaries(st.sampled_from("abc"), children, max_size=3)),
    max_leaves=8)


@given(trees, trees)
def test_leaves_matching_agrees_with_flatten(tree, other):
    expected, treedef = pytree.flatten(tree)
    assert pytree.leaves_matching(treedef, tree) == expected
    other_leaves, other_def = pytree.flatten(other)
    assert pytree.leaves_matching(treedef, other) == (
        other_leaves if other_def == treedef else None)


@given(trees)
def test_unflatten_inverts_flatten(tree):
    assert pytree.unflatten(*reversed(pytree.flatten(tree))) == tree


def test_leaves_matching_rejects_near_misses():
    treedef = pytree.flatten(({"a": 1}, [2, 3], None))[1]
    assert pytree.leaves_matching(treedef, ({"a": 1}, [2, 3], None)) == [1, 2, 3]
    for other in (({"a": 1, "b": 0}, [2, 3], None), ({"b": 1}, [2, 3], None),
                  ({"a": 1}, (2, 3), None), ({"a": 1}, [2, 3, 4], None), ({"a": 1}, [2, 3], 0),
                  ({"a": 1}, [2, [3]], None), ({"a": 1}, Pair(2, 3), None),
                  [{"a": 1}, [2, 3], None]):
        assert pytree.leaves_matching(treedef, other) is None, other

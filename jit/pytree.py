"""Pytrees: nested tuples, lists and dicts of leaves, flattened to a list plus a structure.

The structure (`TreeDef`) is hashable plain data, so it can be part of a compile-cache key.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator


@dataclass(frozen=True)
class TreeDef:
    kind: str                     # "leaf", "tuple", "list", "dict" or "none"
    children: tuple["TreeDef", ...] = ()
    keys: tuple = ()              # dict keys, sorted

    @property
    def num_leaves(self) -> int:
        return 1 if self.kind == "leaf" else sum(c.num_leaves for c in self.children)


LEAF = TreeDef("leaf")


def flatten(tree: Any) -> tuple[list, TreeDef]:
    leaves: list = []
    return leaves, _flatten_into(tree, leaves)


def _flatten_into(node: Any, leaves: list) -> TreeDef:
    """Append the leaves of `node`; its structure (LEAF itself for a lone leaf)."""
    # A module-level recursion, not a closure: a self-referencing closure is a reference
    # cycle that would keep every leaf (and its buffer) alive until the garbage collector runs.
    if node is None:
        return TreeDef("none")
    if isinstance(node, (tuple, list)) and not _is_namedtuple(node):
        return TreeDef(type(node).__name__, tuple(_flatten_into(c, leaves) for c in node))
    if isinstance(node, dict):
        try:
            keys = tuple(sorted(node))
        except TypeError as err:
            raise TypeError(f"dict keys of a pytree must be sortable, got {list(node)}") from err
        return TreeDef("dict", tuple(_flatten_into(node[k], leaves) for k in keys), keys)
    leaves.append(node)
    return LEAF


def leaves_matching(treedef: TreeDef, tree: Any) -> list | None:
    """The leaves of `tree` if its structure is `treedef`, else None: `flatten` for a call
    whose structure is expected, without building a TreeDef (a jitted call's hot path)."""
    leaves: list = []
    return leaves if _collect(treedef, tree, leaves) else None


def _collect(d: TreeDef, node: Any, leaves: list) -> bool:
    kind = d.kind
    if kind == "leaf":
        if not _is_leaf(node):
            return False
        leaves.append(node)
        return True
    if kind == "none":
        return node is None
    if kind == "dict":
        if not isinstance(node, dict) or len(node) != len(d.keys) or any(
                key not in node for key in d.keys):
            return False
        items = [node[key] for key in d.keys]
    elif type(node).__name__ != kind or not isinstance(node, (tuple, list)) \
            or len(node) != len(d.children) or _is_namedtuple(node):
        return False
    else:
        items = node
    for child, item in zip(d.children, items):
        if child.kind == "leaf":  # here, not by recursion: most children are leaves
            if not _is_leaf(item):
                return False
            leaves.append(item)
        elif not _collect(child, item, leaves):
            return False
    return True


def _is_leaf(node: Any) -> bool:
    """Whether `flatten` takes `node` as a leaf."""
    return node is not None and (not isinstance(node, (tuple, list, dict))
                                 or _is_namedtuple(node))


def unflatten(treedef: TreeDef, leaves: list) -> Any:
    return _build(treedef, iter(leaves))


def _build(d: TreeDef, leaves: Iterator) -> Any:
    if d.kind == "leaf":
        return next(leaves)
    if d.kind == "none":
        return None
    children = [next(leaves) if c.kind == "leaf" else _build(c, leaves) for c in d.children]
    if d.kind == "dict":
        return dict(zip(d.keys, children))
    return tuple(children) if d.kind == "tuple" else children


def leaf_paths(tree: Any, prefix: str) -> list[str]:
    """Readable names for the leaves, used as IR parameter names (`params_w`, `xs_0`)."""
    paths: list[str] = []
    _paths_into(tree, prefix, paths)
    return paths


def _paths_into(node: Any, path: str, paths: list[str]) -> None:
    if node is None:
        return
    if isinstance(node, (tuple, list)) and not _is_namedtuple(node):
        for i, c in enumerate(node):
            _paths_into(c, f"{path}_{i}", paths)
    elif isinstance(node, dict):
        for k in sorted(node):
            _paths_into(node[k], f"{path}_{k}", paths)
    else:
        paths.append("".join(ch if ch.isalnum() or ch == "_" else "_" for ch in path))


def _is_namedtuple(node: Any) -> bool:
    return type(node) is not tuple and isinstance(node, tuple) and hasattr(node, "_fields")

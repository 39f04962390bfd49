"""Where a tensor value lives while lowering, and how layout ops move it without copying.

A value is in a buffer (any affine view of one), a broadcast literal, an expression of a
kernel stage, a per-row slot of a kernel, or a layout view (`Mapped`) of one of the last two.
Layout ops on buffers compose into new strides; on stage values they are tracked as an index
map over "canonical" dimensions (the dimensions of size other than 1), which is all the
fusion rules need to recognise "the same element" and "this row's reduction result".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

from ir import Literal

LAYOUT_OPS = ("reshape", "transpose", "broadcast_to", "slice")


def canonical(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(n for n in shape if n != 1)


def canonical_dims(shape: tuple[int, ...]) -> list[int]:
    """Positions of the dimensions of size other than 1."""
    return [d for d, n in enumerate(shape) if n != 1]


def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


@dataclass(frozen=True)
class InBuffer:
    buffer: str
    offset: int
    strides: tuple[int, ...]
    shape: tuple[int, ...]

    def is_contiguous(self) -> bool:
        dims = canonical_dims(self.shape)
        expected = contiguous_strides(self.shape)
        return all(self.strides[d] == expected[d] for d in dims)


@dataclass(frozen=True)
class InLiteral:
    literal: Literal
    shape: tuple[int, ...]


@dataclass(eq=False)
class InStage:
    kernel: Any     # passes.lower.KernelBuilder
    stage: Any      # passes.lower.StageBuilder
    expr: int
    shape: tuple[int, ...]


@dataclass(eq=False)
class InSlot:
    kernel: Any
    stage: Any      # the stage whose end the slot is final at
    slot: int
    shape: tuple[int, ...]


@dataclass(eq=False)
class Mapped:
    """A layout view of a stage value or slot: canonical dim j of `shape` reads canonical dim
    `src[j]` of the base (None: broadcast). `chain` replays the view on a buffer if the base
    has to be materialised."""

    base: Union[InStage, InSlot]
    src: tuple[Optional[int], ...]
    shape: tuple[int, ...]
    chain: tuple[tuple[str, tuple[int, ...], tuple[int, ...], dict], ...]  # op, in, out, attrs


Home = Union[InBuffer, InLiteral, InStage, InSlot, Mapped]


def buffer_view(view: InBuffer, op: str, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                attrs: dict) -> InBuffer | None:
    """The layout op applied to a buffer view; None when a reshape would need a copy."""
    if op == "transpose":
        perm = attrs["perm"]
        return InBuffer(view.buffer, view.offset, tuple(view.strides[p] for p in perm), out_shape)
    if op == "broadcast_to":
        lead = len(out_shape) - len(in_shape)
        strides = [0] * lead + [0 if n == 1 and out_shape[lead + d] != 1 else view.strides[d]
                                for d, n in enumerate(in_shape)]
        return InBuffer(view.buffer, view.offset, tuple(strides), out_shape)
    if op == "slice":
        offset = view.offset + sum(s * st for s, st in zip(attrs["starts"], view.strides))
        strides = tuple(st * step for st, step in zip(view.strides, attrs["steps"]))
        return InBuffer(view.buffer, offset, strides, out_shape)
    if op == "reshape":
        if canonical(in_shape) == canonical(out_shape):
            kept = iter(view.strides[d] for d in canonical_dims(in_shape))
            strides = tuple(next(kept) if n != 1 else 0 for n in out_shape)
            return InBuffer(view.buffer, view.offset, strides, out_shape)
        if view.is_contiguous():
            return InBuffer(view.buffer, view.offset, contiguous_strides(out_shape), out_shape)
        return None
    raise ValueError(f"{op} is not a layout op")


def index_map(src: tuple[Optional[int], ...], op: str, in_shape: tuple[int, ...],
              out_shape: tuple[int, ...], attrs: dict) -> tuple[Optional[int], ...] | None:
    """The canonical index map after a layout op; None when it is not a pure re-indexing
    (a real slice, or a reshape that regroups elements)."""
    in_dims = canonical_dims(in_shape)
    position = {d: j for j, d in enumerate(in_dims)}
    if op == "reshape":
        return src if canonical(in_shape) == canonical(out_shape) else None
    if op == "transpose":
        return tuple(src[position[attrs["perm"][d]]] for d in canonical_dims(out_shape))
    if op == "broadcast_to":
        lead = len(out_shape) - len(in_shape)
        return tuple(None if d < lead or in_shape[d - lead] == 1 else src[position[d - lead]]
                     for d in canonical_dims(out_shape))
    if op == "slice":
        whole = tuple(attrs["sizes"]) == tuple(in_shape) and all(s == 1 for s in attrs["steps"])
        return src if whole else None
    raise ValueError(f"{op} is not a layout op")

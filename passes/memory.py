"""Memory planning: place temporary buffers in one scratch arena, reusing space by liveness.

A buffer lives from the first kernel that writes it to the last kernel that touches it; two
buffers may share bytes only when those intervals do not meet (a kernel never reads and writes
the same bytes through two names, which keeps `noalias` true). Offsets are multiples of
ARENA_ALIGN and a buffer's bytes count up to the next multiple (the contract in ir/loops.py).
"""
from __future__ import annotations

from ir.loops import ARENA_ALIGN, Buffer


def plan_arena(buffers: dict[str, Buffer], producer: dict[str, int],
               users: dict[str, set[int]]) -> tuple[dict[str, Buffer], int]:
    """Offsets for the temps (first fit, largest first) and the arena's size in bytes."""
    temps = sorted((b for b in buffers.values() if b.kind == "temp"),
                   key=lambda b: (-b.nbytes, b.name))
    placed: list[tuple[int, int, int, int]] = []   # (start, end, offset, padded bytes)
    planned = dict(buffers)
    size = 0
    for b in temps:
        touched = users.get(b.name, set()) | ({producer[b.name]} if b.name in producer else set())
        start, end = (min(touched), max(touched)) if touched else (0, 0)
        padded = -(-b.nbytes // ARENA_ALIGN) * ARENA_ALIGN
        offset = 0
        for other_start, other_end, other_offset, other_bytes in sorted(placed, key=lambda p: p[2]):
            live_together = not (end < other_start or other_end < start)
            if live_together and offset < other_offset + other_bytes \
                    and other_offset < offset + padded:
                offset = other_offset + other_bytes
        placed.append((start, end, offset, padded))
        planned[b.name] = Buffer(b.name, b.dtype, b.shape, b.kind, offset)
        size = max(size, offset + padded)
    return planned, size

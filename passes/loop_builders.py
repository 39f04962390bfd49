"""Mutable builders for loop kernels while lowering; `freeze` gives the loop IR's data."""
from __future__ import annotations

from dataclasses import dataclass, field

from ir import DType
from ir.loops import Expr, LoopKernel, MatmulKernel, Reduction, Stage, Store


@dataclass(eq=False)
class StageBuilder:
    shape: tuple[int, ...]
    exprs: list[Expr] = field(default_factory=list)
    stores: list[Store] = field(default_factory=list)
    reductions: list[Reduction] = field(default_factory=list)
    _memo: dict = field(default_factory=dict)

    def add(self, expr: Expr) -> int:
        if expr.op in ("load", "literal", "index", "slot"):
            key = (expr.op, expr.dtype, expr.attrs)
            if key not in self._memo:
                self._memo[key] = len(self.exprs)
                self.exprs.append(expr)
            return self._memo[key]
        self.exprs.append(expr)
        return len(self.exprs) - 1

    def freeze(self) -> Stage:
        return Stage(self.shape, tuple(self.exprs), tuple(self.stores), tuple(self.reductions))


@dataclass(eq=False)
class KernelBuilder:
    index: int
    outer: tuple[int, ...] = ()
    stages: list[StageBuilder] = field(default_factory=list)
    slots: list[tuple[str, DType]] = field(default_factory=list)
    computes: list[str] = field(default_factory=list)
    matmul: MatmulKernel | None = None

    def stage_index(self, stage: StageBuilder) -> int:
        return self.stages.index(stage)

    def freeze(self):
        if self.matmul is not None:
            return self.matmul
        return LoopKernel(f"k{self.index}", self.outer, tuple(self.slots),
                          tuple(s.freeze() for s in self.stages), tuple(self.computes))

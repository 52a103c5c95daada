"""The number types the spatial model's passes are written over, so that
one pass gives both the simulated figures (`Numeric`: Python numbers at the
given shapes) and their formulas (`Symbolic`: sympy expressions in the
shape symbols and the mapping's factors). A pass never branches on which
one it has; it calls these few operations."""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from einsum_ir.analysis import evaluate
from einsum_ir.sym import shape_symbol


@dataclass(frozen=True)
class Numeric:
    """Python numbers at the shapes `env` (rank or symbol name -> value)."""

    env: dict = field(hash=False)
    symbolic = False

    def shape(self, rank: str) -> int:
        return int(self.env[rank])

    def knows(self, name: str) -> bool:
        return name in self.env

    def count(self, expr) -> int:
        """An einsum_ir count (a sympy expression in the shapes, or a compiled
        facts.Count of one) at `env`."""
        return int(expr(self.env) if callable(expr) else evaluate(expr, self.env))

    @staticmethod
    def min(a, b):
        return min(a, b)

    @staticmethod
    def max(a, b):
        return max(a, b)

    def pad(self, covered, rank: str):
        """The padding factor of a rank whose tiles cover `covered` points:
        partial tiles still occupy whole PE rows."""
        return max(1, covered / int(self.env.get(rank, covered)))

    def visited(self, c, e, grain: dict) -> tuple[float, str | None]:
        """(points of the tiles a masked Einsum visits / its kept points, or 1
        and why not known): simulator.skipping."""
        from .skipping import visited_factor
        return visited_factor(c, e, self.env, {v: int(g) for v, g in grain.items()})


@dataclass(frozen=True)
class Symbolic:
    """sympy expressions: shapes are symbols; full tiles are assumed (no
    padding), so a formula reads as the rule it states."""

    symbolic = True

    @staticmethod
    def shape(rank: str) -> sympy.Expr:
        return shape_symbol(rank)

    @staticmethod
    def knows(name: str) -> bool:
        return True

    @staticmethod
    def count(expr) -> sympy.Expr:
        return sympy.sympify(getattr(expr, "expr", expr))

    @staticmethod
    def min(a, b):
        return sympy.Min(a, b)

    @staticmethod
    def max(a, b):
        return sympy.Max(a, b)

    @staticmethod
    def pad(covered, rank: str):
        return 1

    @staticmethod
    def visited(c, e, grain: dict):
        """Formulas and the mapper's screening charge the kept points (a lower
        bound: skipping at point granularity); `simulate` charges visited tiles."""
        return 1, "formulas charge the kept points"

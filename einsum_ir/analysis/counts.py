"""Operation counts by kind, per Einsum and in total, as sympy expressions.

Each existing point of an Einsum's iteration space evaluates the map
expression once and, if the Einsum reduces, folds the value into the
reduction once. A multiply whose product is summed is one MAC (the multiply
and the add of a multiply-accumulate). Coordinate arithmetic inside access
indices and the predicate is addressing, not counted.
"""
from __future__ import annotations

from collections import Counter

import sympy

from ..ir import Cascade, Einsum, Expr, Op
from ..ops import REDUCE_RULES, RULES
from .points import Kept, points

KINDS = ("mac", "add", "mul", "divide", "max", "exp", "log", "sqrt", "sigmoid", "tanh", "abs",
         "compare", "select", "logic")


def _map_ops(e: Expr, counter: Counter):
    if isinstance(e, Op):
        kind = RULES[e.name].kind
        if kind is not None:
            counter[kind] += 1
        for a in e.args:
            _map_ops(a, counter)
    # accesses: their indices are addressing; numbers, symbols, coordinates: free


def ops_per_point(e: Einsum) -> Counter:
    """Operations one existing point of `e` performs."""
    per = Counter()
    _map_ops(e.expr, per)
    if e.reduced:
        if e.reduce == "sum" and isinstance(e.expr, Op) and e.expr.name == "mul":
            per["mul"] -= 1
            per["mac"] += 1
        else:
            per[REDUCE_RULES[e.reduce].kind] += 1
    return Counter({k: v for k, v in per.items() if v})


def einsum_ops(c: Cascade, e: Einsum, n: sympy.Expr | None = None) -> dict[str, sympy.Expr]:
    """Operations of `e` by kind; `n` is its point count when already known."""
    n = points(c, e) if n is None else n
    return {k: v * n for k, v in ops_per_point(e).items()}


def readable(expr: sympy.Expr) -> sympy.Expr:
    """sympy.factor with each Kept(...) held as one opaque symbol: factoring
    through a window predicate's min/max terms costs seconds and shows nothing."""
    kepts = {k: sympy.Dummy(f"kept{i}") for i, k in enumerate(expr.atoms(Kept))}
    return sympy.factor(expr.xreplace(kepts)).xreplace({d: k for k, d in kepts.items()})


def total_ops(per_einsum) -> dict[str, sympy.Expr]:
    """Sum of per-Einsum op dicts, by kind (kinds with none are absent)."""
    total: dict[str, sympy.Expr] = {}
    for ops in per_einsum:
        for k, v in ops.items():
            total[k] = total.get(k, 0) + v
    return {k: readable(total[k]) for k in KINDS if k in total}


def flops_of(ops: dict[str, sympy.Expr]) -> sympy.Expr:
    """Arithmetic operations with a MAC counted as two."""
    return readable(sum((2 * v if k == "mac" else v) for k, v in ops.items()))


def op_counts(c: Cascade) -> dict[str, sympy.Expr]:
    """Total operations of the cascade by kind (kinds with none are absent)."""
    return total_ops(einsum_ops(c, e) for e in c.einsums)


def macs(c: Cascade) -> sympy.Expr:
    return op_counts(c).get("mac", sympy.Integer(0))


def flops(c: Cascade) -> sympy.Expr:
    """Arithmetic operations with a MAC counted as two."""
    return flops_of(op_counts(c))

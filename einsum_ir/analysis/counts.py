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
from .points import points

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


def einsum_ops(c: Cascade, e: Einsum) -> dict[str, sympy.Expr]:
    n = points(c, e)
    return {k: v * n for k, v in ops_per_point(e).items()}


def op_counts(c: Cascade) -> dict[str, sympy.Expr]:
    """Total operations of the cascade by kind (kinds with none are absent)."""
    total: dict[str, sympy.Expr] = {}
    for e in c.einsums:
        for k, v in einsum_ops(c, e).items():
            total[k] = total.get(k, 0) + v
    return {k: sympy.factor(total[k]) for k in KINDS if k in total}


def macs(c: Cascade) -> sympy.Expr:
    return op_counts(c).get("mac", sympy.Integer(0))


def flops(c: Cascade) -> sympy.Expr:
    """Arithmetic operations with a MAC counted as two."""
    counts = op_counts(c)
    return sympy.factor(sum((2 * v if k == "mac" else v) for k, v in counts.items()))

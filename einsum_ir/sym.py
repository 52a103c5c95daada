"""IR expressions -> sympy, for symbolic analyses. Shape symbols and index
variables become positive-integer / integer sympy symbols."""
from __future__ import annotations

import math
from functools import lru_cache

import sympy

from .ir import Access, Expr, Idx, Num, Op, Sym
from .ops import BOOLEAN_OPS, RULES, as_number_sympy


def shape_symbol(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, positive=True, integer=True)


def index_symbol(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, integer=True, nonnegative=True)


def to_sympy(e: Expr, access=None) -> sympy.Basic:
    """`access(node)` maps a tensor access to a sympy object; without it a
    tensor access is an error (shapes and predicates over coordinates only)."""
    if isinstance(e, Num):
        if math.isinf(e.value):
            return sympy.oo if e.value > 0 else -sympy.oo
        return sympy.Integer(e.value) if float(e.value).is_integer() else sympy.Float(e.value)
    if isinstance(e, Sym):
        return shape_symbol(e.name)
    if isinstance(e, Idx):
        return index_symbol(e.name)
    if isinstance(e, Access):
        if access is None:
            raise ValueError(f"tensor access {e} has no symbolic value")
        return access(e)
    if isinstance(e, Op):
        args = [to_sympy(a, access) for a in e.args]
        if e.name not in ("and", "or", "not"):      # a condition where a number is wanted is 1 or 0
            args = [as_number_sympy(a) if _condition(x) and not (e.name == "select" and k == 0) else a
                    for k, (x, a) in enumerate(zip(e.args, args))]
        return RULES[e.name].sympy(*args)
    raise TypeError(e)


def _condition(e: Expr) -> bool:
    """A comparison or logic node: its sympy form is a Boolean, 1 or 0 as a number."""
    return isinstance(e, Op) and e.name in BOOLEAN_OPS


@lru_cache(maxsize=1024)
def predicate_to_sympy(e: Expr) -> sympy.Basic:
    """to_sympy of a coordinate expression, memoised: every Einsum of a
    windowed design repeats one predicate, and building its min/max terms is
    the slowest step of an analysis."""
    return to_sympy(e)

"""IR expressions -> sympy, for symbolic analyses. Shape symbols and index
variables become positive-integer / integer sympy symbols."""
from __future__ import annotations

import math
from functools import lru_cache

import sympy

from .ir import Access, Expr, Idx, Num, Op, Sym
from .ops import RULES


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
        return RULES[e.name].sympy(*(to_sympy(a, access) for a in e.args))
    raise TypeError(e)


@lru_cache(maxsize=1024)
def predicate_to_sympy(e: Expr) -> sympy.Basic:
    """to_sympy of a coordinate expression, memoised: every Einsum of a
    windowed design repeats one predicate, and building its min/max terms is
    the slowest step of an analysis."""
    return to_sympy(e)

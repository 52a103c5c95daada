"""Symbolic analysis results -> numbers at concrete shapes."""
from __future__ import annotations

from functools import lru_cache

import sympy

from ..errors import ShapeError
from .points import Kept


@lru_cache(maxsize=4096)
def _at(expr, items: tuple):
    """expr with the symbols of `items` replaced; Kept(...) terms counted once
    per shape (one Kept appears in many Einsums' counts and in several figures)."""
    kepts = {k: _at(k.func(*k.args), tuple((s, v) for s, v in items if s in k.free_symbols))
             for k in expr.atoms(Kept)} if not isinstance(expr, Kept) else {}
    out = expr.xreplace(kepts).xreplace({s: sympy.sympify(v) for s, v in items})
    return out.doit() if out.free_symbols or isinstance(out, Kept) else out


def _check_counted(expr, mapping: dict):
    """A point count (Kept) was simplified taking its shape symbols to be
    positive integers (sympy drops `abs` of a `%` by one, decides `m % D != -1`
    true): at a negative or fractional value it would count the wrong points,
    so that is refused; the executor, the tile classes and the kernels take
    any value."""
    for k in sympy.sympify(expr).atoms(Kept):
        for s in sorted(k.free_symbols & mapping.keys(), key=lambda x: x.name):
            v = mapping[s]
            if s.is_positive and s.is_integer and not (float(v).is_integer() and v >= 0):
                raise ShapeError(f"{s.name} = {v}: the symbolic point counts take shape symbols to be integers "
                                 f">= 0 (their predicates' `%`, `//` and `abs` were simplified so), so they cannot "
                                 f"count at this value; the executor, the tile classes and the kernels take it")


def evaluate(expr, values: dict) -> float | int:
    """Substitute every symbol at once (so `Kept` counts exactly) and return a
    Python number. `values` maps symbol names to numbers."""
    expr = sympy.sympify(expr)
    mapping = {s: values[s.name] for s in expr.free_symbols if s.name in values}
    missing = sorted(s.name for s in expr.free_symbols if s.name not in values
                     and not s.name.islower())
    if missing:
        raise ShapeError(f"no value for {', '.join(missing)} (pass e.g. --shape {missing[0]}=...)")
    _check_counted(expr, mapping)
    out = _at(expr, tuple(sorted(mapping.items(), key=lambda kv: kv[0].name)))
    if out.free_symbols:
        raise ShapeError(f"no value for {', '.join(sorted(str(s) for s in out.free_symbols))}")
    if out.is_Integer:
        return int(out)
    return float(out)

"""Symbolic analysis results -> numbers at concrete shapes."""
from __future__ import annotations

import sympy

from ..errors import ShapeError


def evaluate(expr, values: dict) -> float | int:
    """Substitute every symbol at once (so `Kept` counts exactly) and return a
    Python number. `values` maps symbol names to numbers."""
    expr = sympy.sympify(expr)
    mapping = {s: values[s.name] for s in expr.free_symbols if s.name in values}
    missing = sorted(s.name for s in expr.free_symbols if s.name not in values
                     and not s.name.islower())
    if missing:
        raise ShapeError(f"no value for {', '.join(missing)} (pass e.g. --shape {missing[0]}=...)")
    out = expr.xreplace({k: sympy.sympify(v) for k, v in mapping.items()})
    if out.free_symbols:
        out = out.doit()
    if out.free_symbols:
        raise ShapeError(f"no value for {', '.join(sorted(str(s) for s in out.free_symbols))}")
    if out.is_Integer:
        return int(out)
    return float(out)

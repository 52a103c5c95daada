"""Concrete shapes: from the user's `M=4096 E=64 ...` and the input arrays to
a value for every rank extent and shape symbol the cascade uses."""
from __future__ import annotations

import difflib

import numpy as np
import sympy

from .errors import ShapeError
from .ir import Cascade, Sym, walk


def symbols_used(c: Cascade) -> list[str]:
    """Free shape symbols: ranks' extents and symbols in expressions, in order."""
    names: dict[str, None] = {r.name: None for r in c.ranks}
    exprs = [e.output for e in c.einsums] + [e.expr for e in c.einsums]
    exprs += [e.predicate for e in c.einsums if e.predicate is not None]
    exprs += [r.definition for r in c.ranks if r.definition is not None]
    for x in exprs:
        for n in walk(x):
            if isinstance(n, Sym):
                names.setdefault(n.name)
    return list(names)


def resolve(c: Cascade, given: dict | None = None, inputs: dict | None = None) -> dict[str, float]:
    """Value of every symbol the cascade uses. Raises ShapeError naming the
    missing symbol, the conflicting rank, or the ill-shaped input."""
    env: dict[str, float] = {}
    used = symbols_used(c)
    ranks = {r.name: r for r in c.ranks}
    for k, v in (given or {}).items():
        if k not in used and not k.startswith("density_"):
            hint = difflib.get_close_matches(k, used, n=1)
            raise ShapeError(f"shape symbol {k} is not used by {c.name}"
                             + (f" (did you mean {hint[0]}?)" if hint else f"; it uses {', '.join(used)}"))
        if k in ranks:
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ShapeError(f"extent of rank {k} must be a positive integer, got {v!r}")
            v = int(v)
        env[k] = v
    for t in c.inputs:
        if inputs is None or t.name not in inputs:
            continue
        try:
            shape = np.shape(inputs[t.name])
        except ValueError:  # numpy refuses a ragged nest of lists
            raise ShapeError(f"input {t.name} is not a rectangular array "
                             "(its rows have different lengths)") from None
        if len(shape) != len(t.ranks):
            raise ShapeError(f"input {t.name} must have {len(t.ranks)} dimensions [{', '.join(t.ranks)}], "
                             f"got shape {tuple(shape)}")
        for r, n in zip(t.ranks, shape):
            n = n - 1 if r in t.iterative else n
            if n < 1:  # as for given extents: an empty rank has no points to compute
                raise ShapeError(f"input {t.name} has {r} = {n}: a rank extent must be at least 1 "
                                 f"(got shape {tuple(shape)})")
            if r in env and env[r] != n:
                raise ShapeError(f"conflicting shapes: input {t.name} has {r} = {n}, but {r} = {env[r]} "
                                 "(from the shapes given or another input)")
            env[r] = n
    # derived extents, until nothing changes
    changed = True
    while changed:
        changed = False
        for r in c.ranks:
            if r.definition is not None:
                syms = {n.name for n in walk(r.definition) if isinstance(n, Sym)}
                if not syms <= env.keys():
                    continue
                value = _eval_int(r.definition, env)
                what = f"rank {r.name} = {r.definition}"
            elif r.part == "outer":
                inner = c.inner_of(r.name)
                if r.parent not in env or inner not in env:
                    continue
                value = -(-env[r.parent] // env[inner])
                what = f"rank {r.name} = ceil({r.parent} / {inner})"
            else:
                continue
            if value is None or value < 1 or value != int(value):
                raise ShapeError(f"{what} gives {value}, not a positive integer, at "
                                 + ", ".join(f"{s}={env[s]}" for s in sorted(env)))
            if r.name in env and env[r.name] != value:
                raise ShapeError(f"conflicting shapes: {r.name} = {env[r.name]} but {what} = {value}")
            if r.name not in env:
                env[r.name] = int(value)
                changed = True
    # name only what the user can give: derived ranks and tile counts follow
    derived = {r.name for r in c.ranks if r.definition is not None or r.part == "outer"}
    missing = [s for s in used if s not in env and s not in derived] or [s for s in used if s not in env]
    if missing:
        raise ShapeError(f"{c.name} needs a value for {', '.join(missing)} "
                         f"(pass e.g. --shape {' '.join(f'{m}=...' for m in missing)})")
    return env


def _eval_int(expr, env):
    from .sym import to_sympy
    value = to_sympy(expr).subs({sympy.Symbol(k, positive=True, integer=True): v for k, v in env.items()})
    value = sympy.nsimplify(value)
    if not value.is_number:
        return None
    return int(value) if value.is_integer else float(value)


__all__ = ["resolve", "symbols_used"]

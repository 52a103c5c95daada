"""Concrete shapes: from the user's `M=4096 E=64 ...` and the input arrays to
a value for every rank extent and shape symbol the cascade uses."""
from __future__ import annotations

import difflib

import numpy as np
import sympy

import math
from fractions import Fraction

from .errors import ShapeError, ZeroDivisorError
from .ir import Access, Cascade, Idx, Num, Op, Sym, walk
from .ops import RULES

MAX_EXTENT = 2 ** 32
"""Largest rank extent accepted (4 Gi; a million-token sequence is 2^20).
Past it the models' loops over tiles (the spatial simulator's tiling search
among them) run for minutes or do not end, and counts lose exactness."""


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
        env[k] = _given_value(c, k, v, used, ranks)
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
            lit = ranks[r].definition if r in ranks else None
            if isinstance(lit, Num) and n != lit.value:
                raise ShapeError(f"input {t.name} must have {int(lit.value)} elements at rank {t.ranks.index(r) + 1} "
                                 f"(declared {r if not ranks[r].implicit else int(lit.value)}), got shape {tuple(shape)}")
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
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise ShapeError(f"{what} has no value (a division by zero?) at "
                                 + ", ".join(f"{s}={env[s]}" for s in sorted(env)), r.loc, c.source)
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
    for r in c.ranks:
        if env[r.name] > MAX_EXTENT:
            raise ShapeError(f"rank {r.name} = {env[r.name]} is larger than {MAX_EXTENT} (2**32), the largest "
                             "extent attnc models (its models' loops over longer ranks would not end)", r.loc, c.source)
    check_divisors(c, env)
    check_whole(c, env)
    return env


def _given_value(c: Cascade, k: str, v, used: list[str], ranks: dict):
    """One user-given shape value, checked: a finite number; a positive integer
    of at most MAX_EXTENT for a rank; a fraction in [0, 1] for density_T, where
    T is a bool tensor of the cascade."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)) and not (
            isinstance(v, Fraction) and k.startswith("density_")):
        raise ShapeError(f"shape {k} must be a number, got {v!r}")
    if not math.isfinite(v):
        raise ShapeError(f"shape {k} must be a finite number, got {v}")
    if k.startswith("density_"):
        from .analysis.density import data_densities
        t, named = k[len("density_"):], data_densities(c)
        if k not in named and (not c.has_tensor(t) or c.tensor(t).dtype != "bool"):
            masks = list(dict.fromkeys([*named, *("density_" + x.name for x in c.tensors if x.dtype == "bool")]))
            raise ShapeError(f"{k}: {c.name} has no bool tensor {t}"
                             + (f"; its masks: {', '.join(masks)}" if masks
                                else " (density_T gives the fraction of true elements of a mask tensor T)"))
        if not 0 <= v <= 1:
            what = named[k].meaning() if k in named else f"the fraction of true elements of {t}"
            raise ShapeError(f"{k} is {what}: it must lie in [0, 1], got {v}")
        return v if isinstance(v, Fraction) else float(v)       # counted from tensors: exact
    if k not in used:
        hint = difflib.get_close_matches(k, used, n=1)
        raise ShapeError(f"shape symbol {k} is not used by {c.name}"
                         + (f" (did you mean {hint[0]}?)" if hint else f"; it uses {', '.join(used)}"))
    if k in ranks:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ShapeError(f"extent of rank {k} must be a positive integer, got {v!r}")
        if v > MAX_EXTENT:
            raise ShapeError(f"extent of rank {k} = {v} is larger than {MAX_EXTENT} (2**32), the largest "
                             "attnc models (its models' loops over longer ranks would not end)")
        return int(v)
    return v


def _const(e, env):
    """Value of an expression of numbers and shape symbols; None if it uses
    coordinates or tensors (its value varies over the iteration space)."""
    if isinstance(e, Num):
        return e.value
    if isinstance(e, Sym):
        return env.get(e.name)
    if isinstance(e, (Idx, Access)) or not isinstance(e, Op):
        return None
    args = [_const(a, env) for a in e.args]
    if any(a is None for a in args) or e.name not in ("add", "sub", "mul", "neg", "div", "floordiv", "mod"):
        return None
    if e.name in ("div", "floordiv", "mod") and args[1] == 0:
        return None
    with np.errstate(all="ignore"):
        return float(RULES[e.name].numpy(*(np.float64(a) for a in args)))


def division_sites(c: Cascade):
    """(Einsum, division node) for every `/`, `//` and `%` in the cascade's
    indices, maps and predicates."""
    for e in c.einsums:
        for x in (e.output, e.expr, e.predicate):
            for n in walk(x) if x is not None else ():
                if isinstance(n, Op) and n.name in ("div", "floordiv", "mod"):
                    yield e, n


def check_divisors(c: Cascade, env: dict) -> None:
    """A `/`, `//` or `%` whose divisor is a shape expression equal to 0 at
    these shapes (`m % W` with W = 0) is an error at its place, in every
    stage that resolves shapes; a divisor that varies over the iteration
    space is checked where it is evaluated (the executor)."""
    from .printer import format_expr
    for e, n in division_sites(c):
        d = _const(n.args[1], env)
        if d == 0:
            # printed with `//` for floor division: right in an index, in a map and inside floor( ) alike
            raise ZeroDivisorError(f"division by zero in {e.name}: the divisor {format_expr(n.args[1])} of "
                             f"{format_expr(n)} is 0 at "
                             + ", ".join(f"{s}={env[s]}" for s in sorted(env) if not s.startswith("density_")),
                             n.loc or e.loc, c.source)


def literal_extents(c: Cascade) -> dict[str, int]:
    """{rank: extent} of the literal extents of declarations (`INTV[NI, 2]`
    makes rank `_2` = 2): numbers, never symbols a user gives."""
    return {r.name: int(r.definition.value) for r in c.ranks if r.implicit and isinstance(r.definition, Num)}


def shown_shapes(env: dict) -> dict:
    """Shapes for a header (`at NI=4 P=16`): without the ranks of literal
    extents (`_2=2`: a name no user can write, its value in the declaration)."""
    return {k: v for k, v in env.items() if not (k[:1] == "_" and k[1:].isdigit())}


def integer_sites(c: Cascade):
    """(Einsum, node, what) for every place whose arithmetic is on whole
    numbers: each access index (`T[m // W]`; the executor's index path and
    the kernels compute it in integers) and each `//`, `%`, bitwise or shift
    operator of a predicate (`m % W == 0`; the kernels' integer helpers)."""
    from .ops import BITWISE_OPS
    from .printer import format_expr
    for e in c.einsums:
        for x in (e.output, e.expr, e.predicate):
            for n in walk(x) if x is not None else ():
                if isinstance(n, Access):
                    for pos, i in enumerate(n.indices):
                        yield e, i, f"index {pos + 1} of {n}"
        for n in walk(e.predicate) if e.predicate is not None else ():
            if isinstance(n, Op) and (n.name in ("floordiv", "mod") or n.name in BITWISE_OPS):
                yield e, n, f"the integer operation {format_expr(n, True)} in the predicate"


def check_whole(c: Cascade, env: dict) -> None:
    """A shape symbol used where arithmetic is on whole numbers (an index,
    a predicate's `//`, `%` or bitwise operator) must have a whole value:
    W = 2.5 in `m % W` would be truncated by the executor's index path and
    fail inside a kernel's integer `_mod`. Refused here, by name and place."""
    if all(k.startswith("density_") or float(v).is_integer() for k, v in env.items()):
        return                                  # the usual case: nothing to look for
    for e, n, what in integer_sites(c):
        for s in walk(n):
            v = env.get(s.name) if isinstance(s, Sym) else None
            if v is not None and not float(v).is_integer():
                raise ShapeError(f"shape symbol {s.name} = {v} is not a whole number, but {e.name} uses it in "
                                 f"{what}, where arithmetic is on integers: give {s.name} a whole value",
                                 getattr(n, "loc", None) or e.loc, c.source)


def _eval_int(expr, env):
    from .sym import to_sympy
    value = to_sympy(expr).subs({sympy.Symbol(k, positive=True, integer=True): v for k, v in env.items()})
    if value.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        return float("nan")        # a division by zero: the caller names the rank
    value = sympy.nsimplify(value)
    if not value.is_number:
        return None
    return int(value) if value.is_integer else float(value)


__all__ = ["literal_extents", "resolve", "shown_shapes", "symbols_used"]

"""How many points of an Einsum's iteration space exist.

A predicate removes points; so does the end of a partitioned rank (m1*M0+m0
must stay below M). The count is a sympy expression: a product of extents
times `Kept(predicate, (v, extent), ...)` for the variables a predicate ties
together, times `density_T` for a mask tensor T (its fraction of true
entries, a property of the data that the user supplies). `Kept` evaluates to
an exact integer as soon as its extents are numbers.
"""
from __future__ import annotations

from functools import lru_cache
from math import prod

import numpy as np
import sympy

from ..errors import EinError
from ..ir import Access, Cascade, Einsum, Op, rank_of
from ..sym import index_symbol, shape_symbol, to_sympy

_BRUTE_FORCE_POINTS = 1 << 22
_MAX_POINTS = 1 << 33


class Kept(sympy.Function):
    """Kept(pred, (v1, n1), (v2, n2), ...): the number of integer points
    0 <= vi < ni where pred holds."""

    is_integer = True
    is_nonnegative = True

    @classmethod
    def eval(cls, pred, *limits):
        if pred is sympy.true:
            return sympy.Mul(*[n for _, n in limits])
        if pred is sympy.false:
            return sympy.Integer(0)
        bound = {v for v, _ in limits}
        if all(n.is_Integer for _, n in limits) and pred.free_symbols <= bound:
            return sympy.Integer(count_points(pred, tuple((v, int(n)) for v, n in limits)))
        return None

    def _sympystr(self, printer):
        pred, *limits = self.args
        lim = ", ".join(f"{v} < {printer._print(n)}" for v, n in limits)
        return f"Kept[{printer._print(pred)} | {lim}]"


def _linear_bound(rel, v):
    """`a*v + b (op) 0` with integer a != 0 -> (lo_fn_expr, hi_fn_expr) or None."""
    if not isinstance(rel, sympy.core.relational.Relational):
        return None
    expr = sympy.expand(rel.lhs - rel.rhs)
    if v not in expr.free_symbols:
        return None
    a = expr.coeff(v, 1)
    b = sympy.expand(expr - a * v)
    if not a.is_Integer or a == 0 or v in b.free_symbols or v in a.free_symbols:
        return None
    a = int(a)
    op = type(rel)
    # integer-valued left side: a*v + b < 0  <=>  a*v + b <= -1
    if op is sympy.StrictLessThan:
        b, op = b + 1, sympy.LessThan
    if op is sympy.StrictGreaterThan:
        b, op = b - 1, sympy.GreaterThan
    if op is sympy.GreaterThan:
        a, b, op = -a, -b, sympy.LessThan
    if op is sympy.LessThan:           # a*v <= -b
        return (None, sympy.floor(-b / a)) if a > 0 else (sympy.ceiling(-b / a), None)
    if op is sympy.Equality:
        return (sympy.ceiling(-b / a), sympy.floor(-b / a))
    return None


def _conjuncts(pred):
    out = []
    for c in sympy.And.make_args(pred):
        if isinstance(c, (sympy.LessThan, sympy.StrictLessThan)) and isinstance(c.lhs, sympy.Abs):
            out += [c.func(c.lhs.args[0], c.rhs), c.func(-c.lhs.args[0], c.rhs)]
        elif isinstance(c, (sympy.GreaterThan, sympy.StrictGreaterThan)) and isinstance(c.rhs, sympy.Abs):
            flip = sympy.LessThan if isinstance(c, sympy.GreaterThan) else sympy.StrictLessThan
            out += [flip(c.rhs.args[0], c.lhs), flip(-c.rhs.args[0], c.lhs)]
        else:
            out.append(c)
    return out


def _grid(vs, ns):
    """Full (broadcast) coordinate arrays: sympy's numpy printer combines
    conditions with logical_and.reduce, which needs equal shapes."""
    return np.broadcast_arrays(*[np.arange(n).reshape([n if j == i else 1 for j in range(len(ns))])
                                 for i, n in enumerate(ns)])


@lru_cache(maxsize=4096)
def count_points(pred, limits: tuple) -> int:
    """Exact count of integer points in the box `limits` where `pred` holds."""
    vs = [v for v, _ in limits]
    ns = [n for _, n in limits]
    total = prod(ns)
    if total <= _BRUTE_FORCE_POINTS:
        f = sympy.lambdify(vs, pred, "numpy")
        return int(np.count_nonzero(np.broadcast_to(f(*_grid(vs, ns)), ns)))
    # Interval method along the longest variable: every conjunct that involves
    # it must be linear in it; the others filter the outer grid.
    k = max(range(len(vs)), key=lambda i: ns[i])
    v, n = vs[k], ns[k]
    outer_v = [x for i, x in enumerate(vs) if i != k]
    outer_n = [x for i, x in enumerate(ns) if i != k]
    if prod(outer_n) > 1 << 26:
        raise EinError(f"cannot count the points of {pred}: its outer grid is too large")
    lo_terms, hi_terms, filters = [sympy.Integer(0)], [sympy.Integer(n - 1)], []
    linear = True
    for c in _conjuncts(pred):
        if v not in c.free_symbols:
            filters.append(c)
            continue
        b = _linear_bound(c, v)
        if b is None:
            linear = False
            break
        if b[0] is not None:
            lo_terms.append(b[0])
        if b[1] is not None:
            hi_terms.append(b[1])
    grid = _grid(outer_v, outer_n)
    if linear:
        lo = np.broadcast_to(0, outer_n).astype(np.int64)
        hi = np.broadcast_to(n - 1, outer_n).astype(np.int64)
        for t in lo_terms:
            lo = np.maximum(lo, np.asarray(sympy.lambdify(outer_v, t, "numpy")(*grid), dtype=np.int64))
        for t in hi_terms:
            hi = np.minimum(hi, np.asarray(sympy.lambdify(outer_v, t, "numpy")(*grid), dtype=np.int64))
        width = np.maximum(hi - lo + 1, 0)
        for c in filters:
            width = width * np.asarray(sympy.lambdify(outer_v, c, "numpy")(*grid), dtype=np.int64)
        return int(np.sum(np.broadcast_to(width, outer_n), dtype=np.int64))
    if total > _MAX_POINTS:
        raise EinError(f"cannot count the points of {pred} over {total} points: it is not linear in {v}")
    f = sympy.lambdify(vs, pred, "numpy")
    count, chunk = 0, max(1, _BRUTE_FORCE_POINTS // max(1, total // ns[0]))
    for start in range(0, ns[0], chunk):
        sub = [np.arange(start, min(ns[0], start + chunk))] + [np.arange(x) for x in ns[1:]]
        mesh = np.broadcast_arrays(*[a.reshape([len(a) if j == i else 1 for j in range(len(ns))])
                                     for i, a in enumerate(sub)])
        count += int(np.count_nonzero(np.broadcast_to(f(*mesh), [len(a) for a in sub])))
    return count


def _partition_conditions(c: Cascade, vars_: list[str]):
    """Validity of partitioned coordinates present in the iteration space."""
    conds = []
    for r in c.ranks:
        if r.part != "outer":
            continue
        inner = c.inner_of(r.name)
        vo, vi = r.name.lower(), inner.lower()
        if vo in vars_ and vi in vars_:
            conds.append((vo, vi, r.parent, inner))
    return conds


def points(c: Cascade, e: Einsum) -> sympy.Expr:
    """Number of existing points of the iteration space of `e`."""
    vars_ = e.iteration_vars
    extent = {v: shape_symbol(rank_of(v)) for v in vars_}
    factor = sympy.Integer(1)
    conjuncts = []
    if e.predicate is not None:
        stack = [e.predicate]
        while stack:
            x = stack.pop()
            if isinstance(x, Op) and x.name == "and":
                stack.extend(x.args)
            elif isinstance(x, Access):
                factor *= sympy.Symbol(f"density_{x.tensor}", positive=True)
            else:
                if any(isinstance(n, Access) for n in _nodes(x)):
                    raise EinError(f"cannot count the points of {e.name}: the mask tensor in `{x}` "
                                   "must be a conjunct of the `where` clause on its own", e.loc, c.source)
                conjuncts.append(to_sympy(x))
    covered: set[str] = set()
    parts = _partition_conditions(c, vars_)
    user_vars = {str(s) for p in conjuncts for s in p.free_symbols} & set(vars_)
    for vo, vi, parent, inner in parts:
        if vo in user_vars or vi in user_vars:
            conjuncts.append(sympy.Lt(index_symbol(vo) * shape_symbol(inner) + index_symbol(vi),
                                      shape_symbol(parent)))
        else:  # exactly `parent` (m1, m0) pairs exist
            factor *= shape_symbol(parent)
            covered |= {vo, vi}
    if conjuncts:
        pred = sympy.And(*conjuncts)
        pvars = [v for v in vars_ if index_symbol(v) in pred.free_symbols]
        factor *= Kept(pred, *[sympy.Tuple(index_symbol(v), extent[v]) for v in pvars])
        covered |= set(pvars)
    for v in vars_:
        if v not in covered:
            factor *= extent[v]
    return factor


def _nodes(x):
    from ..ir import walk
    return list(walk(x))

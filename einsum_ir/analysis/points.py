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
from itertools import combinations
from math import prod

import numpy as np
import sympy

from ..errors import EinError
from ..ir import Access, Cascade, Einsum, Op, rank_of
from ..sym import index_symbol, predicate_to_sympy, shape_symbol

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


def _affine(expr, u):
    """expr = a*u + b with rational a != 0 and b free of u -> (a, b), else None.
    (sympy turns `floor(m/2) < n` into `m/2 < n` when n is an integer.)"""
    expr = sympy.expand(expr)
    a = expr.coeff(u, 1)
    b = sympy.expand(expr - a * u)
    if not a.is_Rational or a == 0 or u in b.free_symbols or b.has(u):
        return None
    return a, b


def _linear_bound(rel, v):
    """Bounds (lo, hi) on v from `rel`, exact over the integers, or None.
    The relation may be linear in v or in floor(v / d) for an integer d > 0
    (dilated windows compare v // d)."""
    if not isinstance(rel, sympy.core.relational.Relational) or isinstance(rel, sympy.Ne):
        return None
    expr = sympy.expand(rel.lhs - rel.rhs)
    if v not in expr.free_symbols:
        return None
    d, u = 1, v
    floors = [f for f in expr.atoms(sympy.floor) if v in f.free_symbols]
    if floors:
        if len(floors) != 1:
            return None
        arg = sympy.expand(floors[0].args[0])
        k = arg.coeff(v, 1)
        if not (k.is_Rational and k > 0 and k.p == 1 and sympy.expand(arg - k * v) == 0):
            return None
        d, u = int(k.q), sympy.Dummy("u", integer=True)
        expr = expr.xreplace({floors[0]: u})
    ab = _affine(expr, u)
    if ab is None:
        return None
    a, b = ab
    op = type(rel)
    if op in (sympy.GreaterThan, sympy.StrictGreaterThan):
        a, b = -a, -b
        op = sympy.LessThan if op is sympy.GreaterThan else sympy.StrictLessThan
    # b may be fractional (m/4 after sympy drops a floor), so no +-1 tricks:
    # a*u <= -b  ->  u <= floor(-b/a) (a > 0)  or  u >= ceil(-b/a) (a < 0);
    # a*u < -b   ->  u <= ceil(-b/a) - 1       or  u >= floor(-b/a) + 1.
    t = -b / a
    if op is sympy.LessThan:
        lo, hi = (None, sympy.floor(t)) if a > 0 else (sympy.ceiling(t), None)
    elif op is sympy.StrictLessThan:
        lo, hi = (None, sympy.ceiling(t) - 1) if a > 0 else (sympy.floor(t) + 1, None)
    elif op is sympy.Equality:
        lo, hi = sympy.ceiling(t), sympy.floor(t)
    else:
        return None
    # u = floor(v / d): u >= L <=> v >= d*L;  u <= U <=> v <= d*U + d - 1
    return (None if lo is None else d * lo), (None if hi is None else d * hi + d - 1)


def _congruence(rel, v):
    """`Eq(v mod d, r)` with an integer d and r free of v -> (d, r), else None."""
    if not isinstance(rel, sympy.Eq):
        return None
    for x, y in ((rel.lhs, rel.rhs), (rel.rhs, rel.lhs)):
        if isinstance(x, sympy.Mod) and x.args[0] == v and x.args[1].is_Integer and v not in y.free_symbols:
            return int(x.args[1]), y
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


def _eval(expr, vs, grid, shape):
    return np.broadcast_to(np.asarray(sympy.lambdify(vs, expr, "numpy")(*grid), dtype=np.int64), shape)


@lru_cache(maxsize=4096)
def count_points(pred, limits: tuple) -> int:
    """Exact count of integer points in the box `limits` where `pred` holds.

    Strategies, cheapest first: a small box is enumerated; a disjunction is
    split by inclusion-exclusion; a predicate of two variables that depends
    only on their difference (windows, powers of two apart) is counted along
    the diagonals; otherwise, along a variable in which every condition is an
    interval (linear, or linear in v // d) or a congruence (v % d == r), the
    interval lengths are summed over the grid of the other variables; as a
    last resort the box is enumerated in chunks."""
    vs = [v for v, _ in limits]
    ns = [n for _, n in limits]
    total = prod(ns)
    if total <= _BRUTE_FORCE_POINTS:
        return _enumerate(pred, vs, ns)
    groups = _independent_groups(pred, vs)
    if len(groups) > 1:          # e.g. a 2D window: rows and columns separately
        n_of = dict(limits)
        count = prod(n_of[v] for v in vs if not any(v in g for _, g in groups))
        for part, g in groups:
            count *= count_points(part, tuple((v, n_of[v]) for v in vs if v in g))
        return count
    if isinstance(pred, sympy.And):
        dnf = sympy.to_dnf(pred, simplify=False)
        if isinstance(dnf, sympy.Or) and len(dnf.args) <= 6:
            pred = dnf
    if isinstance(pred, sympy.Or) and len(pred.args) <= 6:
        terms = pred.args
        count = 0
        for k in range(1, len(terms) + 1):
            for subset in combinations(terms, k):
                count += (-1) ** (k + 1) * count_points(sympy.And(*subset), limits)
        return count
    diagonal = _count_by_difference(pred, vs, ns)
    if diagonal is not None:
        return diagonal
    for k in sorted(range(len(vs)), key=lambda i: -ns[i]):
        counted = _count_by_intervals(pred, vs, ns, k)
        if counted is not None:
            return counted
    if total > _MAX_POINTS:
        raise EinError(f"cannot count the points of {pred} over {total} points: no variable makes "
                       "every condition an interval")
    return _enumerate(pred, vs, ns)


def _independent_groups(pred, vs):
    """Conjuncts split into groups that share no variable: [(And(...), vars)]."""
    groups: list[tuple[list, set]] = []
    for c in sympy.And.make_args(pred):
        cv = c.free_symbols & set(vs)
        joined = [g for g in groups if g[1] & cv]
        merged = ([c] + [x for g in joined for x in g[0]], cv.union(*[g[1] for g in joined]))
        groups = [g for g in groups if not g[1] & cv] + [merged]
    return [(sympy.And(*cs), gv) for cs, gv in groups]


def _enumerate(pred, vs, ns) -> int:
    f = sympy.lambdify(vs, pred, "numpy")
    total = prod(ns)
    count, chunk = 0, max(1, _BRUTE_FORCE_POINTS // max(1, total // ns[0]))
    for start in range(0, ns[0], chunk):
        sub = [np.arange(start, min(ns[0], start + chunk))] + [np.arange(x) for x in ns[1:]]
        mesh = np.broadcast_arrays(*[a.reshape([len(a) if j == i else 1 for j in range(len(ns))])
                                     for i, a in enumerate(sub)])
        count += int(np.count_nonzero(np.broadcast_to(f(*mesh), [len(a) for a in sub])))
    return count


def _count_by_difference(pred, vs, ns) -> int | None:
    """Two variables and a predicate of (x - y) only: sum over the diagonals."""
    if len(vs) != 2:
        return None
    x, y = vs
    u = sympy.Dummy("u", integer=True)
    on_diagonal = pred.xreplace({y: x - u})
    on_diagonal = on_diagonal.xreplace({r: r.func(sympy.expand(r.lhs - r.rhs), 0)   # m <= m - u -> u <= 0
                                        for r in on_diagonal.atoms(sympy.core.relational.Relational)})
    if x in on_diagonal.free_symbols:   # sympy.simplify could take minutes on gna's min/max
        return None
    nx, ny = ns
    us = np.arange(-(ny - 1), nx)                       # u = x - y
    keep = np.broadcast_to(sympy.lambdify([u], on_diagonal, "numpy")(us), us.shape)
    length = np.minimum(nx, ny + us) - np.maximum(0, us)   # pairs with x - y = u in the box
    return int(np.sum(np.where(keep, np.maximum(length, 0), 0), dtype=np.int64))


def _count_by_intervals(pred, vs, ns, k) -> int | None:
    v, n = vs[k], ns[k]
    outer_v = [x for i, x in enumerate(vs) if i != k]
    outer_n = [x for i, x in enumerate(ns) if i != k]
    if prod(outer_n) > 1 << 26:
        return None
    lo_terms, hi_terms, filters, congruence = [sympy.Integer(0)], [sympy.Integer(n - 1)], [], None
    for c in _conjuncts(pred):
        if v not in c.free_symbols:
            filters.append(c)
            continue
        b = _linear_bound(c, v)
        if b is None:
            cg = _congruence(c, v)
            if cg is None or congruence is not None:
                return None
            congruence = cg
            continue
        if b[0] is not None:
            lo_terms.append(b[0])
        if b[1] is not None:
            hi_terms.append(b[1])
    grid = _grid(outer_v, outer_n)
    lo = np.full(outer_n, 0, dtype=np.int64)
    hi = np.full(outer_n, n - 1, dtype=np.int64)
    for t in lo_terms:
        lo = np.maximum(lo, _eval(t, outer_v, grid, outer_n))
    for t in hi_terms:
        hi = np.minimum(hi, _eval(t, outer_v, grid, outer_n))
    if congruence is None:
        width = np.maximum(hi - lo + 1, 0)
    else:   # values in [lo, hi] congruent to r mod d
        d, r = congruence
        r = np.mod(_eval(r, outer_v, grid, outer_n), d)
        width = np.where(hi >= lo, np.floor_divide(hi - r, d) - np.floor_divide(lo - 1 - r, d), 0)
    for c in filters:
        width = width * _eval(c, outer_v, grid, outer_n)
    return int(np.sum(np.broadcast_to(width, outer_n), dtype=np.int64))


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
                conjuncts.append(predicate_to_sympy(x))
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

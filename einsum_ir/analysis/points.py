"""How many points of an Einsum's iteration space exist.

A predicate removes points; so does the end of a partitioned rank (m1*M0+m0
must stay below M). The count is a sympy expression: a product of extents
times `Kept(predicate, (v, extent), ...)` for the variables a predicate ties
together, times a density symbol for the conditions that read tensors (a property of
the data: `density.py`, given by the user or counted from the tensors).
`Kept` evaluates to an exact integer as soon as its extents are numbers.
"""
from __future__ import annotations

from functools import lru_cache
from itertools import combinations
from math import lcm as lcm_of, prod

import numpy as np
import sympy

from ..errors import EinError
from ..ir import Access, Cascade, Einsum, rank_of, walk
from ..sym import index_symbol, predicate_to_sympy, shape_symbol

_BRUTE_FORCE_POINTS = 1 << 22
_MAX_POINTS = 1 << 33
_MAX_GRID = 1 << 26          # cells of the other variables' grid the interval strategy evaluates


class Kept(sympy.Function):
    """Kept(pred, (v1, n1), (v2, n2), ...): the number of integer points
    0 <= vi < ni where pred holds."""

    is_integer = True
    is_nonnegative = True

    @classmethod
    def eval(cls, pred, *limits):
        canon = _canonical_kept(pred, limits)
        if canon != (pred, tuple(limits)):     # one term per count: Kept[m <= p | m < M, p < P] only
            if _canonical_kept(*canon) != canon:       # sympy re-shaped a floor: keep it as it is
                canon = _canonical_kept(pred, limits, floors=False)
            if canon != (pred, tuple(limits)):
                return cls(canon[0], *canon[1])
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


class FloorDiv(sympy.Function):
    """FloorDiv(a, d) = a // d for an integer d > 0, evaluated in integers.
    A floor of a rational form written as (a - a mod d) / d was exact in
    sympy, but sympy spreads the division again over any Min/Max around it
    (Max(6, x)/6 becomes Max(1, x/6)), and numpy then compares floats:
    natten-2d's clip of p // CW lost kept points. An opaque function keeps
    every bound of a floor-division predicate an integer."""
    is_integer = True
    _imp_ = staticmethod(lambda a, d: np.floor_divide(a, d))

    @classmethod
    def eval(cls, a, d):
        if a.is_Integer and d.is_Integer and d > 0:
            return sympy.Integer(int(a) // int(d))
        return None


def _flip(rel):
    """`a >= b` as `b <= a`, `a > b` as `b < a`: one direction for every bound."""
    return (sympy.Le if isinstance(rel, sympy.Ge) else sympy.Lt)(rel.rhs, rel.lhs, evaluate=False)


def _canonical_kept(pred, limits, floors: bool = True) -> tuple:
    """(pred, limits) in one canonical form, so that the same count written
    from two Einsums (their loop variables in another order, a bound written
    the other way round) is one sympy term and sums merge: limits sorted by
    variable name, `>`/`>=` turned into `<`/`<=`, the argument of a floor
    over one denominator (`floor((P - 1)/D)`, not `floor(P/D - 1/D)`).
    Idempotent (eval checks it for floors, which sympy may evaluate again)."""
    limits = tuple(sorted((sympy.Tuple(*lim) for lim in limits), key=lambda lim: str(lim[0])))
    if not isinstance(pred, sympy.Basic):
        return pred, limits
    if pred.has(sympy.Ge, sympy.Gt):
        pred = pred.replace(lambda x: isinstance(x, (sympy.Ge, sympy.Gt)), _flip)
    if floors and pred.has(sympy.floor):
        pred = pred.replace(lambda x: isinstance(x, sympy.floor), lambda x: sympy.floor(sympy.together(x.args[0])))
    return pred, limits


def _affine(expr, u):
    """expr = a*u + b with a of known sign (a rational, or a product of shape
    symbols such as M0) and b free of u -> (a, b), else None.
    (sympy turns `floor(m/2) < n` into `m/2 < n` when n is an integer.)"""
    expr = sympy.expand(expr)
    a = expr.coeff(u, 1)
    b = sympy.expand(expr - a * u)
    if not (a.is_positive or a.is_negative) or u in a.free_symbols or u in b.free_symbols or b.has(u):
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
        if v in expr.free_symbols:      # v both inside and outside the floor (m + m // 2 < p): no interval in u
            return None
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
    """An integer-valued bound (or a condition) over the grid: sympy spreads
    an exact floor over float terms (m/3 - Mod(m + 1, 3)/3 + 1/3 is
    2.9999999999999996 at m = 8), so the value is rounded, not truncated."""
    value = np.rint(np.asarray(sympy.lambdify(vs, _integral(expr), "numpy")(*grid), dtype=np.float64))
    return np.broadcast_to(value.astype(np.int64), shape)


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
        small = any(total // n <= _MAX_GRID for n in ns)
        raise EinError(f"cannot count the points of {pred} over {total} points: " + (
            "no variable makes every condition an interval" if small else
            f"along any variable the grid of the others holds over {_MAX_GRID} cells"))
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


def _integral(pred):
    """Each comparison with rational coefficients times its (positive)
    denominator: `-m/3 + p/3 < 3` as `p - m < 9`. numpy evaluates the first
    in floats, where 11/3 - 2/3 is 2.9999999999999996 < 3 (a point counted
    that the floor predicate `(p - m) // 3 <= 2` removes); a floor of a
    rational form (or a ceiling) likewise as an integer floor division. Bounds
    of intervals too: floor(m/3 - 2/3) is 1 in floats at m = 8."""
    def scaled(r):
        num, den = sympy.fraction(sympy.together(r.lhs - r.rhs))
        if den.is_Integer and den > 0 and den != 1:
            return r.func(sympy.expand(num), 0)
        return r
    def floor_of(f):                          # an integer floor division, opaque to sympy
        num, den = sympy.fraction(sympy.together(f.args[0]))
        if den.is_Integer and den > 1:
            return FloorDiv(sympy.expand(num), den)
        return f
    def ceiling_of(f):                        # ceiling(x) = -floor(-x)
        num, den = sympy.fraction(sympy.together(f.args[0]))
        if den.is_Integer and den > 1:
            return -FloorDiv(sympy.expand(-num), den)
        return f
    if not isinstance(pred, sympy.Basic):
        return pred
    # bottom-up, so a floor inside a floor is an integer division too
    pred = pred.replace(lambda x: isinstance(x, sympy.floor), floor_of)
    pred = pred.replace(lambda x: isinstance(x, sympy.ceiling), ceiling_of)

    def common(f):                            # Abs, Min, Max of rational forms: one integer denominator outside
        parts = [sympy.fraction(sympy.together(a)) for a in f.args]
        if not all(d.is_Integer and d > 0 for _, d in parts) or all(d == 1 for _, d in parts):
            return f
        lcm = lcm_of(*[int(d) for _, d in parts])
        return f.func(*[sympy.expand(n * (lcm // int(d))) for n, d in parts]) / lcm
    for _ in range(3):                        # nested Min/Max/Abs, innermost first
        pred = pred.xreplace({f: common(f) for f in pred.atoms(sympy.Abs, sympy.Min, sympy.Max)})
    return pred.xreplace({r: scaled(r) for r in pred.atoms(sympy.core.relational.Relational)})


def _enumerate(pred, vs, ns) -> int:
    f = sympy.lambdify(vs, _integral(pred), "numpy")
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
    on_diagonal = _integral(on_diagonal)
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
    if prod(outer_n) > _MAX_GRID:
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


def _space(c: Cascade, e: Einsum):
    """The iteration space of `e`: extents, the sympy conjuncts of its
    predicate that read no tensor, the density of those that do (None if
    none: `density.py`), and the partition validity conditions
    [(vo, vi, parent, inner)] of the pairs present."""
    from .density import density_of, split
    vars_ = e.iteration_vars
    extent = {v: shape_symbol(rank_of(v)) for v in vars_}
    _, index = split(e)
    conjuncts = [predicate_to_sympy(x) for x in index]
    return vars_, extent, conjuncts, density_of(c, e), _partition_conditions(c, vars_)


def points(c: Cascade, e: Einsum) -> sympy.Expr:
    """Number of existing points of the iteration space of `e`: the
    index-only conditions counted (Kept), times the density of the
    conditions that read tensors."""
    vars_, extent, conjuncts, dens, parts = _space(c, e)
    return _count(vars_, extent, conjuncts, [dens.name] if dens else [], parts)


def _count(vars_, extent, conjuncts, masks, parts) -> sympy.Expr:
    """Points of the box over `vars_` that the conjuncts, the data parts
    (density symbols named in `masks`) and partition conditions keep; every
    condition's variables are in `vars_`."""
    factor = sympy.Integer(1)
    for name in masks:
        factor *= sympy.Symbol(name, positive=True)
    covered: set[str] = set()
    conjuncts = list(conjuncts)
    user_vars = {str(s) for p in conjuncts for s in p.free_symbols} & set(vars_)
    for vo, vi, parent, inner in parts:
        if vo in user_vars or vi in user_vars:
            conjuncts.append(_partition_condition(vo, vi, parent, inner))
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


def _partition_condition(vo, vi, parent, inner):
    return sympy.Lt(index_symbol(vo) * shape_symbol(inner) + index_symbol(vi), shape_symbol(parent))


# ------------------------------------------------------------ projections
#
# An operation that depends on only some variables of an Einsum (exp(-GM[p])
# in an Einsum over f) is evaluated once per distinct value of those
# variables over the existing points: the size of the projection of the kept
# iteration space onto them. A condition that ties a kept variable to one
# that is projected away (m >= p, keeping p) keeps the tuples for which SOME
# completion exists; it is found exactly by eliminating the projected
# variable (integer Fourier-Motzkin: the variable's lower bounds must not
# exceed its upper bounds), or the projection is not proved.

_MAX_DNF_TERMS = 8


def projected_points(c: Cascade, e: Einsum, keep) -> tuple[sympy.Expr, str | None]:
    """Distinct values of the variables `keep` over the existing points of
    `e`, and None; or, where that is not proved exact, (points(c, e), reason):
    the per-point count, an upper bound. No variables: 1 (a constant is
    evaluated once per Einsum)."""
    vars_, extent, conjuncts, dens, parts = _space(c, e)
    keep = set(keep)
    if not keep <= set(vars_):
        raise ValueError(f"{sorted(keep - set(vars_))} are not variables of {e.name}")
    if keep == set(vars_):
        return points(c, e), None
    if not keep:
        return sympy.Integer(1), None
    if dens is not None and not set(dens.vars) <= keep:
        reads = ", ".join(dict.fromkeys(n.tensor for x in dens.data for n in walk(x) if isinstance(n, Access)))
        return points(c, e), (f"whether the mask {reads} keeps some "
                              f"{', '.join(v for v in dens.vars if v not in keep)} is a property of the data "
                              f"({dens.name})")
    conds = [(p, frozenset(str(s) for s in p.free_symbols) & set(vars_), None) for p in conjuncts]
    conds += [(_partition_condition(*pt), frozenset(pt[:2]), pt) for pt in parts]
    factor, inner_conds, inner_parts, mixed_vars = sympy.Integer(1), [], [], set()
    for comp, cvars in _components(conds):
        if cvars <= keep:
            inner_conds += [p for p, _, pt in comp if pt is None]
            inner_parts += [pt for _, _, pt in comp if pt is not None]
            continue
        part, why = _component_projection(comp, cvars, keep, vars_, extent)
        if why is not None:
            return points(c, e), why
        factor *= part
        mixed_vars |= cvars & keep
    kept_vars = [v for v in vars_ if v in keep and v not in mixed_vars]
    return factor * _count(kept_vars, extent, inner_conds, [dens.name] if dens else [], inner_parts), None


def _components(conds):
    """Conditions grouped so that no two groups share a variable: [(conds, vars)]."""
    groups: list[tuple[list, frozenset]] = []
    for cond in conds:
        joined = [g for g in groups if g[1] & cond[1]]
        merged = ([cond] + [x for g in joined for x in g[0]], cond[1].union(*[g[1] for g in joined]))
        groups = [g for g in groups if not g[1] & cond[1]] + [merged]
    return groups


def _component_projection(comp, cvars, keep, vars_, extent):
    """Projection of one group of conditions onto its variables in `keep`
    (some of its variables are not): (count, None) or (None, reason)."""
    inside = [v for v in vars_ if v in cvars and v in keep]
    outside = [v for v in vars_ if v in cvars and v not in keep]
    if len(comp) == 1 and comp[0][2] is not None:          # a partition's validity alone
        vo, vi, parent, _ = comp[0][2]
        if not inside:
            return sympy.Integer(1), None
        if vo in inside:          # every tile m1 < ceil(M / M0) holds m0 = 0
            return extent[vo], None
        return sympy.Min(extent[vi], shape_symbol(parent)), None   # m0 < M with m1 = 0
    pred = sympy.And(*[p for p, _, _ in comp])
    left = eliminate(pred, [(index_symbol(v), extent[v]) for v in outside])
    if left is None:
        if not inside:   # exactly 1 if any point is kept, else 0
            return sympy.Min(1, Kept(pred, *[sympy.Tuple(index_symbol(v), extent[v]) for v in outside])), None
        return None, (f"cannot eliminate {', '.join(outside)} from `{pred}` (a condition is not an interval "
                      "or a congruence in it)")
    free = [v for v in inside if index_symbol(v) in left.free_symbols]
    rest = sympy.Mul(*[extent[v] for v in inside if v not in free])
    if not free:
        return rest * sympy.Piecewise((1, left), (0, True)), None
    return rest * Kept(left, *[sympy.Tuple(index_symbol(v), extent[v]) for v in free]), None


def eliminate(pred, limits):
    """`exists v1 in [0, n1), v2 ...: pred` as a predicate over the other
    symbols, exact over the integers; None where some condition is not an
    interval (linear in v or in v // d) or a congruence (v % d == r) in v."""
    for v, n in limits:
        pred = _exists(pred, v, n)
        if pred is None:
            return None
    return pred


def _exists(pred, v, n):
    if v not in pred.free_symbols:
        return pred
    if isinstance(pred, sympy.And) and any(isinstance(a, sympy.Or) for a in pred.args):
        if prod(len(a.args) for a in pred.args if isinstance(a, sympy.Or)) > _MAX_DNF_TERMS:
            return None
        pred = sympy.to_dnf(pred, simplify=False)
    if isinstance(pred, sympy.Or):
        if len(pred.args) > _MAX_DNF_TERMS:
            return None
        terms = [_exists(t, v, n) for t in pred.args]
        return None if any(t is None for t in terms) else sympy.Or(*terms)
    los, his, rest, congruence, excluded = [sympy.Integer(0)], [n - 1], [], None, None
    for cond in _conjuncts(pred):
        if v not in cond.free_symbols:
            rest.append(cond)
            continue
        bound = _linear_bound(cond, v)
        if bound is None and excluded is None and (x := _excluded_value(cond, v)) is not None:
            excluded = x
            continue
        if bound is None:
            cg = _unit_congruence(cond, v)
            if cg is None or congruence is not None:
                return None
            congruence = cg
            continue
        los += [] if bound[0] is None else [bound[0]]
        his += [] if bound[1] is None else [bound[1]]
    if any(v in t.free_symbols for t in los + his):
        return None
    if congruence is None:   # integer bounds: some v exists iff every lower <= every upper
        nonempty = [_at_most(lo, hi) for lo in los for hi in his]
        if excluded is None:
            return sympy.And(*rest, *nonempty)
        # v != x removes one value: some v is left iff the interval holds two, or its one value is not x
        two = sympy.And(*[_at_most(lo + 1, hi) for lo in los for hi in his])
        one = sympy.Or(*[sympy.And(sympy.Ne(lo, excluded), *[sympy.Ge(lo, o) for o in los if o is not lo])
                         for lo in los])
        return sympy.And(*rest, *nonempty, sympy.Or(two, one))
    if excluded is not None:
        return None
    d, r = congruence        # values in [L, H] congruent to r mod d: at least one
    lo, hi = sympy.Max(*los), sympy.Min(*his)
    return sympy.And(*rest, sympy.Ge(sympy.floor((hi - r) / d) - sympy.floor((lo - 1 - r) / d), 1))


def _excluded_value(rel, v):
    """`Ne(+-v + b, y)`, b and y integers free of v -> the one value x of v
    it excludes (v != x); else None."""
    if not isinstance(rel, sympy.Ne):
        return None
    ab = _affine(rel.lhs - rel.rhs, v)
    if ab is None or ab[0] not in (1, -1) or ab[1].is_integer is False:
        return None
    return -ab[0] * ab[1]


def _at_most(lo, hi):
    """lo <= hi, with a rounding dropped where the other side is an integer:
    L <= floor(x) iff L <= x, and ceiling(x) <= H iff x <= H (so a bound
    divided by a tile size M0 stays linear for the next elimination)."""
    if isinstance(hi, sympy.floor) and lo.is_integer:
        return sympy.Le(lo, hi.args[0])
    if isinstance(lo, sympy.ceiling) and hi.is_integer:
        return sympy.Le(lo.args[0], hi)
    return sympy.Le(lo, hi)


def _unit_congruence(rel, v):
    """`Eq((+-v + b) mod d, y)`, b and y free of v, integer d -> (d, r) with
    v = r (mod d); else None."""
    if not isinstance(rel, sympy.Eq):
        return None
    for x, y in ((rel.lhs, rel.rhs), (rel.rhs, rel.lhs)):
        if not (isinstance(x, sympy.Mod) and x.args[1].is_Integer and v not in y.free_symbols):
            continue
        ab = _affine(x.args[0], v)
        if ab is not None and ab[0] in (1, -1) and ab[1].is_integer is not False:
            return int(x.args[1]), ab[0] * (y - ab[1])
    return None

"""Exact point counting: every strategy of count_points (inclusion-exclusion,
diagonals, intervals with floor-division bounds and congruences) against
plain enumeration of the box, on the predicate shapes the library uses."""
import itertools

import numpy as np
import pytest
import sympy

import importlib

pts = importlib.import_module("einsum_ir.analysis.points")   # the module, not the function
from einsum_ir.sym import index_symbol

h, m, p = (index_symbol(v) for v in "hmp")


def enumerate_box(pred, limits):
    vs = [v for v, _ in limits]
    f = sympy.lambdify(vs, pred, "numpy")
    return sum(bool(f(*pt)) for pt in itertools.product(*[range(n) for _, n in limits]))


def gna(q, k, length, w, s, d):
    n = sympy.floor((length - 1 - sympy.Mod(q, d)) / d) + 1
    lead = sympy.Min(sympy.floor(sympy.floor(q / d) / s) * s + s // 2, n - 1)
    start = sympy.Min(sympy.Max(lead - w // 2, 0), sympy.Max(n - w, 0))
    return sympy.And(sympy.Eq(sympy.Mod(k, d), sympy.Mod(q, d)),
                     start <= sympy.floor(k / d), sympy.floor(k / d) < start + w)


PREDICATES = {
    "causal": (sympy.Le(m, p), [(m, 37), (p, 41)]),
    "window": (sympy.And(m <= p, p - m < 5), [(m, 40), (p, 33)]),
    "band": (sympy.Abs(p - m) <= 3, [(m, 30), (p, 30)]),
    "sinks-or-window": (sympy.And(m <= p, sympy.Or(m < 3, p - m < 4)), [(m, 35), (p, 35)]),
    "streaming-heads": (sympy.And(m <= p, sympy.Or(h >= 2, m < 3, p - m < 4)), [(h, 4), (m, 23), (p, 23)]),
    "dilated": (sympy.And(sympy.Eq(sympy.Mod(m, 3), sympy.Mod(p, 3)), sympy.Abs(p - m) <= 7), [(m, 31), (p, 29)]),
    "gna-dilated-strided": (gna(p, m, 29, 5, 2, 3), [(m, 29), (p, 29)]),
    "gna-blocked": (gna(p, m, 26, 4, 4, 1), [(m, 26), (p, 26)]),
    "powers-of-two": (sympy.And(m <= p, sympy.Or(sympy.Eq(m, p), sympy.Eq(
        2 ** sympy.floor(sympy.log(sympy.Max(p - m, 1), 2)), p - m))), [(m, 40), (p, 40)]),
    "floor-bounds": (sympy.And(sympy.floor(m / 4) <= sympy.floor(p / 4), sympy.floor(m / 4) >= 1),
                     [(m, 30), (p, 22)]),
}


@pytest.mark.parametrize("name", PREDICATES)
def test_count_points_equals_enumeration(name, monkeypatch):
    pred, limits = PREDICATES[name]
    expected = enumerate_box(pred, limits)
    assert expected > 0
    pts.count_points.cache_clear()
    monkeypatch.setattr(pts, "_BRUTE_FORCE_POINTS", 0)      # force the strategies
    assert pts.count_points(pred, tuple(limits)) == expected
    pts.count_points.cache_clear()


@pytest.mark.parametrize("name", PREDICATES)
def test_each_applicable_strategy_is_exact(name):
    pred, limits = PREDICATES[name]
    expected = enumerate_box(pred, limits)
    vs, ns = [v for v, _ in limits], [n for _, n in limits]
    used = 0
    if not isinstance(pred, sympy.Or):
        d = pts._count_by_difference(pred, vs, ns)
        if d is not None:
            assert d == expected
            used += 1
        for k in range(len(vs)):
            c = pts._count_by_intervals(pred, vs, ns, k)
            if c is not None:
                assert c == expected, (name, vs[k])
                used += 1
    assert pts._enumerate(pred, vs, ns) == expected


def test_large_windows_are_counted_without_enumeration():
    n = 1 << 16                      # 4G points: enumeration would take minutes
    pts.count_points.cache_clear()
    got = pts.count_points(sympy.And(m <= p, sympy.Or(m < 4, p - m < 512)), ((m, n), (p, n)))
    W, S = 512, 4
    expected = sum(min(q + 1, W) + max(0, min(S, q + 1 - W)) for q in range(n))
    assert got == expected
    got = pts.count_points(gna(p, m, n, 13, 1, 2), ((m, n), (p, n)))
    assert got == n * 13


def test_independent_axes_multiply():
    """A 2D neighborhood is a row window times a column window; the count
    must not enumerate the 4D box (2^40 points here)."""
    my, mx, py, px = (index_symbol(v) for v in ("my", "mx", "py", "px"))
    n = 1 << 10
    pts.count_points.cache_clear()
    pred = sympy.And(gna(py, my, n, 7, 1, 1), gna(px, mx, n, 5, 1, 1))
    assert pts.count_points(pred, ((my, n), (mx, n), (py, n), (px, n))) == (n * 7) * (n * 5)


# Elimination (existential projection): exists v in [0, n): pred, as a predicate
# over the other variables; checked against the projection of the enumerated box.
ELIMINABLE = {(name, v) for name in ("causal", "window", "band", "sinks-or-window", "dilated", "floor-bounds")
              for v in "mp"} | {("streaming-heads", v) for v in "hmp"} | {
              ("gna-dilated-strided", "m"), ("gna-blocked", "m")}


def projection_size(pred, limits, drop):
    vs = [v for v, _ in limits]
    f = sympy.lambdify(vs, pred, "numpy")
    kept = {tuple(x for v, x in zip(vs, pt) if v != drop)
            for pt in itertools.product(*[range(n) for _, n in limits]) if bool(f(*pt))}
    return len(kept)


@pytest.mark.parametrize("name", PREDICATES)
def test_elimination_equals_the_projection_of_the_box(name):
    pred, limits = PREDICATES[name]
    for v, n in limits:
        left = pts.eliminate(pred, [(v, sympy.Integer(n))])
        if left is None:
            assert (name, str(v)) not in ELIMINABLE, (name, v)
            continue
        rest = tuple((u, k) for u, k in limits if u != v)
        assert v not in left.free_symbols
        assert enumerate_box(left, rest) == projection_size(pred, limits, v), (name, v)


def test_elimination_of_a_causal_key_past_the_keys():
    """m >= p over M keys: a query p >= M has no key, so min(M, P) queries remain."""
    M, P = sympy.Symbol("M", positive=True, integer=True), sympy.Symbol("P", positive=True, integer=True)
    left = pts.eliminate(sympy.Ge(m, p), [(m, M)])
    for mm, pp in ((3, 8), (8, 3), (5, 5)):
        got = sum(bool(left.subs({M: mm, p: q})) for q in range(pp))
        assert got == min(mm, pp)


def test_an_equality_is_an_interval_of_one_point_over_a_box_too_large_to_enumerate():
    """2m == p over 10^5 x (10^5 + 1) points (more than enumeration takes):
    along m each p gives the interval [ceil(p/2), floor(p/2)], one point
    for even p: 50,001 in all; and 2m + 1 == p below m = 1000: 1,000."""
    box = ((m, 100_000), (p, 100_001))
    assert 100_000 * 100_001 > pts._MAX_POINTS
    pts.count_points.cache_clear()
    assert pts.count_points(sympy.Eq(2 * m, p), box) == 50_001
    assert pts.count_points(sympy.And(sympy.Eq(2 * m + 1, p), m < 1000), box) == 1000
    pts.count_points.cache_clear()

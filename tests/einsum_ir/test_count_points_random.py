"""Exact point counting on predicates nobody wrote by hand: a fixed-seed
sample of random conjunctions and disjunctions of the condition shapes a
mask is made of (linear bounds, |x - y| windows, floor(x / d) blocks,
congruences, ceil bounds, equalities) over boxes of 2 and 3 variables,
each strategy of count_points against plain enumeration of the box
(the large fuzz is benchmarks' business; this is its sample)."""
import itertools
import random

import pytest
import sympy

import importlib

from einsum_ir.sym import index_symbol

pts = importlib.import_module("einsum_ir.analysis.points")   # the module, not the function
H, M, P = (index_symbol(v) for v in "hmp")
COMPARE = [sympy.Lt, sympy.Le, sympy.Gt, sympy.Ge]


def _condition(rng: random.Random, vs: list):
    x, y = rng.sample(vs, 2)
    cmp, c = rng.choice(COMPARE), rng.randint(-5, 5)
    kind = rng.randrange(7)
    if kind == 0:
        return cmp(rng.choice([-2, -1, 1, 2]) * x + rng.choice([-1, 0, 1]) * y + c, 0)
    if kind == 1:
        return cmp(sympy.Abs(x - y + c), rng.randint(0, 6))
    if kind == 2:
        d = rng.randint(2, 5)
        return cmp(sympy.floor(x / d), sympy.floor(y / d) + rng.randint(-1, 1))
    if kind == 3:
        d = rng.randint(2, 4)
        return sympy.Eq(sympy.Mod(x, d), sympy.Mod(y, d)) if rng.random() < .5 else \
            sympy.Eq(sympy.Mod(x + c, d), rng.randrange(d))
    if kind == 4:
        d = rng.randint(2, 5)
        return cmp(sympy.ceiling(x / d), y + rng.randint(-2, 2))
    if kind == 5:
        return sympy.Eq(x, y + c) if rng.random() < .5 else sympy.Ne(x, y + c)
    return cmp(x - y, c)


def _predicate(rng: random.Random, vs: list):
    conds = [_condition(rng, vs) for _ in range(rng.randint(1, 3))]
    if len(conds) == 1:
        return conds[0]
    r = rng.random()
    return sympy.And(*conds) if r < .6 else sympy.Or(*conds) if r < .8 else sympy.And(conds[0], sympy.Or(*conds[1:]))


def _cases(seed: int, n: int):
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        vs = [M, P] if rng.random() < .7 else [H, M, P]
        limits = tuple((v, rng.randint(1, 4) if v == H else rng.randint(5, 23)) for v in vs)
        pred = _predicate(rng, vs)
        if pred not in (sympy.true, sympy.false):
            out.append((pred, limits))
    return out


def _enumerated(pred, limits) -> int:
    vs = [v for v, _ in limits]
    f = sympy.lambdify(vs, pred, "numpy")
    return sum(bool(f(*pt)) for pt in itertools.product(*[range(n) for _, n in limits]))


CASES = _cases(2026, 120)


@pytest.mark.parametrize("k", range(0, len(CASES), 10))
def test_random_predicates_are_counted_exactly(k, monkeypatch):
    monkeypatch.setattr(pts, "_BRUTE_FORCE_POINTS", 0)          # force the strategies
    for pred, limits in CASES[k:k + 10]:
        want = _enumerated(pred, limits)
        pts.count_points.cache_clear()
        assert pts.count_points(pred, limits) == want, (pred, limits)
        vs, ns = [v for v, _ in limits], [n for _, n in limits]
        if isinstance(pred, sympy.Or):
            continue
        diagonal = pts._count_by_difference(pred, vs, ns)
        assert diagonal in (None, want), (pred, limits, "diagonals", diagonal)
        for j in range(len(vs)):
            along = pts._count_by_intervals(pred, vs, ns, j)
            assert along in (None, want), (pred, limits, "intervals along", vs[j], along)
    pts.count_points.cache_clear()


def test_the_sample_exercises_every_strategy():
    """Not a vacuous sample: diagonals and intervals each count some cases,
    and some fall through to enumeration."""
    used = {"diagonals": 0, "intervals": 0, "neither": 0}
    for pred, limits in CASES:
        if isinstance(pred, sympy.Or):
            continue
        vs, ns = [v for v, _ in limits], [n for _, n in limits]
        d = pts._count_by_difference(pred, vs, ns) is not None
        i = any(pts._count_by_intervals(pred, vs, ns, j) is not None for j in range(len(vs)))
        used["diagonals"] += d
        used["intervals"] += i
        used["neither"] += not (d or i)
    assert all(n >= 5 for n in used.values()), used

"""Exact point counts under floor predicates: `//` and `%` with negative
dividends and negative literal divisors, through `count_points` (small boxes
enumerated, large ones by intervals) against numpy's floor_divide and mod.
Enumeration once evaluated the rational forms sympy makes of floors in
floats (11/3 - 2/3 < 3 held), counting points the predicate removes."""
import importlib

import numpy as np
import pytest
import sympy

from einsum_ir.sym import index_symbol

pts = importlib.import_module("einsum_ir.analysis.points")
m, p = index_symbol("m"), index_symbol("p")


def _cases(rng):
    for _ in range(12):
        d = int(rng.choice([-7, -3, -2, 2, 3, 5])); c = int(rng.integers(-4, 5))
        a, b, e = int(rng.integers(1, 4)), int(rng.integers(-3, 4)), int(rng.choice([-4, -3, 2, 3]))
        yield (sympy.floor((a * p - m + b) / d) <= c, lambda M, P: np.floor_divide(a * P - M + b, d) <= c)
        yield (sympy.floor((m + b) / d) > sympy.floor(p / d) + c,
               lambda M, P: np.floor_divide(M + b, d) > np.floor_divide(P, d) + c)
        yield (sympy.Eq(sympy.Mod(a * p - m + b, e), sympy.Mod(c, e)),
               lambda M, P: np.mod(a * P - M + b, e) == np.mod(c, e))
        yield (sympy.And(sympy.Mod(p - m, e) <= 0, sympy.floor((p - m) / d) >= c),
               lambda M, P: (np.mod(P - M, e) <= 0) & (np.floor_divide(P - M, d) >= c))


@pytest.mark.parametrize("shape", [(23, 19), (2300, 1900)], ids=["enumerated", "by-intervals"])
def test_floor_predicates_count_exactly(shape):
    rng = np.random.default_rng(sum(shape))
    M_, P_ = np.arange(shape[0])[:, None], np.arange(shape[1])[None, :]
    for pred, numpy_pred in _cases(rng):
        assert pts.count_points(pred, ((m, shape[0]), (p, shape[1]))) == numpy_pred(M_, P_).sum(), pred


def test_abs_of_a_floor_difference():
    """abs(p // 6 - m // 6) <= 1: the floors become rational forms inside abs,
    whose float value 1.0000000000000002 once failed `<= 1` (522 for 576)."""
    pred = sympy.Abs(sympy.floor(p / 6) - sympy.floor(m / 6)) <= 1
    M_, P_ = np.arange(36)[:, None], np.arange(36)[None, :]
    assert pts.count_points(pred, ((m, 36), (p, 36))) == (np.abs(P_ // 6 - M_ // 6) <= 1).sum() == 576

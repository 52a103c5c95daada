"""Branches of point counting and projection (einsum_ir/analysis/points.py)
that the library designs do not take. The oracle is plain enumeration: each
predicate is written again as a Python function and evaluated point by
point at several concrete shapes; the strategies of count_points are forced
by setting _BRUTE_FORCE_POINTS to 0 (as in test_count_points.py).
Projections that points.py cannot prove fall back to the per-point count
with a reason: those tests assert the fallback, its whole reason, and that
it is never below the enumerated projection."""
import importlib
import itertools
import math

import pytest
import sympy

import einsum_ir as ei
from einsum_ir.analysis import evaluate
from einsum_ir.errors import EinError
from einsum_ir.shapes import resolve
from einsum_ir.sym import index_symbol

pts = importlib.import_module("einsum_ir.analysis.points")   # the module, not the function
h, m, p = (index_symbol(v) for v in "hmp")


@pytest.fixture
def strategies(monkeypatch):
    """count_points with enumeration of small boxes switched off."""
    pts.count_points.cache_clear()
    monkeypatch.setattr(pts, "_BRUTE_FORCE_POINTS", 0)
    yield
    pts.count_points.cache_clear()


def brute_count(f, *ns):
    return sum(1 for pt in itertools.product(*[range(n) for n in ns]) if f(*pt))


def einsum_over_m_p(pred):
    c = ei.parse(f"rank M, P\ninput X[M, P]\nY[p] = X[m, p] where {pred}")
    return c, c.einsums[0]


def brute_projection(f, M, P):
    """Distinct p with some m < M where f(m, p) holds."""
    return len({q for k in range(M) for q in range(P) if f(k, q)})


SHAPES = [dict(M=4, P=9), dict(M=6, P=5), dict(M=1, P=3), dict(M=3, P=3)]


# ------------------------------------------------------------ count_points strategies

def test_floor_div_evaluates_whole_numbers_with_floor_semantics():
    """FloorDiv (the integer floor division _integral writes) folds numbers
    as Python's //, negative numerators rounding down."""
    for a, d in ((7, 2), (-7, 2), (6, 3), (0, 5), (-1, 4)):
        assert pts.FloorDiv(sympy.Integer(a), sympy.Integer(d)) == a // d
    assert pts.FloorDiv(m, 2).subs(m, 9) == 4


def test_a_relation_in_which_the_variable_cancels_is_no_interval(strategies):
    """(m + p)^2 < m^2 + 2mp + 5 is p^2 < 5: no bound on m (line `v not in
    expr`), none linear in p either, so the box is enumerated: M * 3 points.
    Taking it as 'no bound' along m would count the whole box."""
    pred = (m + p) ** 2 < m ** 2 + 2 * m * p + 5
    assert isinstance(pred, sympy.StrictLessThan)           # sympy keeps it unexpanded
    assert pts.count_points(pred, ((m, 40), (p, 30))) == brute_count(lambda a, b: b * b < 5, 40, 30) == 120


@pytest.mark.parametrize("pred, f", [
    (sympy.Ge(3, sympy.Abs(p - 2 * m)), lambda a, b: 3 >= abs(b - 2 * a)),
    (sympy.Gt(3, sympy.Abs(p - 2 * m)), lambda a, b: 3 > abs(b - 2 * a)),
])
def test_a_bound_written_before_an_absolute_value_is_two_intervals(pred, f, strategies):
    """`c >= |x|` (`c > |x|`) is split into x <= c and -x <= c (strict for >);
    not a difference m - p, so it is counted along intervals."""
    assert pts.count_points(pred, ((m, 40), (p, 30))) == brute_count(f, 40, 30)


def test_a_ceiling_of_a_float_multiple_is_counted_as_written():
    """ceil(m * 1.5): sympy gives ceiling(1.5*m), no integer denominator to
    turn into a floor division: _integral leaves the ceiling as it is."""
    c, e = einsum_over_m_p("ceil(m * 1.5) == p")
    n = pts.points(c, e)
    for s in SHAPES + [dict(M=10, P=12)]:
        assert evaluate(n, s) == brute_count(lambda a, b: math.ceil(a * 1.5) == b, s["M"], s["P"]), s
    assert evaluate(n, dict(M=10, P=12)) == 8


def test_a_predicate_no_strategy_counts_over_a_huge_box_is_refused():
    """m*p % 7 == 0 is neither an interval nor a congruence in m or p and
    depends on more than m - p: 2^34 points are too many to enumerate."""
    pts.count_points.cache_clear()
    with pytest.raises(EinError) as err:
        pts.count_points(sympy.Eq(sympy.Mod(m * p, 7), 0), ((m, 1 << 17), (p, 1 << 17)))
    assert err.value.message == ("cannot count the points of Eq(Mod(m*p, 7), 0) over 17179869184 points: "
                                 "no variable makes every condition an interval")
    assert err.value.line is None
    # the same predicate over a box small enough to enumerate is counted
    assert pts.count_points(sympy.Eq(sympy.Mod(m * p, 7), 0), ((m, 30), (p, 20))) == \
        brute_count(lambda a, b: a * b % 7 == 0, 30, 20)


def test_an_interval_grid_too_large_is_not_built():
    """h + m + p < 5 is an interval in each variable, but along any of them
    the grid of the other two holds 2^28 cells (over the 2^26 limit), and
    2^42 points are too many to enumerate: refused, no 2 GiB arrays."""
    pts.count_points.cache_clear()
    with pytest.raises(EinError) as err:
        pts.count_points(h + m + p < 5, ((h, 1 << 14), (m, 1 << 14), (p, 1 << 14)))
    assert err.value.message == ("cannot count the points of h + m + p < 5 over 4398046511104 points: "
                                 "along any variable the grid of the others holds over 67108864 cells")


# ------------------------------------------------------------ projected_points

def test_projection_keep_must_name_variables_of_the_einsum():
    c, e = einsum_over_m_p("m <= p")
    with pytest.raises(ValueError) as err:
        pts.projected_points(c, e, {"p", "z", "f"})
    assert str(err.value) == "['f', 'z'] are not variables of Y"


def test_projection_onto_every_variable_is_the_point_count():
    """Keeping all of m, p projects nothing away: the points themselves."""
    c, e = einsum_over_m_p("m <= p and p - m < 3")
    count, why = pts.projected_points(c, e, {"m", "p"})
    assert why is None
    assert count == pts.points(c, e)
    for s in SHAPES:
        assert evaluate(count, s) == brute_count(lambda a, b: a <= b and b - a < 3, s["M"], s["P"]), s


@pytest.mark.parametrize("keep, f", [
    ({"p"}, lambda M, M0, P: P),                           # no tile variable kept: every p once
    ({"m1"}, lambda M, M0, P: -(-M // M0)),                # every tile holds m0 = 0
    ({"m0"}, lambda M, M0, P: min(M0, M)),                 # m0 < M in tile 0
])
def test_projection_of_a_partitioned_space(keep, f):
    """Y[p] = K[m1 * M0 + m0, p]: the only condition is the partition's
    validity m1 * M0 + m0 < M; projected onto no tile variable it adds 1."""
    c = ei.parse("rank P\npartition M -> M1, M0\ninput K[M, P]\nY[p] = K[m1 * M0 + m0, p]")
    e = c.einsums[0]
    count, why = pts.projected_points(c, e, keep)
    assert why is None
    for M, M0, P in ((7, 2, 3), (5, 8, 4), (9, 3, 2)):
        pts_ = [dict(m1=a, m0=b, p=q) for a in range(-(-M // M0)) for b in range(M0) for q in range(P)
                if a * M0 + b < M]
        brute = len({tuple(pt[v] for v in sorted(keep)) for pt in pts_})
        assert evaluate(count, resolve(c, dict(M=M, M0=M0, P=P))) == brute == f(M, M0, P), (keep, M, M0)


def test_a_dropped_condition_that_cannot_be_eliminated_counts_zero_or_one():
    """m*m % 5 == 1 ties only m (dropped): each p is kept iff some m < M
    satisfies it (m = 1 does), so the projection is P or 0."""
    c, e = einsum_over_m_p("m * m % 5 == 1")
    count, why = pts.projected_points(c, e, {"p"})
    assert why is None
    for s in SHAPES:
        assert evaluate(count, s) == brute_projection(lambda a, b: a * a % 5 == 1, s["M"], s["P"]), s
    assert evaluate(count, dict(M=1, P=3)) == 0


@pytest.mark.parametrize("pred, f", [
    ("3 >= abs(p - 2 * m)", lambda a, b: 3 >= abs(b - 2 * a)),   # `c >= |x|` in the elimination
    ("3 > abs(p - 2 * m)", lambda a, b: 3 > abs(b - 2 * a)),
    ("p <= 2 * m", lambda a, b: b <= 2 * a),                     # a lower bound ceiling(p / 2) on m
])
def test_exact_projections(pred, f):
    c, e = einsum_over_m_p(pred)
    count, why = pts.projected_points(c, e, {"p"})
    assert why is None
    for s in SHAPES + [dict(M=3, P=8), dict(M=5, P=9)]:
        assert evaluate(count, s) == brute_projection(f, s["M"], s["P"]), (pred, s)


def _assert_unproved(pred, f, shown):
    c, e = einsum_over_m_p(pred)
    count, why = pts.projected_points(c, e, {"p"})
    assert why == (f"cannot eliminate m from `{shown}` (a condition is not an interval or a congruence in it)")
    assert count == pts.points(c, e)                                   # the per-point count
    for s in SHAPES:
        assert evaluate(count, s) == brute_count(f, s["M"], s["P"]) >= brute_projection(f, s["M"], s["P"])


@pytest.mark.parametrize("pred, f, shown", [
    # m both inside and outside a floor: the bound on m still holds m
    ("m + m // 2 < p", lambda a, b: a + a // 2 < b, "m + floor(m/2) < p"),
    # a congruence and an excluded value together
    ("m % 3 == p % 3 and m != p", lambda a, b: a % 3 == b % 3 and a != b, "Ne(m, p) & Eq(Mod(m, 3), Mod(p, 3))"),
    # m != x only for a unit coefficient: 2m != p excludes no single m for odd p
    ("2 * m != p", lambda a, b: 2 * a != b, "Ne(2*m, p)"),
])
def test_unproved_projections_fall_back_to_the_point_count(pred, f, shown):
    _assert_unproved(pred, f, shown)


def test_a_disjunction_of_more_than_eight_terms_is_not_eliminated():
    """Nine disjuncts exceed _MAX_DNF_TERMS; eight are eliminated exactly."""
    nine = " or ".join(f"p == m + {k}" for k in range(9))
    shown = " | ".join(["Eq(p, m)"] + [f"Eq(p, m + {k})" for k in range(1, 9)])
    _assert_unproved(nine, lambda a, b: 0 <= b - a < 9, shown)
    c, e = einsum_over_m_p(" or ".join(f"p == m + {k}" for k in range(8)))
    count, why = pts.projected_points(c, e, {"p"})
    assert why is None
    for s in SHAPES + [dict(M=2, P=12)]:
        assert evaluate(count, s) == brute_projection(lambda a, b: 0 <= b - a < 8, s["M"], s["P"]), s


def test_a_conjunction_of_disjunctions_past_eight_dnf_terms_is_not_eliminated():
    """(3 terms) and (3 terms): 3 x 3 = 9 > 8 DNF terms, refused before the
    expansion (which would merge the repeated m == 0, m == 1 into 8)."""
    pred = "(m == 0 or m == 1 or p == m + 2) and (m == 0 or m == 1 or p == m + 3)"
    shown = "(Eq(m, 0) | Eq(m, 1) | Eq(p, m + 2)) & (Eq(m, 0) | Eq(m, 1) | Eq(p, m + 3))"
    _assert_unproved(pred, lambda a, b: a in (0, 1), shown)


# ------------------------------------------------------------ once a crash

def test_a_variable_inside_and_outside_a_floor_over_a_large_box():
    """m + m // 2 < p is no interval in m // 2 (m stays outside the floor):
    the strategies pass it on rather than build a bound that holds m."""
    c, e = einsum_over_m_p("m + m // 2 < p")
    n = 4096              # 2^24 points: past _BRUTE_FORCE_POINTS, so the strategies run
    pts.count_points.cache_clear()
    got = evaluate(pts.points(c, e), dict(M=n, P=n))
    assert got == sum(max(0, n - (a + a // 2) - 1) for a in range(n))

"""One term per count (issue 19): `Kept[m <= p | m < M, p < P]` and
`Kept[m <= p | p < P, m < M]` are the same number of points, so they must be
one sympy term and their sums merge; canonicalising never changes a count."""
import itertools

import numpy as np
import sympy

import einsum_ir as ei
from einsum_ir.analysis import Kept, analyze, evaluate

m, p = sympy.symbols("m p", integer=True)
M, P, W, D = sympy.symbols("M P W D", positive=True, integer=True)


def test_order_of_limits_and_direction_of_bounds_give_one_term():
    a = Kept(m <= p, (m, M), (p, P))
    b = Kept(p >= m, (p, P), (m, M))
    assert a == b
    assert a + b == 2 * a
    assert sympy.srepr(a) == sympy.srepr(b)
    window = Kept(sympy.And(m <= p, p - m < W), (p, P), (m, M))
    assert window == Kept(sympy.And(p - m < W, p >= m), (m, M), (p, P))


def test_floor_over_one_denominator():
    a = Kept(m < sympy.floor((P - 1) / D), (m, M))
    b = Kept(m < sympy.floor(P / D - 1 / D), (m, M))
    assert a == b


def test_counts_unchanged_against_enumeration():
    """Every ordering evaluates to the count of a numpy mesh."""
    for n_m, n_p, w in [(7, 5, 3), (16, 16, 4), (1, 9, 2)]:
        mm, pp = np.meshgrid(np.arange(n_m), np.arange(n_p), indexing="ij")
        want = int(np.count_nonzero((mm <= pp) & (pp - mm < w)))
        pred = sympy.And(m <= p, p - m < W)
        for lims in itertools.permutations([(m, M), (p, P)]):
            k = Kept(pred, *lims)
            assert evaluate(k, dict(M=n_m, P=n_p, W=w)) == want


def test_library_formulas_carry_each_count_once():
    """In the causal and windowed designs every Kept of the op counts is a
    distinct count: no two have the same predicate over the same limits."""
    for name in ("cab-self-causal", "sliding-window"):
        a = analyze(ei.library.load(name))
        atoms = set().union(*(sympy.sympify(v).atoms(Kept) for v in a.ops.values()))
        keys = [(k.args[0], frozenset(k.args[1:])) for k in atoms]
        assert len(keys) == len(set(keys)) >= 1, name
        assert all(list(k.args[1:]) == sorted(k.args[1:], key=lambda t: str(t[0])) for k in atoms)

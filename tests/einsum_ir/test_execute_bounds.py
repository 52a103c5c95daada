"""Bounds checks of the executor honour predicates and partition ends.

An access out of its tensor's bounds is an error at a point that exists (kept
by the predicate, inside every partitioned rank) and is never evaluated at a
point that does not. Each error must name the access, the rank, the index
expression, the value, the side (below 0 / past the end) and one offending
point; the tests read that point back from the message and check, by hand,
that it exists and that the index really takes the reported value there.
The oracle (einsum_ir.oracle) must agree: same answer, or an error too.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import einsum_ir as ei
from einsum_ir import oracle

REPORT = re.compile(r"(?P<expr>[^:;]+?) = (?P<value>-?\d+) is (?P<side>past the end|below 0), at (?P<at>[a-z0-9=, ]+)")


def reports(err: Exception) -> list[dict]:
    """Each offending side the message names: expression, value, side, point."""
    first = str(err).splitlines()[0]
    found = []
    for m in REPORT.finditer(first):
        at = dict(kv.split("=") for kv in m["at"].replace(" ", "").split(","))
        found.append(dict(expr=m["expr"].strip(), value=int(m["value"]), side=m["side"],
                          at={k: int(v) for k, v in at.items()}))
    return found


def both_fail(c, inputs, shapes=None):
    with pytest.raises(ei.ExecutionError) as ex:
        ei.execute(c, inputs, shapes)
    with pytest.raises(oracle.OracleBoundsError):
        oracle.evaluate(c, inputs, shapes)
    return ex.value


def both_agree(c, inputs, shapes=None):
    got = ei.execute(c, inputs, shapes, keep="all")
    want = oracle.evaluate(c, inputs, shapes)
    for name in want:
        np.testing.assert_allclose(np.asarray(got[name], float), np.asarray(want[name], float),
                                   rtol=1e-12, equal_nan=True, err_msg=name)
    return got


# ------------------------------------------------------------------ the reported bugs

RELATIVE = """
rank H, M, P
input S[H, M, P]: f64
input T[H, R]: f64
O[h, m, p] = S[h, m, p] * T[h, p - m + 1] where m <= p
"""


def test_causal_relative_table_names_the_real_overflow():
    # p - m + 1 runs from 2 - M (removed points) to P (kept: m = 0, p = P - 1)
    H, M, P = 2, 20, 6
    c = ei.parse(RELATIVE)
    inputs = {"S": np.ones((H, M, P)), "T": np.ones((H, P))}      # one entry too few
    err = both_fail(c, inputs)
    (r,) = reports(err)
    assert r["side"] == "past the end" and r["expr"].endswith("p - m + 1")
    assert "below 0" not in str(err)                              # negatives are only at removed points
    kept = [p - m + 1 for m in range(M) for p in range(P) if m <= p]
    assert r["value"] == max(kept) == P
    at = r["at"]
    assert at["m"] <= at["p"] and at["p"] - at["m"] + 1 == r["value"]
    assert "T[h, p - m + 1]" in str(err) and "rank 2 (R)" in str(err)
    # with the table one longer, it runs, and the oracle agrees
    out = both_agree(c, {"S": np.ones((H, M, P)), "T": np.arange(H * (P + 1.0)).reshape(H, P + 1)})
    for m, p in [(0, 0), (0, P - 1), (3, 4), (5, 5)]:
        assert out["O"][1, m, p] == (P + 1) + (p - m + 1)


def test_read_past_the_end_under_a_where_clause_is_not_clipped():
    c = ei.parse("rank N\ninput X[N]: f64\nY[n] = X[n + 1] where n >= 0\n")
    err = both_fail(c, {"X": np.array([1.0, 2.0, 3.0, 4.0])})
    (r,) = reports(err)
    assert r == dict(expr="n + 1", value=4, side="past the end", at={"n": 3})


# ------------------------------------------------------------------ which points exist

def test_out_of_range_only_at_removed_points_runs():
    c = ei.parse("rank N\ninput X[N]: f64\nY[n] = X[n - 1] + X[n + 1] where n >= 1 and n < N - 1\n")
    out = both_agree(c, {"X": np.arange(6.0)})
    assert list(out["Y"]) == [0.0] + [2.0 * n for n in range(1, 5)] + [0.0]


def test_both_sides_overrun_are_both_named():
    c = ei.parse("rank N, K\ninput X[N]: f64\ninput W[K]: f64\nY[n] = X[n + k - 1] * W[k] where n + k != 2\n")
    err = both_fail(c, {"X": np.ones(4), "W": np.ones(3)})
    found = {r["side"]: r for r in reports(err)}
    assert set(found) == {"below 0", "past the end"}
    for r in found.values():
        n, k = r["at"]["n"], r["at"]["k"]
        assert n + k != 2 and n + k - 1 == r["value"]
    kept = [n + k - 1 for n in range(4) for k in range(3) if n + k != 2]
    assert found["below 0"]["value"] == min(kept) and found["past the end"]["value"] == max(kept)


def test_masks_and_indices_of_different_shapes():
    # the index depends on n only, the predicate on k only: they broadcast to [N, K]
    c = ei.parse("rank N, K\ninput X[N]: f64\ninput W[K]: f64\nY[n, k] = X[n + 1] * W[k] where k < K - 1\n")
    (r,) = reports(both_fail(c, {"X": np.ones(4), "W": np.ones(3)}))
    assert r["value"] == 4 and r["at"]["n"] == 3 and r["at"]["k"] < 2
    # the index depends on both, the predicate on n only: removed rows are fine
    c = ei.parse("rank N, K\ninput X[N]: f64\ninput W[K]: f64\nY[n, k] = X[n + k] * W[k] where n < 2\n")
    out = both_agree(c, {"X": np.arange(4.0), "W": np.ones(3)})
    assert out["Y"][1, 2] == 3.0 and out["Y"][2, 0] == 0.0
    # a predicate of shape symbols only (a scalar mask) removes everything or nothing
    c = ei.parse("rank N\ninput X[N]: f64\nY[n] = X[n + 1] where W > 2\n")
    assert list(both_agree(c, {"X": np.ones(4)}, {"W": 1})["Y"]) == [0.0] * 4
    both_fail(c, {"X": np.ones(4)}, {"W": 3})


def test_a_summed_product_checks_only_kept_points():
    # a causal convolution: the contraction path of the executor
    c = ei.parse("rank M, P\ninput T[P]: f64\ninput X[M]: f64\nS[p] = T[p - m] * X[m] where m <= p\n")
    T, X = np.arange(1.0, 6.0), np.arange(2.0, 7.0)
    out = both_agree(c, {"T": T, "X": X})
    assert list(out["S"]) == [sum(T[p - m] * X[m] for m in range(p + 1)) for p in range(5)]
    c = ei.parse("rank M, P\ninput T[P]: f64\ninput X[M]: f64\nS[p] = T[p - m + 1] * X[m] where m <= p\n")
    (r,) = reports(both_fail(c, {"T": T, "X": X}))
    assert r["value"] == 5 and r["at"]["p"] - r["at"]["m"] + 1 == 5


PARTITIONED = """
partition M -> M1, M0
input K[M]: f64
input Mask[M]: bool
BK[m1, m0] = K[m1 * M0 + m0 + SHIFT]
MK[m1, m0] = K[m1 * M0 + m0] where Mask[m1 * M0 + m0]
"""


def test_points_past_the_end_of_a_partition_are_never_read():
    # M = 5, M0 = 2: m1 = 2, m0 = 1 (m = 5) does not exist, in the map and in the predicate
    c = ei.parse(PARTITIONED)
    K, mask = np.arange(10.0, 15.0), np.array([True, False, True, True, False])
    out = both_agree(c, {"K": K, "Mask": mask}, {"M0": 2, "SHIFT": 0})
    assert out["BK"].tolist() == [[10.0, 11.0], [12.0, 13.0], [14.0, 0.0]]
    assert out["MK"].tolist() == [[10.0, 0.0], [12.0, 13.0], [0.0, 0.0]]
    # shifted by one, the last existing point m = 4 reads K[5]
    (r,) = reports(both_fail(c, {"K": K, "Mask": mask}, {"M0": 2, "SHIFT": 1}))
    assert r["value"] == 5 and r["at"] == {"m1": 2, "m0": 0}


def test_recurrence_error_names_the_step():
    c = ei.parse("rank N\ninput X[N]: f64\noutput A[N+1]: f64\nA[0] = 0\nA[n + 1] = A[n] + X[n + 1]\n")
    (r,) = reports(both_fail(c, {"X": np.ones(4)}))
    assert r["at"] == {"n": 3} and r["value"] == 4


# ------------------------------------------------------------------ the predicate's own reads

def test_predicate_read_guarded_by_and_or_is_evaluated_only_where_needed():
    X = np.array([3.0, 1.0, 4.0, 1.0, 5.0])
    c = ei.parse("rank N\ninput X[N]: f64\nY[n] = X[n] where n < N - 1 and X[n + 1] > X[n]\n")
    out = both_agree(c, {"X": X})
    assert list(out["Y"]) == [X[n] if n < 4 and X[n + 1] > X[n] else 0.0 for n in range(5)]
    c = ei.parse("rank N\ninput X[N]: f64\nY[n] = X[n] where n == N - 1 or X[n + 1] > X[n]\n")
    out = both_agree(c, {"X": X})
    assert list(out["Y"]) == [X[n] if n == 4 or X[n + 1] > X[n] else 0.0 for n in range(5)]


def test_predicate_read_out_of_range_at_an_existing_point_is_an_error():
    # the guard after the read does not protect it: the read decides first
    c = ei.parse("rank N\ninput X[N]: f64\nY[n] = X[n] where X[n + 1] > X[n] and n < N - 1\n")
    (r,) = reports(both_fail(c, {"X": np.arange(5.0)}))
    assert r["at"] == {"n": 4} and r["value"] == 5


def test_map_reads_are_checked_in_both_branches_of_select():
    # select evaluates both branches at every existing point
    c = ei.parse("rank N\ninput X[N]: f64\nY[n] = select(n < N - 1, X[n + 1], 0)\n")
    (r,) = reports(both_fail(c, {"X": np.arange(5.0)}))
    assert r["at"] == {"n": 4}


def test_zero_divisor_in_an_index_is_an_error():
    c = ei.parse("rank N\ninput X[N]: f64\nY[n] = X[n / S]\n")
    with pytest.raises(ei.ExecutionError, match="division by zero"):
        ei.execute(c, {"X": np.ones(4)}, {"S": 0})
    with pytest.raises(oracle.OracleError, match="division by zero"):
        oracle.evaluate(c, {"X": np.ones(4)}, {"S": 0})


def test_products_that_overflow_only_at_removed_points():
    # 1e200 * 1e200 is inf; a summed product must not let inf * 0 at a removed
    # point turn an empty row (0) or a kept inf into NaN
    c = ei.parse("rank M, P\ninput A[M, P]: f64\ninput B[M, P]: f64\nS[p] = A[m, p] * B[m, p] where m < p\n")
    big = np.full((3, 3), 1e200)
    out = both_agree(c, {"A": big, "B": big})
    assert out["S"][0] == 0.0 and np.all(np.isinf(out["S"][1:]))

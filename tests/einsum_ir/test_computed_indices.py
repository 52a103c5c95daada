"""Computed indices (docs/notation.md, Computed indices): an access index
may use comparisons and conditions (0/1), select, min, max, clip, abs, and
floor( ) or ceil( ) of a real-valued expression, `let` calls included.

The executor is checked against plain Python loops written here (math.floor
of the true quotient, Python's ints); the oracle (a scalar interpreter)
agrees; an index that leaves its tensor or a floor( ) that is not finite is
an error at a point that exists (never clipped); the validator refuses a
real-valued index without floor( ) or ceil( ), at its place; the printer
round-trips; the analyses treat a computed index like a gather (passes over
the indexed rank refused by name, the index's work counted as 'int' once per
value of its variables). Also: aliases of one rank accept each other's
index variables (the repeated P2 of DIST[B, P, P] read at m, M = P), and a
misspelt mask name is reported where it is written."""
import math

import numpy as np
import pytest
import sympy

from einsum_ir import ExecutionError, ParseError, ValidationError, execute, parse, random_inputs
from einsum_ir.analysis import op_counts, passes
from einsum_ir.oracle import evaluate
from einsum_ir.sym import shape_symbol

T5 = """\
rank H, P, NBK
rank M = P
input TB[H, NBK]: f32
let exact() = NBK // 4
let far(n) = min(exact() + floor(log(max(n, 1) / exact()) / log(MD / exact()) * (NBK // 2 - exact())), NBK // 2 - 1)
let bucket(r) = (r > 0) * (NBK // 2) + select(abs(r) < exact(), abs(r), far(abs(r)))
Y[h, m, p] = TB[h, bucket(m - p)]
"""


def t5_bucket(rel: int, nbk: int, md: int) -> int:
    """T5's bucket of key - query, in plain Python (the corpus's definition)."""
    half, exact, n = nbk // 2, nbk // 4, abs(rel)
    far = min(exact + math.floor(math.log(max(n, 1) / exact) / math.log(md / exact) * (half - exact)), half - 1)
    return (rel > 0) * half + (n if n < exact else far)


def test_t5_bucket_in_the_index_matches_a_python_loop():
    c = parse(T5, "t5.ein")
    shapes = dict(H=2, P=18, NBK=16, MD=16)
    x = random_inputs(c, shapes, seed=1)
    got = execute(c, x, shapes)["Y"]
    want = np.array([[[x["TB"][h, t5_bucket(m - p, 16, 16)] for p in range(18)] for m in range(18)]
                     for h in range(2)])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(evaluate(c, x, shapes)["Y"], want)     # the scalar oracle agrees
    assert len({t5_bucket(r, 16, 16) for r in range(-17, 18)}) == 15      # every bucket but 8 (r > 0, |r| = 0)


MIXED = """\
rank M, P, NS
input S[NS, P]: f32
input T[2, P]: f32
Y[m, p] = S[clip(m - 2, 0, NS - 1), p] + S[ceil(m / 3), select(m < p, m, p)] + T[m < p, abs(p - m) % P] \
    + S[clip(min(m, p), 1, NS) - 1, floor(p * 0.5) + (m >= 1 and p >= 1)]
"""


def test_conditions_select_clip_abs_ceil_floor_in_indices_match_a_python_loop():
    c = parse(MIXED, "mixed.ein")
    shapes = dict(M=9, P=7, NS=4)
    x = random_inputs(c, shapes, seed=2)
    s, t = x["S"], x["T"]
    want = np.zeros((9, 7))
    for m in range(9):
        for p in range(7):
            want[m, p] = (s[min(max(m - 2, 0), 3), p] + s[math.ceil(m / 3), m if m < p else p]
                          + t[int(m < p), abs(p - m) % 7]
                          + s[min(max(min(m, p), 1), 4) - 1, math.floor(p * 0.5) + int(m >= 1 and p >= 1)])
    np.testing.assert_allclose(execute(c, x, shapes)["Y"], want, rtol=1e-12)
    np.testing.assert_allclose(evaluate(c, x, shapes)["Y"], want, rtol=1e-12)


def test_slash_is_floor_division_outside_floor_and_exact_division_inside():
    """`S[m / 3]` and `S[floor(m / 3)]` read the same element; `ceil(m / 3)`
    rounds the exact quotient up (it would be m // 3 under floor division)."""
    c = parse("rank M, N\ninput S[N]: f32\nA[m] = S[m / 3]\nB[m] = S[floor(m / 3)]\nC[m] = S[ceil(m / 3)]\n",
              "div.ein")
    x = random_inputs(c, dict(M=7, N=3), seed=0)
    out = execute(c, x, dict(M=7, N=3))
    np.testing.assert_array_equal(out["A"], x["S"][np.arange(7) // 3])
    np.testing.assert_array_equal(out["B"], out["A"])
    np.testing.assert_array_equal(out["C"], x["S"][[math.ceil(m / 3) for m in range(7)]])


def test_a_computed_index_out_of_range_is_an_error_at_a_point_that_exists():
    c = parse("rank M, N\ninput S[N]: f32\nY[m] = S[select(m > 2, m + 1, 0)] where m != 3\n", "oob.ein")
    x = random_inputs(c, dict(M=5, N=5), seed=0)
    with pytest.raises(ExecutionError, match=r"index out of range: .* = 5 is past the end, at m=4") as e:
        execute(c, x, dict(M=5, N=5))
    assert (e.value.line, e.value.column) == (3, 8)
    ok = execute(c, x, dict(M=4, N=5))["Y"]            # m = 3 (-> 4) is removed: nothing to refuse
    np.testing.assert_array_equal(ok, x["S"][[0, 0, 0, 0]] * np.array([1, 1, 1, 0]))


def test_a_floor_that_is_not_finite_is_an_error_naming_the_index_and_point():
    c = parse("rank M, N\ninput S[N]: f32\nY[m] = S[floor(log(m))]\n", "inf.ein")
    with pytest.raises(ExecutionError, match=r"computed index floor\(log\(m\)\) = -inf .* at m=0") as e:
        execute(c, random_inputs(c, dict(M=3, N=3), seed=0), dict(M=3, N=3))
    assert (e.value.line, e.value.column) == (3, 10)


H = "rank M, P\ninput S[M, P]: f32\ninput X[M]: f32\ninput I[M]: i32\n"


@pytest.mark.parametrize("line, col, words", [
    ("Y[m, p] = S[log(m + 1), p]", 13, "uses log outside floor( ) and ceil( )"),
    ("Y[m, p] = S[m * 0.5, p]", 17, "uses 0.5, which is not a whole number"),
    ("Y[m, p] = S[floor(X[m]), p]", 19, "must hold integers (i32 or i8), but X is f32"),
    ("Y[m, p] = S[select(I[m], 0, 1), p]", 20, "select expects a condition here, got a number: I[m]"),
    ("Y[m, p] = S[m ^ (0 - 1), p]", 13, "not a whole number by its form"),
    ("Y[m, p] = S[floor(m, p), p]", 13, "function 'floor' takes 1 argument, got 2"),
])
def test_a_real_valued_or_ill_typed_index_is_refused_where_it_is_written(line, col, words):
    with pytest.raises((ValidationError, ParseError)) as e:
        parse(H + line + "\n", "bad.ein")
    assert (e.value.line, e.value.column) == (5, col), str(e.value)
    assert words in e.value.message


@pytest.mark.parametrize("text", [T5, MIXED, "rank M, N\ninput S[N]: f32\nC[m] = S[ceil(m / 3) + floor(m // 2 * 0.5)]\n"])
def test_print_parse_round_trip(text):
    c = parse(text, "rt.ein")
    again = parse(str(c), "rt2.ein")
    assert again == c
    assert str(again) == str(c)


def test_printer_writes_exact_division_inside_floor_and_floor_division_outside():
    c = parse("rank M, N\ninput S[N]: f32\nC[m] = S[floor(m / 3) + m // 2 + floor(m // 2 / 4)]\n", "p.ein")
    assert "S[floor(m / 3) + m / 2 + floor(m // 2 / 4)]" in str(c)


def test_passes_over_a_rank_read_at_a_computed_index_are_refused_by_name():
    c = parse(T5, "t5.ein")
    r = passes(c, "NBK")
    assert r.passes is None and "computed index" in r.unstreamable and "TB[h" in r.unstreamable
    assert passes(c, "M").passes == 1          # the index's own variables are walked as usual


def test_a_computed_index_counts_as_integer_work_once_per_value_of_its_variables():
    """`T[h, clip(m - p, 0, 3)]` inside an Einsum over (b, h, m, p): the sub and
    the clip are two integer operations per (m, p), hoisted out of b and h;
    the plain index m - p of the second read is addressing (not counted)."""
    c = parse("rank B, H, M, P\ninput S[B, H, M, P]: f32\ninput T[H, 4]: f32\ninput U[H, M]: f32\n"
              "Y[b, h, m, p] = S[b, h, m, p] * T[h, clip(m - p, 0, 3)] + U[h, m - 0]\n", "cnt.ein")
    ops = op_counts(c)
    m, p = shape_symbol("M"), shape_symbol("P")
    assert sympy.simplify(ops["int"] - 2 * m * p) == 0
    assert "abs" not in ops and "select" not in ops and "compare" not in ops


# ---- aliases of one rank -------------------------------------------------------------------

GRAPH = """\
rank B, P, ND
rank M = P
input DIST[B, P, P]: i32
input SPB[ND]: f32
input S[B, M, P]: f32
Y[b, m, p] = S[b, m, p] + SPB[DIST[b, p, m]]
"""


def test_two_aliases_of_one_rank_accept_each_others_variables():
    """DIST's second P is the alias P2 = P, and M = P: m indexes the P2 slot."""
    c = parse(GRAPH, "graph.ein")
    assert c.tensor("DIST").ranks == ("B", "P", "P2")
    shapes = dict(B=2, P=5, ND=4)
    x = random_inputs(c, shapes, seed=0)
    x["DIST"] = np.random.default_rng(0).integers(0, 4, size=(2, 5, 5)).astype(np.int32)
    got = execute(c, x, shapes)["Y"]
    want = np.array([[[x["S"][b, m, p] + x["SPB"][x["DIST"][b, p, m]] for p in range(5)] for m in range(5)]
                     for b in range(2)])
    np.testing.assert_allclose(got, want)
    assert parse(str(c)) == c


def test_ranks_of_equal_extent_that_are_not_aliases_still_refuse_each_others_variables():
    text = GRAPH.replace("rank M = P", "rank M")
    with pytest.raises(ValidationError, match=r"DIST's rank 3 is P2, indexed by m \(rank M\)") as e:
        parse(text, "free.ein")
    assert e.value.line == 6


def test_aliases_through_a_chain_are_one_rank():
    c = parse("rank P\nrank J = P\nrank K = J\ninput S[P]: f32\nY[k] = S[k] * 2\n", "chain.ein")
    x = random_inputs(c, dict(P=4), seed=0)
    np.testing.assert_allclose(execute(c, x, dict(P=4))["Y"], 2 * x["S"])


# ---- mask names ----------------------------------------------------------------------------

MASKED = "rank M, P\ninput S[M, P]: f32\nmask causal = m <= p\n"


def test_a_misspelt_mask_is_reported_where_it_is_written_with_the_name_it_resembles():
    with pytest.raises(ValidationError) as e:
        parse(MASKED + "Y[p] = S[m, p] where causl and m < 3\n", "mask.ein")
    assert (e.value.line, e.value.column) == (4, 22)
    assert "unknown name 'causl'" in e.value.message and "did you mean 'causal'?" in e.value.message
    assert "never used" not in e.value.message


def test_a_mask_that_is_really_unused_is_still_an_error_at_its_definition():
    with pytest.raises(ValidationError, match="mask 'causal' is never used") as e:
        parse(MASKED + "Y[p] = S[m, p]\n", "mask.ein")
    assert (e.value.line, e.value.column) == (3, 6)


def test_a_mask_used_above_its_definition_says_so():
    with pytest.raises(ValidationError, match="mask 'causal' is used before its definition") as e:
        parse("rank M, P\ninput S[M, P]: f32\nY[p] = S[m, p] where causal\nmask causal = m <= p\n", "mask.ein")
    assert (e.value.line, e.value.column) == (3, 22)


def test_an_unknown_name_unlike_any_mask_keeps_the_rank_message():
    with pytest.raises(ValidationError, match="index variable zq has no rank ZQ"):
        parse(MASKED + "Y[p] = S[m, p] where causal and zq < 3\n", "mask.ein")


def test_a_mask_with_a_division_in_an_index_is_the_predicate_that_uses_it():
    """The mask's condition is normalised as its uses are (`/` in an index is
    floor division), so it is found used, executes and prints by name."""
    c = parse("rank M, P, N\ninput S[M, P]: f32\ninput X[N]: i32 in [0, 1]\nmask g = X[m / 2] > 0 and m <= p\n"
              "Y[p] = S[m, p] where g\n", "maskdiv.ein")
    assert str(c).splitlines()[-1] == "Y[p] = sum[m] S[m, p] where g" and parse(str(c)) == c
    x = random_inputs(c, dict(M=6, P=4, N=3), seed=0)
    keep = np.array([[x["X"][m // 2] > 0 and m <= p for p in range(4)] for m in range(6)])
    np.testing.assert_allclose(execute(c, x, dict(M=6, P=4, N=3))["Y"], (x["S"] * keep).sum(axis=0))


def test_a_misspelt_mask_under_an_explicit_reduction_names_the_mask_it_resembles():
    # with `max[m]` the misspelt word is first taken for a reduced index; the message says which mask
    with pytest.raises(ValidationError) as e:
        parse(MASKED + "Y[p] = max[m] S[m, p] where causl\n", "mask.ein")
    assert "index causl is absent from the output" in e.value.message
    assert "did you mean the mask 'causal' defined at mask.ein:3:6" in e.value.message
    with pytest.raises(ValidationError) as e:                   # a real index of a rank: no mask hint
        parse("rank M, P, K\ninput S[M, P, K]: f32\nmask causal = m <= p\nY[p] = max[m] S[m, p, k] where causal\n")
    assert "index k is absent" in e.value.message and "did you mean" not in e.value.message

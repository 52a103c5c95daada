"""The oracle (einsum_ir.oracle) against hand computations, then the numpy
executor against the oracle on every library design at tiny shapes.

Expected values in the first part are written from the mathematics with
plain Python loops (or numpy slicing), never through einsum_ir. The second
part needs no expected values: two evaluators that share nothing but the IR
must agree on every tensor."""
from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest

import einsum_ir as ei
from einsum_ir import oracle
from einsum_ir.shapes import symbols_used


def run(src: str, inputs: dict, shapes: dict | None = None) -> dict:
    return oracle.evaluate(ei.parse(src), inputs, shapes)


# ------------------------------------------------------------------ by hand

def test_causal_mask_map_and_reductions():
    rng = np.random.default_rng(0)
    S = rng.standard_normal((4, 5))                      # [M, P]
    out = run("""
rank M, P
input S[M, P]: f64
C[m, p] = S[m, p] where m <= p
X[m, p] = max[] S[m, p] where m <= p
R[p] = S[m, p] where m <= p
G[p] = max[m] S[m, p] where m <= p
""", {"S": S})
    for m, p in itertools.product(range(4), range(5)):
        assert out["C"][m, p] == (S[m, p] if m <= p else 0.0)
        assert out["X"][m, p] == (S[m, p] if m <= p else -math.inf)
    for p in range(5):
        kept = [S[m, p] for m in range(4) if m <= p]
        assert out["R"][p] == pytest.approx(sum(kept), rel=1e-15)
        assert out["G"][p] == max(kept)
    np.testing.assert_array_equal(out["S"], S)            # inputs come back too


def test_empty_rows_take_the_identity():
    S = np.arange(12.0).reshape(3, 4) - 5                 # [M, P]
    out = run("""
rank M, P
input S[M, P]: f64
SUM[p] = S[m, p] where m < p
MAX[p] = max[m] S[m, p] where m < p
MIN[p] = min[m] S[m, p] where m < p
""", {"S": S})
    assert (out["SUM"][0], out["MAX"][0], out["MIN"][0]) == (0.0, -math.inf, math.inf)
    for p in range(1, 4):
        col = [S[m, p] for m in range(3) if m < p]
        assert (out["SUM"][p], out["MAX"][p], out["MIN"][p]) == (sum(col), max(col), min(col))


def test_partition_whose_tile_does_not_divide():
    K = np.array([3.0, -1.0, 4.0, 1.0, -5.0])            # M = 5, M0 = 2: tiles {0,1} {2,3} {4}
    out = run("""
partition M -> M1, M0
input K[M]: f64
BK[m1, m0] = K[m1 * M0 + m0]
LM[m1] = max[m0] K[m1 * M0 + m0]
LS[m1] = BK[m1, m0]
N[m1] = 1 + 0 * K[m1 * M0 + m0]
""", {"K": K}, {"M0": 2})
    assert out["BK"].shape == (3, 2)
    for m1, m0 in itertools.product(range(3), range(2)):
        m = m1 * 2 + m0
        assert out["BK"][m1, m0] == (K[m] if m < 5 else 0.0)
    tiles = [K[0:2], K[2:4], K[4:5]]
    assert list(out["LM"]) == [max(t) for t in tiles]
    assert list(out["LS"]) == [sum(t) for t in tiles]
    assert list(out["N"]) == [len(t) for t in tiles]      # points past the end are not counted


def test_recurrence_steps_and_iterates():
    X = np.array([2.0, -1.0, 5.0, 0.5])
    out = run("""
rank N, K
input X[N]: f64
input Y[K]: f64
A[0] = 1
B[0] = 0
A[n + 1] = B[n] + X[n]
B[n + 1] = 2 * A[n] - A[n + 1]
D[n] = A[n + 1] - A[n]
L[k] = A[N] * Y[k]
""", {"X": X, "Y": np.array([1.0, -2.0])})
    a, b = [1.0], [0.0]
    for n in range(4):                                   # A and B form a cycle through previous iterates
        a.append(b[n] + X[n])
        b.append(2 * a[n] - a[n + 1])
    assert list(out["A"]) == a and list(out["B"]) == b
    assert list(out["D"]) == [a[n + 1] - a[n] for n in range(4)]
    assert list(out["L"]) == [a[4], -2 * a[4]]


def test_running_max_over_tiles():
    K = np.array([0.5, 2.0, -3.0, 7.0, 1.0])
    out = run("""
partition M -> M1, M0
input K[M]: f64
output RM[M1+1]: f64
RM[0] = -inf
LM[m1] = max[m0] K[m1 * M0 + m0]
RM[m1 + 1] = max(RM[m1], LM[m1])
""", {"K": K}, {"M0": 2})
    assert list(out["RM"]) == [-math.inf, 2.0, 7.0, 7.0]


def test_gqa_integer_division_in_an_index():
    K = np.arange(6.0).reshape(2, 3)                     # [KH, M]
    Q = np.ones((4, 3))
    out = run("""
rank H, M
rank KH = H / G
input K[KH, M]: f64
input Q[H, M]: f64
O[h, m] = Q[h, m] * K[h / G, m]
""", {"K": K, "Q": Q}, {"G": 2})
    for h, m in itertools.product(range(4), range(3)):
        assert out["O"][h, m] == K[h // 2, m]


def test_floor_division_and_modulo_of_values_and_coordinates():
    X = np.array([-7.0, -0.5, 3.5, 7.0])
    out = run("""
rank N
input X[N]: f64
F[n] = X[n] // 2
R[n] = X[n] % 2
C[n] = (n - 2) // 3 + (n - 2) % 3
""", {"X": X})
    assert list(out["F"]) == [math.floor(x / 2) for x in X]
    assert list(out["R"]) == [x - 2 * math.floor(x / 2) for x in X]
    assert list(out["C"]) == [math.floor((n - 2) / 3) + ((n - 2) - 3 * math.floor((n - 2) / 3)) for n in range(4)]


def test_alias_rank_pairs_two_positions_of_a_tile():
    K = np.arange(1.0, 6.0)
    out = run("""
partition M -> M1, M0
rank J = M0
input K[M]: f64
A[m1, m0] = K[m1 * M0 + j] where j <= m0
""", {"K": K}, {"M0": 2})
    for m1, m0 in itertools.product(range(3), range(2)):
        want = sum(K[m1 * 2 + j] for j in range(2) if j <= m0) if m1 * 2 + m0 < 5 else 0.0
        assert out["A"][m1, m0] == want


def test_bool_mask_tensor_and_short_circuit_guard():
    X = np.array([1.0, 5.0, 2.0, 8.0])
    keep = np.array([True, False, True, True])
    out = run("""
rank N
input X[N]: f64
input KEEP[N]: bool
Y[n] = X[n] where KEEP[n]
Z[n] = X[n] where n < N - 1 and X[n + 1] > X[n]
""", {"X": X, "KEEP": keep})
    assert list(out["Y"]) == [x if k else 0.0 for x, k in zip(X, keep)]
    assert list(out["Z"]) == [X[n] if n < 3 and X[n + 1] > X[n] else 0.0 for n in range(4)]


def test_out_of_bounds_at_an_existing_point_names_everything():
    c = ei.parse("rank N, K\ninput X[N]: f64\ninput W[K]: f64\nY[n] = X[n + 1] * W[k] where k < 1\n")
    with pytest.raises(oracle.OracleBoundsError) as info:
        oracle.evaluate(c, {"X": np.ones(4), "W": np.ones(3)})
    msg = str(info.value)
    for part in ("X[n + 1]", "rank 1 (N)", "n + 1 = 4", "past the end", "n=3", "k=0", "Y"):
        assert part in msg, (part, msg)
    assert info.value.line == 4
    assert isinstance(info.value, ei.ExecutionError)


def test_out_of_bounds_only_at_removed_points_is_not_evaluated():
    out = run("rank N\ninput X[N]: f64\nY[n] = X[n - 1] + X[n + 1] where n >= 1 and n < N - 1\n",
              {"X": np.arange(5.0)})
    assert list(out["Y"]) == [0.0] + [(n - 1) + (n + 1) for n in range(1, 4)] + [0.0]


def test_refuses_large_shapes():
    c = ei.load("attention-3pass")
    shapes = dict(B=1, H=8, M=64, P=64, E=16, F=16)
    with pytest.raises(oracle.OracleTooLarge, match="points"):
        oracle.evaluate(c, ei.random_inputs(c, shapes), shapes)


def test_missing_symbol_and_conflicting_shapes_are_errors():
    c = ei.parse("rank N\ninput X[N]: f64\nY[n] = X[n] * W\n")
    with pytest.raises(ei.ShapeError, match="W"):
        oracle.evaluate(c, {"X": np.ones(3)})
    with pytest.raises(ei.ShapeError, match="conflicting"):
        oracle.evaluate(c, {"X": np.ones(3)}, {"N": 4, "W": 1})


def test_operator_table_covers_the_vocabulary():
    from einsum_ir.ops import RULES
    assert set(RULES) <= set(oracle.VALUE_OPS)


SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, -2.5, 3.0, 40.0, -40.0, 1e-310, math.inf, -math.inf, math.nan,
           800.0, -800.0]
WHOLE = [0.0, 1.0, 2.0, 3.0, 5.0, 12.0, 62.0, 63.0, -1.0, -7.0, 2.0 ** 62, 2.0 ** 63, -2.0 ** 63]


def _operators():
    from einsum_ir.ops import RULES
    return sorted(RULES)


@pytest.mark.parametrize("name", _operators())
def test_operators_at_special_values_follow_ieee(name):
    """Every operator of the table, the oracle's plain-Python rule against
    the executor's numpy one, at values where Python's math would throw or
    round differently (inf, nan, -0, overflow, subnormals; whole numbers for
    the bitwise ones, bools for and/or/not): the oracle never raises and
    gives numpy's IEEE answer. sigmoid is the exception numpy gets wrong far
    out: its tanh form rounds sigmoid(-40) = 4.2e-18 to 0, which an
    absolute tolerance allows."""
    from einsum_ir.ops import RULES
    rule, fn = RULES[name], oracle.VALUE_OPS[name]
    values = [False, True] if rule.group == "logic" else WHOLE if rule.group == "bitwise" else SPECIAL
    with np.errstate(all="ignore"):
        for args in itertools.product(values, repeat=rule.arity):
            try:
                want = rule.numpy(*(np.array([a]) for a in args))[0]
            except ValueError as err:           # a shift count out of range: both refuse, alike
                with pytest.raises(ValueError, match=re.escape(str(err))):
                    fn(*args)
                continue
            got = fn(*args)
            assert isinstance(got, (bool, float, int)), (name, args, got)
            want, got = float(want), float(got)
            assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-12, abs=1e-17), \
                (name, args, got, want)
            if got == want == 0 and name not in ("max", "min", "clip"):    # which zero of max(0, -0): unspecified
                assert math.copysign(1, got) == math.copysign(1, want), (name, args, "sign of zero", got, want)


# ------------------------------------------------------------------ executor vs oracle

SMALL = dict(B=1, H=2, M=5, P=4, E=3, F=2, M0=2, W=2, G=2, D=2, R=2, N=2, NS=1, TQ=2, TK=3, HS=1, TOPK=1,
             PY=3, PX=3, WY=3, WX=3, STY=1, STX=1, DLY=1, DLX=2, ST=1, DL=1, NP=4, BS=2)


def tiny_shapes(c) -> dict:
    """A small value for every free symbol of the design (derived ranks and
    tile counts follow from them); query heads twice the group size."""
    derived = {r.name for r in c.ranks if r.definition is not None or r.part == "outer"}
    free = [s for s in symbols_used(c) if s not in derived]
    missing = [s for s in free if s not in SMALL]
    assert not missing, f"{c.name}: give the test a value for {missing}"
    shapes = {s: SMALL[s] for s in free}
    if "G" in shapes and "H" in shapes:
        shapes["H"] = 2 * shapes["G"]
    return shapes


def positive_inputs(c, shapes, seed):
    """Uniform in [0.2, 1.2): gates and decays whose log must be finite
    (integer tables, a block table or lengths, as drawn)."""
    rng = np.random.default_rng(seed)
    normal = ei.random_inputs(c, shapes, seed=seed)
    return {k: v if v.dtype == bool or c.tensor(k).dtype in ("i32", "i8") else rng.uniform(0.2, 1.2, v.shape)
            for k, v in normal.items()}


def assert_same(c, got: dict, want: dict):
    assert set(got) == set(want) == {t.name for t in c.tensors}
    for name in want:
        a, b = np.asarray(got[name], dtype=np.float64), np.asarray(want[name], dtype=np.float64)
        assert a.shape == b.shape, (c.name, name, a.shape, b.shape)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{c.name}: NaN positions of {name}")
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=f"{c.name}: {name}")


@pytest.mark.parametrize("name", ei.library.names())
def test_executor_agrees_with_the_oracle_on_every_design(name):
    c = ei.load(name)
    shapes = tiny_shapes(c)
    for inputs in (ei.random_inputs(c, shapes, seed=3), positive_inputs(c, shapes, seed=4)):
        want = oracle.evaluate(c, inputs, shapes)
        assert_same(c, ei.execute(c, inputs, shapes, keep="all"), want)
    for t in c.outputs:   # positive inputs: every output is a number, so the comparison means something
        assert np.all(np.isfinite(want[t.name])), (name, t.name)


def test_the_library_cross_check_covers_partial_tiles_and_masks():
    """The tiny shapes exercise what the cross-check is for: a tile that does
    not divide its rank, and predicates that remove points."""
    tiled = [n for n in ei.library.names() if any(r.part == "outer" for r in ei.load(n).ranks)]
    masked = [n for n in ei.library.names() if any(e.predicate is not None for e in ei.load(n).einsums)]
    assert len(tiled) >= 5 and len(masked) >= 10
    assert SMALL["M"] % SMALL["M0"] != 0


def test_an_element_that_needs_itself_is_an_error():
    # the verifier refuses such a cascade; built directly, the oracle must not loop
    from einsum_ir.ir import Access, Cascade, Einsum, Idx, Rank, TensorDecl
    n = (Idx("n"),)
    c = Cascade((Rank("N"),),
                (TensorDecl("X", ("N",), "f64", "input"), TensorDecl("A", ("N",), "f64", "tensor"),
                 TensorDecl("B", ("N",), "f64", "output")),
                (Einsum(Access("A", n), Access("B", n) + Access("X", n)), Einsum(Access("B", n), Access("A", n))))
    with pytest.raises(oracle.OracleError, match="depends on itself"):
        oracle.evaluate(c, {"X": np.ones(3)})


_X = np.arange(6.0).reshape(2, 3)
_GATHER = "rank B, M\ninput X[B, M]: f32\ninput D[B]: i32\n"


@pytest.mark.parametrize("src, inputs, shapes, executor_says, oracle_says", [
    ("rank B, M\ninput X[B, M]: f32\nY[b] = X[b, m]\n", {"X": _X, "Z": _X}, None,
     "Z is not an input of cascade", "Z is not an input of cascade"),
    ("rank B, M\ninput X[B, M]: f32\nY[b] = X[b, m]\n", {}, None, "missing input: X", "missing input X"),
    ("rank B\npartition M -> M1, M0\ninput X[B, M]: f32\nY[b] = X[b, m1 * M0 + m0]\n", {"X": _X}, {"M0": 0},
     "extent of rank M0 must be a positive integer, got 0", "tile size M0 = 0 must be a positive integer"),
    ("rank B, M\nrank H = M / 2\ninput X[B, M]: f32\nY[b, h] = X[b, 2 * h]\n", {"X": _X}, None,
     r"rank H = M / 2 gives 1.5, not a positive integer", "extent of rank H is 1.5, not a positive integer"),
    (_GATHER + "Y[b] = X[b, m // D[b]] where m < 1\n", {"X": _X, "D": np.array([0, 1])}, None,
     r"division by zero in the index m / D\[b\]", r"division by zero in m / D\[b\]"),
    (_GATHER + "Y[b] = X[b, D[b]]\n", {"X": _X, "D": np.array([0.5, 1])}, None,
     r"the gathered index D\[b\] = 0.5 in Einsum Y is not a whole number",
     r"the gathered D\[b\] = 0.5 in Y is not a whole number"),
    (_GATHER + "Y[b] = X[b, D[b] << 62]\n", {"X": _X, "D": np.array([2, 1])}, None,
     "2 << 62 does not fit in a 64-bit integer", "2 << 62 does not fit in a 64-bit integer"),
    (_GATHER + "Y[b, m] = X[b, m] * (D[b] << 62)\n", {"X": _X, "D": np.array([1, 2])}, None,
     "2 << 62 does not fit in a 64-bit integer", "2 << 62 does not fit in a 64-bit integer"),
])
def test_the_oracle_refuses_what_the_executor_refuses(src, inputs, shapes, executor_says, oracle_says):
    """The two evaluators are independent, so each refusal of bad inputs and
    shapes is written twice: they must agree on what is refused (an extent
    `M / 2` at M = 3 was once floored by the oracle and refused by the
    executor)."""
    c = ei.parse(src)
    with pytest.raises(ei.EinError, match=executor_says) as err:
        ei.execute(c, inputs, shapes)
    if err.value.line is not None:          # located: the message quotes the line it points at
        assert src.splitlines()[err.value.line - 1] in str(err.value)
    with pytest.raises(ei.EinError, match=oracle_says):
        oracle.evaluate(c, inputs, shapes)

"""Branches of the pass analysis (einsum_ir/analysis/passes.py) that the
library designs do not take: a tile index partitioned again, a partitioned
rank read through an index expression, gathers indexed by the whole
variable of a partitioned rank, a step with no re-read, and a recurrence
whose two Einsums read two positions. Each count is checked against the
point-by-point traversal simulator (analysis/traversal.py), which shares
no rule with passes.py; refusals and explanations are compared whole.

The last section keeps designs where the analysis disagrees with the
simulator, as strict xfails (the reports of those bugs)."""
import pytest

import einsum_ir as ei
from einsum_ir.analysis import passes
from einsum_ir.analysis.traversal import simulate_passes
from einsum_ir.errors import EinError

# M not a multiple of M0 (a partial last tile), and enough tiles that a
# reduction ending a pass cannot complete in the next pass's first visit
SHAPES = [dict(M=7, M0=2), dict(M=9, M0=2), dict(M=11, M0=3)]


def agree(c, rank, expected, shapes=SHAPES, **fixed):
    """The analysis gives `expected`, and so does the simulator at each shape."""
    assert passes(c, rank).passes == expected
    for s in shapes:
        sim = simulate_passes(c, rank, {**fixed, **s})
        assert sim.passes == expected, (s, sim.why)


# ------------------------------------------------------------ the family

def test_partitioning_the_tile_index_again_is_refused_by_name():
    """M1 partitioned again has no single position per tile: refused, not
    miscounted; the refusal is about M only (P is still analysed)."""
    c = ei.parse("rank M, P\npartition M -> M1, M0\npartition M1 -> M11, M10\n"
                 "input X[M, P]\nY[p] = X[m, p]")
    with pytest.raises(EinError) as err:
        passes(c, "M")
    assert err.value.message == ("cascade: the pass analysis over M does not support partitioning its "
                                 "tile index M1 again")
    assert err.value.line is None
    assert passes(c, "P").passes == simulate_passes(c, "P", dict(M=8, M0=2, M10=2, P=3)).passes == 1


# ------------------------------------------------------------ positions of a partitioned rank

CHAIN = """rank P
partition M -> M1, M0
input K[M, P]
Y[m1, m0, p] = K[{idx}, p] where {idx} < M
G[p] = max[m1, m0] Y[m1, m0, p]
Z[m1, m0, p] = Y[m1, m0, p] - G[p]
"""


@pytest.mark.parametrize("idx", ["m1 * M0 + m0", "m0 + M0 * m1"])
def test_a_read_inside_the_visited_tile_streams(idx):
    """`m1 * M0 + m0` in either order is tile m1 (`_tile_outer`): Y streams,
    so G's max takes the one extra pass (2, not 3 as for a held Y)."""
    c = ei.parse(CHAIN.format(idx=idx))
    agree(c, "M", 2, P=2)
    assert passes(c, "M").explain() == ["pass 2: G <- max over m1 of Y; Z re-reads Y over m1, m0"]


def test_a_read_of_the_next_tile_is_held_until_the_pass_ends():
    """`m1 * M0 + M0 + m0` is no tile offset of m1 (an expression `(..) // M0`):
    Y's element of tile m1 is made in the visit of tile m1 + 1, so it is
    final only after the pass: G needs pass 2, Z pass 3. Neither reader
    re-reads a streamed tensor: both lines say 'traverses .. again'."""
    c = ei.parse(CHAIN.format(idx="m1 * M0 + M0 + m0"))
    agree(c, "M", 3, P=2)
    assert passes(c, "M").explain() == [
        "pass 2: Y <- elements of K from other positions; G traverses m1, m0 again",
        "pass 3: G <- max over m1 of Y; Z traverses m1, m0 again",
    ]


@pytest.mark.parametrize("idx", ["m + 1", "2 * m"])
def test_a_later_whole_index_of_a_partitioned_rank_is_held(idx):
    """K[m + 1], K[2 * m] over the whole variable m (a sum that is no tile
    form, a product): some Y[m] is read in a later tile's visit than m's, so
    Y is held (3 passes)."""
    c = ei.parse("rank P\npartition M -> M1, M0\ninput K[M, P]\n"
                 f"Y[m, p] = K[{idx}, p] where {idx} < M\nG[p] = max[m] Y[m, p]\nZ[m, p] = Y[m, p] - G[p]")
    agree(c, "M", 3, P=2)
    assert passes(c, "M").explain() == [
        "pass 2: Y <- elements of K from other positions; G traverses m again",
        "pass 3: G <- max over m of Y; Z traverses m again",
    ]


def test_a_held_alias_sum_explains_a_traversal_without_re_reads():
    """H sums X over j (rank J = M) kept at m: held, final after pass 1; Y
    reads only H, so its line says it traverses m again (no re-read)."""
    c = ei.parse("rank M, P\nrank J = M\ninput X[M, P]\nH[m, p] = X[j, p]\nY[m, p] = H[m, p] * 2")
    agree(c, "M", 2, shapes=[dict(M=5), dict(M=7)], P=2)
    assert passes(c, "M").explain() == [
        "pass 2: H <- sum over j of X (rank J = M: a reduction over the whole fiber); Y traverses m again"]


# ------------------------------------------------------------ gathers by a partitioned rank

@pytest.mark.parametrize("idx", ["T[m]", "T[m] + m // M0"])
def test_a_gather_by_the_whole_variable_is_read_in_its_tile(idx):
    """X[T[m], p] (X over N, outside M's family) is read during the visit of
    tile m // M0 (`gather_token`), where Y[m] is written: Y streams, 2 passes
    (an expression token would hold Y and give 3)."""
    c = ei.parse("rank P, N\npartition M -> M1, M0\ninput T[M]: i32 in [0, 2]\ninput X[N, P]\n"
                 f"Y[m, p] = X[{idx}, p]\nG[p] = max[m] Y[m, p]\nZ[m, p] = Y[m, p] - G[p]")
    agree(c, "M", 2, P=2, N=6)
    assert passes(c, "M").explain() == ["pass 2: G <- max over m of Y; Z re-reads Y over m"]


# ------------------------------------------------------------ refusals

def test_two_einsums_of_a_recurrence_reading_two_positions_are_refused():
    """The recurrence over T is one step: A reads S[t, m] at m while S reads
    Y[m - 1] at m - 1, with A[t, m] (at m): no visit holds both."""
    c = ei.parse("rank M, T\ninput X[M]\ninput Y[M]\ntensor S[T+1, M]: f32\nS[0, m] = 0\n"
                 "A[t, m] = S[t, m] + X[m]\nS[t + 1, m] = A[t, m] * Y[m - 1] where m >= 1\nZ[m] = S[T, m]")
    r = passes(c, "M")
    assert r.passes is None
    assert r.explain() == [
        "not streamable over M: A reads S[t, m] and S reads Y[m - 1] in one step, two different positions of M "
        "(m and m - 1); an element tied to a position is on chip only while that position is visited"]
    assert simulate_passes(c, "M", dict(M=5, T=3)).passes is None


def test_a_read_at_the_first_element_of_the_visited_tile_streams():
    """K[m1 * M0, p] is tile m1's first key, read in tile m1's visit (it
    once counted as an expression of M: Y held, one pass too many)."""
    c = ei.parse("rank P\npartition M -> M1, M0\ninput K[M, P]\nY[m1, p] = K[m1 * M0, p]\nG[p] = max[m1] Y[m1, p]")
    agree(c, "M", 1, P=2)


@pytest.mark.parametrize("body, expected", [
    ("Y[m, p] = K[m - 1, p] where m >= 1\nG[p] = max[m] Y[m, p]", 1),
    ("Y[m, p] = K[m - 2, p] where m >= 2\nZ[m, p] = Y[m, p] * K[m, p]\nG[p] = max[m] Z[m, p]", 1),
    ("Y[m, p] = K[m - 1, p] where m >= 1\nZ[m, p] = Y[m - 1, p] where m >= 1\nG[p] = max[m] Z[m, p]", 1),
    ("Y[m, p] = K[m, p] * 2\nZ[m, p] = Y[m - 5, p] where m >= 5\nG[p] = max[m] Z[m, p]", 1),
    ("Y[m, p] = K[m + 1, p] where m + 1 < M\nG[p] = max[m] Y[m, p]", 2),
    ("Y[m, p] = K[m, p] * 2\nZ[m, p] = Y[m + 1, p] where m + 1 < M\nG[p] = max[m] Z[m, p]", 2),
    ("Y[m, p] = K[m - 1, p] * K[m, p] where m >= 1\nG[p] = max[m] Y[m, p]", None),
    ("Y[m, p] = K[m, p] * 2\nZ[m, p] = Y[m - 1, p] * K[m, p] where m >= 1\nG[p] = max[m] Z[m, p]", None),
])
def test_a_read_of_a_partitioned_rank_a_few_keys_away(body, expected):
    """m - k over M partitioned into tiles is m's tile or an earlier one (it
    once counted as an expression, held: one or two passes too many);
    m + k the same tile or a later one; with a read at m itself, two tiles
    at a tile's edge: not streamable. At tiles of 2, 3, 4 and 7."""
    c = ei.parse("rank P\npartition M -> M1, M0\ninput K[M, P]\n" + body)
    assert passes(c, "M").passes == expected
    for mm, t in ((11, 2), (13, 3), (12, 4), (14, 7)):
        assert simulate_passes(c, "M", dict(M=mm, M0=t, P=2)).passes == expected


# ------------------------------------------------------------ disagreements with the simulator (bugs)

@pytest.mark.parametrize("partition", ["partition M -> M1, M0\n", "rank M\n"])
@pytest.mark.parametrize("body, expected", [
    ("Y[m, p] = K[m // 2, p]\nG[p] = max[m] Y[m, p]", 1),
    ("Y[m, p] = K[(m - 3) // 4, p] where m >= 3\nG[p] = max[m] Y[m, p]", 1),
    ("Y[m, p] = K[-1 + m // 2, p] where m >= 2\nG[p] = max[m] Y[m, p]", 1),
    ("Y[m, p] = K[m // 2 + 0, p]\nG[p] = max[m] Y[m, p]", 1),
    ("Y[m, p] = K[(m - 1) // 2 - 1, p] where m >= 3\nG[p] = max[m] Y[m, p]", 1),
    ("Y[m, p] = K[(m + 1) // 2, p]\nG[p] = max[m] Y[m, p]", 1),
    ("Y[m, p] = K[(m + 5) // 6, p]\nG[p] = max[m] Y[m, p]", 1),
    ("Y[m, p] = K[((m + 1) // 2 + 1) // 2, p]\nG[p] = max[m] Y[m, p]", 1),
    ("Y[m, p] = K[(m - -1) // 2, p]\nG[p] = max[m] Y[m, p]", 1),
    ("Y[m, p] = K[m, p] * 2\nZ[m, p] = Y[m // 2, p]\nG[p] = max[m] Z[m, p]", 1),
    # after m somewhere: no proof, held (the simulator agrees)
    ("Y[m, p] = K[M - 1 - m, p]\nG[p] = max[m] Y[m, p]", 2),
    ("Y[m, p] = K[(m + 1) // 1, p] where m + 1 < M\nG[p] = max[m] Y[m, p]", 2),
    ("Y[m, p] = K[(m + 2) // 2 + 3, p] where (m + 2) // 2 + 3 < M\nG[p] = max[m] Y[m, p]", 2),
    ("Y[m, p] = K[(m - 8) // -2, p] where (m - 8) // -2 >= 0 and (m - 8) // -2 < M\nG[p] = max[m] Y[m, p]", 2),
    ("Y[m, p] = K[m * 2, p] where m * 2 < M\nG[p] = max[m] Y[m, p]", 2),
    ("Y[m, p] = K[m // 2, p] * K[m, p]\nG[p] = max[m] Y[m, p]", None),
    # never after j's position, but Y[m] sums over all of J = M
    ("rank J = M\nY[m, p] = K[j // 2, p]\nG[p] = max[m] Y[m, p]", 2),
])
def test_a_read_at_a_position_computed_from_m(partition, body, expected):
    """A computed position never after m's own (`m // 2`, `(m - 3) // 4`,
    `(m + 1) // 2`) is final by m's visit: Y[m] streams (it once counted
    as an expression and was held, one pass too many). A position that can
    come after m's stays held (`(m + 2) // 2` is never after m's tile for
    tiles of 2 or more, but is after m = 0 itself: held, one pass more than
    needed at such tiles); with a read at m itself, not streamable.
    Whole M and M in tiles of 2, 3 and 4, against the simulator."""
    c = ei.parse("rank P\n" + partition + "input K[M, P]\n" + body)
    assert passes(c, "M").passes == expected
    for mm, t in ((9, 2), (13, 3), (12, 4)):
        tiles = dict(M0=t) if "partition" in partition else {}
        assert simulate_passes(c, "M", dict(M=mm, P=2, **tiles)).passes == expected


def test_a_quotient_by_a_shape_symbol_is_an_upper_bound():
    """`m // B` (B a shape symbol, any value) is not proven never after m:
    Y is held, 2 passes, at least what a traversal needs at any B."""
    c = ei.parse("rank P\ninput K[M, P]\nY[m, p] = K[m // B, p]\nG[p] = max[m] Y[m, p]")
    assert passes(c, "M").passes == 2
    for b in (1, 2, 3):
        assert simulate_passes(c, "M", dict(M=7, P=2, B=b)).passes <= 2


def test_a_gather_by_the_inner_variable_only_names_no_position():
    """T[m0] names a place inside every tile, no position of M (it once
    counted as one: 1 pass where none is needed); beside a read of K at its
    own position, one pass."""
    c = ei.parse("rank P, N\npartition M -> M1, M0\ninput T[M0]: i32 in [0, 2]\ninput X[N, P]\n"
                 "Y[m0, p] = X[T[m0], p]")
    agree(c, "M", 0, P=2, N=3)
    c = ei.parse("rank P, N\npartition M -> M1, M0\ninput T[M0]: i32 in [0, 2]\ninput X[N, P]\ninput K[M, P]\n"
                 "Y[m1, m0, p] = X[T[m0], p] * K[m1 * M0 + m0, p]\nG[p] = max[m1, m0] Y[m1, m0, p]")
    agree(c, "M", 1, P=2, N=3)


def test_a_reduction_within_a_tile_fed_back_in_a_recurrence_streams():
    """G[t, m1] sums only inside tile m1: every step of T runs within the
    tile's visit, one pass (not the whole traversal per step below)."""
    c = ei.parse("rank T\npartition M -> M1, M0\ninput X[M]\ntensor S[T+1, M1, M0]: f32\nS[0, m1, m0] = 0\n"
                 "G[t, m1] = S[t, m1, m0]\nS[t + 1, m1, m0] = G[t, m1] * X[m1 * M0 + m0]\nZ[m1, m0] = S[T, m1, m0]")
    agree(c, "M", 1, shapes=[dict(M=7, M0=2, T=3), dict(M=9, M0=3, T=2)])


def test_a_reduction_over_the_rank_fed_back_in_a_recurrence_needs_a_pass_per_step():
    """G[t] sums S[t, .] over m and S[t + 1, .] needs G[t]: each step of the
    recurrence over T waits for a whole traversal of M, so the simulator
    counts T passes; the analysis says no fixed number suffices (it once
    said 1)."""
    text = ("rank M, T\ninput X[M]\ntensor S[T+1, M]: f32\nS[0, m] = 0\nG[t] = S[t, m]\n"
            "S[t + 1, m] = G[t] * X[m]\nZ[m] = S[T, m]")
    c = ei.parse(text)
    for t in (2, 3, 4):
        assert simulate_passes(c, "M", dict(M=5, T=t)).passes == t
    r = passes(c, "M")
    assert r.passes is None
    assert r.explain() == ["not streamable over M: G reduces over m inside the recurrence over t, and S reads it "
                           "in the same step: each step of t needs a whole pass over M, T passes in all, no fixed "
                           "number"]


SHIFT_HEAD = {"whole": "rank M, T\ninput X[M]\ntensor S[T+1, M]: f32\nS[0, m] = X[m]\n",
              "tiled": "rank T\npartition M -> M1, M0\ninput X[M]\ntensor S[T+1, M]: f32\nS[0, m] = X[m]\n"}
SHIFT_SHAPES = {"whole": [dict(M=5, T=3), dict(M=6, T=2)], "tiled": [dict(M=7, M0=2, T=3), dict(M=9, M0=3, T=2)]}


@pytest.mark.parametrize("m", ["whole", "tiled"])
@pytest.mark.parametrize("body, expected", [
    ("A[t, m] = S[t, m] * X[m]\nS[t + 1, m] = A[t, m - 1] where m >= 1", 1),
    ("A[t, m] = S[t, m] * X[m]\nS[t + 1, m] = A[t, m - 2] where m >= 2", 1),
    ("A[t, m] = S[t, m] * X[m]\nB[t, m] = A[t, m - 1] where m >= 1\nS[t + 1, m] = B[t, m] + A[t, m]", 1),
    # each Einsum reads one position, but Y is read again after its max
    ("A[t, m] = S[t, m] * X[m]\nS[t + 1, m] = A[t, m - 1] where m >= 1\nY[m] = S[T, m]\n"
     "G[p] = max[m] Y[m] * p\nW[m, p] = Y[m] - G[p]", 2),
    # an Einsum reading two positions itself
    ("A[t, m] = S[t, m] * X[m]\nS[t + 1, m] = A[t, m - 1] + A[t, m] where m >= 1", None),
    ("A[t, m] = S[t, m] * X[m - 1] where m >= 1\nS[t + 1, m] = A[t, m - 1] where m >= 1", None),
])
def test_a_shift_recurrence_runs_each_einsum_at_its_own_read(m, body, expected):
    """A recurrence over T whose step reads m and m - 1, each Einsum one of
    them at or before the position it writes (`S[t + 1, m] = A[t, m - 1]`):
    with M traversed outside the recurrence every dependence runs forward,
    one pass (it was refused as two positions at once). Whole M and tiled,
    against the simulator."""
    text = SHIFT_HEAD[m] + body + ("" if "Y[m]" in body else "\nZ[m] = S[T, m]")
    if "[p]" in text:
        text = text.replace("rank M, T", "rank M, T, P").replace("rank T\n", "rank T, P\n")
    shapes = [dict(s, P=2) if "[p]" in text else s for s in SHIFT_SHAPES[m]]
    agree(ei.parse(text), "M", expected, shapes=shapes)


def test_a_shift_recurrence_with_an_einsum_writing_no_position_is_refused():
    """C[t] = A[t, 0] writes no position of M: the rule that runs each
    Einsum at its own read does not place it, so the step is refused (the
    simulator streams it in one pass: conservative, never a wrong count)."""
    c = ei.parse(SHIFT_HEAD["whole"] + "A[t, m] = S[t, m] * X[m]\nC[t] = A[t, 0]\n"
                 "S[t + 1, m] = A[t, m - 1] * C[t] where m >= 1\nZ[m] = S[T, m]")
    r = passes(c, "M")
    assert r.passes is None and r.unstreamable.startswith("A reads S[t, m] and C reads A[t, 0] in one step")
    assert simulate_passes(c, "M", dict(M=5, T=3)).passes == 1


@pytest.mark.parametrize("m", ["whole", "tiled"])
def test_a_shift_recurrence_reading_ahead_is_refused(m):
    """`S[t + 1, m] = A[t, m + 1]`: each step needs a later position than
    it writes, so steps of T cost passes (the simulator counts T + 1 over
    whole M; over tiles, fewer where the read stays in the tile): the count
    depends on T, no fixed number, refused."""
    c = ei.parse(SHIFT_HEAD[m] + "A[t, m] = S[t, m] * X[m]\nS[t + 1, m] = A[t, m + 1] where m + 1 < M\n"
                 "Z[m] = S[T, m]")
    r = passes(c, "M")
    assert r.passes is None and "two different positions of M" in r.unstreamable
    tiles = dict(M0=2) if m == "tiled" else {}
    counts = [simulate_passes(c, "M", dict(M=9, T=t, **tiles)).passes for t in (2, 3, 4)]
    assert counts == ([3, 4, 5] if m == "whole" else [2, 3, 3])

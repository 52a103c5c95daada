"""The pass analysis against a point-by-point simulated traversal
(einsum_ir.analysis.traversal), and rank aliases (`rank J = M`, `rank J = M0`)
in the pass and footprint analyses."""
import importlib
from pathlib import Path

import pytest

import einsum_ir as ei
from einsum_ir.analysis import analyze, footprint, passes, root_ranks, sequence_rank
from einsum_ir.analysis import traversal
from einsum_ir.analysis.traversal import check_pass_count, simulate_passes

passes_module = importlib.import_module("einsum_ir.analysis.passes")
DESIGNS = Path(__file__).parent / "designs"

# tiny extents; 5 positions of M (3 tiles at M0 = 2: the last one partial)
TINY = dict(B=1, H=2, M=5, P=5, E=1, F=1, M0=2, N=3, D=1, R=1, G=2, W=2, ST=1, DL=1, TQ=2, TK=2, TOPK=1,
            PY=3, PX=3, WY=2, WX=2, STY=1, STX=1, DLY=1, DLX=1, C=2.5, NS=1, HS=1, NP=4, BS=2)


def tiny(c, **over):
    """TINY restricted to the symbols `c` takes from the user."""
    used = set(ei.shapes.symbols_used(c))
    derived = {r.name for r in c.ranks if r.definition is not None or r.part == "outer"}
    return {k: v for k, v in {**TINY, **over}.items() if k in used and k not in derived}


@pytest.mark.parametrize("name", ei.library.names())    # paged-attention: gathers read at m's visit
def test_every_library_design_agrees_with_the_simulated_traversal(name):
    c = ei.library.load(name)
    assert check_pass_count(c, sequence_rank(c), tiny(c)) is None
    for r in root_ranks(c):      # every other rank too (heads, queries, derived ranks)
        assert check_pass_count(c, r, tiny(c)) is None, r


# -------------------------------------------------- hand-derived pass counts

@pytest.mark.parametrize("name, expected", [
    ("attention-naive", 2),            # SD sums SN over m; A re-reads SN
    ("attention-3pass", 3),            # GM, then SN re-read; SD, then A re-reads SN
    ("attention-3pass-deferred", 2),   # the division after SNV needs no traversal
    ("attention-2pass", 2),            # GM over tiles, then PRM re-reads LM
    ("attention-1pass", 1),            # running max, sum and numerator
])
def test_canonical_cascades_by_hand(name, expected):
    c = ei.library.load(name)
    for m, m0 in ((6, 4), (7, 3), (9, 2)):   # M not a multiple of M0: a partial last tile
        sim = simulate_passes(c, "M", tiny(c, M=m, M0=m0))
        assert sim.passes == expected, sim.why
        assert passes(c, "M").passes == expected


def test_the_pass_of_each_einsum_by_hand():
    sim = simulate_passes(ei.library.load("attention-3pass"), "M", tiny(ei.library.load("attention-3pass")))
    assert sim.per_einsum_last_pass == {"QK": 1, "GM": 1, "SN": 2, "SD": 2, "A": 3, "AV": 3}
    assert sim.per_einsum_first_pass["SN"] == 1   # the last key's SN: GM is final in the last visit


def test_too_few_positions_let_the_next_pass_start_early():
    # with 2 positions SD is final in pass 2's first visit, where A of that key can run
    c = ei.library.load("attention-3pass")
    assert simulate_passes(c, "M", tiny(c, M=2)).passes == 2
    assert simulate_passes(c, "M", tiny(c, M=3)).passes == 3


def test_a_chain_of_k_reductions_needs_k_plus_one_traversals():
    for k in range(1, 5):
        lines = ["rank M, P", "input X[M, P]", "Y0[m, p] = X[m, p]"]
        for i in range(k):
            lines += [f"G{i}[p] = max[m] Y{i}[m, p]", f"Y{i + 1}[m, p] = Y{i}[m, p] - G{i}[p]"]
        c = ei.parse("\n".join(lines))
        assert simulate_passes(c, "M", dict(M=k + 2, P=2)).passes == k + 1
        assert check_pass_count(c, "M", dict(M=k + 2, P=2)) is None


def test_max_passes_bounds_the_simulation():
    c = ei.library.load("attention-3pass")
    sim = simulate_passes(c, "M", tiny(c), max_passes=2)
    assert sim.passes is None and "more than 2 passes" in sim.why


# ------------------------------------------------ the last iterate of a recurrence

ONE_PASS = ei.library.load("attention-1pass").source
# every tile's scores normalised by the *final* denominator: RD[M1] exists only
# after the whole recurrence, so SLN must be traversed again
LAST = ONE_PASS + "\nY[b, h, m1, m0, p] = SLN[b, h, m1, m0, p] / RD[b, h, M1, p]\n"
CURRENT = ONE_PASS + "\nY[b, h, m1, m0, p] = SLN[b, h, m1, m0, p] / RD[b, h, m1 + 1, p]\n"


def test_reading_the_last_iterate_is_a_full_reduction():
    last, current = ei.parse(LAST), ei.parse(CURRENT)
    shapes = tiny(last, M=7, M0=2)
    assert simulate_passes(last, "M", shapes).passes == 2
    assert simulate_passes(current, "M", shapes).passes == 1
    assert passes(last, "M").passes == 2 and passes(current, "M").passes == 1
    assert check_pass_count(last, "M", shapes) is None
    assert passes(last, "M").explain() == ["pass 2: RD <- last iterate of RD over m1; Y re-reads SLN over m1, m0"]


def test_an_analysis_that_streams_the_last_iterate_is_caught(monkeypatch):
    real = passes_module.position_token

    def mutant(fam, kind, index, iterative):   # the last iterate read as if it were the current one
        if iterative and not ei.ir.index_vars(index):
            return ("m1", 0)
        return real(fam, kind, index, iterative)
    monkeypatch.setattr(passes_module, "position_token", mutant)
    last = ei.parse(LAST)
    assert passes(last, "M").passes == 1
    assert "not enough" in check_pass_count(last, "M", tiny(last, M=7, M0=2))


def test_a_simulation_that_streams_the_last_iterate_is_caught(monkeypatch):
    monkeypatch.setattr(traversal._Sim, "last_iterate", lambda self, a: False)
    last = ei.parse(LAST)
    assert simulate_passes(last, "M", tiny(last, M=7, M0=2)).passes != 2


# ------------------------------------------------------------- rank aliases

def test_stick_breaking_with_an_alias_needs_two_passes():
    # reported as 1 pass with a footprint free of M: LS sums over j (= M) the
    # keys after m, so A re-reads S over m in a second traversal
    c = ei.load(str(DESIGNS / "stick_breaking_alias.ein"))
    r = passes(c, "M")
    assert r.passes == 2 and r.einsum_pass["LS"] == 1 and r.einsum_pass["A"] == 2
    assert "rank J = M" in r.explain()[0] and "LS <- sum over j of S" in r.explain()[0]
    for n in (4, 6, 7):
        assert simulate_passes(c, "M", dict(B=1, H=1, P=n, E=1, F=1)).passes == 2
    assert check_pass_count(c, "M", dict(B=1, H=1, P=6, E=1, F=1)) is None
    assert sequence_rank(c) == "M"


def test_stick_breaking_footprint_holds_the_scores_that_are_read_again():
    c = ei.load(str(DESIGNS / "stick_breaking_alias.ein"))
    fp = footprint(c, "M")
    small, big = (fp.at(ei.resolve(c, dict(B=1, H=1, P=n, E=4, F=4)))[0] for n in (64, 256))
    assert big > 4 * small * 0.9     # S (and LS) held whole: grows like M x P
    assert "S" in fp.at(ei.resolve(c, dict(B=1, H=1, P=256, E=4, F=4)))[1]


FORGETTING = """
rank B, H, P, E, F
rank M = P
rank J = M
input Q[B, H, E, P]: f16
input K[B, H, E, M]: f16
input V[B, H, F, M]: f16
input LF[B, H, M]: f32
C[b, h, m, p] = sum[j] LF[b, h, j] where m < j and j <= p
S[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m] + C[b, h, m, p] where m <= p
GM[b, h, p] = max[m] S[b, h, m, p] where m <= p
SN[b, h, m, p] = exp(S[b, h, m, p] - GM[b, h, p]) where m <= p
SD[b, h, p] = SN[b, h, m, p] where m <= p
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m] where m <= p
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]
"""


def test_forgetting_attention_cumulative_sum_over_an_alias():
    # C[m, p] sums the gates of the keys after m: complete only after the
    # traversal (pass 1); S needs it (pass 2); SN re-reads S after GM (pass 3)
    c = ei.parse(FORGETTING)
    r = passes(c, "M")
    assert r.passes == 3 and [s.reducer for s in r.chain] == ["C", "GM"]
    assert "rank J = M" in r.explain()[0]
    for n in (5, 7):
        assert simulate_passes(c, "M", dict(B=1, H=1, P=n, E=1, F=1)).passes == 3
    assert check_pass_count(c, "M", dict(B=1, H=1, P=6, E=1, F=1)) is None


def test_an_alias_gate_indexed_by_queries_streams():
    # the same sum over a query-indexed gate reads no key: C needs no traversal of M
    c = ei.parse(FORGETTING.replace("LF[B, H, M]", "LF[B, H, P]").replace("rank J = M", "rank J = P"))
    assert passes(c, "M").passes == 2
    assert check_pass_count(c, "M", dict(B=1, H=1, P=6, E=1, F=1)) is None


def test_an_alias_inside_a_tile_stays_in_the_tile():
    # lightning-attention: j (rank J = M0) walks the keys of the current tile
    c = ei.library.load("lightning-attention")
    fam = passes_module.rank_family(c, "M")
    assert fam.kind["J"] == "inner" and fam.alias_of["J"] == "M0"
    assert passes(c, "M").passes == 1
    assert simulate_passes(c, "M", tiny(c, M=7, M0=3)).passes == 1
    assert sequence_rank(c) == "M"


def test_reading_two_positions_at_once_is_not_streamable():
    c = ei.parse("rank M, P\nrank J = M\ninput S[M, P]\nX[m, j, p] = S[m, p] * S[j, p]\nY[p] = X[m, j, p]")
    r = passes(c, "M")
    assert r.passes is None and "X reads" in r.unstreamable and "rank J = M" in r.unstreamable
    assert r.explain()[0].startswith("not streamable over M: X reads")
    sim = simulate_passes(c, "M", dict(M=4, P=2))
    assert sim.passes is None and "X at" in sim.why and "not streamable" in sim.why
    assert check_pass_count(c, "M", dict(M=4, P=2)) is None
    with pytest.raises(ei.EinError, match="not streamable|no schedule traverses M"):
        footprint(c, "M")


def test_self_attention_queries_are_not_an_alias_of_the_keys():
    # rank M = P: the two never index each other's tensors, so M is traversed
    # for each query as in cross attention
    c = ei.library.load("cab-self")
    assert passes(c, "M").passes == 2 and passes(c, "P").passes == 1
    assert "P" not in passes_module.rank_family(c, "M").kind


def test_an_alias_comparing_two_heads_makes_heads_unstreamable():
    # moh-attention counts, per head h, the heads ho (rank HO = H) that beat it
    c = ei.library.load("moh-attention")
    assert passes(c, "H").passes is None and "CNT" in passes(c, "H").unstreamable
    assert sequence_rank(c) == "M"
    assert analyze(c).at(tiny(c))["passes"]["H"] is None


@pytest.mark.parametrize("text", [
    "rank M\npartition N -> N1, N0\ninput X[M, N]\nY[m] = X[m, n]\nZ[n] = X[m, n]",
    "rank M, N\ninput X[M, N]\ntensor S[N+1, M]: f32\nS[0, m] = 0\nS[n + 1, m] = S[n, m] + X[m, n]\n"
    "Z[m] = S[N, m]\nG[n] = X[m, n]",
])
def test_at_equal_passes_a_tiled_or_stepped_rank_is_the_sequence_before_m(text):
    """M and N take one pass each; N is partitioned (or a recurrence steps
    through it), M is neither: N is the rank the design walks."""
    c = ei.parse(text)
    assert passes(c, "M").passes == passes(c, "N").passes == 1
    assert sequence_rank(c) == "N"

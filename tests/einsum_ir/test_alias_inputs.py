"""Issue 22 (docs/flex.md, Findings 5): a tensor read at both the query and
the key position. An input read at an alias coordinate (DOC[b, m], DOC over
P, `rank M = P`) is a read at that position, as K[m] is; it ties the queries
and keys together in no pass analysis. Each expected count below is derived
by hand in its comment and checked against the point-by-point traversal
(einsum_ir.analysis.traversal); the unsound side (an intermediate tied to
two positions, a second index with no tensors of its own) stays refused."""
from pathlib import Path

import pytest
import sympy

import einsum_ir as ei
from einsum_ir.analysis import footprint, passes, sequence_rank
from einsum_ir.analysis.traversal import check_pass_count, simulate_passes
from einsum_ir.sym import shape_symbol

CORPUS = Path(__file__).parents[1] / "flex" / "corpus"
SMALL = dict(B=1, H=1, P=5, E=1, F=1, W=1)


def corpus(name):
    return ei.parse((CORPUS / f"{name}.ein").read_text())


def at(c, **over):
    """SMALL restricted to the symbols `c` takes."""
    used = set(ei.shapes.symbols_used(c))
    derived = {r.name for r in c.ranks if r.definition is not None or r.part == "outer"}
    return {k: v for k, v in {**SMALL, **over}.items() if k in used and k not in derived}


# ------------------------------------------------------------ the corpus rows

@pytest.mark.parametrize("name", ["document", "global-sliding-window"])
def test_corpus_masks_count_like_causal(name):
    # causal: GM needs every key of S before SN re-reads S: 2 over M; the
    # queries need no second traversal: 1 over P. The mask's reads DOC[b, m]
    # (G[m]) are reads at the key's visit, DOC[b, p] (G[p]) data of the query.
    c, ref = corpus(name), corpus("causal")
    for rank, expected in (("M", 2), ("P", 1)):
        r = passes(c, rank)
        assert r.passes == expected == passes(ref, rank).passes, r.unstreamable
        assert r.explain() == passes(ref, rank).explain()     # "GM <- max over m of S", not "of S, DOC"
        for n in (5, 7):
            assert check_pass_count(c, rank, at(c, P=n)) is None
    assert "P" not in passes(c, "M").family.kind and "M" not in passes(c, "P").family.kind
    assert sequence_rank(c) == "M"


def test_analyze_prints_the_pass_count(tmp_path, capsys):
    from attnc.cli import main
    assert main(["analyze", str(CORPUS / "document.ein")]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("M "))
    assert row.split()[1] == "2" and "not streamable" not in out, row
    assert "one traversal of M per pass" in out


# ------------------------------------------------- a design written here

SEGMENT = """rank B, H, P, E, F
rank M = P
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
input SEG[B, P]: i32
input KG[P]: f32
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m] * KG[m] where SEG[b, p] == SEG[b, m] and m <= p
GM[b, h, p] = max[m] QK[b, h, m, p] where SEG[b, p] == SEG[b, m] and m <= p
SN[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p]) where SEG[b, p] == SEG[b, m] and m <= p
SD[b, h, p] = SN[b, h, m, p] where SEG[b, p] == SEG[b, m] and m <= p
A[b, h, m, p] = SN[b, h, m, p] / SD[b, h, p] where SEG[b, p] == SEG[b, m] and m <= p
AV[b, h, f, p] = A[b, h, m, p] * V[b, h, f, m]
"""


def _strip_data(text):
    """The tensor-free counterpart: no segment mask, no key gate."""
    text = text.replace("SEG[b, p] == SEG[b, m] and ", "").replace(" * KG[m]", "").replace(" * KG[p]", "")
    return "\n".join(line for line in text.splitlines() if not line.startswith(("input SEG", "input KG"))) + "\n"


@pytest.mark.parametrize("text", [
    SEGMENT,
    # declared over the keys, the gate read at the query: the same counts
    SEGMENT.replace("SEG[B, P]", "SEG[B, M]").replace("KG[P]", "KG[M]").replace("KG[m]", "KG[p]"),
])
def test_segment_mask_and_key_gate_by_hand(text):
    # 3-pass softmax: QK, GM in pass 1; SN, SD need GM complete: pass 2;
    # A needs SD complete: pass 3 (AV with it). Over P every Einsum runs at
    # the query's visit: 1. The tensor-free counterpart counts the same.
    c, bare = ei.parse(text), ei.parse(_strip_data(text))
    r = passes(c, "M")
    assert r.passes == 3 and r.einsum_pass == {"QK": 1, "GM": 1, "SN": 2, "SD": 2, "A": 3, "AV": 3}
    assert [s.reducer for s in r.chain] == ["GM", "SD"]
    assert passes(c, "P").passes == 1
    assert (passes(bare, "M").passes, passes(bare, "P").passes) == (3, 1)
    for rank, n in (("M", 5), ("M", 6), ("P", 5)):
        assert check_pass_count(c, rank, at(c, P=n)) is None
    assert simulate_passes(c, "M", at(c, P=6)).per_einsum_last_pass == r.einsum_pass


def test_a_key_gate_over_the_queries_on_a_tiled_key_rank():
    # attention-2pass with M = P and a gate G[b, p] read at the tiled key
    # coordinate: G[b, m1 * M0 + m0] is read in the visit of tile m1, like K
    # (2 passes: GM over tiles, then PRM re-reads LM)
    base = str(ei.library.load("attention-2pass"))
    text = base.replace("rank B, H, P, E, F, M", "rank B, H, P, E, F\nrank M = P", 1)
    text = text.replace("input V[B, H, F, M]: f16", "input V[B, H, F, M]: f16\ninput G[B, P]: f16", 1)
    text = text.replace("= K[b, h, e, m1 * M0 + m0]", "= K[b, h, e, m1 * M0 + m0] * G[b, m1 * M0 + m0]", 1)
    c = ei.parse(text)
    assert "G[b, m1 * M0 + m0]" in str(c) and "P" not in passes(c, "M").family.kind
    assert passes(c, "M").passes == 2 == passes(ei.library.load("attention-2pass"), "M").passes
    for m, m0 in ((6, 4), (7, 3)):
        assert check_pass_count(c, "M", at(c, P=m, M0=m0)) is None


# ---------------------------------------------------------- the sound side

def test_an_intermediate_made_in_the_traversal_read_at_two_positions_is_refused():
    # KN[m] (a per-key norm) is made in the visit of key m; S reads KN[b, h, p]
    # at the query's coordinate in the visit of key m: two positions of M
    text = SEGMENT.replace(
        "QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m] * KG[m]",
        "KN[b, h, m] = K[b, h, e, m] * K[b, h, e, m]\n"
        "QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m] * KG[m] * KN[b, h, m] / KN[b, h, p]")
    c = ei.parse(text)
    r = passes(c, "M")
    assert r.passes is None and "rank P = M walks M (through KN[b, h, p] in QK)" in r.unstreamable, r.unstreamable
    assert simulate_passes(c, "M", at(c)).passes is None
    with pytest.raises(ei.EinError, match="no schedule traverses M"):
        footprint(c, "M")


def test_a_tensor_made_before_the_traversal_reads_like_an_input():
    # SG[b, p] = SEG[b, p] // 2 uses no key: over M it exists before pass 1,
    # and SG[b, m] loads it at the key (2 passes, deferred softmax). Over P,
    # SG is made in the visit of query p, so SG[b, m] needs another query's
    # element in the same visit: refused.
    text = """rank B, H, P, E, F
rank M = P
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
input SEG[B, P]: i32
SG[b, p] = SEG[b, p] // 2
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m] where SG[b, p] == SG[b, m]
GM[b, h, p] = max[m] QK[b, h, m, p] where SG[b, p] == SG[b, m]
SN[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p]) where SG[b, p] == SG[b, m]
SD[b, h, p] = SN[b, h, m, p] where SG[b, p] == SG[b, m]
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m] where SG[b, p] == SG[b, m]
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]
"""
    c = ei.parse(text)
    assert passes(c, "M").passes == 2 and passes(c, "M").einsum_pass["SG"] == 0
    assert check_pass_count(c, "M", at(c)) is None
    r = passes(c, "P")
    assert r.passes is None and "rank M = P walks P (through SG[b, m] in QK)" in r.unstreamable, r.unstreamable
    assert simulate_passes(c, "P", at(c)).passes is None


def test_a_recurrence_over_the_keys_read_at_the_query_still_ties_them():
    # linear attention as an RNN with a key gate over P: the state KV[m + 1]
    # is made in key m's visit and query p reads KV[p + 1] in it (M = P
    # walked together): 1 pass, the queries part of the keys' traversal
    c = ei.library.load("linear-attention-causal")
    text = str(c).replace("input V[B, H, F, M]: f16", "input V[B, H, F, M]: f16\ninput KG[P]: f16", 1)
    text = text.replace("PK[b, h, e, m] * V[b, h, f, m]", "PK[b, h, e, m] * V[b, h, f, m] * KG[m]", 1)
    g = ei.parse(text)
    assert "KG[m]" in str(g)
    r = passes(g, "M")
    assert r.passes == 1 and "P" in r.family.kind
    assert check_pass_count(g, "M", at(g, P=6)) is None


def test_a_second_index_without_tensors_of_its_own_still_walks_the_rank():
    # J = M has no input of its own: S[j] is a second position of M's fiber
    c = ei.parse("rank M\nrank J = M\ninput S[M]: f32\nX[m, j] = S[m] * S[j]\nY[m] = X[m, j]\n")
    assert passes(c, "M").passes is None and "rank J = M" in passes(c, "M").unstreamable
    # with an input of its own (T[J]), J is a rank like the queries: S[j] is
    # a load at its coordinate, as K[m] is for a query; Y sums over j at m's visit
    d = ei.parse("rank M\nrank J = M\ninput S[M]: f32\ninput T[J]: f32\n"
                 "X[m, j] = S[m] * S[j] * T[j]\nY[m] = X[m, j]\n")
    assert passes(d, "M").passes == 1 and "J" not in passes(d, "M").family.kind
    assert check_pass_count(d, "M", dict(M=4)) is None


def test_talking_heads_over_the_mixed_heads():
    # over H2, the heads H have inputs of their own (Q, K, V): QK is made
    # before the walk of h2; L, the softmax and WM each run at h2's visit
    # (WM sums over h2 into heads h: complete after the pass), AV reads
    # only WM: outside the traversal. Over H, H2 has none: PRE[h, h2] ties
    # two positions of H (test_analysis_findings).
    text = (Path(__file__).parents[2] / "tests" / "flex" / "beyond" / "talking-heads.ein").read_text()
    c = ei.parse(text)
    r = passes(c, "H2")
    assert r.passes == 1 and r.einsum_pass["QK"] == 0 and r.einsum_pass["AV"] == 0
    assert r.einsum_pass["WM"] == 1
    assert passes(c, "H").passes is None
    assert check_pass_count(c, "H2", at(c, H=3, M=2, P=2)) is None


# ---------------------------------------------------------- footprint, traversal

def _terms(c, rank, tensor):
    """The terms of each footprint total at which `tensor` is live."""
    return [sympy.Add.make_args(sympy.expand(b)) for b, names in footprint(c, rank).candidates if tensor in names]


def test_footprint_holds_a_query_tensor_read_at_the_key_whole():
    # over P, DOC[b, m] loads other queries' documents at every step: DOC is
    # held whole (B*P i32: 4*B*P bytes, the only such term), as K is; over M,
    # DOC[b, p] is needed for every query at every step: whole too
    c = corpus("document")
    B, P = shape_symbol("B"), shape_symbol("P")
    for rank in ("M", "P"):
        live = _terms(c, rank, "DOC")
        assert live and all(4 * B * P in terms and 4 * B not in terms for terms in live), (rank, live)


def test_footprint_streams_a_key_gate_declared_over_the_queries():
    # KG[P] read only as KG[m]: one element per step of M (4 bytes), not all P
    c = ei.parse(SEGMENT)
    live = _terms(c, "M", "KG")
    assert live and all(sympy.Integer(4) in terms and 4 * shape_symbol("P") not in terms for terms in live), live
    # read at the query too (KG[p] in GM), it is held whole
    d = ei.parse(SEGMENT.replace("GM[b, h, p] = max[m] QK[b, h, m, p]", "GM[b, h, p] = max[m] QK[b, h, m, p] * KG[p]"))
    assert all(4 * shape_symbol("P") in terms for terms in _terms(d, "M", "KG"))


def test_the_traversal_takes_a_data_conjunct_as_true():
    # key-padding's `m < LEN[b]` reads a tensor: every point the rest keeps
    # exists (it once read LEN as 1, keeping only m = 0, and found 1 pass)
    c = corpus("key-padding")
    assert simulate_passes(c, "M", at(c)).passes == 2 == passes(c, "M").passes
    assert check_pass_count(c, "M", at(c)) is None


def test_a_document_mask_on_the_one_pass_cascade():
    # attention-1pass with M = P and DOC[b, p] == DOC[b, m1 * M0 + m0] on its
    # scores: the running max, sum and numerator still need 1 pass over M;
    # over P, DOC read at the tiled key is a load at M's coordinate: 1 pass
    text = str(ei.library.load("attention-1pass"))
    text = text.replace("rank B, H, P, E, F, M", "rank B, H, P, E, F\nrank M = P", 1)
    text = text.replace("input V[B, H, F, M]: f16", "input V[B, H, F, M]: f16\ninput DOC[B, P]: i32", 1)
    text = "\n".join(line + (" where DOC[b, p] == DOC[b, m1 * M0 + m0]" if line.startswith("BQK[") else "")
                     for line in text.splitlines())
    c = ei.parse(text)
    assert "DOC[b, m1 * M0 + m0]" in str(c)
    for rank in ("M", "P"):
        assert passes(c, rank).passes == 1, passes(c, rank).unstreamable
        assert check_pass_count(c, rank, at(c, P=7, M0=3)) is None

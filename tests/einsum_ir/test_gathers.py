"""Gathers: an integer tensor read inside an index (`OFF[DOC[p]]`, a paged KV
cache `KC[h, e, PAGE[b, m / PS] * PS + m % PS]`), docs/notation.md, Gathers.

The executor and the oracle are checked against plain numpy written here
(fancy indexing of the page table, per-document loops); an out-of-range
gathered index is an error naming the tensor, the Einsum and a point, at a
point that exists only (never clipped); the validator refuses an index
tensor that is not an integer one, at its place; the analyses count a
gathered read where its variable is visited and refuse a rank indexed by data."""
import numpy as np
import pytest
import sympy

from einsum_ir import ExecutionError, ValidationError, execute, parse, random_inputs
from einsum_ir.analysis import compulsory_traffic, op_counts, passes
from einsum_ir.oracle import OracleBoundsError, evaluate
from einsum_ir.sym import shape_symbol
from hw_models.schema import HardwareError

DOC = """\
empty rows = 0
rank B, H, M, E, F, ND
rank P = M
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
input DOC[M]: i32
input OFF[ND]: i32
mask visible = DOC[p] == DOC[m] and m <= p and (m - OFF[DOC[m]] < G or p - m < W)
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m] where visible
GM[b, h, p] = max[m] QK[b, h, m, p] where visible
SN[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p]) where visible
SD[b, h, p] = SN[b, h, m, p] where visible
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m] where visible
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]
"""

PAGED = """\
rank B, H, M, P, E, F, S, NB
input Q[B, H, E, P]: f32
input KC[H, E, S]: f32
input VC[H, F, S]: f32
input PAGE[B, NB]: i32
input LEN[B]: i32
mask live = m < LEN[b]
QK[b, h, m, p] = Q[b, h, e, p] * KC[h, e, PAGE[b, m / PS] * PS + m % PS] where live
GM[b, h, p] = max[m] QK[b, h, m, p] where live
SN[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p]) where live
SD[b, h, p] = SN[b, h, m, p] where live
SNV[b, h, f, p] = SN[b, h, m, p] * VC[h, f, PAGE[b, m / PS] * PS + m % PS] where live
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]
"""


def _softmax_av(s, keep, v):
    """softmax over m of s[b, h, m, p] where keep, times v[b, h, f, m]; rows with no key are 0."""
    s = np.where(keep, s, -np.inf)
    g = s.max(2, keepdims=True)
    w = np.where(keep, np.exp(s - np.where(np.isfinite(g), g, 0)), 0)
    d = w.sum(2, keepdims=True)
    w = np.divide(w, d, out=np.zeros_like(w), where=d > 0)
    return np.einsum("bhmp,bhfm->bhfp", w, v)


def _doc_inputs(seed, m=23, nd=4):
    c = parse(DOC)
    shapes = dict(B=1, H=2, M=m, E=4, F=3, ND=nd, G=2, W=3)
    x = random_inputs(c, shapes, seed=seed)
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, m), nd - 1, replace=False))
    x["DOC"] = np.repeat(np.arange(nd), np.diff(np.r_[0, cuts, m])).astype(float)
    x["OFF"] = np.r_[0, cuts].astype(float)
    return c, shapes, x


def _numpy_doc(x, shapes):
    doc, off = x["DOC"].astype(int), x["OFF"].astype(int)
    n = shapes["M"]
    keep = np.zeros((n, n), bool)
    for m in range(n):
        for p in range(n):
            keep[m, p] = doc[p] == doc[m] and m <= p and (m - off[doc[m]] < shapes["G"] or p - m < shapes["W"])
    s = np.einsum("bhep,bhem->bhmp", x["Q"], x["K"])
    return _softmax_av(s, keep[None, None], x["V"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_document_mask_with_offsets_matches_numpy(seed):
    c, shapes, x = _doc_inputs(seed)
    out = execute(c, x, shapes)["AV"]
    assert np.allclose(out, _numpy_doc(x, shapes), atol=1e-12)


def test_document_mask_oracle_agrees_with_executor():
    c, shapes, x = _doc_inputs(5, m=7, nd=3)
    shapes.update(H=1, E=2, F=2)
    x = {k: (v[:, :1, :2] if k in ("Q", "K", "V") else v) for k, v in x.items()}
    assert np.allclose(evaluate(c, x, shapes)["AV"], execute(c, x, shapes)["AV"], atol=1e-12)


def _paged_inputs(seed, lengths=(29, 13), ps=8, pool=10, **dims):
    c = parse(PAGED)
    nb = -(-max(lengths) // ps)
    shapes = dict(B=len(lengths), H=2, M=max(lengths), P=3, E=4, F=5, S=pool * ps, NB=nb, PS=ps) | dims
    x = random_inputs(c, shapes, seed=seed)
    rng = np.random.default_rng(seed)
    pages = rng.permutation(pool)
    table = -np.ones((len(lengths), nb))            # -1: no page (past the sequence's length)
    used = 0
    for b, n in enumerate(lengths):
        k = -(-n // ps)
        table[b, :k] = pages[used:used + k]
        used += k
    x["PAGE"], x["LEN"] = table, np.array(lengths, float)
    return c, shapes, x


def _numpy_paged(x, shapes):
    ps, n = shapes["PS"], shapes["M"]
    m = np.arange(n)
    out = []
    for b in range(shapes["B"]):
        slot = np.where(m < x["LEN"][b], x["PAGE"][b, m // ps] * ps + m % ps, 0).astype(int)
        k, v = x["KC"][:, :, slot], x["VC"][:, :, slot]           # [H, E, M], [H, F, M]
        s = np.einsum("hep,hem->hmp", x["Q"][b], k)
        keep = (m < x["LEN"][b])[None, :, None]
        out.append(_softmax_av(s[None], keep[None], v[None])[0])
    return np.stack(out)


@pytest.mark.parametrize("seed", [0, 3])
def test_paged_kv_matches_numpy_unused_pages_never_read(seed):
    """Page entries -1 past each sequence's length lie at points the mask
    removes: not an error there, and the result is numpy's gather."""
    c, shapes, x = _paged_inputs(seed)
    assert (x["PAGE"] < 0).any()
    out = execute(c, x, shapes)["AV"]
    assert np.allclose(out, _numpy_paged(x, shapes), atol=1e-12)


def test_paged_kv_oracle_agrees_with_executor():
    c, shapes, x = _paged_inputs(1, lengths=(5, 3), ps=2, pool=5, H=1, E=2, F=2, P=2)
    assert np.allclose(evaluate(c, x, shapes)["AV"], execute(c, x, shapes)["AV"], atol=1e-12)


def test_out_of_range_gather_is_an_error_naming_tensor_einsum_and_point():
    c, shapes, x = _paged_inputs(0)
    x["PAGE"][1, 0] = shapes["S"] // shapes["PS"]            # one page past the pool, at a live key
    with pytest.raises(ExecutionError) as err:
        execute(c, x, shapes)
    msg = str(err.value)
    assert "KC[h, e, PAGE[b, m / PS] * PS + m % PS]" in msg and "Einsum QK" in msg and "past the end" in msg
    assert "b=1" in msg and ":8:" in msg                      # the point, and where QK reads KC
    c, shapes, x = _paged_inputs(0, H=1, E=1, F=1, P=1)
    x["PAGE"][1, 0] = shapes["S"] // shapes["PS"]
    with pytest.raises(OracleBoundsError, match="QK: KC"):
        evaluate(c, x, shapes)


def test_negative_gathered_index_at_a_live_point_is_an_error():
    c, shapes, x = _paged_inputs(0)
    x["LEN"][1] = shapes["M"]                                  # now the -1 pages of sequence 1 are read
    with pytest.raises(ExecutionError, match="below 0"):
        execute(c, x, shapes)


def test_document_index_out_of_range_names_off_and_doc():
    c, shapes, x = _doc_inputs(0)
    x["DOC"][-1] = shapes["ND"]
    with pytest.raises(ExecutionError) as err:
        execute(c, x, shapes)
    assert "OFF[DOC[m]]" in str(err.value) and f"DOC[m] = {shapes['ND']}" in str(err.value)


def test_fractional_gathered_value_is_an_error():
    c = parse("rank M, P\ninput X[M]: f32\ninput S[M, P]: f32\ntensor IX[M]: i32\n"
              "IX[m] = X[m] * 0.5\nY[m, p] = S[IX[m], p]\n")
    x = {"X": np.array([0.0, 2.0, 3.0]), "S": np.ones((3, 2))}
    with pytest.raises(ExecutionError, match=r"IX\[m\] = 1.5 in Einsum Y is not a whole number"):
        execute(c, x)
    x["X"] = np.array([0.0, 2.0, 4.0])                          # 0, 1, 2: whole, in range
    y = execute(c, x)["Y"]
    assert np.array_equal(y, x["S"][[0, 1, 2]])


def test_nested_gather_matches_numpy():
    c = parse("rank M, P, N\ninput A[N]: i32\ninput B[M]: i8\ninput S[N, P]: f32\n"
              "Y[m, p] = S[A[B[m]], p] * (p + 1)\n")
    rng = np.random.default_rng(0)
    x = {"A": rng.integers(0, 4, 4).astype(float), "B": rng.integers(0, 4, 6).astype(float),
         "S": rng.standard_normal((4, 3))}
    want = x["S"][x["A"].astype(int)[x["B"].astype(int)]] * np.arange(1, 4)
    assert np.allclose(execute(c, x)["Y"], want)


@pytest.mark.parametrize("decl, want", [
    ("input I[M]: f32", "must hold integers (i32 or i8), but I is f32"),
    ("input I[M]: bool", "must hold integers (i32 or i8), but I is bool"),
    ("input I[M]: f16", "I is f16"),
])
def test_index_tensor_must_be_integer_located(decl, want):
    with pytest.raises(ValidationError) as err:
        parse(f"rank M, P\n{decl}\ninput S[M, P]: f32\nY[m, p] = S[I[m], p]\n", "g.ein")
    assert want in str(err.value) and "g.ein:4:" in str(err.value)


def test_iterative_index_tensor_is_refused():
    text = ("rank M, P\ninput X[M]: i32\ninput S[M, P]: f32\ntensor R[M+1]: i32\nR[0] = 0\n"
            "R[m + 1] = R[m] + X[m]\nY[m, p] = S[R[m], p]\n")
    with pytest.raises(ValidationError, match="iterative rank M"):
        parse(text)


@pytest.mark.parametrize("text", [DOC, PAGED])
def test_print_parse_round_trip(text):
    c = parse(text)
    assert parse(str(c)) == c
    assert "PAGE[b, m / PS] * PS + m % PS" in str(c) or "OFF[DOC[m]]" in str(c)


def _contiguous_paged():
    """The paged design with K and V stored per sequence (no page table):
    the reference for what a gather changes in the analyses."""
    return parse(PAGED.replace("input KC[H, E, S]", "input KC[B, H, E, M]").replace(
        "input VC[H, F, S]", "input VC[B, H, F, M]").replace(
        "KC[h, e, PAGE[b, m / PS] * PS + m % PS]", "KC[b, h, e, m]").replace(
        "VC[h, f, PAGE[b, m / PS] * PS + m % PS]", "VC[b, h, f, m]").replace("input PAGE[B, NB]: i32\n", ""))


def test_passes_count_a_gathered_read_at_its_visit():
    c, plain = parse(PAGED), _contiguous_paged()
    assert passes(c, "M").passes == passes(plain, "M").passes == 2
    s = passes(c, "S")
    assert s.passes is None and "given by data (a gather)" in s.unstreamable and "KC" in s.unstreamable


def test_counts_and_traffic_of_a_paged_design():
    c, plain = parse(PAGED), _contiguous_paged()
    assert op_counts(c) == op_counts(plain)        # a gather moves data, it computes nothing
    B, NB, S, H, E, F, M = (shape_symbol(n) for n in ("B", "NB", "S", "H", "E", "F", "M"))
    diff = compulsory_traffic(c)["read_bytes"] - compulsory_traffic(plain)["read_bytes"]
    # the page table at 4 B (i32), the pools instead of per-sequence K and V (f32)
    want = 4 * B * NB + 4 * H * E * S + 4 * H * F * S - 4 * B * H * E * M - 4 * B * H * F * M
    assert sympy.expand(diff - want) == 0


def test_spatial_model_refuses_a_gather():
    from simulator.tiling import refuse_gathers
    with pytest.raises(HardwareError, match=r"through the gather PAGE\[b, m / PS\]"):
        refuse_gathers(parse(PAGED))
    refuse_gathers(_contiguous_paged())           # no gather: nothing to refuse


def test_footprint_holds_one_gathered_row_per_step_not_the_pool():
    """A pool read through its page table is live one step at a time, as the
    contiguous K is: per key m one slot per sequence (B rows of E), never the
    whole pool of S slots; the page table itself is the only addition."""
    from einsum_ir.analysis import footprint
    shapes = dict(B=4, H=8, M=1024, P=16, E=64, F=64, S=8192, NB=64, PS=16, density_live=0.5)
    paged, paged_live = footprint(parse(PAGED), "M").at(shapes)
    plain, plain_live = footprint(_contiguous_paged(), "M").at(shapes)
    assert set(paged_live) - set(plain_live) == {"PAGE"}
    assert paged - plain == 4 * shapes["B"] * shapes["NB"]          # the i32 page table

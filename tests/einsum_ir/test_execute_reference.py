"""The reference executor against independent references.

Every expected value here is written directly from the mathematics, with
torch (`scaled_dot_product_attention`, explicit masked softmax) or plain numpy
(`cumsum`, `maximum.accumulate`, elementwise functions); none of it goes
through einsum_ir. Layouts in the cascades: Q[B, H, E, P], K[B, H, E, M],
V[B, H, F, M], AV[B, H, F, P]; torch wants [B, H, P, E] etc., so the helpers
transpose the last two axes on the way in and out.
"""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as tnf

import einsum_ir as ei

# the softmax-attention cascades of the foundation; the zoo is tested in tests/zoo
LIBRARY = [n for n in ei.library.names() if n.startswith("attention-")]
TILED = {n for n in LIBRARY if any(r.name == "M0" for r in ei.library.load(n).ranks)}


# ------------------------------------------------------------------ helpers

def qkv(B=2, H=3, M=50, P=50, E=16, F=16, seed=0, KH=None):
    """Standard-normal Q, K, V in the cascades' layout (KH: KV heads for GQA)."""
    rng = np.random.default_rng(seed)
    kh = H if KH is None else KH
    return {"Q": rng.standard_normal((B, H, E, P)), "K": rng.standard_normal((B, kh, E, M)),
            "V": rng.standard_normal((B, kh, F, M))}


def t(x):
    """Cascade layout [..., X, Y] -> torch layout [..., Y, X], float64."""
    return torch.as_tensor(np.asarray(x, dtype=np.float64)).transpose(-1, -2)


def back(x):
    return x.transpose(-1, -2).numpy()


def sdpa(Q, K, V, **kw):
    """torch SDPA at scale 1 (the designs fold 1/sqrt(E) into Q); AV layout."""
    return back(tnf.scaled_dot_product_attention(t(Q), t(K), t(V), scale=1.0, **kw))


def masked_softmax_attention(Q, K, V, keep=None, bias=None):
    """softmax over keys of (q . k + bias) restricted to `keep` [.., P, M];
    a query with no kept key gets 0 (the identity of the empty reduction)."""
    q, k, v = t(Q), t(K), t(V)
    s = q @ k.transpose(-1, -2)                      # [B, H, P, M]
    if bias is not None:
        s = s + torch.as_tensor(bias, dtype=torch.float64)
    if keep is None:
        keep = torch.ones(s.shape[-2:], dtype=torch.bool)
    keep = torch.as_tensor(keep).expand_as(s)
    w = torch.softmax(s.masked_fill(~keep, -math.inf), dim=-1)
    w = torch.where(keep.any(-1, keepdim=True), w, torch.zeros_like(w))
    return back(w @ v)


def rel_err(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    assert np.all(np.isfinite(a)), "result has non-finite values"
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


HEADER = """
rank B, H, M, P, E, F
input Q[B, H, E, P]: f64
input K[B, H, E, M]: f64
input V[B, H, F, M]: f64
"""


def softmax_cascade(cond: str | None = None, scores: str = "", decls: str = "", score: str = "QK") -> str:
    """3-pass softmax attention over the score tensor `score`[b, h, m, p]; the
    predicate `cond` (if any) is put on every Einsum that iterates m and p."""
    w = f" where {cond}" if cond else ""
    return HEADER + decls + f"""
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]{w}
{scores}
GM[b, h, p] = max[m] {score}[b, h, m, p]{w}
SN[b, h, m, p] = exp({score}[b, h, m, p] - GM[b, h, p]){w}
SD[b, h, p] = SN[b, h, m, p]{w}
A[b, h, m, p] = SN[b, h, m, p] / SD[b, h, p]{w}
AV[b, h, f, p] = A[b, h, m, p] * V[b, h, f, m]{w}
"""


def with_predicate(name: str, cond_flat: str, cond_tiled: str) -> ei.Cascade:
    """A library design with a predicate added to every Einsum that iterates
    the key index (m, or m1 and m0) together with the query index p."""
    c = ei.library.load(name)
    lines = c.source.splitlines()
    for e in c.einsums:
        v = set(e.iteration_vars)
        if "p" in v and "m" in v:
            cond = cond_flat
        elif "p" in v and {"m1", "m0"} <= v:
            cond = cond_tiled
        else:
            continue
        lines[e.loc.line - 1] += f" where {cond}"
    return ei.parse("\n".join(lines), name=f"{name}-restricted")


def tile_shapes(name, M0):
    return {"M0": M0} if name in TILED else None


# ------------------------------------------------- 1. library vs torch SDPA

LIB_CASES = [(n, m0) for n in LIBRARY for m0 in ([8, 50, 1, 64] if n in TILED else [None])]


@pytest.mark.parametrize("name, M0", LIB_CASES, ids=[f"{n}-M0={m}" for n, m in LIB_CASES])
def test_library_design_matches_torch_sdpa(name, M0):
    # M0=8 does not divide M=50 (partial last tile), M0=50 is one tile,
    # M0=1 one key per tile, M0=64 a single partial tile larger than M.
    x = qkv(B=2, H=3, M=50, P=50, E=16, F=16, seed=1)
    out = ei.execute(ei.library.load(name), x, shapes=tile_shapes(name, M0))
    assert set(out) == {"AV"}
    assert out["AV"].dtype == np.float64
    assert rel_err(out["AV"], sdpa(**x)) < 1e-6


@pytest.mark.parametrize("name", LIBRARY)
def test_library_design_cross_attention(name):
    # M != P (both ways), M not a multiple of the tile.
    for M, P in ((37, 21), (13, 45)):
        x = qkv(B=2, H=2, M=M, P=P, E=8, F=12, seed=M)
        out = ei.execute(ei.library.load(name), x, shapes=tile_shapes(name, 6))["AV"]
        assert out.shape == (2, 2, 12, P)
        assert rel_err(out, sdpa(**x)) < 1e-6


@pytest.mark.parametrize("name", LIBRARY)
def test_library_design_float32(name):
    # inputs given as torch float32 tensors; computation in float32 on request
    x = qkv(B=2, H=3, M=40, P=24, E=16, F=16, seed=2)
    xt = {k: torch.from_numpy(v).float() for k, v in x.items()}
    ref = sdpa(**x)
    out = ei.execute(ei.library.load(name), xt, shapes=tile_shapes(name, 16), dtype="float32")
    assert out["AV"].dtype == np.float32
    assert rel_err(out["AV"], ref) < 1e-4
    every = ei.execute(ei.library.load(name), xt, shapes=tile_shapes(name, 16), dtype="float32", keep="all")
    assert all(a.dtype == np.float32 for a in every.values())


def test_keep_all_returns_every_tensor_with_their_values():
    x = qkv(B=2, H=2, M=11, P=7, E=4, F=3, seed=3)
    c = ei.library.load("attention-3pass")
    every = ei.execute(c, x, keep="all")
    assert set(every) == {t.name for t in c.tensors}
    s = np.einsum("bhep,bhem->bhmp", x["Q"], x["K"])
    np.testing.assert_allclose(every["QK"], s, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(every["GM"], s.max(axis=2), rtol=1e-12)
    np.testing.assert_allclose(every["SD"], np.exp(s - s.max(axis=2, keepdims=True)).sum(axis=2), rtol=1e-12)
    np.testing.assert_allclose(every["A"].sum(axis=2), 1.0, rtol=1e-12)


# ------------------------------------------------------ 4. hand-written cascades

@pytest.mark.parametrize("name", LIBRARY)
def test_causal_library_design_matches_sdpa_is_causal(name):
    c = with_predicate(name, "m <= p", "m1 * M0 + m0 <= p")
    x = qkv(B=2, H=2, M=30, P=30, E=8, F=8, seed=4)
    out = ei.execute(c, x, shapes=tile_shapes(name, 7))["AV"]
    assert rel_err(out, sdpa(**x, is_causal=True)) < 1e-6


def test_causal_cascade_matches_sdpa_and_explicit_mask():
    x = qkv(B=2, H=3, M=33, P=33, E=8, F=8, seed=5)
    out = ei.execute(ei.parse(softmax_cascade("m <= p")), x)["AV"]
    assert rel_err(out, sdpa(**x, is_causal=True)) < 1e-6
    keep = torch.tril(torch.ones(33, 33, dtype=torch.bool))         # [p, m]: m <= p
    assert rel_err(out, sdpa(**x, attn_mask=keep)) < 1e-6
    assert rel_err(out, masked_softmax_attention(**x, keep=keep)) < 1e-6


def test_causal_cross_attention_with_offset():
    # M != P: query p sees keys m <= p + (M - P) (queries are the last P positions)
    M, P = 20, 9
    x = qkv(B=2, H=2, M=M, P=P, E=6, F=5, seed=6)
    out = ei.execute(ei.parse(softmax_cascade("m <= p + M - P")), x)["AV"]
    keep = torch.arange(M)[None, :] <= torch.arange(P)[:, None] + (M - P)
    assert rel_err(out, masked_softmax_attention(**x, keep=keep)) < 1e-6


@pytest.mark.parametrize("name", ["own", "attention-3pass", "attention-naive"])
def test_fully_masked_row_is_exactly_zero(name):
    """With `m < p` query p=0 has no key. By definition (execute's docstring,
    docs/notation.md) an output point whose reduction has no remaining point
    gets the reduction's identity: 0 for sum. In a design whose last Einsum
    iterates m (A * V summed over m) that row is exactly 0. (Designs that
    divide after the reduction, e.g. 3pass-deferred, compute 0/0 there.)"""
    c = ei.parse(softmax_cascade("m < p")) if name == "own" else with_predicate(name, "m < p", "")
    x = qkv(B=2, H=3, M=16, P=16, E=8, F=8, seed=7)
    every = ei.execute(c, x, keep="all")
    av = every["AV"]
    assert np.all(av[..., 0] == 0.0)
    assert np.all(every["SD"][..., 0] == 0.0)
    if "GM" in every:
        assert np.all(every["GM"][..., 0] == -np.inf)          # max over nothing: -inf
    keep = torch.arange(16)[None, :] < torch.arange(16)[:, None]
    assert rel_err(av, masked_softmax_attention(**x, keep=keep)) < 1e-6


def test_removed_points_do_not_exist_even_if_their_values_are_nan():
    # keys m >= P are never visible under m <= p; NaN/inf there must not leak
    M, P = 12, 8
    x = qkv(B=2, H=2, M=M, P=P, E=4, F=4, seed=8)
    x["K"][..., P:] = np.nan
    x["V"][..., P:] = np.inf
    out = ei.execute(ei.parse(softmax_cascade("m <= p")), x)["AV"]
    keep = torch.arange(M)[None, :] <= torch.arange(P)[:, None]
    clean = {k: np.nan_to_num(v, nan=0.0, posinf=0.0) for k, v in x.items()}
    assert rel_err(out, masked_softmax_attention(**clean, keep=keep)) < 1e-6


@pytest.mark.parametrize("W", [0, 1, 4, 100])
def test_sliding_window(W):
    x = qkv(B=2, H=2, M=24, P=24, E=8, F=8, seed=9)
    out = ei.execute(ei.parse(softmax_cascade("abs(p - m) <= W")), x, shapes={"W": W})["AV"]
    keep = (torch.arange(24)[None, :] - torch.arange(24)[:, None]).abs() <= W
    assert rel_err(out, masked_softmax_attention(**x, keep=keep)) < 1e-6
    if W == 0:  # each query sees only its own key: output is V itself
        np.testing.assert_allclose(out, x["V"], rtol=1e-12)


def test_dilated_causal_window():
    x = qkv(B=2, H=2, M=20, P=20, E=8, F=8, seed=10)
    c = ei.parse(softmax_cascade("m <= p and p - m <= W and (p - m) % 2 == 0"))
    out = ei.execute(c, x, shapes={"W": 6})["AV"]
    d = torch.arange(20)[:, None] - torch.arange(20)[None, :]          # [p, m]: p - m
    keep = (d >= 0) & (d <= 6) & (d % 2 == 0)
    assert rel_err(out, masked_softmax_attention(**x, keep=keep)) < 1e-6


def test_boolean_mask_tensor_in_where():
    M, P = 15, 11
    x = qkv(B=2, H=3, M=M, P=P, E=8, F=8, seed=11)
    rng = np.random.default_rng(12)
    mask = rng.random((M, P)) < 0.4                    # Mask[M, P]
    mask[:, 3] = False                                  # query 3 sees nothing -> 0
    c = ei.parse(softmax_cascade("Mask[m, p]", decls="input Mask[M, P]: bool\n"))
    out = ei.execute(c, {**x, "Mask": mask})["AV"]
    assert np.all(out[..., 3] == 0.0)
    assert rel_err(out, masked_softmax_attention(**x, keep=torch.from_numpy(mask.T))) < 1e-6


def test_boolean_mask_tensor_per_batch_combined_with_causal():
    x = qkv(B=2, H=2, M=10, P=10, E=4, F=4, seed=13)
    mask = np.random.default_rng(14).random((2, 10, 10)) < 0.7   # Pad[B, M, P]
    mask[:, 0, :] = True                                          # key 0 always visible
    c = ei.parse(softmax_cascade("Pad[b, m, p] and m <= p", decls="input Pad[B, M, P]: bool\n"))
    out = ei.execute(c, {**x, "Pad": mask})["AV"]
    keep = torch.from_numpy(mask.transpose(0, 2, 1))[:, None] & torch.tril(torch.ones(10, 10, dtype=torch.bool))
    assert rel_err(out, masked_softmax_attention(**x, keep=keep)) < 1e-6


def test_alibi_bias_from_coordinates():
    H, M = 4, 18
    x = qkv(B=2, H=H, M=M, P=M, E=8, F=8, seed=15)
    slopes = 2.0 ** (-8.0 * np.arange(1, H + 1) / H)
    c = ei.parse(softmax_cascade("m <= p", decls="input S[H]: f64\n", score="L",
                                 scores="L[b, h, m, p] = QK[b, h, m, p] + S[h] * (m - p) where m <= p"))
    out = ei.execute(c, {**x, "S": slopes})["AV"]
    rel = np.arange(M)[None, :] - np.arange(M)[:, None]                # [p, m]: m - p
    bias = slopes[:, None, None] * rel[None]                          # [H, P, M]
    keep = torch.tril(torch.ones(M, M, dtype=torch.bool))
    assert rel_err(out, masked_softmax_attention(**x, keep=keep, bias=bias)) < 1e-6
    # the same through torch's own float attn_mask
    fmask = torch.from_numpy(bias).masked_fill(~keep, -math.inf)
    assert rel_err(out, sdpa(**x, attn_mask=fmask)) < 1e-6


@pytest.mark.parametrize("M, P", [(14, 14), (9, 17)])
def test_relative_position_bias_table(M, P):
    H = 3
    x = qkv(B=2, H=H, M=M, P=P, E=8, F=8, seed=16)
    table = np.random.default_rng(17).standard_normal((H, M + P - 1))
    c = ei.parse(softmax_cascade(None, decls="rank R = M + P - 1\ninput T[H, R]: f64\n", score="L",
                                 scores="L[b, h, m, p] = QK[b, h, m, p] + T[h, p - m + M - 1]"))
    out = ei.execute(c, {**x, "T": table})["AV"]
    idx = np.arange(P)[:, None] - np.arange(M)[None, :] + M - 1       # [p, m]
    bias = table[:, idx]                                              # [H, P, M]
    assert rel_err(out, masked_softmax_attention(**x, bias=bias)) < 1e-6


def test_relative_table_out_of_range_only_at_removed_points_is_fine():
    # a window table of 2W+1 entries indexed p - m + W: out of range exactly
    # where abs(p - m) > W, and those points are removed by the predicate
    H, M, W = 2, 16, 3
    x = qkv(B=2, H=H, M=M, P=M, E=4, F=4, seed=18)
    table = np.random.default_rng(19).standard_normal((H, 2 * W + 1))
    cond = "abs(p - m) <= W"
    c = ei.parse(softmax_cascade(cond, decls="rank R = 2 * W + 1\ninput T[H, R]: f64\n", score="L",
                                 scores=f"L[b, h, m, p] = QK[b, h, m, p] + T[h, p - m + W] where {cond}"))
    out = ei.execute(c, {**x, "T": table}, shapes={"W": W})["AV"]
    d = np.arange(M)[:, None] - np.arange(M)[None, :]                 # [p, m]: p - m
    keep = np.abs(d) <= W
    bias = table[:, np.clip(d + W, 0, 2 * W)]
    assert rel_err(out, masked_softmax_attention(**x, keep=torch.from_numpy(keep), bias=bias)) < 1e-6


GQA = HEADER.replace("input K[B, H, E, M]", "input K[B, KH, E, M]").replace(
    "input V[B, H, F, M]", "input V[B, KH, F, M]").replace("rank B, H, M, P, E, F", "rank B, H, M, P, E, F\nrank KH = H / G") + """
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h / G, e, m]
GM[b, h, p] = max[m] QK[b, h, m, p]
SN[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p])
SD[b, h, p] = SN[b, h, m, p]
AV[b, h, f, p] = SN[b, h, m, p] * V[b, h / G, f, m] / SD[b, h, p]
"""


@pytest.mark.parametrize("H, G", [(6, 3), (4, 2), (3, 1), (4, 4)])
def test_grouped_query_attention(H, G):
    x = qkv(B=2, H=H, M=13, P=10, E=8, F=6, seed=20 + H + G, KH=H // G)
    out = ei.execute(ei.parse(GQA), x, shapes={"G": G})["AV"]
    ref = back(tnf.scaled_dot_product_attention(
        t(x["Q"]), t(x["K"]).repeat_interleave(G, dim=1), t(x["V"]).repeat_interleave(G, dim=1), scale=1.0))
    assert rel_err(out, ref) < 1e-6


def test_sigmoid_attention():
    # sigmoid(q.k - log M) v, no normalisation
    x = qkv(B=2, H=3, M=20, P=12, E=8, F=8, seed=21)
    c = ei.parse(HEADER + """
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]
AV[b, h, f, p] = sigmoid(QK[b, h, m, p] - log(M)) * V[b, h, f, m]
""")
    out = ei.execute(c, x)["AV"]
    s = t(x["Q"]) @ t(x["K"]).transpose(-1, -2)
    ref = back(torch.sigmoid(s - math.log(20)) @ t(x["V"]))
    assert rel_err(out, ref) < 1e-6


def test_select_causal_mask_with_minus_inf():
    # causality through select(cond, score, -inf) in the map, no predicate
    x = qkv(B=2, H=2, M=17, P=17, E=8, F=8, seed=22)
    c = ei.parse(softmax_cascade(None, score="L",
                                 scores="L[b, h, m, p] = select(m <= p, QK[b, h, m, p], -inf)"))
    out = ei.execute(c, x)["AV"]
    assert rel_err(out, sdpa(**x, is_causal=True)) < 1e-6


def test_select_relu_attention_and_softcapping():
    x = qkv(B=2, H=2, M=15, P=9, E=8, F=8, seed=23)
    c = ei.parse(HEADER + """
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]
RA[b, h, f, p] = select(QK[b, h, m, p] > 0, QK[b, h, m, p], 0) * V[b, h, f, m] / M
CAP[b, h, m, p] = C * tanh(QK[b, h, m, p] / C)
GM[b, h, p] = max[m] CAP[b, h, m, p]
SN[b, h, m, p] = exp(CAP[b, h, m, p] - GM[b, h, p])
SD[b, h, p] = SN[b, h, m, p]
SC[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m] / SD[b, h, p]
""")
    out = ei.execute(c, x, shapes={"C": 2.5})
    s = t(x["Q"]) @ t(x["K"]).transpose(-1, -2)
    assert rel_err(out["RA"], back(torch.relu(s) @ t(x["V"]) / 15)) < 1e-6
    capped = 2.5 * torch.tanh(s / 2.5)
    assert rel_err(out["SC"], back(torch.softmax(capped, -1) @ t(x["V"]))) < 1e-6


SCAN = """
rank B, M
input X[B, M]: f64
S[b, 0] = 0
S[b, m + 1] = S[b, m] + X[b, m]
R[b, 0] = -inf
R[b, m + 1] = max(R[b, m], X[b, m])
INC[b, m] = S[b, m + 1]
EXC[b, m] = S[b, m]
TOT[b] = S[b, M]
RUNMAX[b, m] = R[b, m + 1]
DIFF[b, m] = S[b, m + 1] - S[b, m]
"""


@pytest.mark.parametrize("M", [1, 2, 23])
def test_prefix_sum_and_max_recurrences(M):
    X = np.random.default_rng(24 + M).standard_normal((3, M))
    out = ei.execute(ei.parse(SCAN), {"X": X})
    np.testing.assert_allclose(out["INC"], np.cumsum(X, axis=1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out["EXC"], np.cumsum(X, axis=1) - X, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out["TOT"], X.sum(axis=1), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(out["RUNMAX"], np.maximum.accumulate(X, axis=1))
    np.testing.assert_allclose(out["DIFF"], X, atol=1e-12)
    every = ei.execute(ei.parse(SCAN), {"X": X}, keep="all")
    assert every["S"].shape == (3, M + 1) and np.all(every["S"][:, 0] == 0)
    assert np.all(every["R"][:, 0] == -np.inf)


def test_recurrence_with_coupled_state_online_softmax_of_a_vector():
    # running max and rescaled running sum (two tensors in one cycle) against
    # logsumexp
    X = np.random.default_rng(25).standard_normal((4, 19)) * 10
    c = ei.parse("""
rank B, M
input X[B, M]: f64
RM[b, 0] = -inf
RS[b, 0] = 0
RM[b, m + 1] = max(RM[b, m], X[b, m])
RS[b, m + 1] = RS[b, m] * exp(RM[b, m] - RM[b, m + 1]) + exp(X[b, m] - RM[b, m + 1])
LSE[b] = RM[b, M] + log(RS[b, M])
""")
    out = ei.execute(c, {"X": X})["LSE"]
    np.testing.assert_allclose(out, torch.logsumexp(torch.from_numpy(X), dim=1).numpy(), rtol=1e-12)


ELEMENTWISE = [
    ("exp(X[n])", lambda x, y: np.exp(x)),
    ("exp2(X[n])", lambda x, y: 2.0 ** x),
    ("log(Y[n])", lambda x, y: np.log(y)),
    ("sqrt(Y[n])", lambda x, y: y ** 0.5),
    ("sigmoid(X[n])", lambda x, y: 1.0 / (1.0 + np.exp(-x))),
    ("tanh(X[n])", lambda x, y: np.tanh(x)),
    ("abs(X[n])", lambda x, y: np.abs(x)),
    ("max(X[n], Y[n])", lambda x, y: np.maximum(x, y)),
    ("min(X[n], Y[n])", lambda x, y: np.minimum(x, y)),
    ("clip(X[n], -0.5, 0.25)", lambda x, y: np.clip(x, -0.5, 0.25)),
    ("X[n] / Y[n] - 2 * X[n] + -X[n]", lambda x, y: x / y - 3 * x),
    ("X[n] // Y[n]", lambda x, y: np.floor(x / y)),
    ("X[n] % Y[n]", lambda x, y: x - y * np.floor(x / y)),
    ("select(X[n] > Y[n] or not X[n] < 0, X[n], Y[n])", lambda x, y: np.where((x > y) | (x >= 0), x, y)),
    ("select(X[n] >= 0 and Y[n] != 1, 1, 0)", lambda x, y: ((x >= 0) & (y != 1)).astype(float)),
    ("n * X[n] + N", lambda x, y: np.arange(len(x)) * x + len(x)),
    ("X[N - 1 - n]", lambda x, y: x[::-1]),
    ("X[(n + 3) % N]", lambda x, y: np.roll(x, -3)),
    ("X[n / 2]", lambda x, y: x[np.arange(len(x)) // 2]),
    ("X[n] where n % 3 == 1", lambda x, y: np.where(np.arange(len(x)) % 3 == 1, x, 0.0)),
]


@pytest.mark.parametrize("expr, ref", ELEMENTWISE, ids=[e for e, _ in ELEMENTWISE])
def test_map_operators(expr, ref):
    rng = np.random.default_rng(26)
    x = rng.standard_normal(17) * 2
    y = rng.uniform(0.5, 3.0, 17)
    c = ei.parse(f"rank N\ninput X[N]: f64\ninput Y[N]: f64\nZ[n] = {expr} + 0 * X[n] + 0 * Y[n]\n")
    out = ei.execute(c, {"X": x, "Y": y})["Z"]
    np.testing.assert_allclose(out, ref(x, y), rtol=1e-12, atol=1e-12)


def test_max_and_min_reductions_with_empty_points_get_their_identity():
    X = np.random.default_rng(27).standard_normal((5, 6))              # X[M, P]
    c = ei.parse("""
rank M, P
input X[M, P]: f64
MX[p] = max[m] X[m, p] where m < p
MN[p] = min[m] X[m, p] where m < p
SM[p] = X[m, p] where m < p
MAP[m, p] = max[] X[m, p] where m < p
""")
    out = ei.execute(c, {"X": X})
    keep = np.arange(5)[:, None] < np.arange(6)[None, :]
    np.testing.assert_array_equal(out["MX"], np.where(keep, X, -np.inf).max(axis=0))
    np.testing.assert_array_equal(out["MN"], np.where(keep, X, np.inf).min(axis=0))
    np.testing.assert_allclose(out["SM"], np.where(keep, X, 0).sum(axis=0), atol=1e-15)
    assert out["MX"][0] == -np.inf and out["MN"][0] == np.inf and out["SM"][0] == 0
    np.testing.assert_array_equal(out["MAP"], np.where(keep, X, -np.inf))


# ------------------------------------------------- 5. the size the issue names
# (its speed is measured by benchmarks/executor_speed.py, not here)

@pytest.mark.parametrize("name, shapes", [("attention-1pass", {"M0": 64}), ("attention-3pass", None)])
def test_executor_at_the_benchmark_size(name, shapes):
    x = qkv(B=2, H=4, M=256, P=256, E=64, F=64, seed=28)
    out = ei.execute(ei.library.load(name), x, shapes=shapes)["AV"]
    assert rel_err(out, sdpa(**x)) < 1e-6


# ------------------------------------------------------------------ 6. errors

def test_missing_input_is_named():
    x = qkv(M=6, P=5, E=4, F=4)
    del x["V"]
    with pytest.raises(ei.ShapeError, match=r"missing input.*\bV\b"):
        ei.execute(ei.library.load("attention-3pass"), x)


def test_unknown_input_is_named():
    x = qkv(M=6, P=5, E=4, F=4)
    with pytest.raises(ei.ShapeError, match="KK is not an input"):
        ei.execute(ei.library.load("attention-3pass"), {**x, "KK": x["K"]})


def test_wrong_number_of_dimensions():
    x = qkv(M=6, P=5, E=4, F=4)
    x["K"] = x["K"][0]
    with pytest.raises(ei.ShapeError, match=r"input K must have 4 dimensions"):
        ei.execute(ei.library.load("attention-3pass"), x)


@pytest.mark.parametrize("name", LIBRARY)
def test_inputs_disagreeing_on_an_extent(name):
    x = qkv(M=6, P=5, E=4, F=4)
    x["K"] = x["K"][:, :, :3]                         # E = 3 in K, 4 in Q
    with pytest.raises(ei.ShapeError, match="conflicting"):
        ei.execute(ei.library.load(name), x, shapes=tile_shapes(name, 2))


def test_given_shape_disagreeing_with_an_input():
    with pytest.raises(ei.ShapeError, match="conflicting"):
        ei.execute(ei.library.load("attention-3pass"), qkv(M=6, P=5, E=4, F=4), shapes={"M": 7})


@pytest.mark.parametrize("name", sorted(TILED))
def test_missing_tile_size_is_named(name):
    with pytest.raises(ei.ShapeError, match=r"\bM0\b"):
        ei.execute(ei.library.load(name), qkv(M=6, P=5, E=4, F=4))


@pytest.mark.parametrize("M0", [0, -2, 2.5, "4"])
def test_invalid_tile_size(M0):
    with pytest.raises(ei.ShapeError, match="M0"):
        ei.execute(ei.library.load("attention-1pass"), qkv(M=6, P=5, E=4, F=4), shapes={"M0": M0})


def test_missing_window_symbol_is_named():
    with pytest.raises(ei.ShapeError, match=r"\bW\b"):
        ei.execute(ei.parse(softmax_cascade("abs(p - m) <= W")), qkv(M=6, P=6, E=4, F=4))


def test_gqa_heads_not_divisible_by_group():
    x = qkv(H=6, M=5, P=5, E=4, F=4, KH=2)
    with pytest.raises(ei.ShapeError, match="KH"):
        ei.execute(ei.parse(GQA), x, shapes={"G": 4})


def test_derived_extent_conflicting_with_an_input():
    c = ei.parse(softmax_cascade(None, decls="rank R = M + P - 1\ninput T[H, R]: f64\n", score="L",
                                 scores="L[b, h, m, p] = QK[b, h, m, p] + T[h, p - m + M - 1]"))
    x = qkv(H=3, M=6, P=5, E=4, F=4)
    with pytest.raises(ei.ShapeError, match="conflicting"):
        ei.execute(c, {**x, "T": np.zeros((3, 9))})


def test_index_out_of_range_at_an_existing_point():
    # a relative-position table with a free extent that is too small
    c = ei.parse(softmax_cascade(None, decls="input T[H, R]: f64\n", score="L",
                                 scores="L[b, h, m, p] = QK[b, h, m, p] + T[h, p - m + M - 1]"))
    x = qkv(H=3, M=6, P=5, E=4, F=4)
    with pytest.raises(ei.ExecutionError, match=r"index out of range: T\[") as info:
        ei.execute(c, {**x, "T": np.zeros((3, 6))})
    assert info.value.line is not None                 # points at the access in the text
    # large enough: no error
    ei.execute(c, {**x, "T": np.zeros((3, 10))})


def test_index_out_of_range_negative():
    c = ei.parse("rank N\ninput X[N]: f64\nZ[n] = X[n - 1]\n")
    with pytest.raises(ei.ExecutionError, match="index out of range"):
        ei.execute(c, {"X": np.ones(4)})
    # the same access is fine where the predicate removes the bad point
    c = ei.parse("rank N\ninput X[N]: f64\nZ[n] = X[n - 1] where n >= 1\n")
    np.testing.assert_array_equal(ei.execute(c, {"X": np.arange(4.0)})["Z"], [0, 0, 1, 2])


# ------------------------------------------------------- executor bugs found

def test_zero_length_key_rank_is_an_ein_error_or_the_identity():
    x = qkv(B=1, H=1, M=4, P=3, E=2, F=2)
    x["K"], x["V"] = x["K"][..., :0], x["V"][..., :0]
    try:
        out = ei.execute(ei.library.load("attention-3pass"), x)
    except ei.EinError:
        return
    assert np.all(out["AV"] == 0.0)


def test_ragged_input_is_a_shape_error():
    x = qkv(B=1, H=1, M=2, P=2, E=2, F=2)
    x["Q"] = [[[[1.0, 2.0], [3.0]]]]
    with pytest.raises(ei.ShapeError):
        ei.execute(ei.library.load("attention-3pass"), x)


def test_two_level_tiling_with_partial_tiles():
    X = np.random.default_rng(29).standard_normal((3, 7))
    c = ei.parse("""
rank B
partition M -> M1, M0
partition M0 -> M01, M00
input X[B, M]: f64
T[b, m1, m01, m00] = X[b, m1 * M0 + m01 * M00 + m00]
Y[b] = T[b, m1, m01, m00]
""")
    out = ei.execute(c, {"X": X}, shapes={"M0": 4, "M00": 2})["Y"]
    np.testing.assert_allclose(out, X.sum(axis=1), rtol=1e-12)


def test_bad_dtype_or_inputs_are_clear_errors():
    c = ei.parse("rank N\ninput X[N]: f64\nZ[n] = X[n] * 2\n")
    with pytest.raises(ei.ExecutionError, match="'bogus' is not a floating-point type"):
        ei.execute(c, {"X": np.ones(3)}, dtype="bogus")
    with pytest.raises(ei.ShapeError, match="missing input: X"):
        ei.execute(c, None)
    with pytest.raises(ei.ExecutionError, match="inputs must map input names to arrays"):
        ei.execute(c, [np.ones(3)])
    with pytest.raises(ei.ShapeError, match="input X is not an array of numbers"):
        ei.execute(c, {"X": ["a", "b"]})

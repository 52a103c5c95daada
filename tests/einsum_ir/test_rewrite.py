"""Rewrites that lower the pass count (einsum_ir.rewrites, `attnc rewrite`).

Each result is compared with an independent reference: the library's own
hand-written form (attention-1pass, attention-3pass-deferred,
decode-split-kv), a plain numpy softmax, or the original design executed
on the same random inputs at shapes other than the ones the built-in check
uses (partial last tiles included). Pass counts come from the passes
analysis."""
from __future__ import annotations

import numpy as np
import pytest

import einsum_ir as ei
from einsum_ir.analysis import passes
from einsum_ir.rewrites import RewriteError, rewrite
from einsum_ir.rewrites.algebra import exp_degree

# tile sizes that do not divide the key count: the last tile is partial
SHAPES = dict(B=1, H=2, M=7, P=4, E=3, F=2, M0=3)


def same_outputs(a, b, shapes, seed=3):
    """a and b on the same random inputs: every output of a equal in b."""
    from einsum_ir.shapes import symbols_used
    sa = {k: v for k, v in shapes.items() if k in symbols_used(a)}
    sb = {k: v for k, v in shapes.items() if k in symbols_used(b)}
    xs = ei.random_inputs(a, sa, seed=seed)
    ya, yb = ei.execute(a, xs, sa), ei.execute(b, {k: xs[k] for k in xs if b.has_tensor(k)}, sb)
    for name, x in ya.items():
        assert np.isfinite(x).any()
        np.testing.assert_allclose(yb[name], x, rtol=1e-10, atol=1e-12)
    return ya


def numpy_softmax_attention(q, k, v):
    """AV[b, h, f, p] = sum_m softmax_m(q . k)[m, p] * v[f, m], plain numpy."""
    s = np.einsum("bhep,bhem->bhmp", q, k)
    s = np.exp(s - s.max(axis=2, keepdims=True))
    a = s / s.sum(axis=2, keepdims=True)
    return np.einsum("bhmp,bhfm->bhfp", a, v)


def test_attention_3pass_online_is_attention_1pass():
    c = ei.load("attention-3pass")
    r = rewrite(c, "online")
    assert passes(c, "M").passes == 3 and passes(r.cascade, "M").passes == 1
    assert r.passes_before == 3 and r.passes_after == 1
    ref = ei.load("attention-1pass")
    xs = ei.random_inputs(c, {k: SHAPES[k] for k in "BHMPEF"}, seed=5)
    got = ei.execute(r.cascade, xs, {"M0": 3})["AV"]
    np.testing.assert_allclose(got, ei.execute(ref, xs, {"M0": 3})["AV"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got, numpy_softmax_attention(xs["Q"], xs["K"], xs["V"]), rtol=1e-10, atol=1e-12)
    # the text is the cascade, and it states the algebra
    assert ei.parse(r.text) == r.cascade
    assert "exp(G_old - G_new)" in r.text and "running" in r.text
    assert any(t.iterative for t in r.cascade.tensors)


SOFTMAX_FAMILY = ["alibi", "softcap", "sliding-window", "sink-logit", "sink-tokens", "relative-bias", "gqa",
                  "decode", "dense-bias", "block-sparse", "attention-naive"]


@pytest.mark.parametrize("name", SOFTMAX_FAMILY)
def test_softmax_family_online_one_pass(name):
    c = ei.load(name)
    r = rewrite(c, "online", verify=False)
    assert passes(c, r.rank).passes >= 2
    assert passes(r.cascade, r.rank).passes == 1
    shapes = dict(SHAPES, W=3, NS=2, G=2, TK=2, TQ=2, density_BM=0.5)
    if name in ("alibi", "softcap", "sliding-window", "sink-logit", "sink-tokens"):
        shapes["P"] = 7                        # rank M = P
    same_outputs(c, r.cascade, shapes)


def test_sink_logit_normaliser_is_a_running_row():
    """sink-logit's normaliser GM = max(LM, SINK) is a row made of a maximum:
    it is carried as RGM[m1+1] = max(RLM[m1+1], SINK), starting at SINK."""
    r = rewrite(ei.load("sink-logit"), "online", verify=False)
    init = next(e for e in r.cascade.einsums if e.name == "RGM" and e.is_initial)
    assert "SINK" in str(init.expr)


def test_online_predicate_guards_empty_tiles():
    """A sliding window leaves whole tiles without a key for late queries:
    the rescaling factor is 1 there, never exp(-inf + inf)."""
    c = ei.load("sliding-window")
    r = rewrite(c, "online", verify=False)
    assert "select" in str(next(e for e in r.cascade.einsums if e.name.startswith("P")).expr)
    out = same_outputs(c, r.cascade, dict(B=1, H=1, P=9, E=2, F=2, W=2, M0=2))
    assert np.isfinite(out["AV"]).all()


THREE_PASS_STRICT = """
rank B, H, M, P, E, F
input Q[B, H, E, P]: f16
input K[B, H, E, M]: f16
input V[B, H, F, M]: f16
input SLOPE[H]: f32
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m] + SLOPE[h] * (m - p) where m < p
GM[b, h, p] = max[m] QK[b, h, m, p] where m < p
SN[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p]) where m < p
SD[b, h, p] = SN[b, h, m, p] where m < p
A[b, h, m, p] = SN[b, h, m, p] / SD[b, h, p] where m < p
AV[b, h, f, p] = A[b, h, m, p] * V[b, h, f, m] where m < p
"""

THREE_PASS_GQA = """
rank B, H, M, P, E, F
rank KH = H / G
input Q[B, H, E, P]: f16
input K[B, KH, E, M]: f16
input V[B, KH, F, M]: f16
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h / G, e, m]
GM[b, h, p] = max[m] QK[b, h, m, p]
SN[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p])
SD[b, h, p] = SN[b, h, m, p]
A[b, h, m, p] = 2 * SN[b, h, m, p] / SD[b, h, p]
AV[b, h, f, p] = V[b, h / G, f, m] * A[b, h, m, p] / 2
"""


def test_deferral_attention_3pass():
    c = ei.load("attention-3pass")
    r = rewrite(c, "deferred")
    assert (r.passes_before, r.passes_after) == (3, 2)
    assert passes(r.cascade, "M").passes == 2
    assert not r.cascade.has_tensor("A")             # the divided tensor is gone
    ref = ei.load("attention-3pass-deferred")
    same_outputs(ref, r.cascade, SHAPES)
    assert "does not depend on m" in r.text


@pytest.mark.parametrize("text", [THREE_PASS_STRICT, THREE_PASS_GQA], ids=["strict-causal", "gqa"])
def test_deferral_other_3pass_designs(text):
    c = ei.parse(text)
    r = rewrite(c, "deferred", verify=False)
    assert passes(c, "M").passes == 3 and passes(r.cascade, "M").passes == 2
    out = same_outputs(c, r.cascade, dict(SHAPES, G=2))
    if text is THREE_PASS_STRICT:
        # query 0 sees no key: an empty sum, 0 in the original and in the rewrite (not 0/0)
        assert np.all(out["AV"][..., 0] == 0)
        online = rewrite(c, "online", verify=False)
        assert passes(online.cascade, "M").passes == 1
        same_outputs(c, online.cascade, SHAPES)


def test_differential_attention_sum_of_quotients():
    """A = N1 / D1 - LAM * N2 / D2 summed against V: one sum per quotient
    (linearity), each divided after; then online to 1 pass."""
    from pathlib import Path
    c = ei.parse_file(Path(__file__).parent / "designs" / "differential-3pass.ein")
    d = rewrite(c, "deferred", verify=False)
    assert (passes(c, "M").passes, passes(d.cascade, "M").passes) == (3, 2)
    assert {"AVN1", "AVN2"} <= {t.name for t in d.cascade.tensors}
    o = rewrite(c, "online", verify=False)
    assert passes(o.cascade, "M").passes == 1
    for r in (d, o):
        same_outputs(c, r.cascade, SHAPES)


def test_deferral_refused_with_reasons():
    with pytest.raises(RewriteError, match=r"A divides inside clip\(\.\.\.\)"):
        rewrite(ei.load("clipped-softmax"), "deferred")
    minus = str(ei.load("clipped-softmax")).replace("(ZETA[] - GAMMA[]) * SN[b, h, m, p] / SD[b, h, p] + GAMMA[]",
                                                    "ZETA[] - SN[b, h, m, p] / SD[b, h, p] * GAMMA[]")
    with pytest.raises(RewriteError, match=r"A divides inside clip\(\.\.\.\), not as a factor"):  # through the -
        rewrite(ei.parse(minus), "deferred")
    with pytest.raises(RewriteError, match="AV divides but no Einsum sums it"):
        rewrite(ei.load("attention-3pass-deferred"), "deferred")
    bad = THREE_PASS_GQA.replace("A[b, h, m, p] = 2 * SN[b, h, m, p] / SD[b, h, p]",
                                 "A[b, h, m, p] = SN[b, h, m, p] / QK[b, h, m, p]")
    with pytest.raises(RewriteError, match="depends on m"):
        rewrite(ei.parse(bad), "deferred")


@pytest.mark.parametrize("name", ["linear-attention", "sigmoid-attention", "relu-attention",
                                  "transnormer-decay", "decode"])
def test_split_kv(name):
    c = ei.load(name)
    r = rewrite(c, "split-kv", verify=False)
    assert any(x.parent == "M" for x in r.cascade.ranks)
    # the combine reduces over the chunks; no recurrence
    assert not any(t.iterative for t in r.cascade.tensors)
    assert any(e.reduced == ("m1",) for e in r.cascade.einsums)
    shapes = dict(SHAPES, P=7) if name == "transnormer-decay" else SHAPES
    same_outputs(c, r.cascade, shapes)


def test_split_kv_decode_is_decode_split_kv():
    r = rewrite(ei.load("decode"), "split-kv")
    ref = ei.load("decode-split-kv")
    same_outputs(ref, r.cascade, dict(B=2, H=2, M=9, E=3, F=2, M0=4))
    assert passes(r.cascade, "M").passes == passes(ref, "M").passes


def test_split_kv_of_softmax_with_sink_and_window():
    for name in ("sink-logit", "sliding-window"):
        c = ei.load(name)
        r = rewrite(c, "split-kv", verify=False)
        same_outputs(c, r.cascade, dict(B=1, H=2, P=9, E=2, F=2, W=2, M0=2))


MAX_OF_STATISTIC = """
rank M, P
input S[M, P]: f32
input V[M, P]: f32
GM[p] = max[m] S[m, p]
D[m, p] = S[m, p] - GM[p]
G2[p] = max[m] D[m, p] * D[m, p]
SN[m, p] = exp(S[m, p] - G2[p])
AV[p] = SN[m, p] * V[m, p]
"""

NOT_EXP_OF_G = """
rank M, P
input S[M, P]: f32
input V[M, P]: f32
GM[p] = max[m] S[m, p]
W[m, p] = exp(S[m, p]) * GM[p]
AV[p] = W[m, p] * V[m, p]
"""


def test_online_refusals_name_the_einsum_and_condition():
    with pytest.raises(RewriteError, match="already makes 1 pass over M"):
        rewrite(ei.load("linear-attention"), "online")
    with pytest.raises(RewriteError, match=r"G2: a max over m of a term that reads GM"):
        rewrite(ei.parse(MAX_OF_STATISTIC), "online")
    with pytest.raises(RewriteError, match=r"AV: its term depends on the normaliser GM other than through "
                                           r"factors exp\(A - GM\)"):
        rewrite(ei.parse(NOT_EXP_OF_G), "online")
    with pytest.raises(RewriteError, match="AV: its term reads SD"):
        rewrite(ei.load("clipped-softmax"), "online")
    with pytest.raises(RewriteError, match="already partitioned"):
        rewrite(ei.load("attention-2pass"), "online")
    with pytest.raises(RewriteError, match="unknown rewrite"):
        rewrite(ei.load("attention-3pass"), "two-pass")


def test_exp_degree():
    """exp(A - G) terms have degree 1 per factor; G elsewhere is undefined."""
    s, gg = ei.Access("S", (ei.Idx("m"), ei.Idx("p"))), ei.Access("G", (ei.Idx("p"),))
    e1 = ei.Op("exp", (ei.Op("sub", (s, gg)),))
    none = lambda a: None  # noqa: E731
    assert exp_degree(e1, "G", none) == 1
    assert exp_degree(ei.Op("mul", (e1, e1)), "G", none) == 2
    assert exp_degree(ei.Op("mul", (e1, s)), "G", none) == 1
    assert exp_degree(ei.Op("add", (e1, s)), "G", none) is None          # exp(A - G) + S: mixed degrees
    assert exp_degree(ei.Op("exp", (ei.Op("sub", (gg, s)),)), "G", none) is None
    assert exp_degree(s, "G", none) == 0


def test_rewrite_verify_catches_a_wrong_result(monkeypatch):
    """The check compares outputs: a rewrite that changed the value is refused."""
    from einsum_ir.rewrites import check
    a = ei.load("attention-3pass")
    b = ei.parse(str(ei.load("attention-3pass-deferred")).replace("SNV[b, h, f, p] / SD[b, h, p]",
                                                                  "SNV[b, h, f, p] / SD[b, h, p] * 1.001"))
    with pytest.raises(RewriteError, match="differs"):
        check(a, b)


def test_cli_rewrite_then_analyze(tmp_path, capsys):
    from attnc.cli import main
    out = tmp_path / "online.ein"
    assert main(["rewrite", "attention-3pass", "--to", "online", "--out", str(out), "--no-verify"]) == 0
    shown = capsys.readouterr().out
    assert "passes over M: 3 -> 1" in shown and "not checked" in shown
    assert passes(ei.parse_file(out), "M").passes == 1
    assert main(["analyze", str(out), "--json"]) == 0
    import json
    assert json.loads(capsys.readouterr().out)["passes"]["M"]["passes"] == 1
    assert main(["rewrite", "linear-attention", "--to", "online"]) == 2
    assert "already makes 1 pass" in capsys.readouterr().err


@pytest.mark.parametrize("family,seed", [("softmax", 896301540), ("two-branch", 793412380),
                                         ("const-index", 1751147217)])
def test_generated_designs_online(family, seed):
    """A fixed sample of generated designs (benchmarks/rewrite_sweep.py runs
    hundreds): 1 pass, equal to the design at shapes of its own."""
    from einsum_ir.random_designs import random_design
    d = random_design(seed, family)
    c = d.cascade()
    r = rewrite(c, "online", verify=False)
    assert passes(c, r.rank).passes > 1 and passes(r.cascade, r.rank).passes == 1
    same_outputs(c, r.cascade, dict(d.shapes, M0=2))


def test_split_kv_of_attention_1pass_runs_its_recurrence_per_chunk():
    """attention-1pass's own recurrence, restarted in each of MS chunks of
    MT = M1 / MS tiles, merged by max and rescaled sums."""
    c = ei.load("attention-1pass")
    r = rewrite(c, "split-kv", verify=False)
    text = r.text
    assert "rank MS = (M1 + MT - 1) // MT" in text and "max[ms] RM[b, h, ms, MT, p]" in text
    for shapes in (dict(B=1, H=2, M=11, P=3, E=2, F=2, M0=2, MT=2),      # 6 tiles (the last partial), 3 chunks
                   dict(B=1, H=2, M=9, P=3, E=2, F=2, M0=2, MT=2)):      # 5 tiles: the last chunk ends past the keys
        same_outputs(c, r.cascade, shapes)
    xs = ei.random_inputs(c, {k: v for k, v in shapes.items() if k != "MT"}, seed=4)
    np.testing.assert_allclose(ei.execute(r.cascade, xs, {"M0": 2, "MT": 2})["AV"],
                               numpy_softmax_attention(xs["Q"], xs["K"], xs["V"]), rtol=1e-10, atol=1e-12)


def test_split_kv_of_an_online_rewrite():
    """The online form (normaliser rows, finite stand-ins) splits too."""
    c = ei.load("sink-logit")
    online = ei.parse(rewrite(c, "online", verify=False).text)
    r = rewrite(online, "split-kv", verify=False)
    same_outputs(c, r.cascade, dict(B=1, H=2, P=9, E=2, F=2, M0=2, MT=2))
    with pytest.raises(RewriteError, match="where clause can leave a chunk's first tiles without a key"):
        rewrite(ei.parse(str(ei.load("attention-1pass")).replace(
            "RM[b, h, m1 + 1, p] = max(RM[b, h, m1, p], LM[b, h, m1, p])",
            "RM[b, h, m1 + 1, p] = max(RM[b, h, m1, p], LM[b, h, m1, p]) where p >= 0")), "split-kv")


def test_split_kv_refuses_other_recurrences():
    with pytest.raises(RewriteError, match="explicit recurrence over M"):
        rewrite(ei.load("linear-attention-causal"), "split-kv")        # a recurrence over keys, not tiles
    with pytest.raises(RewriteError, match=r"KV: the factor DC\[h\] rescaling KV is not exp\(a - b\)"):
        rewrite(ei.load("lightning-attention"), "split-kv")


NAMED_MASK = """
rank B, H, M, P, E, F
input Q[B, H, E, P]: f16
input K[B, H, E, M]: f16
input V[B, H, F, M]: f16
input ALPHA[H]: f32 in (0, 1)
mask causal = m <= p
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m] * ALPHA[h] where causal
GM[b, h, p] = max[m] QK[b, h, m, p] where causal
SN[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p]) where causal
SD[b, h, p] = SN[b, h, m, p] where causal
A[b, h, m, p] = SN[b, h, m, p] / SD[b, h, p] where causal
AV[b, h, f, p] = A[b, h, m, p] * V[b, h, f, m] where causal
"""


@pytest.mark.parametrize("form", ["deferred", "online", "split-kv"])
def test_named_mask_and_domain_survive(form):
    """A named mask is written out as its condition in the rewritten Einsums
    (whose variables differ); an input's domain is kept."""
    c = ei.parse(NAMED_MASK)
    r = rewrite(c, form, verify=False)
    assert r.cascade.tensor("ALPHA").domain == c.tensor("ALPHA").domain
    same_outputs(c, r.cascade, SHAPES)

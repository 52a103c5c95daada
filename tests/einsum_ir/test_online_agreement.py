"""The online rewrite and the fused kernel generator derive the online form
with one function (einsum_ir.rewrites.derive): on every library design and
a fixed-seed sample of generated designs they pick the same normalisers and
rescale the same sums, and the rewrite's printed justification is the text
the kernel's rescaling carries. Where the kernel generates less than the
derivation allows (two normalisers in one term, a power of exp(A - G), a
normaliser made of a min) the fused form says so and runs the sum in a
later pass."""
from __future__ import annotations

import numpy as np
import pytest

from einsum_ir import execute, library, parse, random_inputs
from einsum_ir.analysis import passes
from einsum_ir.analysis.fused import FusedFormError, recognise as fused
from einsum_ir.ir import rank_of
from einsum_ir.random_designs import random_designs
from einsum_ir.rewrites import RewriteError, rewrite
from einsum_ir.rewrites.defer import defer, find
from einsum_ir.rewrites.walk import recognise as walk

KERNEL_LIMIT = "the kernel"       # how the fused form words a case the derivation allows and the kernel does not


def _source(c):
    """The cascade the online rewrite walks: c, or c with its divisions
    deferred first (as `rewrite --to online` does)."""
    if find(c)[0] is None:
        return c
    return defer(c, None)[0].replace(name=c.name, doc=c.doc)


def agree(c) -> str:
    """Check the two derivations on c; say which case it was."""
    try:
        src = _source(c)
        f = fused(src)
    except (FusedFormError, RewriteError):
        return "outside the fused family"
    try:
        w = walk(src, rank_of(f.key), "online")
    except RewriteError as err:
        # the walk refuses: the kernel cannot be one pass with an online normaliser (one pass with none,
        # as stick-breaking's scan carried in the walk, is outside the online derivation)
        assert f.passes > 1 or not f.normalisers, f"{c.name}: the rewrite refuses ({err.message}), the kernel is online"
        for name, why in f.not_online.items():
            if f"{name}: " in err.message and KERNEL_LIMIT not in why:
                assert why in err.message, (name, why, err.message)
        return "both refuse"
    rescaled = {r.name: r for r in f.reductions if r.rescaled}
    for s, rs in w.rescales.items():
        if not rs.degrees:
            assert s not in rescaled and s not in f.not_online, s
        elif s in rescaled:
            assert rs == rescaled[s].rescale and rescaled[s].pass_ == 0, (c.name, s)
        else:
            assert KERNEL_LIMIT in f.not_online[s] and f.not_online[s].startswith(rs.why()), (c.name, s)
    assert set(rescaled) <= set(w.rescales), (c.name, set(rescaled) - set(w.rescales))
    used = {r.rescaled_by for r in rescaled.values()}
    assert set(f.normalisers.get(0, ())) == used and used <= w.normalisers, c.name
    assert (f.passes == 1) == (not f.not_online), c.name
    return "online" if used else "no normaliser"


EXPECTED = {"attention-3pass": "online", "alibi": "online", "softcap": "online", "sink-logit": "online",
            "sliding-window": "online", "forgetting-attention": "online", "clipped-softmax": "both refuse",
            "linear-attention": "outside the fused family"}


@pytest.mark.parametrize("name", library.names())
def test_library_designs_agree(name):
    how = agree(library.load(name))
    assert how == EXPECTED.get(name, how)


@pytest.mark.parametrize("name", ["attention-3pass", "forgetting-attention"])
def test_the_rewrite_prints_the_kernels_justification(name):
    """The online rewrite's text states, word for word, why each rescaled
    sum is exact: the Rescale the kernel's rescaling comes from."""
    c = library.load(name)
    r = rewrite(c, "online", verify=False)
    f = fused(_source(c))
    assert r.passes_after == 1 == f.passes
    for red in (x for x in f.reductions if x.rescaled):
        assert red.rescale.why() in r.text and red.rescale.why().startswith(f"{red.name}'s term is exp(A - GM)")


def test_the_kernel_carries_the_same_justification():
    from codegen.runtime import FusedKernel
    from mappers.gpu_mapping import GPUMapping
    c = library.load("attention-3pass-deferred")
    src = FusedKernel(c, GPUMapping(32, 32, dtype="f32"), {}).source(dict(B=1, H=1, P=64, M=64, E=16, F=8)).text
    text = rewrite(c, "online", verify=False).text
    whys = [x.rescale.why() for x in fused(c).reductions if x.rescaled]
    assert len(whys) == 2 and all(f"# {why}" in src and why in text for why in whys)


SAMPLE = list(random_designs(30, seed=18))


@pytest.mark.parametrize("part", range(3))
def test_generated_designs_agree(part):
    for d in SAMPLE[part::3]:
        agree(d.cascade())


def test_the_sample_holds_online_designs():
    assert sum(agree(d.cascade()) == "online" for d in SAMPLE[::3]) >= 3


def forgetting_reference(q, k, v, fg):
    """Forgetting attention by loops: scores q.k_m + sum over m < j <= p of
    log f_j, softmax over m <= p."""
    B, H, E, P = q.shape
    out = np.zeros((B, H, v.shape[2], P))
    for b, h, p in np.ndindex(B, H, P):
        s = np.array([q[b, h, :, p] @ k[b, h, :, m] + np.log(fg[b, h, m + 1:p + 1]).sum() for m in range(p + 1)])
        a = np.exp(s - s.max())
        out[b, h, :, p] = (v[b, h, :, :p + 1] * a).sum(1) / a.sum()
    return out


def test_forgetting_attention_online_matches_loops():
    """Its gates' prefix sum runs before the walk (as the fused kernel
    hoists it); the walk is the softmax's: 2 passes -> 1, equal to loops."""
    c = library.load("forgetting-attention")
    r = rewrite(c, "online")
    assert (r.passes_before, r.passes_after) == (2, 1) == (2, fused(c).passes)
    shapes = dict(B=1, H=2, P=7, E=3, F=2, M0=3)
    xs = random_inputs(c, {k: v for k, v in shapes.items() if k != "M0"}, seed=4)
    got = execute(r.cascade, xs, shapes)["AV"]
    assert np.allclose(got, forgetting_reference(xs["Q"], xs["K"], xs["V"], xs["FG"]), rtol=1e-9, atol=1e-12)


def test_gates_scanned_before_the_walk():
    """Regression (found by the agreement test): a value computed from a
    hoisted scan (CF = log(CP)) made the rewrite refuse a design the kernel
    runs online; it runs before the walk now, as in the kernel, read whole."""
    c = parse(FOX.replace("GATES\n", "LF[b, h, m] = log(FG[b, h, m])\nCP[b, h, m] = cumprod[m] exp(LF[b, h, m])\n"
                                      "CF[b, h, m] = log(CP[b, h, m])\n"))
    r = rewrite(c, "online")
    assert r.passes_after == 1 and r.checked and agree(c) == "online"
    assert "\nCF[b, h, m] = log(CP[b, h, m])\n" in r.text


def test_a_prefix_sum_over_an_alias_runs_before_the_walk_but_costs_its_pass():
    """The same gates as a predicated sum over an alias rank: the walk and
    the kernel agree on the online form; the rewrite still refuses, since
    that sum is itself a pass over M (a scan is not), and says so."""
    c = parse(FOX.replace("GATES\n", "rank J = M\nLF[b, h, m] = log(FG[b, h, m])\n"
                                      "CF[b, h, m] = LF[b, h, j] where j <= m\n"))
    assert agree(c) == "online" and passes(c, "M").passes == 3
    with pytest.raises(RewriteError, match="still not one pass \\(2 passes\\)"):
        rewrite(c, "online", verify=False)


FOX = """
rank B, H, P, E, F
rank M = P
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
input FG[B, H, M]: f32 in (0, 1)
output AV[B, H, F, P]: f32
GATES
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m] where m <= p
S[b, h, m, p] = QK[b, h, m, p] - CF[b, h, m] where m <= p
GM[b, h, p] = max[m] S[b, h, m, p] where m <= p
SN[b, h, m, p] = exp(S[b, h, m, p] - GM[b, h, p]) where m <= p
SD[b, h, p] = SN[b, h, m, p] where m <= p
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m] where m <= p
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]
"""


HEAD = """
rank B, H, M, P, E, F
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
output AV[B, H, F, P]: f32
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]
GM[b, h, p] = max[m] QK[b, h, m, p]
"""
TAIL = """SD[b, h, p] = SN[b, h, m, p]
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m]
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]
"""


@pytest.mark.parametrize("where", [
    "SN[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p]) where QK[b, h, m, p] > GM[b, h, p] - 1\n" + TAIL,
    "SN[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p])\n"
    + TAIL.replace("SN[b, h, m, p]\n", "SN[b, h, m, p] where QK[b, h, m, p] > GM[b, h, p] - 1\n", 1)])
def test_a_where_clause_on_the_normaliser_is_not_rescaled(where):
    """Regression: the fused form rescaled a sum whose where clause (its own,
    or a tile's it reads) reads the running max, and claimed 1 pass; which
    terms a changing max keeps cannot be undone by a factor. Both now refuse
    with the same reason; the pass analysis too says 2 passes."""
    c = parse(HEAD + where)
    f = fused(c)
    assert f.passes == 2 == passes(c, "M").passes
    assert {r.name: r.pass_ for r in f.reductions if not r.rescaled}["SD"] == 1
    with pytest.raises(RewriteError, match="where clause reads GM") as err:
        rewrite(c, "online", verify=False)
    assert f.not_online["SD"] == "its where clause reads GM, a statistic over the keys"
    assert f.not_online["SD"] in err.value.message
    agree(c)


@pytest.mark.parametrize("tile, limit", [
    ("exp(QK[b, h, m, p] - GM[b, h, p]) * exp(QK[b, h, m, p] - GM[b, h, p])", "not its power 2"),
    ("exp(QK[b, h, m, p] - GM[b, h, p]) * exp(2 * QK[b, h, m, p] - GN[b, h, p])", "not GM, GN"),
    ("exp(0 - QK[b, h, m, p] - GN[b, h, p])", "not the min GN")])
def test_what_the_kernel_does_not_generate_is_said(tile, limit):
    """The derivation allows these (the online rewrite writes them, checked
    equal on random inputs); the kernel rescales by one exp(G_old - G_new)
    of a running max, so it runs the sums in a second pass and says why."""
    gn = ("GN[b, h, p] = max[m] 2 * QK[b, h, m, p]\n" if "GM, GN" in limit
          else "GN[b, h, p] = min[m] 0 - QK[b, h, m, p]\n" if "min" in limit else "")
    c = parse(HEAD + gn + f"SN[b, h, m, p] = {tile}\n" + TAIL)
    r = rewrite(c, "online")
    assert r.passes_after == 1 and r.checked
    f = fused(c)
    assert f.passes == 2 and limit in f.not_online["SD"] and limit in f.not_online["SNV"]
    assert agree(c) == "no normaliser"


def test_a_decode_score_is_not_taken_before_the_walk_with_a_scan():
    """Regression (rewrite sweep): in decode every key-side value is over
    the keys' own variables; a tile reading the hoisted gate scan stays in
    the walk unless everything it reads is before the walk too."""
    c = parse("""
rank B, H, M, E, F
input Q[B, H, E]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
input KG[B, H, M]: f32
output AV[B, H, F]: f32
QK[b, h, m] = Q[b, h, e] * K[b, h, e, m]
CK[b, h, m] = cumprod[m, reverse] 1 - 0.5 * sigmoid(KG[b, h, m])
S[b, h, m] = QK[b, h, m] + log(CK[b, h, m])
GM[b, h] = max[m] S[b, h, m]
SN[b, h, m] = exp(S[b, h, m] - GM[b, h])
SD[b, h] = SN[b, h, m]
SNV[b, h, f] = SN[b, h, m] * V[b, h, f, m]
AV[b, h, f] = SNV[b, h, f] / SD[b, h]
""")
    w = walk(c, "M", "split-kv")
    assert set(w.hoisted) == {"CK"} and {"QK", "S"} <= set(w.tiles)
    assert rewrite(c, "split-kv").checked and agree(c) == "online"

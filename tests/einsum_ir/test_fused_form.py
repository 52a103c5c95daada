"""Fused-kernel roles read off the IR, and exact tile classes."""
import numpy as np
import pytest

from einsum_ir import library, parse
from einsum_ir.analysis.fused import FusedFormError, recognise
from einsum_ir.analysis.tiles import EMPTY, FULL, PARTIAL, cell_counts, classify
from einsum_ir.shapes import resolve


def test_softmax_attention_is_one_pass_with_the_online_form_derived():
    f = recognise(library.load("attention-3pass-deferred"))
    assert (f.key, f.query, f.batch, f.contracted, f.feature) == ("m", "p", ("b", "h"), "e", "f")
    kinds = {r.name: (r.kind, r.pass_, r.rescaled) for r in f.reductions}
    assert kinds == {"GM": ("max", 0, False), "SD": ("sum", 0, True), "SNV": ("value", 0, True)}
    assert f.normalisers == {0: ("GM",)} and f.passes == 1


@pytest.mark.parametrize("name, passes", [("clipped-softmax", 2), ("attention-3pass", 2), ("attention-naive", 2),
                                          ("sigmoid-attention", 1), ("sink-logit", 1), ("decode", 1)])
def test_pass_counts(name, passes):
    assert recognise(library.load(name)).passes == passes


def test_sink_normaliser_is_a_row_einsum_over_a_running_max():
    f = recognise(library.load("sink-logit"))
    assert f.normalisers == {0: ("GM",)} and [e.name for e in f.rows] == ["GM", "AV"]


def test_gate_projection_is_hoisted_and_decode_has_no_query():
    assert [e.name for e in recognise(library.load("gated-attention")).hoisted] == ["G"]
    assert recognise(library.load("decode")).query is None
    assert recognise(library.load("mqa")).batch == ("b", "h")


@pytest.mark.parametrize("name, why", [("attention-1pass", "explicit recurrence"),
                                       ("decode-split-kv", "partitioned ranks"),
                                       ("linear-attention", "associative")])
def test_designs_outside_the_family_name_the_reason(name, why):
    with pytest.raises(FusedFormError, match=why):
        recognise(library.load(name))


def test_an_output_over_keys_and_queries_is_refused():
    c = parse("""
rank B, H, M, P, E
input Q[B, H, E, P]: f16
input K[B, H, E, M]: f16
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]
GM[b, h, p] = max[m] QK[b, h, m, p]
A[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p])
""")
    with pytest.raises(FusedFormError, match="A: an output over both keys and queries"):
        recognise(c)


@pytest.mark.parametrize("design, shapes", [
    ("cab-self-causal", dict(P=100)), ("sliding-window", dict(P=150, W=37)),
    ("sink-tokens", dict(P=130, W=20, NS=3)), ("power-attention", dict(P=96)),
    ("gna-1d", dict(P=90, W=7, ST=2, DL=3))])
@pytest.mark.parametrize("bm, bn", [(16, 16), (32, 64), (64, 32)])
def test_tile_classes_match_brute_force(design, shapes, bm, bn):
    c = library.load(design)
    f = recognise(c)
    env = resolve(c, dict(B=1, H=1, E=4, F=4, **shapes))
    cls = classify(cell_counts(f, 0, env), bm, bn)
    # brute force: the predicate at every point, by the reference executor's evaluator
    from einsum_ir.execute import _Evaluator, _Space
    P, M = env["P"], env["M"]
    ev = _Evaluator(c, env, {}, np.dtype("float64"))
    space = _Space(["p", "m"], {"p": (0, P), "m": (0, M)})
    pred = f.scores[0].einsum.predicate
    keep = np.broadcast_to(np.asarray(ev.value(pred, space, None, f.scores[0].einsum), bool), (P, M))
    for i in range(-(-P // bm)):
        for j in range(-(-M // bn)):
            blk = keep[i * bm:(i + 1) * bm, j * bn:(j + 1) * bn]
            want = EMPTY if not blk.any() else FULL if blk.all() and blk.shape == (bm, bn) else PARTIAL
            assert cls[..., i, j].item() == want, (i, j)


def test_values_that_vary_with_the_query_are_refused_not_loaded_as_a_key_tile():
    """Soundness seed 7065: a linear-attention design read with the feature
    map's rank as the 'key' had its value KV[b, d, f, p] indexed by the query;
    the kernel loads one (keys x features) value tile for every row, so the
    generator failed with KeyError('p'). It is refused, naming the values."""
    c = parse("rank B, P, E, F, D\ninput Q[B, E, P]\ninput W[E, D]\ninput KV[B, D, F, P]\n"
              "XQ[b, d, p] = Q[b, e, p] * W[e, d]\n"
              "NUM[b, f, p] = exp(XQ[b, d, p]) * KV[b, d, f, p]\n")
    with pytest.raises(FusedFormError, match=r"NUM: the values KV\[b, d, f, p\] vary with the query variable p"):
        recognise(c)
    ok = parse("rank B, P, E, F, D\ninput Q[B, E, P]\ninput W[E, D]\ninput KV[B, D, F]\n"
               "XQ[b, d, p] = Q[b, e, p] * W[e, d]\n"
               "NUM[b, f, p] = exp(XQ[b, d, p]) * KV[b, d, f]\n")
    assert [r.kind for r in recognise(ok).reductions] == ["value"]     # the same shape with shared values fits

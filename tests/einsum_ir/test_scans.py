"""Scans (`cumsum[p]`, `cumprod[p]`, with `reverse` and `exclusive`) through
every stage: text and builder, executor and oracle against sums written
point by point, op counts (one add per output element, hand-derived), the
pass analysis against the point-by-point traversal, the kernel generators
(a scan inside a chunk as tl.cumsum, a scan before the fused kernel, and
the refusals with their reasons), the RTL generator's refusal and the GPU
and spatial models' charges."""

import numpy as np
import pytest

import einsum_ir as ei
from einsum_ir import EinError, ParseError, ValidationError, execute, parse
from einsum_ir.analysis.counts import count_einsum, op_counts
from einsum_ir.analysis.evaluate import evaluate
from einsum_ir.analysis.passes import passes
from einsum_ir.analysis.traversal import check_pass_count
from einsum_ir.builder import CascadeBuilder, indices, log
from einsum_ir.ir import Scan
from einsum_ir.oracle import evaluate as oracle

FLAGS = ["", ", reverse", ", exclusive", ", reverse, exclusive", ", exclusive, reverse"]
HEAD = "rank B, P, E\ninput X[B, P]: f32\ninput W[B, E, P]: f32\n"
HEAD1 = "rank B, P\ninput X[B, P]: f32\n"


def ref_scan(x, op, reverse, exclusive):
    """y[p] = x[0] (+ or *) ... x[p], built term by term (no np.cumsum)."""
    n = x.shape[-1]
    y = np.empty_like(x)
    for p in range(n):
        js = [j for j in range(n) if (j >= p if reverse else j <= p) and not (exclusive and j == p)]
        acc = np.zeros(x.shape[:-1]) if op == "cumsum" else np.ones(x.shape[:-1])
        for j in js:
            acc = acc + x[..., j] if op == "cumsum" else acc * x[..., j]
        y[..., p] = acc
    return y


def data(seed=0, n=6):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(2, n)), rng.normal(size=(2, 3, n))


@pytest.mark.parametrize("op", ["cumsum", "cumprod"])
@pytest.mark.parametrize("flags", FLAGS)
def test_every_scan_round_trips_and_matches_the_definition(op, flags):
    c = parse(HEAD1 + f"Y[b, p] = {op}[p{flags}] X[b, p]\n")
    assert parse(str(c)) == c
    X, _ = data()
    rev, exc = "reverse" in flags, "exclusive" in flags
    expected = ref_scan(X, op, rev, exc)
    np.testing.assert_allclose(execute(c, {"X": X})["Y"], expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(oracle(c, {"X": X})["Y"], expected, rtol=1e-12, atol=1e-12)


def test_a_scan_after_a_reduction_and_under_a_predicate():
    """Y = scan_p(sum_e W * X) and Z: points removed by the predicate
    contribute the identity (0 to a sum, 1 to a product)."""
    c = parse(HEAD + "Y[b, p] = cumsum[p, reverse] X[b, p] * W[b, e, p]\n"
                     "Z[b, p] = cumprod[p] X[b, p] where p % 3 != 1\n")
    X, W = data(1)
    out = execute(c, {"X": X, "W": W})
    np.testing.assert_allclose(out["Y"], ref_scan(X * W.sum(1), "cumsum", True, False), rtol=1e-12)
    kept = np.where(np.arange(6) % 3 != 1, X, 1.0)
    np.testing.assert_allclose(out["Z"], ref_scan(kept, "cumprod", False, False), rtol=1e-12)
    orc = oracle(c, {"X": X, "W": W})
    for k in ("Y", "Z"):
        np.testing.assert_allclose(orc[k], out[k], rtol=1e-12, atol=1e-12)


def test_a_scan_along_a_partitioned_rank_leaves_the_tail_of_the_last_tile_out():
    c = parse("rank B\npartition M -> M1, M0\ninput X[B, M]: f32\n"
              "Y[b, m1, m0] = cumsum[m0, reverse] X[b, m1 * M0 + m0]\n")
    X = np.random.default_rng(2).normal(size=(2, 7))
    y = execute(c, {"X": X}, {"M0": 3})["Y"]          # tiles [0..2], [3..5], [6]
    padded = np.concatenate([X, np.zeros((2, 2))], 1).reshape(2, 3, 3)
    np.testing.assert_allclose(y[:, :, :], ref_scan(padded, "cumsum", True, False), rtol=1e-12)
    np.testing.assert_allclose(oracle(c, {"X": X}, {"M0": 3})["Y"], y, rtol=1e-12)


def test_the_builder_makes_the_same_cascade():
    cb = CascadeBuilder("s")
    cb.ranks("B P")
    b, p = indices("b p")
    X = cb.input("X", "B P", "f32")
    (Y,) = cb.tensors("Y")
    cb.einsum(Y[b, p], log(X[b, p]), scan=Scan("cumsum", "p", reverse=True, exclusive=True))
    assert cb.build() == parse("rank B, P\ninput X[B, P]: f32\nY[b, p] = cumsum[p, reverse, exclusive] log(X[b, p])\n")


@pytest.mark.parametrize("text, kind, words", [
    ("Y[b] = cumsum[p] X[b, p]\n", ValidationError, "Y scans over p, which is not an index of its output"),
    ("Y[b, p] = scan[p] X[b, p]\n", ParseError, "unknown reduction or scan 'scan'"),
    ("Y[b, p] = cumsum[p, p] X[b, p]\n", ParseError, "unknown flag 'p'"),
    ("Y[b, p] = cumsum[p, reverse, reverse] X[b, p]\n", ParseError, "flag 'reverse' repeated"),
    ("Y[b, 0] = 0\nY[b, p + 1] = cumsum[p] Y[b, p] + X[b, p]\n", ValidationError,
     "cannot write an iterate or an initial value"),
])
def test_bad_scans_are_errors_where_they_are_written(text, kind, words):
    with pytest.raises(kind, match=words) as err:
        parse(HEAD1 + text)
    assert err.value.loc is not None and err.value.loc.line >= 3


def test_a_scan_over_the_iterates_of_a_recurrence_is_refused():
    text = ("rank B, P\ninput X[B, P]: f32\nR[b, 0] = 0\nR[b, p + 1] = R[b, p] + X[b, p]\n"
            "Y[b, p] = cumsum[p] R[b, p]\n")
    with pytest.raises(ValidationError, match="reads the iterates R\\[b, p\\] of a recurrence"):
        parse(text)


def test_op_counts_are_one_operation_per_output_element():
    """Hand-derived: a scan of n elements is n adds (a predicated sum over an
    alias j <= p would be n(n+1)/2); a scan after a sum over e adds B*P on top
    of the B*E*P MACs."""
    c = parse(HEAD + "Y[b, p] = cumsum[p] exp(X[b, p])\nZ[b, p] = cumprod[p, exclusive] X[b, p] * W[b, e, p]\n"
                     "rank J = P\nA[b, p] = exp(X[b, j]) where j <= p\n")
    env = dict(B=2, P=100, J=100, E=3)
    y = count_einsum(c, c.einsums[0]).ops
    assert {k: evaluate(v, env) for k, v in y.items()} == {"add": 200, "exp": 200}
    z = count_einsum(c, c.einsums[1])
    assert {k: evaluate(v, env) for k, v in z.ops.items()} == {"mac": 600, "mul": 200}
    assert not z.notes
    a = count_einsum(c, c.einsums[2]).ops
    assert evaluate(a["add"], env) == 2 * 100 * 101 // 2     # the quadratic form a scan replaces
    big = dict(env, P=200, J=200)
    assert evaluate(op_counts(c)["add"] - a["add"], big) == 2 * evaluate(op_counts(c)["add"] - a["add"], env)


SCAN_DESIGN = """rank B, M, P
input S[B, M, P]: f32
input G[B, M]: f32
C[b, m] = cumsum[m{flags}] G[b, m]
T[b, m, p] = S[b, m, p] * C[b, m]
AV[b, p] = T[b, m, p]
"""


@pytest.mark.parametrize("flags, expected", [("", 1), (", exclusive", 1), (", reverse", 2),
                                             (", reverse, exclusive", 2)])
def test_a_suffix_scan_along_the_streamed_rank_costs_a_pass_and_says_so(flags, expected):
    c = parse(SCAN_DESIGN.format(flags=flags))
    r = passes(c, "M")
    assert r.passes == expected
    text = "\n".join(r.explain())
    if expected == 2:
        assert "pass 2: C <- cumsum[m, reverse" in text and "suffix scan" in text
    else:
        assert "prefix scan along M" in text and "no extra pass" in text
    assert check_pass_count(c, "M", dict(B=1, M=4, P=2)) is None       # the point-by-point traversal agrees


def test_a_scan_inside_a_tile_costs_no_pass():
    c = parse("rank B\npartition M -> M1, M0\ninput X[B, M]: f32\n"
              "Y[b, m1, m0] = cumsum[m0, reverse] X[b, m1 * M0 + m0]\nZ[b, m1, m0] = Y[b, m1, m0] * X[b, m1 * M0 + m0]\n")
    r = passes(c, "M")
    assert r.passes == 1 and any("inside one tile" in line for line in r.explain())
    assert check_pass_count(c, "M", dict(B=1, M=7, M0=2)) is None


def test_rewrites_and_rtl_refuse_scans_with_the_reason():
    from einsum_ir.rewrites import RewriteError, rewrite
    with pytest.raises(RewriteError, match="Z: a scan .* do not carry a scan from tile to tile"):
        rewrite(ei.library.load("stick-breaking"), "online")
    with pytest.raises(RewriteError, match="C is a scan"):       # a scan of inputs is hoisted, but not deferred
        rewrite(ei.library.load("forgetting-attention"), "deferred")
    from codegen.rtl.unit import build_unit
    c = parse(HEAD1 + "Y[b, p] = cumsum[p] X[b, p]\n")
    with pytest.raises(EinError, match="a scan .* has no fixed-point unit"):
        build_unit(c, c.einsums[0], None)


def test_spatial_views_do_not_swallow_a_scan():
    """An Einsum that is one access and no reduction is a view of an input
    (no work) for the spatial models: a scan of one access is work."""
    from simulator.facts import facts
    from simulator.tiling import views
    c = parse(HEAD + "Y[b, p] = cumsum[p] X[b, p]\nZ[b, p] = Y[b, p] * W[b, e, p]\n")
    plain = parse(HEAD + "Y[b, p] = X[b, p]\nZ[b, p] = Y[b, p] * W[b, e, p]\n")
    assert views(plain) == {"Y": "X"} and views(c) == {}
    assert "X" in facts(plain).touches["Z"] and "X" not in facts(c).touches["Z"]


# ---------------------------------------------------------------- kernels and models

def _gla_scan(flags=""):
    """gla-chunkwise with its cumulative gate written as a scan along m0."""
    src = ei.library.path("gla-chunkwise").read_text()
    old = "LB[b, h, e, m1, m0] = LA[b, h, e, m1 * M0 + j] where j <= m0"
    assert old in src
    return parse(src.replace(old, f"LB[b, h, e, m1, m0] = cumsum[m0{flags}] LA[b, h, e, m1 * M0 + m0]"),
                 name="gla-scan")


@pytest.mark.parametrize("flags", ["", ", reverse"])
def test_a_scan_inside_a_chunk_is_tl_cumsum_and_matches(flags):
    """M = 37 in chunks of 16: the last chunk is partial, its tail and the
    register padding enter the scan as 0 (they would shift a reverse scan)."""
    import torch
    from codegen.runtime import ChunkedKernel
    from einsum_ir import random_inputs
    from mappers.gpu_mapping import GPUMapping
    c = _gla_scan(flags)
    shapes = dict(B=1, H=2, M=37, E=12, F=8, M0=16)
    k = ChunkedKernel(c, GPUMapping(16, 16, dtype="f32"), shapes)
    from einsum_ir.shapes import resolve
    text = k.source(resolve(c, shapes)).text
    assert ("reverse=True" in text) == bool(flags) and "tl.cumsum(" in text
    inp = random_inputs(c, shapes, seed=1, dtype="float32")
    out = k(**{n: torch.tensor(v) for n, v in inp.items()}).double().numpy()
    ref = execute(c, inp, shapes)["AV"]
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()


def test_scans_the_kernels_do_not_generate_are_refused_with_the_reason():
    from einsum_ir.analysis.chunk_program import chunk_program
    from einsum_ir.analysis.chunked import ChunkedFormError, recognise
    from einsum_ir.analysis.fused import FusedFormError
    from einsum_ir.analysis.fused import recognise as fused
    from einsum_ir.shapes import resolve
    # scans along the keys of the tile run in the walk with a carry (tests/codegen/test_scan_walk.py);
    # one along the query rank would need other programs' rows
    tile = parse("rank B, M, P, E, F\ninput Q[B, E, P]: f16\ninput K[B, E, M]: f16\ninput V[B, F, M]: f16\n"
                 "S[b, m, p] = Q[b, e, p] * K[b, e, m]\nC[b, m, p] = cumsum[p] S[b, m, p]\n"
                 "AV[b, f, p] = exp(C[b, m, p]) * V[b, f, m]\n")
    with pytest.raises(FusedFormError, match="along the query rank"):
        fused(tile)
    c = _gla_scan(", exclusive")
    env = resolve(c, dict(B=1, H=2, M=37, E=12, F=8, M0=16))
    with pytest.raises(ChunkedFormError, match="an exclusive scan is not generated"):
        chunk_program(recognise(c, env), env, 16)
    across = parse(ei.library.path("gla-chunkwise").read_text().replace(
        "GT[b, h, e, m1] = LA[b, h, e, m1 * M0 + m0]", "GT[b, h, e, m1] = cumsum[m1] LA[b, h, e, m1 * M0 + m0]"))
    with pytest.raises(ChunkedFormError, match="would need a carry from chunk to chunk"):
        recognise(across, env)


def test_the_chunked_gpu_model_charges_the_scan_per_element():
    """The scan step costs one add per element of its tile more than the
    same step as a plain map (its map and bounds are charged as any step's)."""
    from dataclasses import replace
    from einsum_ir.analysis.chunk_program import chunk_program
    from einsum_ir.analysis.chunked import recognise
    from einsum_ir.shapes import resolve
    from simulator.gpu import _tile, step_work
    c = _gla_scan(", reverse")
    env = resolve(c, dict(B=1, H=2, M=256, E=64, F=64, M0=64))
    program = chunk_program(recognise(c, env), env, 64)
    loop = program.loops[0]
    (s,) = [s for s in loop.steps if s.how == "scan"]
    _, ops = step_work(program, s, loop.var)
    _, plain = step_work(program, replace(s, how="map"), loop.var)
    assert ops["add"] - plain["add"] == _tile(program, s.axes) == 64 * 64     # E x M0
    assert ops["log"] == plain["log"] == 64 * 64


def test_words_that_begin_like_a_reduction_or_a_scan_are_index_variables():
    """`minute`, `summary`, `cumsums` are index variables (the reduction
    keywords match whole words only; cumsum and cumprod are not reserved)."""
    c = parse("rank MINUTE, SUMMARY, CUMSUM\ninput X[MINUTE, SUMMARY]: f32\n"
              "Y[summary] = max[minute] X[minute, summary] + max(X[0, summary], 1)\n"
              "Z[cumsum, summary] = cumsum[cumsum] Y[summary] * cumsum\n")
    assert parse(str(c)) == c
    X = np.arange(6.0).reshape(2, 3)
    out = execute(c, {"X": X}, {"CUMSUM": 4}, keep="all")
    y = X.max(0) + np.maximum(X[0], 1)
    np.testing.assert_allclose(out["Y"], y)
    np.testing.assert_allclose(out["Z"], np.cumsum(np.arange(4.0))[:, None] * y[None, :])

"""Chunked linear-time kernels (codegen.chunked), run by Triton's
interpreter on the CPU against the reference executor: every library design
the chunked family accepts, two designs written only here (one of them the
chunkwise form of causal linear attention, checked against the token-by-token
recurrence of the library), and the errors for what does not fit."""
import numpy as np
import pytest
import torch

import attnc
from codegen.runtime import ChunkedKernel, FusedKernel, cache_key, compile_kernel
from einsum_ir import EinError, execute, library, parse, random_inputs
from einsum_ir.analysis.chunked import ChunkedFormError, explain, recognise
from einsum_ir.analysis.fused import FusedFormError
from einsum_ir.analysis.fused import recognise as recognise_fused
from einsum_ir.shapes import resolve, symbols_used
from mappers.gpu_mapping import GPUMapping

# E = 12 and F = 20 are padded to 16 and 32; 70 tokens leave a partial last chunk
BASE = dict(B=2, H=3, P=45, M=70, E=12, F=20, M0=32)
MAPPING = GPUMapping(32, 32, dtype="f32")


def _shapes(c, **over):
    used = symbols_used(c)
    derived = {r.name for r in c.ranks if r.definition is not None}
    return {k: v for k, v in {**BASE, **over}.items() if k in used and k not in derived}


def _fits(name):
    c = library.load(name)
    try:
        recognise_fused(c)
        return False
    except FusedFormError:
        pass
    try:
        recognise(c, resolve(c, _shapes(c)))
        return True
    except EinError:          # outside the family, or shapes this table does not give
        return False


FAMILY = [n for n in library.names() if _fits(n)]


def _inputs(c, shapes, seed=0):
    inp = random_inputs(c, shapes, seed=seed, dtype="float32")
    rng = np.random.default_rng(seed)
    if "LAM" in inp:                        # a decay rate in (0, 1)
        inp["LAM"] = rng.uniform(0.5, 0.99, inp["LAM"].shape).astype("float32")
    if "ALPHA" in inp:                      # a forget gate in (0, 1)
        inp["ALPHA"] = rng.uniform(0.8, 0.999, inp["ALPHA"].shape).astype("float32")
    return inp


def _run(c, shapes, inp, mapping=MAPPING):
    k = compile_kernel(c, mapping, shapes)
    return k, k(**{n: torch.tensor(v) for n, v in inp.items()}).double().numpy()


def _close(out, ref, tol=1e-4):
    assert out.shape == ref.shape
    assert np.isfinite(out).all()
    err = np.abs(out - ref).max() / np.abs(ref).max()
    assert err <= tol, f"max relative error {err:.2e}"


def test_the_family_has_linear_lightning_and_chunkwise_gla_and_the_fusemax_cascades():
    assert {"linear-attention", "lightning-attention", "gla-chunkwise"} <= set(FAMILY)
    assert {"attention-1pass", "attention-2pass", "decode-split-kv"} <= set(FAMILY)


@pytest.mark.parametrize("name", FAMILY)
def test_library_design_matches_the_reference(name):
    c = library.load(name)
    shapes = _shapes(c)
    inp = _inputs(c, shapes)
    k, out = _run(c, shapes, inp)
    assert isinstance(k, ChunkedKernel)
    _close(out, execute(c, inp, shapes, dtype="float64")[c.outputs[0].name])


@pytest.mark.parametrize("chunk", [16, 64])
def test_lightning_matches_at_other_chunk_sizes(chunk):
    c = library.load("lightning-attention")
    shapes = _shapes(c, M0=chunk, M=100)
    inp = _inputs(c, shapes, seed=1)
    _close(_run(c, shapes, inp)[1], execute(c, inp, shapes, dtype="float64")["AV"])


RELU2_GATED = """
rank B, H, M, P, E, F
input Q[B, H, E, P]: f16
input K[B, H, E, M]: f16
input V[B, H, F, M]: f16
input G[B, H, F, P]: f16
PK[b, h, e, m] = max(K[b, h, e, m], 0) * max(K[b, h, e, m], 0)
PQ[b, h, e, p] = max(Q[b, h, e, p], 0) * max(Q[b, h, e, p], 0)
KV[b, h, e, f] = PK[b, h, e, m] * V[b, h, f, m]
KS[b, h, e] = PK[b, h, e, m]
NUM[b, h, f, p] = PQ[b, h, e, p] * KV[b, h, e, f]
DEN[b, h, p] = PQ[b, h, e, p] * KS[b, h, e]
AV[b, h, f, p] = sigmoid(G[b, h, f, p]) * NUM[b, h, f, p] / (DEN[b, h, p] + 1)
"""

# causal linear attention (elu + 1 features, with its normaliser) in chunkwise form:
# intra-chunk quadratic part, inter-chunk states KV (E x F) and KS (E)
CAUSAL_CHUNKWISE = """
rank B, H, E, F
partition M -> M1, M0
rank J = M0
input Q[B, H, E, M]: f16
input K[B, H, E, M]: f16
input V[B, H, F, M]: f16
PQ[b, h, e, m] = select(Q[b, h, e, m] > 0, Q[b, h, e, m] + 1, exp(Q[b, h, e, m]))
PK[b, h, e, m] = select(K[b, h, e, m] > 0, K[b, h, e, m] + 1, exp(K[b, h, e, m]))
A[b, h, m1, m0, j] = PQ[b, h, e, m1 * M0 + m0] * PK[b, h, e, m1 * M0 + j] where j <= m0
OI[b, h, f, m1, m0] = A[b, h, m1, m0, j] * V[b, h, f, m1 * M0 + j] where j <= m0
DI[b, h, m1, m0] = A[b, h, m1, m0, j] where j <= m0
KVU[b, h, e, f, m1] = PK[b, h, e, m1 * M0 + m0] * V[b, h, f, m1 * M0 + m0]
KSU[b, h, e, m1] = PK[b, h, e, m1 * M0 + m0]
KV[b, h, e, f, 0] = 0
KV[b, h, e, f, m1 + 1] = KV[b, h, e, f, m1] + KVU[b, h, e, f, m1]
KS[b, h, e, 0] = 0
KS[b, h, e, m1 + 1] = KS[b, h, e, m1] + KSU[b, h, e, m1]
OX[b, h, f, m1, m0] = PQ[b, h, e, m1 * M0 + m0] * KV[b, h, e, f, m1]
DX[b, h, m1, m0] = PQ[b, h, e, m1 * M0 + m0] * KS[b, h, e, m1]
AV[b, h, f, m] = (OI[b, h, f, m / M0, m % M0] + OX[b, h, f, m / M0, m % M0]) / (DI[b, h, m / M0, m % M0] + DX[b, h, m / M0, m % M0])
"""


def test_a_design_written_here_compiles_without_generator_changes():
    c = parse(RELU2_GATED, name="relu2-gated-linear")
    shapes = _shapes(c)
    inp = _inputs(c, shapes, seed=2)
    k, out = _run(c, shapes, inp)
    assert isinstance(k, ChunkedKernel)
    _close(out, execute(c, inp, shapes, dtype="float64")["AV"])


def test_chunkwise_causal_linear_attention_equals_the_token_recurrence():
    """Two states (a matrix and a vector), prefix sums inside the chunk; the
    reference is the library's step-by-step recurrence, a different cascade."""
    c = parse(CAUSAL_CHUNKWISE, name="linear-attention-chunkwise")
    shapes = dict(B=2, H=3, E=12, F=20, M=70, M0=16)
    inp = _inputs(c, shapes, seed=3)
    _, out = _run(c, shapes, inp)
    rec = library.load("linear-attention-causal")
    ref = execute(rec, inp, dict(B=2, H=3, E=12, F=20, P=70), dtype="float64")["AV"]
    _close(out, ref)


def test_roles_read_off_the_ir():
    c = library.load("lightning-attention")
    f = recognise(c)
    assert f.batch == ("b", "h") and f.root == "m" and f.inner == "m0"
    assert [lp.var for lp in f.loops] == ["m1"] and f.loops[0].axes == ("m0", "j")
    assert [s.name for _, s in f.loops[0].states] == ["KV"]
    assert set(f.inline) == {"DM", "DQ", "DK", "DC"}
    lines = dict(x.split(": ", 1) for x in explain(c).splitlines())
    assert lines["KV"].endswith("state step") and lines["DM"].startswith("element-wise")
    # non-causal linear attention: sums over m finish before the loop over queries
    la = library.load("linear-attention")
    f = recognise(la, resolve(la, _shapes(la)))
    assert [lp.var for lp in f.loops] == ["m", "p"]
    assert {e.name for e in f.loops[0].einsums} == {"KV", "KS"}
    # the FuseMax two-pass cascade: a second walk over the chunks once GM is final
    f = recognise(library.load("attention-2pass"))
    assert [lp.var for lp in f.loops] == ["m1", "m1"]
    assert "GM" in {e.name for e in f.loops[0].einsums} and "SNV" in {e.name for e in f.loops[1].einsums}


def test_the_kernel_uses_tensor_core_dots_and_a_cumulative_sum_for_gates():
    c = library.load("gla-chunkwise")
    text = ChunkedKernel(c, GPUMapping(64, 64), _shapes(c)).source(resolve(c, _shapes(c))).text
    assert text.count("tl.dot(") == 4                   # A, OI, SU, OX
    assert "tl.cumsum(" in text                         # LB, the cumulative log-gate
    assert ".to(tl.bfloat16)" in text                   # bf16 operands, fp32 accumulation


def test_token_recurrences_are_refused_with_the_way_out():
    for name in ("linear-attention-causal", "gla-recurrent"):
        c = library.load(name)
        with pytest.raises(FusedFormError, match="chunkwise form"):
            compile_kernel(c, MAPPING, None)


def test_too_large_register_axis_and_bad_chunk_size_are_named():
    c = library.load("lightning-attention")
    with pytest.raises(ChunkedFormError, match="E = 512 is held whole"):
        ChunkedKernel(c, MAPPING, {}).source(resolve(c, _shapes(c, E=512)))
    with pytest.raises(ChunkedFormError, match="M0 = 48 must be a power of two"):
        ChunkedKernel(c, MAPPING, {}).source(resolve(c, _shapes(c, M0=48)))


def test_softmax_designs_still_get_the_fused_kernel():
    c = library.load("attention-3pass-deferred")
    assert isinstance(compile_kernel(c, MAPPING, None), FusedKernel)


def test_attnc_compile_picks_the_chunked_kernel_and_caches_it():
    c = library.load("linear-attention")
    shapes = _shapes(c)
    k = attnc.compile(c, shapes, dtype="f32")
    assert isinstance(k, ChunkedKernel) and k.mapping.block_n == 64
    inp = _inputs(c, shapes, seed=4)
    out = k(**{n: torch.tensor(v) for n, v in inp.items()}).double().numpy()
    _close(out, execute(c, inp, shapes, dtype="float64")["AV"])
    env = resolve(c, shapes)
    assert cache_key(c, k.mapping, env) in k._modules
    assert k.module(env) is k._modules[cache_key(c, k.mapping, env)]


# Found by an adversarial review; each gave wrong numbers, crashed, or was refused only at the first call.
EDGE_CASES = {
    # max[] maps with a predicate: the identity (-inf), not 0, where the predicate fails
    "max-map-with-where": ("""
rank B, H, E
partition M -> M1, M0
rank J = M0
input Q[B, H, E, M]: f32
input K[B, H, E, M]: f32
BS[b, h, m1, m0, j] = Q[b, h, e, m1 * M0 + m0] * K[b, h, e, m1 * M0 + j] where j <= m0
SC[b, h, m1, m0, j] = max[] BS[b, h, m1, m0, j] - 100 where j <= m0
LM[b, h, m1, m0] = max[j] SC[b, h, m1, m0, j]
AV[b, h, m] = LM[b, h, m / M0, m % M0]
""", dict(B=2, H=2, E=12, M=70, M0=16)),
    # a state whose chunk values a second pass needs: the recurrence runs again from its initial value
    "state-recomputed-in-a-second-pass": ("""
rank B, H, E
partition M -> M1, M0
input K[B, H, E, M]: f32
GS[b, h, e] = max[m1, m0] K[b, h, e, m1 * M0 + m0]
S[b, h, e, 0] = 0
S[b, h, e, m1 + 1] = S[b, h, e, m1] + K[b, h, e, m1 * M0 + m0]
T[b, h, e, m1] = S[b, h, e, m1] * K[b, h, e, m1 * M0 + m0]
AV[b, h, e, m] = T[b, h, e, m / M0] / GS[b, h, e]
""", dict(B=2, H=2, E=12, M=70, M0=16)),
    # a state that reads a sum over all chunks, read once after the loops
    "state-after-an-accumulator": ("""
rank B, H, E
partition M -> M1, M0
input K[B, H, E, M]: f32
GS[b, h, e] = max[m1, m0] K[b, h, e, m1 * M0 + m0]
S[b, h, e, 0] = 0
S[b, h, e, m1 + 1] = S[b, h, e, m1] + K[b, h, e, m1 * M0 + m0] / GS[b, h, e]
AV[b, h, e] = S[b, h, e, M1]
""", dict(B=2, H=2, E=12, M=70, M0=16)),
    # a hoisted reduction reading an element-wise Einsum
    "hoisted-reads-element-wise": ("""
rank B, H, E, F
partition M -> M1, M0
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
input LAM[H]: f32
input W[H, F]: f32
DC[h] = exp(M0 * log(LAM[h]))
WN[h] = sum[f] W[h, f] * DC[h]
KVU[b, h, e, f, m1] = K[b, h, e, m1 * M0 + m0] * V[b, h, f, m1 * M0 + m0]
KV[b, h, e, f, 0] = 0
KV[b, h, e, f, m1 + 1] = DC[h] * KV[b, h, e, f, m1] + KVU[b, h, e, f, m1]
AV[b, h, e, f] = KV[b, h, e, f, M1] * WN[h]
""", dict(B=2, H=3, E=12, F=20, M=70, M0=16)),
    # an output indexed by the chunk index itself
    "output-at-m1-m0": ("""
rank B, H, F, E
partition M -> M1, M0
input V[B, H, F, M]: f32
input K[B, H, E, M]: f32
AV[b, h, f, m1, m0] = sum[e] V[b, h, f, m1 * M0 + m0] * K[b, h, e, m1 * M0 + m0]
""", dict(B=2, H=2, F=20, E=12, M=70, M0=32)),
    # a masked sum over the contracted rank: not a fused score contraction, a chunked kernel
    "masked-state-unpartitioned": ("""
rank B, H, M, P, E, F
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
KM[b, h, e] = max[m] K[b, h, e, m] where m % 2 == 0
KN[b, h, e] = min[m] K[b, h, e, m]
PK[b, h, e, m] = exp(K[b, h, e, m] - 3)
KV[b, h, e, f] = PK[b, h, e, m] * V[b, h, f, m] where m % 2 == 0
NUM[b, h, f, p] = Q[b, h, e, p] * KV[b, h, e, f] * exp(-KM[b, h, e])
DEN[b, h, p] = sum[e] abs(Q[b, h, e, p]) * (KM[b, h, e] - KN[b, h, e])
AV[b, h, f, p] = NUM[b, h, f, p] / (DEN[b, h, p] + 1)
""", dict(B=2, H=2, E=12, F=20, M=70, P=45)),
}


# Found by differential testing of random designs (einsum_ir.random_designs) against the executor.
FOUND_BY_SEARCH = {
    # XK, a reduction over e, is held per chunk on the m0 axis; A read it at m1 * M0 + j and got
    # XK at m1 * M0 + m0 (the writer's m was never matched to the reader's index): wrong at every m > 0
    "reduction-at-m-read-at-the-alias": ("""
rank B, H, E, D, F
partition M -> M1, M0
rank J = M0
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
input W[H, E, D]: f32
XK[b, h, d, m] = K[b, h, e, m] * W[h, e, d]
A[b, h, m1, m0, j] = XK[b, h, d, m1 * M0 + m0] * XK[b, h, d, m1 * M0 + j] where j <= m0
OI[b, h, f, m1, m0] = A[b, h, m1, m0, j] * V[b, h, f, m1 * M0 + j] where j <= m0
AV[b, h, f, m] = OI[b, h, f, m / M0, m % M0]
""", dict(B=2, H=2, E=3, D=5, F=4, M=37, M0=16)),
    # the same read spelled through an element-wise Einsum: Y at (m / M0, m % M0) reads R at
    # m / M0 * M0 + m % M0, which is m; and a chunk start written M0 * m1 with the offset first
    "reduction-at-m-read-through-div-mod": ("""
rank B, H, E, F
partition M -> M1, M0
rank J = M0
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
R[b, h, e, m] = max[f] V[b, h, f, m] * K[b, h, e, m]
Y[b, h, e, m1, m0] = R[b, h, e, m1 * M0 + m0] * 2
A[b, h, m1, m0, j] = R[b, h, e, j + M0 * m1] * K[b, h, e, m1 * M0 + m0] where j <= m0
AV[b, h, e, m] = Y[b, h, e, m / M0, m % M0] + A[b, h, m / M0, m % M0, j] where j <= m % M0
""", dict(B=2, H=2, E=3, F=4, M=37, M0=16)),
    # an input read at the next chunk index (m1 + 1): its load is bounded like any other index
    "input-at-the-next-chunk-index": ("""
rank B, H, E
partition M -> M1, M0
input K[B, H, E, M]: f32
input T[B, H, M1]: f32
KS[b, h, e, m1] = K[b, h, e, m1 * M0 + m0]
Y[b, h, e, m1] = KS[b, h, e, m1] * T[b, h, m1 + 1] where m1 + 1 < M1
S[b, h, e, 0] = 0
S[b, h, e, m1 + 1] = S[b, h, e, m1] + Y[b, h, e, m1]
AV[b, h, e] = S[b, h, e, M1]
""", dict(B=2, H=2, E=3, M=37, M0=16)),
    # an exclusive prefix sum (j < m0) was cumsum - x: -inf - (-inf) = NaN where the executor has a
    # finite sum of the earlier terms; X is -inf wherever K <= 0
    "exclusive-prefix-over-minus-inf": ("""
rank B, H, E
partition M -> M1, M0
rank J = M0
input K[B, H, E, M]: f32
X[b, h, e, m1, j] = max[] K[b, h, e, m1 * M0 + j] where K[b, h, e, m1 * M0 + j] > 0
C[b, h, e, m1, m0] = sum[j] X[b, h, e, m1, j] where j < m0
AV[b, h, e, m] = C[b, h, e, m / M0, m % M0]
""", dict(B=2, H=2, E=3, M=48, M0=16)),
}
EDGE_CASES.update(FOUND_BY_SEARCH)


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_edge_cases_match_the_reference(name):
    text, shapes = EDGE_CASES[name]
    c = parse(text, name=name)
    inp = _inputs(c, shapes, seed=5)
    k, out = _run(c, shapes, inp)
    assert isinstance(k, ChunkedKernel)
    ref = execute(c, inp, shapes, dtype="float64")[c.outputs[0].name]
    finite = np.isfinite(ref)
    assert np.array_equal(np.isfinite(out), finite) and (out[~finite] == ref[~finite]).all()
    _close(out[finite], ref[finite])


GQA_PROJECTED = """
rank B, H, E, F
partition M -> M1, M0
rank KH = H / G
input K[B, KH, E, M]: f32
input V[B, KH, F, M]: f32
input W[H, E]: f32
KV[b, h, e, f] = K[b, h / G, e, m1 * M0 + m0] * W[h, e] * V[b, h / G, f, m1 * M0 + m0]
AV[b, h, e, f] = KV[b, h, e, f] / M
"""


def test_grouped_heads_and_a_weight_without_b_keep_one_program_per_b_and_h():
    """K[b, h / G, ..] is read at an expression of h alone and W[H, E] has no B:
    neither stops b and h from being batch ranks (each program's h / G is a
    scalar; W is the same in every program), so E and F are the only register
    axes besides the chunk. Before, h (and b) were held whole in registers."""
    c = parse(GQA_PROJECTED, name="gqa-projected")
    shapes = dict(B=2, H=4, G=2, E=12, F=20, M=70, M0=16)
    assert recognise(c, resolve(c, shapes)).batch == ("b", "h")
    inp = _inputs(c, shapes, seed=6)
    _close(_run(c, shapes, inp)[1], execute(c, inp, shapes, dtype="float64")["AV"])


def test_a_token_recurrence_without_a_partition_is_named_first():
    c = library.load("linear-attention-causal")
    with pytest.raises(ChunkedFormError, match=r"KV: a recurrence over \w, one token at a time"):
        recognise(c, resolve(c, _shapes(c)))


def test_reads_away_from_the_chunk_are_refused_when_compiling():
    base = """
rank B, H, E, F
partition M -> M1, M0
input Q[B, H, E, M]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
KVU[b, h, e, f, m1] = K[b, h, e, m1 * M0 + m0] * V[b, h, f, m1 * M0 + m0]
KV[b, h, e, f, 0] = 0
KV[b, h, e, f, m1 + 1] = KV[b, h, e, f, m1] + KVU[b, h, e, f, m1]
OX[b, h, f, m1, m0] = Q[b, h, e, m1 * M0 + m0] * KV[b, h, e, f, m1 + 2] where m1 + 1 < M1
AV[b, h, f, m] = OX[b, h, f, m / M0, m % M0]
"""
    with pytest.raises(FusedFormError, match="OX reads KV away from the current chunk"):
        compile_kernel(parse(base, name="two-ahead"), MAPPING, dict(B=1, H=1, E=16, F=16, M=64, M0=16))
    next_position = """
rank B, H, E, F
partition M -> M1, M0
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
R[b, h, e, m] = max[f] V[b, h, f, m] * K[b, h, e, m]
Y[b, h, e, m1, m0] = R[b, h, e, m1 * M0 + m0 + 1] where m1 * M0 + m0 + 1 < M
AV[b, h, e, m] = Y[b, h, e, m / M0, m % M0]
"""
    # R is held for this chunk only; m + 1 is in the next chunk at m0 = M0 - 1
    with pytest.raises(FusedFormError, match=r"reads R away from the current chunk"):
        compile_kernel(parse(next_position, name="next-position"), MAPPING, dict(B=1, H=1, E=4, F=4, M=64, M0=16))
    over_m = """
rank B, H, F
partition M -> M1, M0
input V[B, H, F, M]: f32
GM[b, h, f] = max[m] V[b, h, f, m]
AV[b, h, f, m] = V[b, h, f, m] - GM[b, h, f]
"""
    with pytest.raises(FusedFormError, match=r"GM: reduces over m, the partitioned rank"):
        compile_kernel(parse(over_m, name="over-m"), MAPPING, dict(B=1, H=1, F=16, M=64, M0=16))

"""Rows with no visible key (docs/notation.md, Empty rows): under
`empty rows = nan` they are NaN (0 / 0), under `empty rows = 0` they are 0,
the same in the executor, the oracle, the fused kernel (one pass, split-KV)
and the chunked kernel; and `empty rows = 0` is what FlexAttention gives for a
fully masked row. Each design here divides without a guard, so the convention
alone decides those rows."""
import numpy as np
import pytest
import torch

from codegen.runtime import ChunkedKernel, FusedKernel
from einsum_ir import execute, parse, random_inputs
from einsum_ir.oracle import evaluate
from mappers.gpu_mapping import GPUMapping

MAPPING = GPUMapping(16, 16, dtype="f32")


def softmax_design(pred: str, conv: str) -> str:
    return f"""
empty rows = {conv}
rank B, H, M, P, E, F
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m] where {pred}
GM[b, h, p] = max[m] QK[b, h, m, p] where {pred}
SN[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p]) where {pred}
SD[b, h, p] = SN[b, h, m, p] where {pred}
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m] where {pred}
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]
"""


# (predicate, numpy form over m [M, 1] and p [1, P], M, P)
CAUSAL_FEWER_KEYS = ("m <= p + M - P", lambda m, p, M, P: m <= p + M - P)       # rows p < P - M see nothing
WINDOW_AWAY = ("p - m >= 20 and p - m < 24", lambda m, p, M, P: (p - m >= 20) & (p - m < 24))   # p < 20


def numpy_softmax(inp, keep, conv):
    """Masked softmax attention in numpy; a row that keeps no key is 0 or NaN."""
    q, k, v = (inp[n].astype(np.float64) for n in "QKV")
    s = np.where(keep, np.einsum("bhep,bhem->bhmp", q, k), -np.inf)
    gm = s.max(axis=2, keepdims=True)
    sn = np.where(keep, np.exp(s - np.where(np.isfinite(gm), gm, 0)), 0)
    out = np.einsum("bhmp,bhfm->bhfp", sn, v) / np.where(keep.any(axis=0), sn.sum(axis=2), 1)[:, :, None, :]
    return np.where(keep.any(axis=0), out, 0.0 if conv == "0" else np.nan)


def check(out, expect, tol=1e-4):
    """NaN exactly where expected, 0 where expected, close elsewhere."""
    assert np.array_equal(np.isnan(out), np.isnan(expect)), f"NaN at {np.argwhere(np.isnan(out) != np.isnan(expect))[:3]}"
    ok = ~np.isnan(expect)
    assert np.all(out[ok & (expect == 0)] == 0)
    assert np.abs(out[ok] - expect[ok]).max() <= tol * max(1.0, np.abs(expect[ok]).max())


def run(c, shapes, inp, mapping=MAPPING):
    return FusedKernel(c, mapping, shapes)(**{k: torch.tensor(x) for k, x in inp.items()}).double().numpy()


@pytest.mark.parametrize("conv", ["nan", "0"])
@pytest.mark.parametrize("pred, keep_fn", [CAUSAL_FEWER_KEYS, WINDOW_AWAY], ids=["causal-M<P", "window"])
def test_fused_kernel_and_executor_give_the_convention(conv, pred, keep_fn):
    c = parse(softmax_design(pred, conv), "A_empty.ein")
    shapes = dict(B=1, H=2, M=21, P=45, E=16, F=8)
    inp = random_inputs(c, shapes, seed=3, dtype="float32")
    keep = keep_fn(np.arange(21)[:, None], np.arange(45)[None, :], 21, 45)
    assert (~keep.any(axis=0)).sum() >= 16                 # whole row tiles with no key: never visited
    expect = numpy_softmax(inp, keep, conv)
    check(execute(c, inp, shapes)["AV"], expect, 1e-12)
    check(run(c, shapes, inp), expect)


@pytest.mark.parametrize("conv", ["nan", "0"])
def test_oracle_agrees_on_empty_rows(conv):
    c = parse(softmax_design(CAUSAL_FEWER_KEYS[0], conv), "A_empty.ein")
    shapes = dict(B=1, H=1, M=3, P=6, E=2, F=2)
    inp = random_inputs(c, shapes, seed=4)
    ref, orc = execute(c, inp, shapes)["AV"], evaluate(c, inp, shapes)["AV"]
    check(orc, ref, 1e-12)
    assert np.isnan(ref[..., :3]).all() if conv == "nan" else (ref[..., :3] == 0).all()


@pytest.mark.parametrize("conv", ["nan", "0"])
@pytest.mark.parametrize("pred, keep_fn, splits", [
    ("m <= p + 10", lambda m, p, M, P: m <= p + 10, 4),                       # one key tile: 3 splits see none
    ("m >= M - 3 and p >= 2", lambda m, p, M, P: (m >= M - 3) & (p >= 2), 3)])  # rows 0, 1 empty everywhere
def test_split_kv_where_a_split_sees_no_key(conv, pred, keep_fn, splits):
    """Scores of -100 or less: a split with nothing to add must not rescale
    its empty sums by exp(-(max)) = inf (inf * 0 = NaN)."""
    c = parse(softmax_design(pred, conv), "A_empty.ein")
    shapes = dict(B=1, H=2, M=200, P=3, E=16, F=8)
    inp = random_inputs(c, shapes, seed=5, dtype="float32")
    inp["K"] = np.abs(inp["K"]) + 0.5
    inp["Q"] = -np.abs(inp["Q"]) * 20 - 20
    keep = keep_fn(np.arange(200)[:, None], np.arange(3)[None, :], 200, 3)
    expect = numpy_softmax(inp, keep, conv)
    check(execute(c, inp, shapes)["AV"], expect, 1e-9)
    check(run(c, shapes, inp, GPUMapping(16, 32, splits=splits, dtype="f32")), expect)


def test_rows_of_very_negative_scores_are_not_nan():
    """The online rescale exp(previous - new) starts from -inf, not 0: a first
    maximum of -1000 must not make exp(1000) = inf times the empty sums."""
    c = parse(softmax_design("m <= p", "nan"), "A_empty.ein")
    shapes = dict(B=1, H=1, M=64, P=64, E=16, F=8)
    inp = random_inputs(c, shapes, seed=6, dtype="float32")
    inp["K"] = np.abs(inp["K"]) + 0.5
    inp["Q"] = -np.abs(inp["Q"]) * 20 - 20
    expect = numpy_softmax(inp, np.arange(64)[:, None] <= np.arange(64)[None, :], "nan")
    assert np.isfinite(expect).all()
    check(run(c, shapes, inp, GPUMapping(32, 32, dtype="f32")), expect)


# causal linear attention in chunkwise form; queries before position 5 have a zero feature map, so their
# numerator and denominator are both 0
LINEAR = """
empty rows = CONV
rank B, H, E, F
partition M -> M1, M0
rank J = M0
input Q[B, H, E, M]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
PQ[b, h, e, m] = select(m >= 5, exp(Q[b, h, e, m]), 0)
PK[b, h, e, m] = exp(K[b, h, e, m])
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
AV[b, h, f, m] = (OI[b, h, f, m / M0, m % M0] + OX[b, h, f, m / M0, m % M0]) \\
    / (DI[b, h, m / M0, m % M0] + DX[b, h, m / M0, m % M0])
"""


@pytest.mark.parametrize("conv", ["nan", "0"])
def test_chunked_kernel_gives_the_convention(conv):
    c = parse(LINEAR.replace("CONV", conv), "A_empty_linear.ein")
    shapes = dict(B=1, H=2, M=40, M0=16, E=16, F=8)
    inp = random_inputs(c, shapes, seed=7, dtype="float32")
    q, k, v = (inp[n].astype(np.float64) for n in "QKV")
    t = np.arange(40)
    a = np.einsum("bhep,bhem->bhmp", np.exp(q) * (t >= 5), np.exp(k)) * (t[:, None] <= t[None, :])
    with np.errstate(invalid="ignore"):
        expect = np.einsum("bhmp,bhfm->bhfp", a, v) / a.sum(axis=2)[:, :, None, :]
    expect[..., :5] = 0.0 if conv == "0" else np.nan
    check(execute(c, inp, shapes)["AV"], expect, 1e-9)
    out = ChunkedKernel(c, GPUMapping(16, 16, dtype="f32"), shapes)(
        **{n: torch.tensor(x) for n, x in inp.items()}).double().numpy()
    check(out, expect)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_empty_rows_0_is_flex_attentions_convention():
    """torch's flex_attention on the CPU, masking by score_mod (-inf): its
    fully masked rows are 0, as are the executor's and the kernel's under
    `empty rows = 0`; every other row agrees too."""
    from torch.nn.attention.flex_attention import flex_attention
    c = parse(softmax_design(CAUSAL_FEWER_KEYS[0], "0"), "A_empty.ein")
    shapes = dict(B=1, H=2, M=10, P=24, E=16, F=16)
    inp = random_inputs(c, shapes, seed=8, dtype="float32")
    q, k, v = (torch.tensor(inp[n]).transpose(-1, -2).contiguous() for n in "QKV")      # [B, H, len, dim]

    def causal(score, b, h, qi, ki):
        return torch.where(ki <= qi + 10 - 24, score, -float("inf"))

    flex = flex_attention(q, k, v, score_mod=causal, scale=1.0).transpose(-1, -2).double().numpy()
    assert np.all(flex[..., :14] == 0) and np.isfinite(flex).all()
    check(execute(c, inp, shapes)["AV"], flex, 1e-5)
    check(run(c, shapes, inp), flex)


@pytest.mark.parametrize("conv", ["nan", "0"])
def test_one_pass_recurrence_in_the_chunked_kernel_follows_the_executor(conv):
    """attention-1pass written with a mask: an empty row's correction factor
    is exp(-inf - -inf), NaN under nan and exp(-inf) = 0 under 0 (then
    0 / 0), in the kernel as in the executor; every other row agrees."""
    from tests.einsum_ir.test_empty_rows import ONE_PASS
    c = parse(ONE_PASS.format(conv=conv), "A_empty_one_pass.ein")
    shapes = dict(B=2, M=40, P=50, E=16, F=8, M0=16)
    inp = random_inputs(c, shapes, seed=10, dtype="float32")
    ref = execute(c, inp, shapes)["AV"]
    assert (np.isnan(ref[..., :10]).all() if conv == "nan" else (ref[..., :10] == 0).all())
    assert not np.isnan(ref[..., 10:]).any()
    out = ChunkedKernel(c, GPUMapping(16, 16, dtype="f32"), shapes)(
        **{n: torch.tensor(x) for n, x in inp.items()}).double().numpy()
    check(out, ref)


def test_scores_of_minus_inf_before_the_first_finite_one():
    """`max[]` leaves -inf at removed points, and the Einsums after it have no
    predicate: the first key tiles of every row hold only -inf scores. Their
    exp(-inf - G) is 0 for the final (finite) G, so the running G, still
    -inf there, must not make it exp(-inf - -inf) = NaN (found by the
    soundness benchmark on a first version of the alpha fix)."""
    c = parse("""
rank B, H, M, P, E, F
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]
S[b, h, m, p] = max[] QK[b, h, m, p] where m >= 20
GM[b, h, p] = max[m] S[b, h, m, p]
SN[b, h, m, p] = exp(S[b, h, m, p] - GM[b, h, p])
SD[b, h, p] = SN[b, h, m, p]
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m]
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]
""", "A_minus_inf.ein")
    shapes = dict(B=1, H=2, M=40, P=20, E=16, F=8)
    inp = random_inputs(c, shapes, seed=11, dtype="float32")
    expect = numpy_softmax(inp, np.broadcast_to(np.arange(40)[:, None] >= 20, (40, 20)), "nan")
    check(execute(c, inp, shapes)["AV"], expect, 1e-12)
    for splits in (1, 2):
        check(run(c, shapes, inp, GPUMapping(16, 16, splits=splits, dtype="f32")), expect)


@pytest.mark.parametrize("conv", ["nan", "0"])
def test_rows_masked_by_minus_inf_scores(conv):
    """A mask written as a -inf score (`max[] ... where`, the Einsums after it
    unrestricted), rows 0..9 with every score -inf: exp(-inf - -inf) is NaN
    under nan; under 0 it is exp(-inf) = 0 and the row is 0 / 0 = 0, which is
    also what FlexAttention gives for a score_mod of -inf. The fused kernel
    (its exponent taken from 0 while G is -inf) gives the same, one pass and
    split."""
    c = parse(f"""
empty rows = {conv}
rank B, H, M, P, E, F
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]
S[b, h, m, p] = max[] QK[b, h, m, p] where p >= 10 and m <= p
GM[b, h, p] = max[m] S[b, h, m, p]
SN[b, h, m, p] = exp(S[b, h, m, p] - GM[b, h, p])
SD[b, h, p] = SN[b, h, m, p]
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m]
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]
""", "A_soft.ein")
    shapes = dict(B=1, H=2, M=40, P=40, E=16, F=8)
    inp = random_inputs(c, shapes, seed=12, dtype="float32")
    m, p = np.arange(40)[:, None], np.arange(40)[None, :]
    expect = numpy_softmax(inp, (p >= 10) & (m <= p), conv)
    check(execute(c, inp, shapes)["AV"], expect, 1e-12)
    check(evaluate(c, {k: v[:, :1, :, :12] for k, v in inp.items()}, dict(shapes, H=1, M=12, P=12))["AV"],
          numpy_softmax({k: v[:, :1, :, :12] for k, v in inp.items()}, ((p >= 10) & (m <= p))[:12, :12], conv), 1e-12)
    for splits in (1, 2):
        check(run(c, shapes, inp, GPUMapping(16, 16, splits=splits, dtype="f32")), expect)


def test_a_guarded_difference_with_a_scalar_operand():
    """`empty rows = 0` guards `X - log(M)` (a scalar operand): the guard
    selects by nesting (the interpreter refuses `&` of a scalar and a tile).
    The executor is the reference."""
    c = parse("""
empty rows = 0
rank B, H, M, P, E, F
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]
AV[b, h, f, p] = sigmoid(QK[b, h, m, p] - log(M)) * V[b, h, f, m] / M where m <= p
""", "sub00.ein")
    shapes = dict(B=1, H=1, M=20, P=20, E=16, F=8)
    x = random_inputs(c, shapes, seed=0, dtype="float32")
    out = FusedKernel(c, MAPPING, shapes)(**{k: torch.tensor(v) for k, v in x.items()}).double().numpy()
    ref = execute(c, x, shapes)["AV"]
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()

"""`%` and `//` are numpy's floor modulo and floor division everywhere the
notation uses them (docs/notation.md): in score maps and predicates, with
negative dividends and divisors, on integer coordinates and float values,
through the executor, the fused generator and the chunked generator (Triton's
interpreter), each against plain numpy written here. Triton's own `%` is C's
fmod and its `//` truncates, so every case below with a negative operand
fails without the generators' floor helpers."""
import importlib.util

import numpy as np
import pytest
import torch

from codegen.runtime import ChunkedKernel, FusedKernel
from codegen.triton import PRELUDE
from einsum_ir import execute, parse
from einsum_ir.analysis.fused import recognise
from einsum_ir.analysis.tiles import CELL, EMPTY, FULL, cell_counts, classify
from mappers.gpu_mapping import GPUMapping

MAPPING = GPUMapping(16, 16, dtype="f32")


# ------------------------------------------------------------------ the helpers themselves

@pytest.fixture(scope="module")
def helpers(tmp_path_factory):
    """The generated files' prelude, plus a kernel applying each helper
    elementwise (Triton's jit reads functions from a file)."""
    path = tmp_path_factory.mktemp("A_floor") / "A_prelude_probe.py"
    path.write_text("\n".join(PRELUDE) + """
@triton.jit
def probe(x_ptr, y_ptr, i_ptr, j_ptr, o_ptr, N: tl.constexpr):
    offs = tl.arange(0, N)
    x = tl.load(x_ptr + offs)
    y = tl.load(y_ptr + offs)
    i = tl.load(i_ptr + offs)
    j = tl.load(j_ptr + offs)
    tl.store(o_ptr + offs, _vmod(x, y))
    tl.store(o_ptr + N + offs, _vfloordiv(x, y))
    tl.store(o_ptr + 2 * N + offs, _vmod(x, -2.5))
    tl.store(o_ptr + 3 * N + offs, _mod(i, j).to(tl.float32))
    tl.store(o_ptr + 4 * N + offs, _floordiv(i, j).to(tl.float32))
    tl.store(o_ptr + 5 * N + offs, _vmod(i, j))
    tl.store(o_ptr + 6 * N + offs, _vfloordiv(i, j))
    tl.store(o_ptr + 7 * N + offs, _div00(x, y))
""")
    spec = importlib.util.spec_from_file_location("A_prelude_probe", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.probe


def _same(a, b):
    """Equal values, NaN where the other has NaN (the sign of a zero aside)."""
    return np.array_equal(np.isnan(a), np.isnan(b)) and np.all((a == b) | np.isnan(a))


def test_prelude_helpers_are_numpys_floor_ops(helpers):
    rng = np.random.default_rng(0)
    n = 128
    edge = [(1.0, 0.1), (np.inf, 3.0), (-3.0, np.inf), (3.0, -np.inf), (0.0, 0.0), (5.0, 0.0), (-5.0, 0.0),
            (-7.0, 2.0), (7.0, -2.0), (-7.5, -2.0), (-6.0, 3.0), (6.0, -3.0), (-0.5, 0.25), (1e-8, -1.0)]
    x = np.concatenate([[a for a, _ in edge], rng.uniform(-20, 20, n - len(edge))]).astype(np.float32)
    y = np.concatenate([[b for _, b in edge], rng.choice([-3.0, -1.5, -0.7, 0.7, 1.5, 3.0], n - len(edge))]
                       ).astype(np.float32)
    i = rng.integers(-40, 40, n).astype(np.int32)
    j = rng.choice([-7, -3, -2, -1, 1, 2, 3, 7], n).astype(np.int32)
    out = torch.zeros(8 * n)
    helpers[(1,)](torch.tensor(x), torch.tensor(y), torch.tensor(i), torch.tensor(j), out, N=n)
    o = out.numpy().reshape(8, n)
    with np.errstate(all="ignore"):
        expect = [np.mod(x, y), np.floor_divide(x, y), np.mod(x, np.float32(-2.5)), np.mod(i, j),
                  np.floor_divide(i, j), np.mod(i, j), np.floor_divide(i, j),
                  np.where((x == 0) & (y == 0), np.float32(0), x / y)]
    for k, e in enumerate(expect):
        assert _same(o[k], np.asarray(e, np.float32)), f"helper {k}: {o[k][~((o[k] == e) | np.isnan(o[k]))][:4]}"
    assert o[1][0] == 9.0 and o[0][0] == np.mod(np.float32(1), np.float32(0.1))   # 1 // 0.1 is 9, not floor(10.0)


# ------------------------------------------------------------------ the fused kernel

FUSED = """
rank B, H, M, P, E, F
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m] where PRED
S[b, h, m, p] = QK[b, h, m, p] % 0.75 + (QK[b, h, m, p] * 4) // 3 * 0.125 + (p - m) % 7 - (m - p) // 3 * 0.5 \
    + m % D * 0.25 + (p - m) // D * 0.0625 where PRED
GM[b, h, p] = max[m] S[b, h, m, p] where PRED
SN[b, h, m, p] = exp(S[b, h, m, p] - GM[b, h, p]) where PRED
SD[b, h, p] = SN[b, h, m, p] where PRED
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m] where PRED
AV[b, h, f, p] = select(SD[b, h, p] > 0, SNV[b, h, f, p] / max(SD[b, h, p], 1e-30), 0)
"""
# W and D are shape symbols, free to be negative: `abs((m - p) % W)` is a value (abs is no index operator)
PRED = "abs((m - p) % W) <= 3 and m % D != -1 and (p - m) // D <= 2"


def _numpy_pred(m, p, W, D):
    return (np.abs(np.mod(m - p, W)) <= 3) & (np.mod(m, D) != -1) & (np.floor_divide(p - m, D) <= 2)


def _fused_inputs(shapes, seed):
    """Multiples of 1/2 and 1/4: every score is exact in float32 and float64,
    so the floors of the kernel and of numpy see the same values (many of them
    exactly on a multiple of the divisor)."""
    rng = np.random.default_rng(seed)
    B, H, M, P, E, F = (shapes[k] for k in "BHMPEF")
    return dict(Q=(rng.integers(-3, 4, (B, H, E, P)) / 2).astype(np.float32),
                K=(rng.integers(-2, 3, (B, H, E, M)) / 4).astype(np.float32),
                V=rng.standard_normal((B, H, F, M)).astype(np.float32))


def _numpy_fused(inp, W, D):
    """The design in plain numpy: floor ops by np.mod / np.floor_divide."""
    q, k, v = (inp[n].astype(np.float64) for n in "QKV")
    M, P = k.shape[-1], q.shape[-1]
    m, p = np.arange(M)[:, None], np.arange(P)[None, :]
    qk = np.einsum("bhep,bhem->bhmp", q, k)
    s = (np.mod(qk, 0.75) + np.floor_divide(qk * 4, 3) * 0.125 + np.mod(p - m, 7) - np.floor_divide(m - p, 3) * 0.5
         + np.mod(m, D) * 0.25 + np.floor_divide(p - m, D) * 0.0625)
    keep = _numpy_pred(m, p, W, D)
    s = np.where(keep, s, -np.inf)
    gm = s.max(axis=2, keepdims=True)
    sn = np.where(keep, np.exp(s - np.where(np.isfinite(gm), gm, 0)), 0)
    sd = sn.sum(axis=2)
    snv = np.einsum("bhmp,bhfm->bhfp", sn, v)
    return np.where(sd[:, :, None, :] > 0, snv / np.maximum(sd, 1e-30)[:, :, None, :], 0)


@pytest.mark.parametrize("W, D", [(-6, -5), (6, 5), (-4, 3)])
def test_fused_kernel_floors_like_numpy(W, D):
    c = parse(FUSED.replace("PRED", PRED), "A_floor.ein")
    shapes = dict(B=1, H=2, M=37, P=29, E=16, F=8, W=W, D=D)
    inp = _fused_inputs(shapes, seed=abs(W * 10 + D))
    expect = _numpy_fused(inp, W, D)
    ref = execute(c, inp, shapes)["AV"]
    assert np.abs(ref - expect).max() <= 1e-12
    out = FusedKernel(c, MAPPING, shapes)(**{k: torch.tensor(x) for k, x in inp.items()}).double().numpy()
    assert np.abs(out - expect).max() <= 1e-4 * np.abs(expect).max()


# a band p - 15 <= m <= p + 30 written with floor quotients by negative divisors (truncation moves both edges)
BAND = "(p - m) // D >= -3 and (m - p) // W >= -5 and m % 4 >= 0"


@pytest.mark.parametrize("pred, numpy_pred", [
    (PRED, _numpy_pred),
    (BAND, lambda m, p, W, D: (np.floor_divide(p - m, D) >= -3) & (np.floor_divide(m - p, W) >= -5))])
def test_tile_classes_follow_the_floor_predicate(pred, numpy_pred):
    """A tile the block table calls empty has no kept point, one it calls full
    has every point kept (numpy's mask, tile by tile), for negative divisors."""
    c = parse(FUSED.replace("PRED", pred), "A_floor.ein")
    W, D = -6, -5
    env = dict(B=1, H=1, M=70, P=50, E=16, F=8, W=W, D=D)
    form = recognise(c)
    cls = classify(cell_counts(form, 0, env), CELL, CELL)
    keep = numpy_pred(np.arange(70)[None, :], np.arange(50)[:, None], W, D)      # [p, m]
    pad = np.zeros((-(-50 // CELL) * CELL, -(-70 // CELL) * CELL), bool)
    pad[:50, :70] = keep
    tiles = pad.reshape(pad.shape[0] // CELL, CELL, pad.shape[1] // CELL, CELL)
    kept = tiles.sum(axis=(1, 3))
    assert np.all((cls == EMPTY) == (kept == 0))
    inside = np.zeros_like(pad)
    inside[:50, :70] = True
    whole = inside.reshape(tiles.shape).all(axis=(1, 3))
    assert np.all((cls == FULL) == (whole & (kept == CELL * CELL)))
    assert (cls == EMPTY).any() and (cls != EMPTY).sum() > (cls == FULL).sum()
    assert (cls == FULL).any() or pred == PRED      # PRED keeps 4 residues of 6: no tile is full


# ------------------------------------------------------------------ the chunked kernel

# causal linear attention in chunkwise form (as in tests/codegen/test_chunked.py), its feature maps with floor ops
CHUNKED = """
rank B, H, E, F
partition M -> M1, M0
rank J = M0
input Q[B, H, E, M]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
PQ[b, h, e, m] = Q[b, h, e, m] % 1.5 + (m - 9) % 4 * 0.25 + 0.5
PK[b, h, e, m] = K[b, h, e, m] // 0.75 * -0.125 + (m - 11) // D * -0.0625 + 1
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
AV[b, h, f, m] = (OI[b, h, f, m / M0, m % M0] + OX[b, h, f, m / M0, m % M0]) \
    / (DI[b, h, m / M0, m % M0] + DX[b, h, m / M0, m % M0])
"""


def _numpy_chunked(inp, D):
    q, k, v = (inp[n].astype(np.float64) for n in "QKV")
    P = q.shape[-1]
    t = np.arange(P)
    pq = np.mod(q, 1.5) + np.mod(t - 9, 4) * 0.25 + 0.5
    pk = np.floor_divide(k, 0.75) * -0.125 + np.floor_divide(t - 11, D) * -0.0625 + 1
    causal = (t[:, None] <= t[None, :])                              # [m, p]: key m seen by query p
    a = np.einsum("bhep,bhem->bhmp", pq, pk) * causal
    return np.einsum("bhmp,bhfm->bhfp", a, v) / a.sum(axis=2)[:, :, None, :]


@pytest.mark.parametrize("D", [-3, 4])
def test_chunked_kernel_floors_like_numpy(D):
    c = parse(CHUNKED, "A_floor_chunked.ein")
    shapes = dict(B=1, H=2, M=45, M0=16, E=16, F=8, D=D)
    rng = np.random.default_rng(D + 7)
    inp = dict(Q=(rng.integers(-6, 7, (1, 2, 16, 45)) / 4).astype(np.float32),
               K=(rng.integers(-6, 7, (1, 2, 16, 45)) / 4).astype(np.float32),
               V=rng.standard_normal((1, 2, 8, 45)).astype(np.float32))
    expect = _numpy_chunked(inp, D)
    ref = execute(c, inp, shapes)["AV"]
    assert np.abs(ref - expect).max() <= 1e-9 * np.abs(expect).max()
    k = ChunkedKernel(c, GPUMapping(16, 16, dtype="f32"), shapes)
    out = k(**{n: torch.tensor(x) for n, x in inp.items()}).double().numpy()
    assert np.abs(out - expect).max() <= 1e-4 * np.abs(expect).max()


def test_symbolic_counts_are_exact_or_refused():
    """The analyses' point counts are simplified with shape symbols taken as
    integers >= 0 (sympy drops `abs` of `(m - p) % W`): exact there, and a
    negative value is refused by name rather than counted wrongly."""
    from einsum_ir import EinError
    from einsum_ir.analysis import analyze
    c = parse(FUSED.replace("PRED", PRED), "A_floor.ein")
    a = analyze(c)
    for W, D in ((6, 5), (4, 3), (7, 2)):
        got = a.at(dict(B=1, H=1, M=37, P=29, E=16, F=8, W=W, D=D))["points"]["GM"]
        assert got == _numpy_pred(np.arange(37)[:, None], np.arange(29)[None, :], W, D).sum()
    with pytest.raises(EinError, match="D = -5: the symbolic point counts"):
        a.at(dict(B=1, H=1, M=37, P=29, E=16, F=8, W=6, D=-5))

"""Self-checks of the independent torch references in tests/zoo/torch_refs.py:
against torch built-ins, against each other, and against closed forms."""
import math

import pytest
import torch
import torch.nn.functional as Fn

from tests.zoo import torch_refs as R

B, H, E, F = 2, 3, 5, 4
DT = torch.float64


def rnd(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=DT)


def qkv(P, M, h=H, hkv=None, seed=0):
    hkv = h if hkv is None else hkv
    return rnd(B, h, E, P, seed=seed), rnd(B, hkv, E, M, seed=seed + 1), rnd(B, hkv, F, M, seed=seed + 2)


def sdpa(Q, K, V, **kw):
    """torch SDPA on our layout, scale 1 by default."""
    kw.setdefault("scale", 1.0)
    out = Fn.scaled_dot_product_attention(Q.transpose(-1, -2), K.transpose(-1, -2),
                                          V.transpose(-1, -2), **kw)
    return out.transpose(-1, -2)


def close(a, b, tol=1e-10):
    assert a.shape == b.shape, (a.shape, b.shape)
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


# ---------------------------------------------------------------- softmax / masks

@pytest.mark.parametrize("P,M", [(7, 7), (5, 11), (13, 6)])
def test_softmax_matches_sdpa(P, M):
    Q, K, V = qkv(P, M)
    close(R.softmax_attention(Q, K, V), sdpa(Q, K, V))
    close(R.softmax_attention(Q, K, V, scale=0.37), sdpa(Q, K, V, scale=0.37))
    mask = torch.rand(P, M, generator=torch.Generator().manual_seed(3)) < 0.6
    mask[:, 0] = True
    close(R.softmax_attention(Q, K, V, mask=mask), sdpa(Q, K, V, attn_mask=mask))
    bias = rnd(B, H, P, M, seed=9)
    close(R.softmax_attention(Q, K, V, bias=bias, scale=0.5), sdpa(Q, K, V, attn_mask=bias, scale=0.5))


def test_softmax_causal_matches_sdpa():
    Q, K, V = qkv(9, 9)
    close(R.softmax_attention(Q, K, V, mask=R.causal_mask(9, 9)), sdpa(Q, K, V, is_causal=True))


def test_causal_bottom_right():
    P, M = 4, 10
    tl, br = R.causal_mask(P, M), R.causal_mask(P, M, bottom_right=True)
    for p in range(P):
        for m in range(M):
            assert tl[p, m] == (m <= p)
            assert br[p, m] == (m <= p + M - P)
    assert br[-1].all()
    # bottom-right causal == top-left causal on the last P rows of an M x M problem
    Q, K, V = qkv(M, M)
    full = R.softmax_attention(Q, K, V, mask=R.causal_mask(M, M))
    close(R.softmax_attention(Q[..., M - P:], K, V, mask=br), full[..., M - P:])


def test_empty_row_outputs_zero():
    Q, K, V = qkv(4, 6)
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[2] = False
    out = R.softmax_attention(Q, K, V, mask=mask)
    assert torch.all(out[..., 2] == 0)
    assert torch.isfinite(out).all()
    close(out[..., [0, 1, 3]], sdpa(Q, K, V)[..., [0, 1, 3]])


def test_masked_with_huge_scores_is_stable():
    Q, K, V = qkv(5, 5)
    out = R.softmax_attention(Q * 300, K * 300, V, mask=R.causal_mask(5, 5))
    assert torch.isfinite(out).all()


# ---------------------------------------------------------------- neighborhood attention

@pytest.mark.parametrize("L,window", [(10, 3), (11, 4), (7, 7), (12, 5)])
def test_na1d_sliding_window_counts(L, window):
    mask = R.na1d_mask(L, window)
    assert (mask.sum(-1) == window).all()
    assert mask.diagonal().all()  # each query sees itself
    # each row is a contiguous run
    for p in range(L):
        idx = mask[p].nonzero().flatten()
        assert (idx[-1] - idx[0]).item() == window - 1
    # interior rows centred (odd window)
    if window % 2 == 1:
        h = window // 2
        for p in range(h, L - h):
            assert mask[p].nonzero().flatten().tolist() == list(range(p - h, p + h + 1))


def test_na1d_window_ge_L_is_full():
    assert R.na1d_mask(6, 9).all()
    assert R.na1d_mask(6, 6).all()


@pytest.mark.parametrize("L,window", [(12, 3), (12, 4), (8, 8), (10, 5)])
def test_na1d_blocked_is_block_diagonal(L, window):
    mask = R.na1d_mask(L, window, stride=window)
    blocks = torch.arange(L) // window
    close_mask = blocks[:, None] == blocks[None, :]
    assert torch.equal(mask, close_mask)


def test_na1d_blocked_partial_last_block():
    # L not divisible by window: the last (short) block's queries share a window clamped to the end
    mask = R.na1d_mask(10, 4, stride=4)
    assert mask[8].nonzero().flatten().tolist() == [6, 7, 8, 9]
    assert torch.equal(mask[8], mask[9])
    assert torch.equal(mask[:8, :8], (torch.arange(8)[:, None] // 4) == (torch.arange(8)[None] // 4))


@pytest.mark.parametrize("L,window,dil", [(12, 3, 2), (13, 3, 3), (11, 4, 2)])
def test_na1d_dilation(L, window, dil):
    mask = R.na1d_mask(L, window, dilation=dil)
    for p in range(L):
        r = p % dil
        Lr = len(range(r, L, dil))
        keys = mask[p].nonzero().flatten()
        assert all(k % dil == r for k in keys.tolist())
        assert len(keys) == min(window, Lr)
        # restricted to residue class == undilated sliding window on the subsequence
        sub = R.na1d_mask(Lr, window)
        assert mask[p, r::dil].tolist() == sub[p // dil].tolist()


def test_na1d_stride_groups_share_window():
    L, w, s = 15, 5, 3
    mask = R.na1d_mask(L, w, stride=s)
    assert (mask.sum(-1) == w).all()
    for p in range(L):
        g = (p // s) * s
        assert torch.equal(mask[p], mask[g])


def test_na2d_is_product_and_attention():
    L1, L2 = 5, 6
    m = R.na2d_mask(L1, L2, (3, 2), stride=(1, 2), dilation=(2, 1))
    a = R.na1d_mask(L1, 3, 1, 2)
    b = R.na1d_mask(L2, 2, 2, 1)
    for p1 in range(L1):
        for p2 in range(L2):
            for m1 in range(L1):
                for m2 in range(L2):
                    assert m[p1, p2, m1, m2] == (a[p1, m1] and b[p2, m2])
    assert torch.equal(R.na2d_mask(4, 4, 3), R.na2d_mask(4, 4, (3, 3)))
    Q, K, V = rnd(B, H, E, L1, L2), rnd(B, H, E, L1, L2, seed=1), rnd(B, H, F, L1, L2, seed=2)
    # window covering everything == full attention
    full = R.na2d_attention(Q, K, V, (L1, L2))
    ref = R.softmax_attention(Q.flatten(-2), K.flatten(-2), V.flatten(-2)).reshape(B, H, F, L1, L2)
    close(full, ref)
    out = R.na2d_attention(Q, K, V, 3)
    mask = R.na2d_mask(L1, L2, 3).reshape(L1 * L2, L1 * L2)
    close(out.flatten(-2), sdpa(Q.flatten(-2), K.flatten(-2), V.flatten(-2), attn_mask=mask))


# ---------------------------------------------------------------- biases

def test_alibi():
    s = R.alibi_slopes(8)
    close(s, torch.tensor([2.0 ** -(i + 1) for i in range(8)], dtype=DT))
    s4 = R.alibi_slopes(4)
    close(s4, torch.tensor([2.0 ** -(2 * (i + 1)) for i in range(4)], dtype=DT))
    P = M = 7
    b = R.alibi_bias(R.alibi_slopes(H), P, M)
    assert b.shape == (H, P, M)
    assert b[1, 5, 2].item() == pytest.approx(R.alibi_slopes(H)[1].item() * -3)
    Q, K, V = qkv(P, M)
    cm = R.causal_mask(P, M)
    out = R.softmax_attention(Q, K, V, mask=cm, bias=b)
    close(out, sdpa(Q, K, V, attn_mask=b.masked_fill(~cm, float("-inf"))))
    # softmax shift invariance: slope*(m-p) == slope*m per row
    b2 = R.alibi_slopes(H)[:, None, None] * torch.arange(M, dtype=DT)[None, None, :].expand(H, P, M)
    close(out, R.softmax_attention(Q, K, V, mask=cm, bias=b2))


def test_relative_bias_toeplitz():
    P, M = 4, 6
    table = rnd(H, P + M - 1)
    b = R.relative_bias(table, P, M)
    for p in range(P):
        for m in range(M):
            assert b[:, p, m].tolist() == table[:, p - m + M - 1].tolist()
            if p > 0 and m > 0:
                assert torch.equal(b[:, p, m], b[:, p - 1, m - 1])


def test_flashbias_lowrank():
    Rk, P, M = 3, 5, 7
    U, W = rnd(B, H, Rk, P), rnd(B, H, Rk, M, seed=1)
    b = R.flashbias_lowrank(U, W)
    ref = torch.zeros(B, H, P, M, dtype=DT)
    for r in range(Rk):
        ref += U[:, :, r, :, None] * W[:, :, r, None, :]
    close(b, ref)
    Q, K, V = qkv(P, M)
    # low-rank bias == extra feature rows appended to Q and K
    close(R.softmax_attention(Q, K, V, bias=b),
          R.softmax_attention(torch.cat([Q, U], 2), torch.cat([K, W], 2), V))


# ---------------------------------------------------------------- softmax modifications

def test_gated_attention():
    P, M, D = 6, 8, 7
    Q, K, V = qkv(P, M)
    X, Wg = rnd(B, D, P, seed=5), rnd(H, F, D, seed=6)
    base = R.softmax_attention(Q, K, V)
    close(R.gated_attention(Q, K, V, X, torch.zeros(H, F, D, dtype=DT)), 0.5 * base)
    out = R.gated_attention(Q, K, V, X, Wg)
    for b in range(B):
        for h in range(H):
            for f in range(F):
                for p in range(P):
                    g = torch.sigmoid((X[b, :, p] * Wg[h, f, :]).sum())
                    assert out[b, h, f, p].item() == pytest.approx((g * base[b, h, f, p]).item(), abs=1e-12)


def test_clipped_softmax():
    P, M = 6, 9
    Q, K, V = qkv(P, M)
    cm = R.causal_mask(P, M)
    close(R.clipped_softmax_attention(Q, K, V, 1.0, 0.0, mask=cm), R.softmax_attention(Q, K, V, mask=cm))
    zeta, gamma = 1.1, -0.05
    out = R.clipped_softmax_attention(Q, K, V, zeta, gamma, mask=cm)
    S = torch.einsum("bhep,bhem->bhpm", Q, K).masked_fill(~cm, float("-inf"))
    probs = ((zeta - gamma) * torch.softmax(S, -1) + gamma).clamp(0, 1).masked_fill(~cm, 0)
    close(out, torch.einsum("bhpm,bhfm->bhfp", probs, V))
    # masked keys contribute nothing even with positive gamma
    out2 = R.clipped_softmax_attention(Q, K, V, 1.0, 0.1, mask=cm)
    probs2 = (0.9 * torch.softmax(S, -1) + 0.1).clamp(0, 1).masked_fill(~cm, 0)
    close(out2, torch.einsum("bhpm,bhfm->bhfp", probs2, V))


def test_softcap():
    Q, K, V = qkv(6, 6)
    close(R.softcap_attention(Q, K, V, 1e7), R.softmax_attention(Q, K, V), tol=1e-8)
    cap = 2.0
    S = torch.einsum("bhep,bhem->bhpm", Q, K)
    close(R.softcap_attention(Q, K, V, cap), R.softmax_attention(Q, K, V, bias=cap * torch.tanh(S / cap) - S))


def test_sink_logit():
    P, M = 5, 7
    Q, K, V = qkv(P, M)
    sink = rnd(H, seed=7)
    cm = R.causal_mask(P, M)
    out = R.sink_logit_attention(Q, K, V, sink, mask=cm)
    # == softmax attention with one extra key whose score is sink_h and whose value is 0
    K2 = torch.cat([K, torch.zeros(B, H, E, 1, dtype=DT)], -1)
    V2 = torch.cat([V, torch.zeros(B, H, F, 1, dtype=DT)], -1)
    bias = torch.zeros(1, H, P, M + 1, dtype=DT)
    bias[..., M] = sink[None, :, None]
    m2 = torch.cat([cm, torch.ones(P, 1, dtype=torch.bool)], -1)
    close(out, R.softmax_attention(Q, K2, V2, mask=m2, bias=bias))
    close(R.sink_logit_attention(Q, K, V, torch.full((H,), float("-inf"), dtype=DT), mask=cm),
          R.softmax_attention(Q, K, V, mask=cm))
    big = R.sink_logit_attention(Q * 40, K * 40, V, sink + 500.0)
    assert torch.isfinite(big).all()


def test_streaming():
    P = M = 12
    assert torch.equal(R.streaming_mask(P, M, 0, P), R.causal_mask(P, M))
    sm = R.streaming_mask(P, M, 2, 3)
    for p in range(P):
        expect = sorted(set(range(min(2, p + 1))) | set(range(max(0, p - 2), p + 1)))
        assert sm[p].nonzero().flatten().tolist() == expect
    Q, K, V = qkv(P, M)
    streaming = torch.tensor([True, False, True])
    out = R.streaming_heads_attention(Q, K, V, streaming, 2, 3)
    for h in range(H):
        mask = sm if streaming[h] else R.causal_mask(P, M)
        close(out[:, h], sdpa(Q[:, h], K[:, h], V[:, h], attn_mask=mask))


# ---------------------------------------------------------------- linear / recurrent

def _phi(x):
    return Fn.elu(x) + 1


def test_linear_attention():
    P = 9
    Q, K, V = qkv(P, P)
    nc = R.linear_attention(Q, K, V)
    # explicit per-query formula
    for p in range(P):
        w = torch.einsum("bhe,bhem->bhm", _phi(Q[..., p]), _phi(K))
        close(nc[..., p], torch.einsum("bhm,bhfm->bhf", w, V) / w.sum(-1, keepdim=True))
    c = R.linear_attention(Q, K, V, causal=True)
    close(c[..., -1], nc[..., -1])
    for p in range(P):
        close(c[..., p], R.linear_attention(Q[..., p:p + 1], K[..., :p + 1], V[..., :p + 1])[..., 0])


def test_decay_linear_attention():
    P = 8
    Q, K, V = qkv(P, P)
    lam = torch.tensor([0.5, 0.9, 0.99], dtype=DT)
    out = R.decay_linear_attention(Q, K, V, lam)
    ref = torch.zeros(B, H, F, P, dtype=DT)
    for h in range(H):
        for p in range(P):
            for m in range(p + 1):
                s = (Q[:, h, :, p] * K[:, h, :, m]).sum(-1)
                ref[:, h, :, p] += lam[h] ** (p - m) * s[:, None] * V[:, h, :, m]
    close(out, ref)
    # == GLA with a constant scalar gate per head
    alpha = lam[None, :, None, None].expand(B, H, E, P)
    close(out, R.gla_recurrent(Q, K, V, alpha))
    # lam -> 1 is unnormalised causal linear attention
    ones = R.decay_linear_attention(Q, K, V, torch.ones(H, dtype=DT))
    S = torch.einsum("bhep,bhem->bhpm", Q, K) * R.causal_mask(P, P)
    close(ones, torch.einsum("bhpm,bhfm->bhfp", S, V))


def test_gla_closed_form():
    P = 7
    Q, K, V = qkv(P, P)
    alpha = torch.sigmoid(rnd(B, H, E, P, seed=11))
    out = R.gla_recurrent(Q, K, V, alpha)
    ref = torch.zeros(B, H, F, P, dtype=DT)
    for p in range(P):
        for m in range(p + 1):
            decay = torch.ones(B, H, E, dtype=DT)
            for j in range(m + 1, p + 1):
                decay = decay * alpha[..., j]
            w = (Q[..., p] * decay * K[..., m]).sum(-1)      # [B,H]
            ref[..., p] += w[..., None] * V[..., m]
    close(out, ref)


# ---------------------------------------------------------------- GQA / decoding

@pytest.mark.parametrize("hkv", [1, 3])
def test_gqa(hkv):
    h = 6
    Q, K, V = qkv(5, 8, h=h, hkv=hkv)
    G = h // hkv
    Kr, Vr = K.repeat_interleave(G, dim=1), V.repeat_interleave(G, dim=1)
    close(R.gqa_attention(Q, K, V), sdpa(Q, Kr, Vr))
    cm = R.causal_mask(5, 8, bottom_right=True)
    close(R.gqa_attention(Q, K, V, mask=cm), sdpa(Q, Kr, Vr, attn_mask=cm))


@pytest.mark.parametrize("chunk", [1, 3, 5, 13, 40])
def test_decode_split(chunk):
    M = 13
    Q, K, V = qkv(1, M)
    q = Q[..., 0]
    d = R.decode_attention(q, K, V)
    close(d, R.softmax_attention(Q, K, V)[..., 0])
    close(R.decode_split_kv(q, K, V, chunk), d)
    close(R.decode_split_kv(q * 50, K * 50, V, chunk), R.decode_attention(q * 50, K * 50, V))


def test_combine_associative():
    parts = [(rnd(B, H, seed=s), rnd(B, H, seed=s + 1).abs(), rnd(B, H, F, seed=s + 2)) for s in (0, 10, 20)]
    a, b, c = parts
    x, y = R.combine(R.combine(a, b), c), R.combine(a, R.combine(b, c))
    for u, v in zip(x, y):
        close(u, v)


# ---------------------------------------------------------------- sparse patterns

def test_block_mask_expand():
    P, M, bq, bk = 10, 7, 4, 3
    bm = torch.rand(B, H, 3, 3, generator=torch.Generator().manual_seed(1)) < 0.5
    tm = R.block_mask_expand(bm, bq, bk, P, M)
    assert tm.shape == (B, H, P, M)
    for p in range(P):
        for m in range(M):
            assert torch.equal(tm[..., p, m], bm[..., p // bq, m // bk])
    assert R.block_mask_expand(torch.ones(3, 3, dtype=torch.bool), bq, bk, P, M).all()
    # causal block mask with equal blocks contains the token causal mask
    cb = R.causal_mask(3, 3)
    assert (R.block_mask_expand(cb, 4, 4, 12, 12) | ~R.causal_mask(12, 12)).all()


def test_power_mask():
    P = M = 20
    pm = R.power_mask(P, M)
    assert pm[19].nonzero().flatten().tolist() == [3, 11, 15, 17, 18, 19]
    assert pm[0].nonzero().flatten().tolist() == [0]
    assert not (pm & ~R.causal_mask(P, M)).any()
    assert pm.diagonal().all()


# ---------------------------------------------------------------- other variants

def test_agent_attention():
    P, M, N = 6, 9, 4
    Q, K, V = qkv(P, M)
    A = rnd(B, H, E, N, seed=8)
    VA = R.softmax_attention(A, K, V)          # [B,H,F,N]
    close(R.agent_attention(Q, K, V, A), R.softmax_attention(Q, A, VA))
    close(R.agent_attention(Q, K, V, A), sdpa(Q, A, sdpa(A, K, V)))


def test_aaren():
    M = 10
    _, K, V = qkv(1, M)
    q = rnd(B, H, E, seed=4)
    out = R.aaren(q, K, V)
    Qrep = q[..., None].expand(B, H, E, M)
    close(out, R.softmax_attention(Qrep, K, V, mask=R.causal_mask(M, M)))
    assert torch.isfinite(R.aaren(q * 100, K * 100, V)).all()


def test_moh():
    P, M = 5, 6
    Q, K, V = qkv(P, M)
    router = rnd(B, H, P, seed=12)
    base = R.softmax_attention(Q, K, V)
    close(R.moh_attention(Q, K, V, router, H), torch.softmax(router, 1)[:, :, None, :] * base)
    one = R.moh_attention(Q, K, V, router, 1)
    top = router.argmax(1)
    for b in range(B):
        for p in range(P):
            for h in range(H):
                expect = base[b, h, :, p] if h == top[b, p] else torch.zeros(F, dtype=DT)
                close(one[b, h, :, p], expect)
    two = R.moh_attention(Q, K, V, router, 2)
    w = two.new_zeros(B, H, P)
    for b in range(B):
        for p in range(P):
            order = sorted(range(H), key=lambda h: -router[b, h, p].item())[:2]
            z = torch.softmax(router[b, order, p], 0)
            for i, h in enumerate(order):
                w[b, h, p] = z[i]
    close(two, w[:, :, None, :] * base)


def test_sigmoid_attention():
    P, M = 5, 8
    Q, K, V = qkv(P, M)
    cm = R.causal_mask(P, M, bottom_right=True)
    bb = -math.log(M)
    out = R.sigmoid_attention(Q, K, V, bb, mask=cm)
    ref = torch.zeros(B, H, F, P, dtype=DT)
    for p in range(P):
        for m in range(M):
            if cm[p, m]:
                s = (Q[..., p] * K[..., m]).sum(-1)
                ref[..., p] += torch.sigmoid(s + bb)[..., None] * V[..., m]
    close(out, ref)


def test_relu_attention():
    P, M = 5, 8
    Q, K, V = qkv(P, M)
    cm = R.causal_mask(P, M)
    out = R.relu_attention(Q, K, V, mask=cm)
    ref = torch.zeros(B, H, F, P, dtype=DT)
    for p in range(P):
        for m in range(p + 1):
            s = (Q[..., p] * K[..., m]).sum(-1)
            ref[..., p] += (torch.relu(s) / M)[..., None] * V[..., m]
    close(out, ref)
    close(R.relu_attention(Q, K, V), torch.einsum("bhpm,bhfm->bhfp",
                                                  torch.relu(torch.einsum("bhep,bhem->bhpm", Q, K)) / M, V))

"""Independent PyTorch reference implementations of published attention variants.

Written directly from the mathematical definitions (plain torch, explicit masks,
loops where clearer) so that compiled designs can be checked against them.

Conventions (all functions):
  * float64 tensors.
  * Q[B,H,E,P], K[B,H,E,M], V[B,H,F,M]; outputs [B,H,F,P] (feature axis before
    the sequence axis).
  * Scores S[b,h,p,m] = sum_e Q[b,h,e,p] * K[b,h,e,m], no 1/sqrt(E) unless a
    ``scale`` argument says so.
  * Masks are bool, [P, M] or broadcastable to [B,H,P,M], True = attend.
  * A query row with no attended key outputs 0.
"""
from __future__ import annotations

import functools
import math

import torch

__all__ = [
    "scores", "masked_softmax",
    "softmax_attention", "causal_mask", "na1d_mask", "na2d_mask", "na2d_attention",
    "alibi_slopes", "alibi_bias", "relative_bias", "flashbias_lowrank",
    "gated_attention", "clipped_softmax_attention", "softcap_attention",
    "sink_logit_attention", "streaming_mask", "streaming_heads_attention",
    "linear_attention", "decay_linear_attention", "gla_recurrent", "gqa_attention",
    "decode_attention", "decode_split_kv", "combine", "block_mask_expand",
    "power_mask", "agent_attention", "aaren", "moh_attention",
    "sigmoid_attention", "relu_attention",
]


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------

def scores(Q, K):
    """Raw dot-product scores S[b,h,p,m] = sum_e Q[b,h,e,p] K[b,h,e,m]."""
    return torch.einsum("bhep,bhem->bhpm", Q, K)


def _apply(W, V):
    """out[b,h,f,p] = sum_m W[b,h,p,m] V[b,h,f,m]."""
    return torch.einsum("bhpm,bhfm->bhfp", W, V)


def _full_mask(mask, shape):
    """Broadcast an optional bool mask to ``shape`` ([B,H,P,M])."""
    if mask is None:
        return torch.ones(shape, dtype=torch.bool)
    return torch.broadcast_to(mask.to(torch.bool), shape)


def masked_softmax(logits, mask):
    """Softmax over the last axis restricted to ``mask``; masked entries get 0,
    a row with no kept entry is all 0 (numerically stable)."""
    mask = torch.broadcast_to(mask, logits.shape)
    neg_inf = torch.tensor(float("-inf"), dtype=logits.dtype)
    x = torch.where(mask, logits, neg_inf)
    mx = x.amax(dim=-1, keepdim=True)
    mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
    e = torch.where(mask, torch.exp(x - mx), torch.zeros_like(x))
    den = e.sum(dim=-1, keepdim=True)
    den_safe = torch.where(den > 0, den, torch.ones_like(den))
    return e / den_safe


# ----------------------------------------------------------------------------
# softmax attention and masks
# ----------------------------------------------------------------------------

def softmax_attention(Q, K, V, mask=None, bias=None, scale=1.0):
    """Scaled dot-product softmax attention (Vaswani et al. 2017), optional bool mask and additive bias."""
    S = scale * scores(Q, K)
    if bias is not None:
        S = S + bias
    m = _full_mask(mask, S.shape)
    return _apply(masked_softmax(S, m), V)


def causal_mask(P, M, bottom_right=False):
    """Causal mask (Vaswani et al. 2017): top-left keeps m <= p, bottom-right keeps m <= p + (M - P)."""
    p = torch.arange(P).unsqueeze(1)
    m = torch.arange(M).unsqueeze(0)
    off = (M - P) if bottom_right else 0
    return m <= p + off


def na1d_mask(L, window, stride=1, dilation=1):
    """Generalized Neighborhood Attention 1D mask (Hassani et al. 2025), [L, L] bool."""
    assert window >= 1 and stride >= 1 and dilation >= 1
    mask = torch.zeros(L, L, dtype=torch.bool)
    for p in range(L):
        r = p % dilation
        j = p // dilation
        Lr = (L - 1 - r) // dilation + 1
        leader = min((j // stride) * stride + stride // 2, Lr - 1)
        start = min(max(leader - window // 2, 0), max(Lr - window, 0))
        for m in range(L):
            if m % dilation == r and start <= m // dilation < start + window:
                mask[p, m] = True
    return mask


def _pair(x):
    if isinstance(x, int):
        return (x, x)
    x = tuple(x)
    assert len(x) == 2
    return x


def na2d_mask(L1, L2, window, stride=(1, 1), dilation=(1, 1)):
    """Generalized Neighborhood Attention 2D mask (Hassani et al. 2025), [L1, L2, L1, L2] bool (query p1,p2, key m1,m2)."""
    w1, w2 = _pair(window)
    s1, s2 = _pair(stride)
    d1, d2 = _pair(dilation)
    m1 = na1d_mask(L1, w1, s1, d1)  # [p1, m1]
    m2 = na1d_mask(L2, w2, s2, d2)  # [p2, m2]
    return m1[:, None, :, None] & m2[None, :, None, :]


def na2d_attention(Q, K, V, window, stride=(1, 1), dilation=(1, 1)):
    """2D (Generalized) Neighborhood Attention (Hassani et al. 2025) on Q[B,H,E,L1,L2] -> [B,H,F,L1,L2]."""
    B, H, E, L1, L2 = Q.shape
    F = V.shape[2]
    mask = na2d_mask(L1, L2, window, stride, dilation).reshape(L1 * L2, L1 * L2)
    out = softmax_attention(Q.reshape(B, H, E, L1 * L2), K.reshape(B, H, E, L1 * L2),
                            V.reshape(B, H, F, L1 * L2), mask=mask)
    return out.reshape(B, H, F, L1, L2)


# ----------------------------------------------------------------------------
# positional biases
# ----------------------------------------------------------------------------

def alibi_slopes(H):
    """ALiBi (Press et al. 2022) geometric head slopes 2^(-8(h+1)/H), h = 0..H-1."""
    h = torch.arange(H, dtype=torch.float64)
    return torch.pow(torch.tensor(2.0, dtype=torch.float64), -8.0 * (h + 1) / H)


def alibi_bias(slopes, P, M):
    """ALiBi (Press et al. 2022) bias[h,p,m] = slopes[h] * (m - p); use with a causal mask."""
    p = torch.arange(P, dtype=torch.float64).unsqueeze(1)
    m = torch.arange(M, dtype=torch.float64).unsqueeze(0)
    return slopes.to(torch.float64)[:, None, None] * (m - p)[None]


def relative_bias(table, P, M):
    """Learned relative-position bias (T5, Raffel et al. 2020 style): bias[h,p,m] = table[h, p - m + M - 1]."""
    H, T = table.shape
    assert T == P + M - 1
    bias = torch.empty(H, P, M, dtype=table.dtype)
    for p in range(P):
        for m in range(M):
            bias[:, p, m] = table[:, p - m + M - 1]
    return bias


def flashbias_lowrank(U, W):
    """FlashBias (Wu et al. 2025) low-rank bias: U[B,H,R,P], W[B,H,R,M] -> bias[B,H,P,M] = sum_r U W."""
    return torch.einsum("bhrp,bhrm->bhpm", U, W)


# ----------------------------------------------------------------------------
# modified softmax / output gating
# ----------------------------------------------------------------------------

def gated_attention(Q, K, V, X, Wg, mask=None):
    """Gated Attention for LLMs (Qiu et al. 2025): elementwise sigmoid gate sigmoid(X^T Wg) on the SDPA output."""
    gate = torch.sigmoid(torch.einsum("bdp,hfd->bhfp", X, Wg))
    return softmax_attention(Q, K, V, mask=mask) * gate


def clipped_softmax_attention(Q, K, V, zeta, gamma, mask=None):
    """Quantizable Transformers clipped softmax (Bondarenko et al. 2023): clip((zeta-gamma)*softmax+gamma, 0, 1)."""
    S = scores(Q, K)
    m = _full_mask(mask, S.shape)
    probs = masked_softmax(S, m)
    probs = torch.clamp((zeta - gamma) * probs + gamma, 0.0, 1.0)
    probs = torch.where(m, probs, torch.zeros_like(probs))
    return _apply(probs, V)


def softcap_attention(Q, K, V, cap, mask=None):
    """Logit soft-capping (Gemma 2, Gemma Team 2024): scores = cap * tanh(S / cap), then softmax attention."""
    S = cap * torch.tanh(scores(Q, K) / cap)
    m = _full_mask(mask, S.shape)
    return _apply(masked_softmax(S, m), V)


def sink_logit_attention(Q, K, V, sink, mask=None):
    """Attention sink logit (off-by-one softmax, Miller 2023 / gpt-oss 2025): per-head sink logit in the denominator only."""
    S = scores(Q, K)
    m = _full_mask(mask, S.shape)
    sink_b = sink.to(S.dtype)[None, :, None, None].expand(S.shape[0], -1, S.shape[2], 1)
    neg_inf = torch.tensor(float("-inf"), dtype=S.dtype)
    x = torch.where(m, S, neg_inf)
    mx = torch.maximum(x.amax(dim=-1, keepdim=True), sink_b)
    mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
    e = torch.where(m, torch.exp(x - mx), torch.zeros_like(x))
    den = e.sum(dim=-1, keepdim=True) + torch.exp(sink_b - mx)
    den = torch.where(den > 0, den, torch.ones_like(den))
    return _apply(e / den, V)


def streaming_mask(P, M, sinks, window):
    """StreamingLLM (Xiao et al. 2024) mask: causal (top-left) AND (m < sinks OR p - m < window)."""
    p = torch.arange(P).unsqueeze(1)
    m = torch.arange(M).unsqueeze(0)
    return (m <= p) & ((m < sinks) | (p - m < window))


def streaming_heads_attention(Q, K, V, streaming, sinks, window):
    """DuoAttention (Xiao et al. 2024): streaming heads use the sink+window mask, retrieval heads full causal."""
    P, M = Q.shape[-1], K.shape[-1]
    sm = streaming_mask(P, M, sinks, window)
    cm = causal_mask(P, M)
    mask = torch.where(streaming.to(torch.bool)[:, None, None], sm[None], cm[None])  # [H,P,M]
    return softmax_attention(Q, K, V, mask=mask[None])


# ----------------------------------------------------------------------------
# linear / recurrent attention
# ----------------------------------------------------------------------------

def _elu1(x):
    return torch.nn.functional.elu(x) + 1.0


def linear_attention(Q, K, V, causal=False):
    """Linear attention (Katharopoulos et al. 2020) with phi(x) = elu(x) + 1, normalised."""
    P, M = Q.shape[-1], K.shape[-1]
    A = torch.einsum("bhep,bhem->bhpm", _elu1(Q), _elu1(K))
    if causal:
        assert P == M
        A = torch.where(causal_mask(P, M), A, torch.zeros_like(A))
    num = _apply(A, V)                       # [B,H,F,P]
    den = A.sum(dim=-1)[:, :, None, :]       # [B,H,1,P]
    return num / den


def decay_linear_attention(Q, K, V, lam):
    """Lightning Attention / TransNormerLLM (Qin et al. 2024): sum_{m<=p} lam_h^(p-m) (q_p.k_m) v_m."""
    P, M = Q.shape[-1], K.shape[-1]
    assert P == M
    p = torch.arange(P, dtype=torch.float64).unsqueeze(1)
    m = torch.arange(M, dtype=torch.float64).unsqueeze(0)
    dist = (p - m).clamp(min=0)                              # [P,M]
    D = lam.to(torch.float64)[:, None, None] ** dist[None]   # [H,P,M]
    D = torch.where(causal_mask(P, M)[None], D, torch.zeros_like(D))
    return _apply(scores(Q, K) * D[None], V)


def gla_recurrent(Q, K, V, alpha):
    """Gated Linear Attention (Yang et al. 2024), recurrent form S_t = diag(alpha_t) S_{t-1} + k_t v_t^T, o_t = S_t^T q_t."""
    B, H, E, P = Q.shape
    F = V.shape[2]
    assert K.shape[-1] == P
    S = torch.zeros(B, H, E, F, dtype=Q.dtype)
    outs = []
    for t in range(P):
        q, k, v, a = Q[..., t], K[..., t], V[..., t], alpha[..., t]
        S = a[..., :, None] * S + k[..., :, None] * v[..., None, :]
        outs.append(torch.einsum("bhef,bhe->bhf", S, q))
    return torch.stack(outs, dim=-1)


# ----------------------------------------------------------------------------
# head sharing / decoding
# ----------------------------------------------------------------------------

def gqa_attention(Q, K, V, mask=None):
    """Grouped-query attention (Ainslie et al. 2023); MQA (Shazeer 2019) when K/V have one head."""
    H, HKV = Q.shape[1], K.shape[1]
    assert H % HKV == 0
    G = H // HKV
    outs = []
    for h in range(H):
        mh = mask
        if mask is not None and mask.dim() == 4 and mask.shape[1] != 1:
            mh = mask[:, h:h + 1]
        outs.append(softmax_attention(Q[:, h:h + 1], K[:, h // G:h // G + 1],
                                      V[:, h // G:h // G + 1], mask=mh))
    return torch.cat(outs, dim=1)


def decode_attention(q, K, V):
    """Single-query decoding attention (Vaswani et al. 2017): q[B,H,E] -> [B,H,F]."""
    s = torch.einsum("bhe,bhem->bhm", q, K)
    w = torch.softmax(s, dim=-1)
    return torch.einsum("bhm,bhfm->bhf", w, V)


def combine(a, b):
    """Flash-Decoding (Dao et al. 2023) associative log-sum-exp merge of (max, denominator, numerator) triples."""
    ma, la, oa = a
    mb, lb, ob = b
    m = torch.maximum(ma, mb)
    ca = torch.exp(ma - m)
    cb = torch.exp(mb - m)
    return m, la * ca + lb * cb, oa * ca[..., None] + ob * cb[..., None]


def decode_split_kv(q, K, V, chunk):
    """Flash-Decoding split-KV (Dao et al. 2023): per-chunk (m, l, o) partials folded with ``combine``."""
    M = K.shape[-1]
    parts = []
    for c0 in range(0, M, chunk):
        Kc, Vc = K[..., c0:c0 + chunk], V[..., c0:c0 + chunk]
        s = torch.einsum("bhe,bhem->bhm", q, Kc)
        mc = s.amax(dim=-1)                              # [B,H]
        e = torch.exp(s - mc[..., None])
        lc = e.sum(dim=-1)                               # [B,H]
        oc = torch.einsum("bhm,bhfm->bhf", e, Vc)        # [B,H,F]
        parts.append((mc, lc, oc))
    m, l, o = functools.reduce(combine, parts)
    return o / l[..., None]


# ----------------------------------------------------------------------------
# sparse patterns
# ----------------------------------------------------------------------------

def block_mask_expand(block_mask, block_q, block_k, P, M):
    """Block-sparse attention (FlexAttention BlockMask, Dong et al. 2024): expand a block mask to tokens."""
    qi = torch.arange(P) // block_q
    ki = torch.arange(M) // block_k
    assert block_mask.shape[-2] == math.ceil(P / block_q)
    assert block_mask.shape[-1] == math.ceil(M / block_k)
    return block_mask.to(torch.bool)[..., qi[:, None], ki[None, :]]


def power_mask(P, M):
    """PowerAttention (Chen et al. 2025): keep iff d = p - m is 0 or a power of two."""
    mask = torch.zeros(P, M, dtype=torch.bool)
    for p in range(P):
        for m in range(M):
            d = p - m
            if d == 0 or (d > 0 and (d & (d - 1)) == 0):
                mask[p, m] = True
    return mask


# ----------------------------------------------------------------------------
# other variants
# ----------------------------------------------------------------------------

def agent_attention(Q, K, V, A):
    """Agent Attention (Han et al. 2024): agents aggregate V by softmax(A.K), queries read agents by softmax(Q.A)."""
    sa = torch.einsum("bhen,bhem->bhnm", A, K)
    VA = torch.einsum("bhnm,bhfm->bhfn", torch.softmax(sa, dim=-1), V)   # [B,H,F,N]
    sq = torch.einsum("bhep,bhen->bhpn", Q, A)
    return torch.einsum("bhpn,bhfn->bhfp", torch.softmax(sq, dim=-1), VA)


def aaren(q, K, V):
    """Aaren, Attention as an RNN (Feng et al. 2024): many-to-many prefix softmax attention with one query, as a loop."""
    B, H, E, M = K.shape
    F = V.shape[2]
    s = torch.einsum("bhe,bhem->bhm", q, K)
    run_max = torch.full((B, H), float("-inf"), dtype=K.dtype)
    den = torch.zeros(B, H, dtype=K.dtype)
    num = torch.zeros(B, H, F, dtype=K.dtype)
    outs = []
    for k in range(M):
        new_max = torch.maximum(run_max, s[..., k])
        c_old = torch.exp(run_max - new_max)
        c_new = torch.exp(s[..., k] - new_max)
        den = den * c_old + c_new
        num = num * c_old[..., None] + c_new[..., None] * V[..., k]
        run_max = new_max
        outs.append(num / den[..., None])
    return torch.stack(outs, dim=-1)


def moh_attention(Q, K, V, router, topk, mask=None):
    """Mixture-of-Head attention (Jin et al. 2024), simplified: top-k heads per token, softmax-weighted."""
    B, H, P = router.shape
    vals, idx = torch.topk(router, topk, dim=1)          # [B,topk,P]
    w_sel = torch.softmax(vals, dim=1)
    weight = torch.zeros_like(router).scatter(1, idx, w_sel)  # [B,H,P]
    return weight[:, :, None, :] * softmax_attention(Q, K, V, mask=mask)


def sigmoid_attention(Q, K, V, bias_b, mask=None):
    """Sigmoid attention (Ramapuram et al. 2024): out = sum_m sigmoid(S + b) v_m."""
    S = scores(Q, K)
    m = _full_mask(mask, S.shape)
    W = torch.sigmoid(S + bias_b)
    W = torch.where(m, W, torch.zeros_like(W))
    return _apply(W, V)


def relu_attention(Q, K, V, mask=None):
    """ReLU attention (Wortsman et al. 2023): out = sum_m relu(S)/M v_m, M = total number of keys."""
    S = scores(Q, K)
    M = S.shape[-1]
    m = _full_mask(mask, S.shape)
    W = torch.relu(S) / M
    W = torch.where(m, W, torch.zeros_like(W))
    return _apply(W, V)

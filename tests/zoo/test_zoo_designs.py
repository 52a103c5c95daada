"""Library zoo designs executed by the reference executor against the
independent PyTorch implementations of tests/zoo/torch_refs.py (written from
the papers' formulas, not from the cascades): float64, relative error below
1e-6, B and H above 1. Cascades index biases and masks [.., m, p]; the
references [.., p, m]."""
import numpy as np
import pytest
import torch

import einsum_ir as ei
from tests.zoo import torch_refs as ref

B, H, E, F = 2, 3, 8, 6


def run(name, inputs, **shapes):
    c = ei.library.load(name)
    return ei.execute(c, {k: np.asarray(v) for k, v in inputs.items()}, shapes)["AV"]


def qkv(P, M, seed, kv_heads=H):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, H, E, P, generator=g, dtype=torch.float64),
            torch.randn(B, kv_heads, E, M, generator=g, dtype=torch.float64),
            torch.randn(B, kv_heads, F, M, generator=g, dtype=torch.float64))


def close(out, expected):
    expected = expected.numpy() if isinstance(expected, torch.Tensor) else expected
    assert np.all(np.isfinite(out))
    err = np.abs(out - expected).max() / max(np.abs(expected).max(), 1e-300)
    assert err < 1e-6, err


# ------------------------------------------------------------------ 1. CAB

@pytest.mark.parametrize("name,P,M,causal", [("cab-self", 20, 20, False), ("cab-self-causal", 20, 20, True),
                                             ("cab-cross", 12, 29, False), ("cab-cross-causal", 12, 29, True)])
def test_cab(name, P, M, causal):
    Q, K, V = qkv(P, M, 1)
    mask = ref.causal_mask(P, M, bottom_right=True) if causal else None
    close(run(name, dict(Q=Q, K=K, V=V)), ref.softmax_attention(Q, K, V, mask=mask))


def test_causal_cross_with_fewer_keys_than_queries_gives_zero_rows():
    """Bottom-right alignment with M < P: queries p < P - M see no key; the
    design defines their output as 0."""
    P, M = 17, 9
    Q, K, V = qkv(P, M, 2)
    out = run("cab-cross-causal", dict(Q=Q, K=K, V=V))
    assert np.all(out[..., :P - M] == 0)
    close(out, ref.softmax_attention(Q, K, V, mask=ref.causal_mask(P, M, bottom_right=True)))


# ------------------------------------------------------------------ 2. neighborhoods

@pytest.mark.parametrize("L,W,ST,DL", [(23, 5, 1, 1), (23, 5, 2, 1), (24, 4, 4, 1), (25, 3, 1, 2),
                                       (26, 5, 3, 3), (7, 9, 1, 1)])
def test_gna_1d(L, W, ST, DL):
    Q, K, V = qkv(L, L, 3)
    close(run("gna-1d", dict(Q=Q, K=K, V=V), W=W, ST=ST, DL=DL),
          ref.softmax_attention(Q, K, V, mask=ref.na1d_mask(L, W, ST, DL)))


# ------------------------------------------------------------------ 3. bias

def test_alibi():
    P = 19
    Q, K, V = qkv(P, P, 4)
    slopes = ref.alibi_slopes(H)
    expected = ref.softmax_attention(Q, K, V, mask=ref.causal_mask(P, P), bias=ref.alibi_bias(slopes, P, P)[None])
    close(run("alibi", dict(Q=Q, K=K, V=V, SLOPE=slopes)), expected)


# ------------------------------------------------------------------ 5, 6. clipped softmax, soft-capping, sinks

@pytest.mark.parametrize("zeta,gamma", [(1.0, 0.0), (1.003, -0.003), (1.2, -0.1)])
def test_clipped_softmax(zeta, gamma):
    Q, K, V = qkv(14, 21, 5)
    close(run("clipped-softmax", dict(Q=Q, K=K, V=V, ZETA=np.float64(zeta), GAMMA=np.float64(gamma))),
          ref.clipped_softmax_attention(Q, K, V, zeta, gamma))


@pytest.mark.parametrize("cap", [0.5, 5.0, 50.0])
def test_softcap(cap):
    P = 16
    Q, K, V = qkv(P, P, 6)
    close(run("softcap", dict(Q=Q, K=K, V=V, CAP=np.float64(cap))),
          ref.softcap_attention(Q, K, V, cap, mask=ref.causal_mask(P, P)))


def test_sink_logit():
    P = 15
    Q, K, V = qkv(P, P, 7)
    sink = torch.tensor([-2.0, 0.5, 3.0], dtype=torch.float64)
    close(run("sink-logit", dict(Q=Q, K=K, V=V, SINK=sink)),
          ref.sink_logit_attention(Q, K, V, sink, mask=ref.causal_mask(P, P)))


@pytest.mark.parametrize("NS,W", [(1, 3), (4, 5), (0, 4)])
def test_sink_tokens(NS, W):
    P = 22
    Q, K, V = qkv(P, P, 8)
    close(run("sink-tokens", dict(Q=Q, K=K, V=V), NS=NS, W=W),
          ref.softmax_attention(Q, K, V, mask=ref.streaming_mask(P, P, NS, W)))


@pytest.mark.parametrize("HS", [0, 1, 2, 3])
def test_streaming_heads(HS):
    """The first HS heads stream (sinks + window), the others attend causally."""
    P = 21
    Q, K, V = qkv(P, P, 9)
    streaming = torch.arange(H) < HS
    close(run("streaming-heads", dict(Q=Q, K=K, V=V), HS=HS, NS=2, W=4),
          ref.streaming_heads_attention(Q, K, V, streaming, 2, 4))


# ------------------------------------------------------------------ 7, 8. linear attention, decay, GLA

@pytest.mark.parametrize("M0", [1, 4, 5, 8, 24, 30])
def test_lightning_equals_transnormer_decay_and_the_reference(M0):
    L = 24
    Q, K, V = qkv(L, L, 10)
    lam = torch.sigmoid(torch.randn(H, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    expected = ref.decay_linear_attention(Q, K, V, lam)
    close(run("transnormer-decay", dict(Q=Q, K=K, V=V, LAM=lam)), expected)
    close(run("lightning-attention", dict(Q=Q, K=K, V=V, LAM=lam), M0=M0), expected)


@pytest.mark.parametrize("M0", [1, 3, 4, 7, 16, 20])
def test_gla_chunkwise_equals_recurrent(M0):
    L = 16
    Q, K, V = qkv(L, L, 11)
    alpha = torch.sigmoid(torch.randn(B, H, E, L, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    expected = ref.gla_recurrent(Q, K, V, alpha)
    close(run("gla-recurrent", dict(Q=Q, K=K, V=V, ALPHA=alpha)), expected)
    close(run("gla-chunkwise", dict(Q=Q, K=K, V=V, ALPHA=alpha), M0=M0), expected)


# ------------------------------------------------------------------ 9. GQA, MQA

@pytest.mark.parametrize("name,G", [("gqa", 3), ("gqa", 1), ("mqa", None)])
def test_gqa_mqa(name, G):
    kv = 1 if name == "mqa" else H // G
    Q, K, V = qkv(13, 17, 12, kv_heads=kv)
    shapes = {} if G is None else {"G": G}
    k, v = (K[:, 0], V[:, 0]) if name == "mqa" else (K, V)      # MQA's K and V have no head rank
    close(run(name, dict(Q=Q, K=k, V=v), **shapes), ref.gqa_attention(Q, K, V))


# ------------------------------------------------------------------ 10. decode

@pytest.mark.parametrize("M0", list(range(1, 38, 3)) + [37, 38, 100])
def test_split_kv_decode_equals_decode_for_any_split(M0):
    M = 37
    g = torch.Generator().manual_seed(13)
    q = torch.randn(B, H, E, generator=g, dtype=torch.float64)
    K = torch.randn(B, H, E, M, generator=g, dtype=torch.float64)
    V = torch.randn(B, H, F, M, generator=g, dtype=torch.float64)
    expected = ref.decode_attention(q, K, V)
    close(run("decode", dict(Q=q, K=K, V=V)), expected)
    close(run("decode-split-kv", dict(Q=q, K=K, V=V), M0=M0), expected)
    close(ref.decode_split_kv(q, K, V, M0).numpy(), expected)


# ------------------------------------------------------------------ 12. block-sparse

def test_block_sparse_with_an_empty_block_row():
    P, M, TQ, TK = 20, 27, 4, 8
    Q, K, V = qkv(P, M, 14)
    g = torch.Generator().manual_seed(3)
    bm = torch.rand(B, H, -(-P // TQ), -(-M // TK), generator=g) < 0.5       # [.., PB, MB]
    bm[:, :, 1, :] = False                                                 # queries 4..7 see nothing
    out = run("block-sparse", dict(Q=Q, K=K, V=V, BM=bm.transpose(-1, -2).numpy()), TQ=TQ, TK=TK)
    assert np.all(out[..., 4:8] == 0)
    close(out, ref.softmax_attention(Q, K, V, mask=ref.block_mask_expand(bm, TQ, TK, P, M)))


# ------------------------------------------------------------------ 2D neighborhoods, sliding window, PowerAttention

@pytest.mark.parametrize("PY,PX,W,ST,DL", [(6, 7, (3, 5), (1, 2), (1, 1)), (8, 6, (3, 3), (1, 1), (2, 1)),
                                           (6, 6, (2, 4), (2, 4), (1, 1))])
def test_gna_2d(PY, PX, W, ST, DL):
    g = torch.Generator().manual_seed(15)
    Q, K, V = (torch.randn(B, H, n, PY, PX, generator=g, dtype=torch.float64) for n in (E, E, F))
    out = ei.execute(ei.library.load("gna-2d"), dict(Q=Q.numpy(), K=K.numpy(), V=V.numpy()),
                     dict(WY=W[0], WX=W[1], STY=ST[0], STX=ST[1], DLY=DL[0], DLX=DL[1]))["AV"]
    close(out, ref.na2d_attention(Q, K, V, W, ST, DL))


@pytest.mark.parametrize("W", [1, 4, 30])
def test_sliding_window(W):
    P = 18
    Q, K, V = qkv(P, P, 16)
    close(run("sliding-window", dict(Q=Q, K=K, V=V), W=W),
          ref.softmax_attention(Q, K, V, mask=ref.streaming_mask(P, P, 0, W)))


def test_power_attention():
    P = 40
    Q, K, V = qkv(P, P, 17)
    close(run("power-attention", dict(Q=Q, K=K, V=V)), ref.softmax_attention(Q, K, V, mask=ref.power_mask(P, P)))


# ------------------------------------------------------------------ 3. biases

def test_relative_bias_table():
    P, M = 11, 16
    Q, K, V = qkv(P, M, 18)
    table = torch.randn(H, P + M - 1, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    close(run("relative-bias", dict(Q=Q, K=K, V=V, T=table)),
          ref.softmax_attention(Q, K, V, bias=ref.relative_bias(table, P, M)[None]))


@pytest.mark.parametrize("R", [1, 3])
def test_flashbias_equals_the_dense_bias_it_factors(R):
    P, M = 13, 17
    Q, K, V = qkv(P, M, 19)
    g = torch.Generator().manual_seed(5)
    U = torch.randn(B, H, R, P, generator=g, dtype=torch.float64)
    W = torch.randn(B, H, R, M, generator=g, dtype=torch.float64)
    bias = ref.flashbias_lowrank(U, W)                                 # [B, H, P, M]
    expected = ref.softmax_attention(Q, K, V, bias=bias)
    close(run("flashbias-lowrank", dict(Q=Q, K=K, V=V, U=U, W=W)), expected)
    close(run("dense-bias", dict(Q=Q, K=K, V=V, BIAS=bias.transpose(-1, -2))), expected)


# ------------------------------------------------------------------ 4. gating, 13-16

def test_gated_attention():
    P, M, D = 10, 14, 5
    Q, K, V = qkv(P, M, 20)
    g = torch.Generator().manual_seed(6)
    X = torch.randn(B, D, P, generator=g, dtype=torch.float64)
    WG = torch.randn(H, F, D, generator=g, dtype=torch.float64)
    close(run("gated-attention", dict(Q=Q, K=K, V=V, X=X, WG=WG)), ref.gated_attention(Q, K, V, X, WG))


@pytest.mark.parametrize("N", [1, 4])
def test_agent_attention(N):
    Q, K, V = qkv(12, 19, 21)
    A = torch.randn(B, H, E, N, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    close(run("agent-attention", dict(Q=Q, K=K, V=V, A=A)), ref.agent_attention(Q, K, V, A))


def test_aaren_prefix_outputs():
    M = 23
    g = torch.Generator().manual_seed(22)
    q = torch.randn(B, H, E, generator=g, dtype=torch.float64)
    K = torch.randn(B, H, E, M, generator=g, dtype=torch.float64)
    V = torch.randn(B, H, F, M, generator=g, dtype=torch.float64)
    close(run("aaren", dict(Q=q, K=K, V=V)), ref.aaren(q, K, V))


@pytest.mark.parametrize("TOPK", [1, 2, 3])
def test_mixture_of_heads(TOPK):
    Q, K, V = qkv(9, 12, 23)
    router = torch.randn(B, H, 9, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    close(run("moh-attention", dict(Q=Q, K=K, V=V, R=router), TOPK=TOPK), ref.moh_attention(Q, K, V, router, TOPK))


def test_sigmoid_and_relu_attention():
    Q, K, V = qkv(10, 15, 24)
    close(run("sigmoid-attention", dict(Q=Q, K=K, V=V, SB=np.float64(-np.log(15)))),
          ref.sigmoid_attention(Q, K, V, -np.log(15)))
    close(run("relu-attention", dict(Q=Q, K=K, V=V)), ref.relu_attention(Q, K, V))


@pytest.mark.parametrize("name,causal", [("linear-attention", False), ("linear-attention-causal", True)])
def test_linear_attention(name, causal):
    Q, K, V = qkv(16, 16, 25)
    close(run(name, dict(Q=Q, K=K, V=V)), ref.linear_attention(Q, K, V, causal=causal))

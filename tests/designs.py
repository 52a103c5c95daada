"""Test designs written once: the standard softmax attention body under a
mask named `vis`, after a header of ranks, inputs, `let`s and the mask."""

MASKED_SOFTMAX = """QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m] where vis
GM[b, h, p] = max[m] QK[b, h, m, p] where vis
SN[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p]) where vis
SD[b, h, p] = SN[b, h, m, p] where vis
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m] where vis
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]
"""


def masked_softmax(header: str) -> str:
    """`header` (ending in `mask vis = ...`) followed by the masked body."""
    return header.rstrip("\n") + "\n" + MASKED_SOFTMAX

SOFTMAX = MASKED_SOFTMAX.replace(" where vis", "")


def softmax(header: str) -> str:
    """`header` followed by the unmasked body."""
    return header.rstrip("\n") + "\n" + SOFTMAX

SELF_ATTENTION_HEADER = """rank B, H, P, E, F
rank M = P
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
"""

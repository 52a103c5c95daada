"""The oracle side of the FlexAttention parity suite: for each design of
tests/flex/corpus, the mask_mod and score_mod a FlexAttention user writes,
in torch, from the variant's definition (attention-gym, the FlexAttention
blog, PyTorch's tests; written here in our own words), with the shapes and
the tensor values the test draws. They share nothing with attnc: the .ein
file and these functions are two independent writings of one definition.

A variant is `Variant(shapes, mask, score, data, qk)`: `mask(a, s)` and
`score(a, s)` take the inputs (numpy, by name) and the shapes and return
FlexAttention's functions (or None); `data(rng, s)` draws the tensors a mask
or a score reads (the rest, Q, K, V and float tables, come from
einsum_ir.random_inputs); `qk(a, s)` gives (q, k, scale) where the scores
are not Q K^T / sqrt(E) alone."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as tf

CORPUS = Path(__file__).parent / "corpus"
BASE = dict(B=2, H=1, P=36, E=8, F=8)
HEADS = BASE | dict(H=3)             # for the variants that read the head coordinate


@dataclass(frozen=True)
class Variant:
    shapes: dict
    mask: Callable | None = None
    score: Callable | None = None
    data: Callable | None = None
    qk: Callable | None = None
    reads: tuple = field(default=())     # the tensors the mask reads (a data-dependent mask)


def t(x):
    return torch.as_tensor(np.asarray(x))


def clamp(x, lo, hi):
    return torch.clamp(x, lo, hi)


# ---- masks over coordinates
def causal(a, s):
    return lambda b, h, q, k: k <= q


def natten_near(qc, kc, n, kw):
    """|clamp(q, kw // 2, n - 1 - kw // 2) - k| <= kw // 2 along one axis."""
    return (clamp(qc, kw // 2, n - 1 - kw // 2) - kc).abs() <= kw // 2


def natten_2d(a, s):
    def mask(b, h, q, k):
        return (natten_near(q // s["CW"], k // s["CW"], s["CH"], s["KH"])
                & natten_near(q % s["CW"], k % s["CW"], s["CW"], s["KW"]))
    return mask


def natten_tiled(a, s):
    th, tw, cw = s["TH"], s["TW"], s["CW"]

    def xy(i):
        tile, inner = i // (th * tw), i % (th * tw)
        return (tile // (cw // tw)) * th + inner // tw, (tile % (cw // tw)) * tw + inner % tw

    def mask(b, h, q, k):
        (qr, qc), (kr, kc) = xy(q), xy(k)
        return natten_near(qr, kr, s["CH"], s["KH"]) & natten_near(qc, kc, cw, s["KW"])
    return mask


def morton_decode(i):
    """(row, column) of Morton code i: the column from the even bits, the row from the odd ones."""
    col = torch.zeros_like(i)
    row = torch.zeros_like(i)
    for bit in range(8):
        col = col | (((i >> (2 * bit)) & 1) << bit)
        row = row | (((i >> (2 * bit + 1)) & 1) << bit)
    return row, col


def natten_morton(a, s):
    def mask(b, h, q, k):
        (qr, qc), (kr, kc) = morton_decode(q), morton_decode(k)
        return natten_near(qr, kr, s["CH"], s["KH"]) & natten_near(qc, kc, s["CW"], s["KW"])
    return mask


def sliding_tile(a, s):
    th, tw = s["TH"], s["TW"]
    tiles_h, tiles_w, kh, kw = s["CH"] // th, s["CW"] // tw, s["KH"] // th, s["KW"] // tw
    vis = s["CH"] * s["CW"]

    def inside(qt, kt, n, ker):
        left, right = ker // 2, ker // 2 + ker % 2 - 1
        centre = clamp(qt, left, n - 1 - right)
        return (kt >= centre - left) & (kt <= centre + right)

    def mask(b, h, q, k):
        qt, kt = q // (th * tw), k // (th * tw)
        near = inside(qt // tiles_w, kt // tiles_w, tiles_h, kh) & inside(qt % tiles_w, kt % tiles_w, tiles_w, kw)
        return ((q < vis) & (k < vis) & near) | ((q < vis) & (k >= vis)) | (q >= vis)
    return mask


def block_diffusion(a, s):
    n, bs = s["N"], s["BS"]

    def mask(b, h, q, k):
        qn, kn = q < n, k < n
        qb, kb = (q % n) // bs, (k % n) // bs
        return (((qb == kb) & (qn == kn)) | ((qb > kb) & qn & ~kn) | ((qb >= kb) & ~qn & ~kn))
    return mask


def jetspec_training(a, s):
    pl, bs = s["PL"], s["BS"]

    def mask(b, h, q, k):
        j = k - pl
        return (k < pl) | ((k >= pl) & (q // bs == j // bs) & (j % bs <= q % bs))
    return mask


# ---- masks that read tensors
def document_ids(rng, n, docs):
    """Sorted document ids 0..docs-1 over n positions (every document non-empty)."""
    cuts = np.sort(rng.choice(np.arange(1, n), docs - 1, replace=False))
    ids = np.zeros(n, np.int32)
    for c in cuts:
        ids[c:] += 1
    return ids


def offsets_of(ids):
    return np.searchsorted(ids, np.arange(ids.max() + 2)).astype(np.int32)


def shared_prefix_data(rng, s):
    lengths = [5, 4, 3, 6, 5, 4, 5, 4]
    assert sum(lengths) == s["P"]
    ids = np.repeat(np.arange(len(lengths)), lengths).astype(np.int32)
    return {"DOC": ids, "OFF": offsets_of(ids), "PD": np.array([0, 0, 0, 0, 4, 4, 4, 4], np.int32)}


def shared_prefix(a, s):
    doc, off, pd = t(a["DOC"]).long(), t(a["OFF"]).long(), t(a["PD"]).long()

    def mask(b, h, q, k):
        qd = doc[q]
        own = (k >= off[qd]) & (k <= q)
        pre = pd[qd]
        return own | ((qd != pre) & (k >= off[pre]) & (k < off[pre + 1]))
    return mask


def tree_data(rng, s):
    n = s["P"]
    parent = [-1] + [int(rng.integers(0, i)) for i in range(1, n)]
    anc = np.eye(n, dtype=bool)
    for node in range(1, n):
        anc[node] |= anc[parent[node]]
    return {"ANC": anc}


def tree_causal(a, s):
    anc, pl, n = t(a["ANC"]), s["PL"], s["P"]

    def mask(b, h, q, k):
        j = clamp(k - pl, 0, n - 1)
        return (k < pl) | ((k >= pl) & (k < pl + n) & anc[q, j])
    return mask


# ---- score modifications
def t5_bucket(rel, nbk, md):
    """T5's bidirectional bucket of the offset rel = key - query, in torch."""
    half = nbk // 2
    exact = half // 2
    n = rel.abs()
    far = exact + (torch.log(n.double().clamp(min=1) / exact) / math.log(md / exact) * (half - exact)).long()
    far = torch.clamp(far, max=half - 1)
    return (rel > 0).long() * half + torch.where(n < exact, n, far)


def sandwich(a, s):
    fr = t(a["FR"]).double()
    m = s["P"]
    dist = torch.arange(-(m - 1), m, dtype=torch.float64)
    table = torch.cos(dist[:, None] * fr[None, :]).sum(-1)
    ratio = s["H"] / (8.0 * torch.arange(1, s["H"] + 1, dtype=torch.float64))
    return lambda sc, b, h, q, k: sc + table[q - k + m - 1] * ratio[h]


def latent(a, s):
    q = torch.cat([t(a["Q"]), t(a["QR"])], dim=2)
    k = torch.cat([t(a["K"]), t(a["KR"])], dim=2)
    return q, k, 1.0 / math.sqrt(s["E"] + s["R"])


def softcap(a, s):
    return lambda sc, b, h, q, k: s["CAP"] * torch.tanh(sc / s["CAP"])


def ints(x):
    return np.asarray(x, np.int32)


VARIANTS: dict[str, Variant] = {
    "full": Variant(BASE),
    "causal": Variant(BASE, causal),
    "inverse-causal": Variant(BASE, lambda a, s: lambda b, h, q, k: k > q),
    "causal-bottom-right": Variant(BASE | dict(M=28),
                                   lambda a, s: lambda b, h, q, k: k <= q + s["M"] - s["P"]),
    "sliding-window": Variant(BASE | dict(W=5), lambda a, s: lambda b, h, q, k: (k <= q) & (q - k < s["W"])),
    "sliding-window-bidirectional": Variant(BASE | dict(W=3),
                                            lambda a, s: lambda b, h, q, k: (q - k).abs() <= s["W"]),
    "dilated-sliding-window": Variant(BASE | dict(W=8, D=3),
                                      lambda a, s: lambda b, h, q, k: ((q - k).abs() <= s["W"])
                                      & ((q - k) % s["D"] == 0)),
    "prefix-lm": Variant(BASE | dict(PL=7), lambda a, s: lambda b, h, q, k: (k <= q) | (k < s["PL"])),
    "prefix-lm-per-sequence": Variant(BASE, lambda a, s: (lambda pre: lambda b, h, q, k: (k <= q) | (k < pre[b]))(
        t(a["PRE"])), data=lambda rng, s: {"PRE": ints([0, 20])}, reads=("PRE",)),
    "document": Variant(BASE, lambda a, s: (lambda doc: lambda b, h, q, k: (doc[b, q] == doc[b, k]) & (k <= q))(
        t(a["DOC"])), data=lambda rng, s: {"DOC": np.stack([document_ids(rng, s["P"], 4),
                                                            document_ids(rng, s["P"], 3)])}, reads=("DOC",)),
    "document-offsets": Variant(
        BASE, lambda a, s: (lambda doc, off: lambda b, h, q, k: (k >= off[doc[q]]) & (k <= q))(
            t(a["DOC"]).long(), t(a["OFF"]).long()),
        data=lambda rng, s: (lambda ids: {"DOC": ids, "OFF": offsets_of(ids)[:-1]})(document_ids(rng, s["P"], 5)),
        reads=("DOC", "OFF")),
    "shared-prefix": Variant(BASE, shared_prefix, data=shared_prefix_data, reads=("DOC", "OFF", "PD")),
    "global-sliding-window": Variant(
        BASE | dict(W=2), lambda a, s: (lambda g: lambda b, h, q, k: ((q - k).abs() <= s["W"]) | g[q] | g[k])(
            t(a["G"])), data=lambda rng, s: {"G": np.isin(np.arange(s["P"]), [0, 17, 30])}, reads=("G",)),
    "key-padding": Variant(BASE, lambda a, s: (lambda ln: lambda b, h, q, k: k < ln[b])(t(a["LEN"])),
                           data=lambda rng, s: {"LEN": ints([0, 23])}, reads=("LEN",)),
    "attention-sink": Variant(BASE | dict(NS=3, W=6),
                              lambda a, s: lambda b, h, q, k: (k <= q) & ((k < s["NS"]) | (q - k < s["W"]))),
    "block-causal": Variant(BASE | dict(BS=5), lambda a, s: lambda b, h, q, k: k // s["BS"] <= q // s["BS"]),
    "natten-1d": Variant(BASE | dict(KS=5), lambda a, s: lambda b, h, q, k: natten_near(q, k, s["P"], s["KS"])),
    "natten-2d": Variant(dict(B=2, H=1, E=8, F=8, CH=6, CW=6, KH=3, KW=5), natten_2d),
    "natten-tiled": Variant(dict(B=2, H=1, E=8, F=8, CH=4, CW=8, TH=2, TW=4, KH=3, KW=3), natten_tiled),
    "natten-morton": Variant(dict(B=2, H=1, E=8, F=8, CH=4, CW=8, KH=3, KW=3), natten_morton),
    "sliding-tile-2d": Variant(dict(B=2, H=1, E=8, F=8, CH=4, CW=8, TH=2, TW=2, KH=4, KW=4, NT=4), sliding_tile),
    "block-diffusion": Variant(dict(B=2, H=1, E=8, F=8, N=18, BS=4), block_diffusion),
    "jetspec-training": Variant(dict(B=2, H=1, P=32, E=8, F=8, PL=5, BS=4), jetspec_training),
    "tree-causal": Variant(dict(B=2, H=1, P=20, E=8, F=8, PL=6), tree_causal, data=tree_data, reads=("ANC",)),
    # score modifications
    "relative-position": Variant(BASE, score=lambda a, s: lambda sc, b, h, q, k: sc + (q - k)),
    "alibi": Variant(HEADS, causal, score=lambda a, s: lambda sc, b, h, q, k: sc + (k - q) * torch.exp2(
        -((h + 1).double() * 8.0 / s["H"]))),
    "softcap": Variant(BASE | dict(CAP=2), causal, score=softcap),
    "softcap-sliding-window": Variant(BASE | dict(CAP=2, W=7),
                                      lambda a, s: lambda b, h, q, k: (k <= q) & (q - k < s["W"]), score=softcap),
    "t5-bias": Variant(HEADS | dict(NBK=8, MD=16), score=lambda a, s: (lambda tb: lambda sc, b, h, q, k: sc + tb[
        h, t5_bucket(k - q, s["NBK"], s["MD"])])(t(a["TB"]))),
    "head-scale": Variant(HEADS, score=lambda a, s: (lambda hs: lambda sc, b, h, q, k: sc * hs[h])(t(a["HS"]))),
    "squared": Variant(BASE, causal, score=lambda a, s: lambda sc, b, h, q, k: sc * sc),
    "trig": Variant(BASE, score=lambda a, s: lambda sc, b, h, q, k: torch.sin(sc) * torch.cos(sc)
                    + torch.tan(sc / 4)),
    "checkerboard": Variant(BASE, score=lambda a, s: lambda sc, b, h, q, k: torch.where(
        (k - q).abs() % 2 == 0, sc * 2.0, sc * 0.5)),
    "sandwich": Variant(HEADS | dict(NF=4), score=sandwich,
                        data=lambda rng, s: {"FR": 1.0 / 10000 ** (2 * np.arange(s["NF"]) / (2 * s["NF"]))}),
    "graphormer": Variant(HEADS | dict(ND=5), score=lambda a, s: (lambda spb, dist: lambda sc, b, h, q, k: sc + spb[
        h, dist[b, q, k]])(t(a["SPB"]), t(a["DIST"]).long()),
        data=lambda rng, s: {"DIST": rng.integers(0, s["ND"], (s["B"], s["P"], s["P"])).astype(np.int32)}),
    "dense-bias": Variant(HEADS, causal, score=lambda a, s: (lambda bias: lambda sc, b, h, q, k: sc + bias[
        b, h, k, q])(t(a["BIAS"]))),
    "latent-rope": Variant(BASE | dict(R=4), causal, qk=latent),
    "gelu-activation": Variant(BASE, score=lambda a, s: lambda sc, b, h, q, k: torch.log(tf.gelu(sc) + 1)),
}

"""The minimum footprint of inputs read through gathers (a paged KV pool
`KC[BT[b, m // BS], h / G, e, m % BS]`, a bucketed bias `TB[h, BKT[m, p]]`):
one step of R holds what that step reads, as a contiguous read would, and a
read that is not tied to R's steps still holds the whole tensor. Each charge
is checked against hand-derived sizes and against a brute-force count of the
distinct elements each step reads at concrete index data (written in plain
Python from the designs' index expressions, not from the analysis)."""
import itertools

import numpy as np
import pytest

import einsum_ir as ei
from einsum_ir.analysis import footprint
from einsum_ir.analysis.evaluate import evaluate
from einsum_ir.analysis.traversal import check_pass_count
from einsum_ir.ops import DTYPE_BYTES
from einsum_ir.shapes import resolve

BIAS = """
rank H, M, P, NK
input S[H, M, P]: f32
input TB[H, NK]: f32
input BKT[M, P]: i32
O[h, p] = S[h, m, p] * TB[h, BKT[m, p]]
"""

WHOLE = """
rank B, M, J, NP, E
input X[B, M]: f32
input POOL[NP, E]: f32
input IDX[B, J]: i32
Y[b, m, e] = X[b, m] * POOL[IDX[b, j], e]
"""

MIXED = WHOLE.replace("Y[b, m, e] = X[b, m] * POOL[IDX[b, j], e]", """input BT[B, M]: i32
Z[b, e] = POOL[IDX[b, j], e]
Y[b, m, e] = X[b, m] * POOL[BT[b, m], e] + Z[b, e]""")

PAIR = """
rank B, M, NP, NQ, E
input G[NP, NQ, E]: f32
input BT[B, M]: i32
input BU[B, M]: i32
Y[b, m, e] = G[BT[b, m], BU[b, m], e]
"""

TILES = """
rank B, E, NP
partition M -> M1, M0
input Q[B, E]: f32
input KP[NP, E]: f32
input BT[B, M]: i32
S[b, m1, m0] = Q[b, e] * KP[BT[b, m1 * M0 + m0], e]
L[b, m1] = max[m0] S[b, m1, m0]
"""


def _charged(c, rank, tensor, shapes):
    """Elements of `tensor` the footprint charges while it is live."""
    f = footprint(c, rank)
    return float(evaluate(f.sizes[tensor], resolve(c, shapes))) / DTYPE_BYTES[c.tensor(tensor).dtype]


def _most_per_step(steps):
    """The most distinct elements any one step reads (brute force)."""
    return max(len(set(s)) for s in steps)


# ---------------------------------------------------------- a bucketed bias table

@pytest.mark.parametrize("P, NK", [(8, 3), (3, 8), (5, 5)])
def test_a_gathered_bias_holds_one_key_row_of_buckets_per_step(P, NK):
    """Over M a step is one key m and every query p: H x min(P, NK) table
    entries (the whole table once P >= NK: the gather's index varies with p,
    which is not streamed, so nothing is saved); the brute force with each
    row of buckets all distinct reaches it."""
    c = ei.parse(BIAS)
    H, M = 2, 4
    shapes = dict(H=H, M=M, P=P, NK=NK)
    rng = np.random.default_rng(P * 10 + NK)
    bkt = np.array([rng.permutation(max(P, NK))[:P] % NK for _ in range(M)])
    steps = [[(h, bkt[m, p]) for h in range(H) for p in range(P)] for m in range(M)]
    assert _charged(c, "M", "TB", shapes) == H * min(P, NK) == _most_per_step(steps)
    total, live = footprint(c, "M").at(resolve(c, shapes))
    assert total == 4 * (H * P + H * min(P, NK) + P) + 2 * H * P          # S, TB, BKT rows; O whole (f16)
    assert "TB" in live


def test_over_the_queries_a_step_is_one_query_against_every_key():
    c = ei.parse(BIAS)
    H, M, P, NK = 2, 6, 3, 4
    shapes = dict(H=H, M=M, P=P, NK=NK)
    bkt = np.array([[(m + p) % NK for p in range(P)] for m in range(M)])
    steps = [[(h, bkt[m, p]) for h in range(H) for m in range(M)] for p in range(P)]
    assert _charged(c, "P", "TB", shapes) == H * min(M, NK) == _most_per_step(steps)
    assert check_pass_count(c, "P", shapes) is None and check_pass_count(c, "M", shapes) is None


# ---------------------------------------------------------- a whole pool re-read

def test_a_gather_not_tied_to_the_rank_holds_the_whole_pool():
    """POOL[IDX[b, j], e] summed over j inside every step of M: each step
    reads every block the index names (all of them here), so the pool is
    held whole, throughout the pass."""
    c = ei.parse(WHOLE)
    B, M, J, NP, E = 2, 3, 5, 4, 3
    shapes = dict(B=B, M=M, J=J, NP=NP, E=E)
    idx = np.arange(B * J).reshape(B, J) % NP
    steps = [[(idx[b, j], e) for b in range(B) for j in range(J) for e in range(E)] for _ in range(M)]
    assert _charged(c, "M", "POOL", shapes) == NP * E == _most_per_step(steps)
    total, _ = footprint(c, "M").at(resolve(c, shapes))
    assert total == 4 * (B + NP * E + B * J) + 2 * B * E                  # X row, POOL, IDX; Y row (f16)


def test_a_pool_gathered_per_step_and_also_read_whole_is_held_whole():
    """One read streams POOL one block per key (BT[b, m]); another (Z) reads
    every block the index table names before the pass: the pool is on chip
    whole, not one block per step."""
    c = ei.parse(MIXED)
    B, M, J, NP, E = 2, 3, 2, 6, 3
    shapes = dict(B=B, M=M, J=J, NP=NP, E=E)
    assert _charged(c, "M", "POOL", shapes) == NP * E
    total, live = footprint(c, "M").at(resolve(c, shapes))
    assert "POOL" in live
    # in the pass: X, BT rows; POOL whole; Z whole and a Y row (f16); before it: POOL, IDX, Z
    assert total == max(4 * (B + B + NP * E) + 2 * (B * E + B * E), 4 * (NP * E + B * J) + 2 * B * E)


# ---------------------------------------------------------- two gathered slots

def test_two_slots_gathered_by_the_same_sequence_hold_one_element_per_sequence():
    """G[BT[b, m], BU[b, m], e]: B (row, column) pairs per key, not B x B."""
    c = ei.parse(PAIR)
    B, M, NP, NQ, E = 3, 4, 5, 5, 2
    shapes = dict(B=B, M=M, NP=NP, NQ=NQ, E=E)
    rng = np.random.default_rng(7)
    bt, bu = (np.array([rng.permutation(NP)[:B] for _ in range(M)]).T for _ in range(2))
    steps = [[(bt[b, m], bu[b, m], e) for b in range(B) for e in range(E)] for m in range(M)]
    assert _charged(c, "M", "G", shapes) == B * E == _most_per_step(steps)


# ---------------------------------------------------------- a partitioned rank

@pytest.mark.parametrize("M, M0, NP", [(8, 4, 16), (6, 3, 4), (5, 2, 64)])
def test_a_tile_step_gathers_one_block_per_key_of_the_tile(M, M0, NP):
    """Over M1 x M0 a step is one tile: B x M0 gathered rows (fewer if the
    pool is smaller), not one per sequence."""
    c = ei.parse(TILES)
    B, E = 2, 3
    shapes = dict(B=B, E=E, NP=NP, M=M, M0=M0)
    rng = np.random.default_rng(M * 100 + NP)
    bt = np.stack([rng.permutation(max(NP, B * M))[:M] % NP for _ in range(B)])
    tiles = -(-M // M0)
    steps = [[(bt[b, m], e) for b in range(B) for m in range(t * M0, min(M, t * M0 + M0)) for e in range(E)]
             for t in range(tiles)]
    assert _charged(c, "M", "KP", shapes) == min(B * M0, NP) * E
    assert _most_per_step(steps) <= min(B * M0, NP) * E
    if B * M <= NP:      # a table of distinct blocks: the first (full) tile reads that many
        assert _most_per_step(steps) == min(B * M0, NP) * E


# ---------------------------------------------------------- the library's paged attention

def test_paged_attention_holds_one_block_slot_per_sequence_and_key():
    """Per key m and sequence b one slot of one block, for every KV head and
    e: B x KH x E of the key pool (never NP x KH x E x BS). Points by hand
    (f16 but the i32 table BT and lengths LEN; the score row QK is held
    whole for pass 2, at the live density d): pass 1's QK (Q, one key
    slice, BT, LEN, QK, GM), pass 2's SN (BT, LEN, QK, GM, an SN row, SD,
    SNV) and SNV (one value slice instead of QK)."""
    c = ei.library.load("paged-attention")
    shapes = dict(B=3, H=4, G=2, M=10, E=8, F=6, NP=12, BS=4)
    B, H, KH, M, E, F, BS, NB, d = 3, 4, 2, 10, 8, 6, 4, 3, 0.5
    rng = np.random.default_rng(3)
    bt = rng.permutation(shapes["NP"])[:B * NB].reshape(B, NB)
    steps = [[(bt[b, m // BS], kh, e, m % BS) for b in range(B) for kh in range(KH) for e in range(E)]
             for m in range(M)]
    env = resolve(c, shapes)
    f = footprint(c, "M")
    assert float(evaluate(f.sizes["KC"], env)) / 2 == B * KH * E == _most_per_step(steps)
    assert float(evaluate(f.sizes["VC"], env)) / 2 == B * KH * F
    total, live = f.at({**env, "density_live": d})
    table = 4 * (B * NB + B)
    qk = 2 * (B * H * E + B * KH * E + B * H * M * d + B * H) + table
    sn = 2 * (B * H * M * d + 3 * B * H + B * H * F) + table
    snv = 2 * (B * KH * F + 3 * B * H + B * H * F) + table
    assert total == max(qk, sn, snv) == qk and "KC" in live


def test_every_read_step_of_the_flat_and_block_layouts_is_the_same_size():
    """The block layout (KC[NP, KH, E, BS]) and the flat one (KC[KH, E, S],
    slot BT[b, m // BS] * BS + m % BS) name the same elements per step: one
    per sequence, at most one per block of the pool (seen only through the
    block layout's own slot; the flat slot is bounded by its S slots)."""
    flat = ei.parse(ei.library.path("paged-attention").read_text()
                    .replace("input KC[NP, KH, E, BS]", "input KC[KH, E, S]")
                    .replace("KC[BT[b, m // BS], h / G, e, m % BS]", "KC[h / G, e, BT[b, m // BS] * BS + m % BS]")
                    .replace("rank B, H, M, E, F, NP, BS", "rank B, H, M, E, F, NP, BS, S"))
    blocks = ei.library.load("paged-attention")
    for B, NP in itertools.product((1, 3), (2, 64)):
        shapes = dict(B=B, H=4, G=2, M=10, E=5, F=6, NP=NP, BS=4)
        a = _charged(blocks, "M", "KC", shapes)
        b = _charged(flat, "M", "KC", {**shapes, "S": NP * 4})
        assert a == min(B, NP) * 2 * 5 and b == min(B, NP * 4) * 2 * 5

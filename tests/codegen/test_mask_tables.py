"""Partial tiles that read their keep masks from a table (a predicate of
MASK_TABLE_MIN_OPS or more operations per point): the table against the
dense mask, the kernel against the executor, and the GPU model charging a
compare per point and the table's bytes."""
import numpy as np
import pytest
import torch

import einsum_ir as ei
from codegen.runtime import FusedKernel
from einsum_ir.analysis.fused import recognise
from einsum_ir.analysis.tile_program import MASK_TABLE_MIN_OPS, POINT, tile_program
from einsum_ir.analysis.tiles import PARTIAL, cell_counts, classify, mask_tiles
from hw_models.gpu import load_gpu
from mappers.gpu_mapping import GPUMapping
from simulator.gpu import _pass_ops, predict_fused
from tests.designs import masked_softmax

# a 2D neighborhood on a W-wide grid, the window's centre clipped at the edges: eight or so operations per point
NEIGHBORHOOD = masked_softmax("""
rank B, H, E, F
rank P = CH * CW
rank M = P
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
let near(q, k, n, w) = abs(clip(q, w // 2, n - 1 - w // 2) - k) <= w // 2
mask vis = near(p // CW, m // CW, CH, KH) and near(p % CW, m % CW, CW, KW)
""")
SHAPES = dict(B=1, H=2, E=16, F=16, CH=6, CW=7, KH=3, KW=5)      # P = 42: partial last tiles


def dense_mask(s):
    """The neighborhood mask by plain loops over (query, key)."""
    n = s["CH"] * s["CW"]
    out = np.zeros((n, n), bool)
    for p in range(n):
        cy = min(max(p // s["CW"], s["KH"] // 2), s["CH"] - 1 - s["KH"] // 2)
        cx = min(max(p % s["CW"], s["KW"] // 2), s["CW"] - 1 - s["KW"] // 2)
        for m in range(n):
            out[p, m] = abs(cy - m // s["CW"]) <= s["KH"] // 2 and abs(cx - m % s["CW"]) <= s["KW"] // 2
    return out


def test_a_costly_predicate_is_read_from_a_table_and_a_cheap_one_is_computed():
    assert tile_program(recognise(ei.parse(NEIGHBORHOOD))).passes[0].mask_table
    causal = ei.library.load("cab-self-causal")
    assert not tile_program(recognise(causal)).passes[0].mask_table


def test_the_table_holds_the_dense_mask_of_each_partial_tile():
    c = ei.parse(NEIGHBORHOOD)
    form = recognise(c)
    env = ei.resolve(c, SHAPES)
    bm = bn = 16
    cls = classify(cell_counts(form, 0, env), bm, bn)
    tiles, base = mask_tiles(form, 0, env, cls, (), bm, bn)
    want = np.pad(dense_mask(SHAPES), [(0, -42 % bm), (0, -42 % bn)])
    n = 0
    for r in range(cls.shape[0]):
        assert base[r] == n
        for kt in np.flatnonzero(cls[r] == PARTIAL):
            assert (tiles[n] == want[r * bm:(r + 1) * bm, kt * bn:(kt + 1) * bn]).all()
            n += 1
    assert n == len(tiles) == (cls == PARTIAL).sum() > 0


@pytest.mark.parametrize("bm,bn", [(16, 16), (32, 16)])
def test_the_kernel_reading_the_table_matches_the_executor(bm, bn):
    c = ei.parse(NEIGHBORHOOD)
    inp = ei.random_inputs(c, SHAPES, seed=5, dtype="float32")
    kernel = FusedKernel(c, GPUMapping(bm, bn, dtype="f32"), SHAPES)
    text = kernel.source(ei.resolve(kernel.cascade, SHAPES)).text
    body = text[text.index("def attnc_fused("):]
    assert "bt0_mt + (mt_first + i)" in body and "tl.abs" not in body      # read, not computed
    out = kernel(**{k: torch.tensor(v) for k, v in inp.items()}).double().numpy()
    ref = ei.execute(c, inp, SHAPES, dtype="float64")["AV"]
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()


def test_the_model_charges_a_compare_per_point_for_a_table_and_its_bytes_once():
    c = ei.parse(NEIGHBORHOOD)
    program = tile_program(recognise(c))
    pp, form = program.passes[0], program.form
    env = ei.resolve(c, SHAPES)
    _, computed, _ = _pass_ops(pp, form, env)
    _, read, _ = _pass_ops(pp, form, env, table=True)
    point = lambda ops: sum(v for (kind, ax), v in ops.items() if ax == POINT and kind != "select")
    assert point(read) == 2            # keep = byte != 0, and inb's and (the bounds)
    assert point(computed) >= MASK_TABLE_MIN_OPS + 2
    big = dict(SHAPES, CH=64, CW=64, KH=13, KW=13, H=16, E=64, F=64)
    m = GPUMapping(64, 64)
    gpu = load_gpu("h100")
    with_table = predict_fused(program, m, gpu, ei.resolve(c, big))
    # the table's bytes: every distinct partial tile once (one table for all heads), on top of Q, K, V, O
    partial = with_table.parts["tiles_partial"] / big["H"]
    qkvo = 4 * 16 * 4096 * 64 * 2
    assert with_table.hbm_bytes >= qkvo + partial * 64 * 64
    assert with_table.hbm_bytes <= 2 * qkvo + partial * 64 * 64


# a costly predicate that reads a per-sequence tensor: one mask table per batch coordinate
DILATED = masked_softmax("""
rank B, H, P, E, F
rank M = P
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
input DL[B]: i32
input WW[B]: i32
mask vis = (p - m) % DL[b] == 0 and abs(p - m) <= WW[b] and m <= p
""")


def test_a_table_per_batch_coordinate_when_the_predicate_reads_one():
    c = ei.parse(DILATED)
    assert tile_program(recognise(c)).passes[0].mask_table
    shapes = dict(B=2, H=2, P=40, E=16, F=16)
    inp = ei.random_inputs(c, shapes, seed=2, dtype="float32")
    inp["DL"], inp["WW"] = np.array([2, 3], np.int32), np.array([9, 30], np.int32)
    kernel = FusedKernel(c, GPUMapping(16, 16, dtype="f32"), shapes)
    out = kernel(**{k: torch.tensor(v) for k, v in inp.items()}).double().numpy()
    ref = ei.execute(c, inp, shapes, dtype="float64")["AV"]
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()
    inp["WW"] = np.array([30, 9], np.int32)              # other values: other tables, not the cached ones
    out = kernel(**{k: torch.tensor(v) for k, v in inp.items()}).double().numpy()
    ref = ei.execute(c, inp, shapes, dtype="float64")["AV"]
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()

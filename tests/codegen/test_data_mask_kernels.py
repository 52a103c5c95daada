"""Kernels of masks that read tensors: the block table (the key tiles each
query tile visits) is built from the tensors at run time, cached by a hash
of their values, and equals a classification written here from the mask
itself; the kernel matches the executor in Triton's interpreter; the GPU
model predicts from the same table."""
import functools

import numpy as np
import pytest
import torch

import einsum_ir as ei
from codegen.runtime import FusedKernel
from einsum_ir.analysis.fused import recognise
from einsum_ir.analysis.tiles import EMPTY, FULL, PARTIAL
from hw_models.gpu import load_gpu
from mappers.gpu_mapping import GPUMapping
from simulator.gpu import predict_fused
from tests.einsum_ir.test_data_masks import design, kept, needed, tile_classes, values

MAPPING = GPUMapping(32, 32, dtype="f32")


def run(c, shapes, arrays, seed=0, kernel=None):
    inp = ei.random_inputs(c, shapes, seed=seed, dtype="float32")
    inp.update(needed(c, arrays))
    ref = ei.execute(c, inp, shapes, dtype="float64")["AV"]
    kernel = kernel or FusedKernel(c, MAPPING, shapes)
    out = kernel(**{k: torch.tensor(v) for k, v in inp.items()}).double().numpy()
    return kernel, out, ref


@pytest.mark.parametrize("name", ["document", "prefix-lm", "global-tokens"])
def test_the_kernel_with_a_runtime_block_table_matches_the_executor(name):
    b, n, w = 2, 40, 3
    c = design(name)
    shapes = dict(B=b, H=1, P=n, E=8, F=4) | ({"W": w} if name == "global-tokens" else {})
    kernel, out, ref = run(c, shapes, values(name, b, n, 0))
    assert kernel.reads_tensors
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()


def test_block_tables_are_cached_per_mask_value_and_follow_new_values():
    c = design("document")
    shapes = dict(B=1, H=1, P=40, E=8, F=4)
    first = values("document", 1, 40, 0)
    kernel, out, ref = run(c, shapes, first)
    assert len(kernel._tables) == 1
    kernel, out, ref = run(c, shapes, first, seed=1, kernel=kernel)      # other Q, K, V; the same mask
    assert len(kernel._tables) == 1
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()
    second = values("document", 1, 40, 5)
    assert not np.array_equal(first["DOC"], second["DOC"])
    kernel, out, ref = run(c, shapes, second, kernel=kernel)             # a new mask: a new table
    assert len(kernel._tables) == 2
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()


def visited(tabs, nb, rows, kt):
    """{(batch row, query tile): (full key tiles, partial key tiles)} from the kernel's table tensors."""
    cf, idf, cp, idp = (t.cpu().numpy() for t in tabs)
    own = cf.size // rows                  # 1 where no batch coordinate is read: one table for all
    cf, cp = cf.reshape(own, rows), cp.reshape(own, rows)
    idf, idp = idf.reshape(own, rows, kt), idp.reshape(own, rows, kt)
    return {(i, r): (set(idf[i % own, r, :cf[i % own, r]]), set(idp[i % own, r, :cp[i % own, r]]))
            for i in range(nb) for r in range(rows)}


@pytest.mark.parametrize("name", ["document", "prefix-lm", "global-tokens", "shared-prefix"])
def test_the_block_table_equals_the_masks_tiles_and_the_model_counts_them(name):
    b, h, n, w = 2, 3, 100, 4
    c = design(name)
    shapes = dict(B=b, H=h, P=n, E=16, F=16) | ({"W": w} if name == "global-tokens" else {})
    env = ei.resolve(c, shapes)
    kernel = FusedKernel(c, GPUMapping(32, 16, dtype="f32"), shapes)
    arrays = needed(c, values(name, b, n, 2))
    (tabs, bs, kt), = kernel.tables(env, arrays, "cpu")
    rows = -(-n // 32)
    table = visited(tabs, b * h, rows, kt)
    ref = tile_classes(kept(name, arrays, b, n, w), 32, 16)            # [b, query tile, key tile]
    for (i, r), (full, part) in table.items():
        want = ref[i // h, r]
        assert full == set(np.flatnonzero(want == FULL)) and part == set(np.flatnonzero(want == PARTIAL))
    pred = predict_fused(recognise(c, env), GPUMapping(32, 16, dtype="f32"), load_gpu("h100"), env, arrays)
    assert pred.parts["tiles_full"] == sum(len(f) for f, _ in table.values())
    assert pred.parts["tiles_partial"] == sum(len(p) for _, p in table.values())
    assert pred.parts["tiles_skipped"] == int((ref == EMPTY).sum()) * h
    assert not any("without" in note for note in pred.notes)
    bound = predict_fused(recognise(c, env), GPUMapping(32, 16, dtype="f32"), load_gpu("h100"), env)
    assert any("an upper bound" in note for note in bound.notes)
    assert bound.time_s >= pred.time_s and bound.parts["tiles_skipped"] <= pred.parts["tiles_skipped"]


def test_a_kernel_called_without_the_masks_values_is_refused():
    c = design("document")
    shapes = dict(B=1, H=1, P=32, E=8, F=4)
    kernel = FusedKernel(c, MAPPING, shapes)
    with pytest.raises(ei.ShapeError, match="missing input: DOC"):
        inp = ei.random_inputs(c, shapes, dtype="float32")
        kernel(**{k: torch.tensor(v) for k, v in inp.items() if k != "DOC"})


def dense_of(c):
    """The same design without its mask."""
    text = str(c).replace(" where vis", "")
    lines = [ln for ln in text.splitlines() if not ln.startswith(("mask vis", "input DOC"))]
    return ei.parse("\n".join(lines))


@functools.lru_cache(maxsize=4)
def document_prediction(docs: int = 8, seed: int = 0):
    """(sparse, dense, fraction of key tiles visited) for a document mask at
    a shape that fills the GPU (64 heads of 4K, `docs` documents of random
    lengths), at the mapping the model picks for dense attention (128 x
    128); dense: the same kernel without the mask."""
    c = design("document")
    n = 4096
    env = ei.resolve(c, dict(B=1, H=64, P=n, E=64, F=64))
    rng = np.random.default_rng(seed)
    doc = np.zeros((1, n), np.int32)
    for cut in np.sort(rng.choice(np.arange(1, n), docs - 1, replace=False)):
        doc[0, cut:] += 1
    gpu = load_gpu("h100")
    m = GPUMapping(128, 128, warps=4, stages=2, dtype="bf16")
    dense = predict_fused(recognise(dense_of(c), env), m, gpu, env)
    sparse = predict_fused(recognise(c, env), m, gpu, env, {"DOC": doc})
    seen = sparse.parts["tiles_full"] + sparse.parts["tiles_partial"]
    return sparse, dense, seen / (seen + sparse.parts["tiles_skipped"])


@pytest.mark.parametrize("docs", [8, 2])
def test_a_document_masks_prediction_follows_the_tiles_it_visits(docs):
    """Never above dense; and no more than 2x dense x the fraction of key
    tiles visited (8 documents of about 512 tokens: 1.51x, see the next test)."""
    sparse, dense, frac = document_prediction(docs)
    assert 0 < frac < 0.6
    assert sparse.time_s <= dense.time_s
    assert sparse.time_s <= 2.0 * dense.time_s * frac, (sparse.time_s, dense.time_s, frac)


def test_documents_of_2k_tokens_are_within_issue_22s_bound():
    """Two documents of about 2K: each row tile visits about 8 key tiles of
    128, enough to carry its cost outside them (benchmarks/block_sparse_bound.py)."""
    sparse, dense, frac = document_prediction(2, seed=1)
    assert sparse.time_s <= 1.5 * dense.time_s * frac, (sparse.time_s, dense.time_s, frac)


@pytest.mark.xfail(strict=True, reason="issue 22's target, not met for short documents: 1.51x here (documents of "
                   "about 512 tokens; 2.1x at 256, docs/flex.md Findings 7). Each row tile visits 2-4 key tiles and "
                   "pays its cost outside them (program_cycles and two round trips), which published measurements "
                   "of FlashAttention-2 and of the persistent FlashAttention-3 show is paid per row tile")
def test_a_document_masks_prediction_is_within_1_5x_of_dense_times_the_fraction_visited():
    sparse, dense, frac = document_prediction()
    assert sparse.time_s <= 1.5 * dense.time_s * frac, (sparse.time_s, dense.time_s, frac)


def test_decode_with_cache_lengths_split_kv_matches_the_executor():
    """One query row, per-sequence cache lengths, split-KV: a split whose keys
    all lie past a sequence's length sees no tile (its table row is empty)."""
    from tests.attnc.test_inputs_option import DECODE
    c = ei.parse(DECODE)
    shapes = dict(B=3, H=2, M=100, E=16, F=8)
    inp = ei.random_inputs(c, shapes, seed=0, dtype="float32")
    inp["LEN"] = np.array([5, 100, 37], np.int32)
    ref = ei.execute(c, inp, shapes, dtype="float64")["AV"]
    kernel = FusedKernel(c, GPUMapping(16, 32, splits=2, dtype="f32"), shapes)
    out = kernel(**{k: torch.tensor(v) for k, v in inp.items()}).double().numpy()
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()


def test_the_prediction_says_what_the_programs_fixed_cost_is_when_it_is_most_of_the_answer():
    """Short documents: each program's cost outside its key tiles is named,
    with the key tiles per program; dense attention at 4K: no such note."""
    sparse, dense, _ = document_prediction(16)
    visited = sparse.parts["tiles_full"] + sparse.parts["tiles_partial"]
    assert sparse.parts["key_tiles_per_program"] == pytest.approx(visited / sparse.parts["programs"])
    note = next(n for n in sparse.notes if "outside them" in n)
    assert f"{visited / sparse.parts['programs']:.1f} key tiles" in note
    assert not any("outside them" in n for n in dense.notes)
    # the fixed cost includes program_cycles: a model without them is faster by no more than it
    c = design("document")
    env = ei.resolve(c, dict(B=1, H=64, P=4096, E=64, F=64))
    doc = (np.arange(4096) // 256).astype(np.int32)[None]
    m = GPUMapping(128, 128, warps=4, stages=2, dtype="bf16")
    gpu = load_gpu("h100")
    with_pc = predict_fused(recognise(c, env), m, gpu, env, {"DOC": doc})
    without = predict_fused(recognise(c, env), m, gpu.with_efficiency(program_cycles=0), env, {"DOC": doc})
    assert 0 < with_pc.time_s - without.time_s <= with_pc.parts["fixed_s"] * (1 + 1e-9)

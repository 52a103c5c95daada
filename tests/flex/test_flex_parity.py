"""FlexAttention parity: each design of tests/flex/corpus (the masks and score
modifications of attention-gym, the FlexAttention blog and PyTorch's tests,
written in the notation) against torch's flex_attention on the CPU, the
oracle, given the mask_mod and score_mod of tests/flex/flex_mods.py (the
same definitions written in torch). Each variant is run through the
reference executor and the generated fused kernel (Triton's interpreter),
analysed (its kept points against the oracle's mask counted densely) and
mapped by the GPU model (its key tiles against the same dense mask; for a
mask that reads tensors, also without their values: an upper bound)."""
from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import torch
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

import einsum_ir as ei
from attnc import analyze
from attnc.gpu import map_design
import codegen.runtime as runtime
from codegen.runtime import FusedKernel
from einsum_ir.analysis.fused import recognise
from hw_models.gpu import load_gpu
from mappers.gpu_mapping import GPUMapping
from simulator.gpu import predict_fused
from tests.flex.flex_mods import CORPUS, VARIANTS

NAMES = sorted(p.stem for p in CORPUS.glob("*.ein"))
# Findings in other agents' areas (see docs/flex.md, Findings): strict, so a fix shows as XPASS.
KNOWN = {
}


def known(stage, names):
    """The names, with the known findings of `stage` marked as strict xfails."""
    return [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=KNOWN[stage, n])) if (stage, n) in KNOWN
            else n for n in names]
TILE = 16
MAPPING = GPUMapping(TILE, TILE, dtype="f32")


def test_every_corpus_design_has_an_oracle_and_there_are_at_least_35():
    assert set(NAMES) == set(VARIANTS)
    assert len(NAMES) >= 35


@functools.lru_cache(maxsize=None)
def case(name):
    """(cascade, shapes with every extent, inputs as float32 numpy arrays)."""
    c = ei.load(str(CORPUS / f"{name}.ein"))
    v = VARIANTS[name]
    data = v.data(np.random.default_rng(1), v.shapes) if v.data else {}
    env = ei.resolve(c, v.shapes, data)
    shapes = {k: int(val) for k, val in env.items()}
    inputs = ei.random_inputs(c, shapes, seed=0, dtype="float32")
    inputs.update(data)
    return c, shapes, inputs


def dense_mask(name):
    """The oracle's mask_mod at every (b, h, query, key), as a numpy [B, H, P, M] array."""
    _, s, a = case(name)
    v = VARIANTS[name]
    if v.mask is None:
        return np.ones((s["B"], s["H"], s["P"], s["M"]), bool)
    b, h, q, k = (torch.arange(n).view(*[-1 if i == j else 1 for j in range(4)])
                  for i, n in enumerate((s["B"], s["H"], s["P"], s["M"])))
    return np.broadcast_to(v.mask(a, s)(b, h, q, k).numpy(), (s["B"], s["H"], s["P"], s["M"]))


@functools.lru_cache(maxsize=None)
def oracle(name):
    """flex_attention's output as [B, H, F, P] float64 (the notation's AV)."""
    _, s, a = case(name)
    v = VARIANTS[name]
    q, k, scale = v.qk(a, s) if v.qk else (torch.tensor(a["Q"]), torch.tensor(a["K"]), None)
    q, k, val = (x.double().permute(0, 1, 3, 2) for x in (q, k, torch.tensor(a["V"])))
    block = None
    if v.mask is not None:
        block = create_block_mask(v.mask(a, s), s["B"], s["H"], s["P"], s["M"], device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # flex_attention without torch.compile: the unfused reference
        out = flex_attention(q, k, val, score_mod=v.score(a, s) if v.score else None, block_mask=block,
                             scale=scale)
    return out.permute(0, 1, 3, 2).numpy()


def close(got, want, rel):
    assert got.shape == want.shape
    assert np.isfinite(got).all() and np.isfinite(want).all()
    assert np.abs(got - want).max() <= rel * max(np.abs(want).max(), 1.0)


@pytest.mark.parametrize("name", NAMES)
def test_the_executor_matches_flex_attention(name):
    c, s, a = case(name)
    close(ei.execute(c, a, s, dtype="float64")["AV"], oracle(name), 1e-9)


@pytest.mark.parametrize("name", known("kernel", NAMES))
def test_the_fused_kernel_matches_flex_attention(name, monkeypatch):
    """...and allocates nothing over keys x queries before the kernel."""
    c, s, a = case(name)
    allocated, real = {}, runtime._hoisted
    monkeypatch.setattr(runtime, "_hoisted", lambda *args: allocated.update(real(*args)) or allocated)
    kernel = FusedKernel(c, MAPPING, s)
    out = kernel(**{k: torch.tensor(v) for k, v in a.items()}).double().numpy()
    close(out, oracle(name), 2e-5)
    form = kernel.form
    over_tile = [n for n in allocated if {form.key, form.query} <= set(form.cascade.writers(n)[0].output_vars)]
    assert not over_tile, f"materialised outside the kernel: {over_tile}"


def reads(name):
    """The mask's tensors, as the analyses and the GPU model take them."""
    _, _, a = case(name)
    return {k: a[k] for k in VARIANTS[name].reads}


@pytest.mark.parametrize("name", known("analysis", NAMES))
def test_the_analysis_counts_the_points_the_oracles_mask_keeps(name):
    c, s, a = case(name)
    kept = int(dense_mask(name).sum())
    got = analyze(c, inputs=reads(name) or None, shapes=s).at(s)
    assert got["points"]["QK"] == kept * s["E"]
    assert got["points"]["SNV"] == kept * s["F"]
    assert got["points"]["SN"] == kept
    if VARIANTS[name].reads:                      # without the values: the density is a named quantity
        symbolic = analyze(c)
        assert symbolic.densities and all(d in str(symbolic.points["QK"]) for d in symbolic.densities)


def tile_classes(mask, bm, bn):
    """(full, partial, empty) (query tile, key tile) pairs over every (b, h) of a dense mask;
    a tile reaching past the last query or key is never full."""
    b, h, p, m = mask.shape
    rows, cols = -(-p // bm), -(-m // bn)
    padded = np.zeros((b, h, rows * bm, cols * bn), np.int64)
    padded[:, :, :p, :m] = mask
    kept = padded.reshape(b, h, rows, bm, cols, bn).sum(axis=(3, 5))
    whole = np.zeros_like(padded)
    whole[:, :, :p, :m] = 1
    size = whole.reshape(b, h, rows, bm, cols, bn).sum(axis=(3, 5))
    full = (kept == bm * bn) & (size == bm * bn)
    return int(full.sum()), int(((kept > 0) & ~full).sum()), int((kept == 0).sum())


@pytest.mark.parametrize("name", NAMES)
def test_the_gpu_model_visits_the_tiles_the_oracles_mask_keeps(name):
    c, s, a = case(name)
    env = ei.resolve(c, s)
    pred = predict_fused(recognise(c, env), MAPPING, load_gpu("h100"), env, reads(name) or None)
    full, partial, empty = tile_classes(dense_mask(name), TILE, TILE)
    passes = (pred.parts["tiles_full"] + pred.parts["tiles_partial"] + pred.parts["tiles_skipped"]) / (
        full + partial + empty)
    assert passes >= 1 and passes == int(passes)
    assert (pred.parts["tiles_full"], pred.parts["tiles_partial"], pred.parts["tiles_skipped"]) == (
        full * passes, partial * passes, empty * passes)
    best = map_design(c, shapes=s, dtype="f32", top=2, inputs=reads(name) or None)
    assert best.best and all(np.isfinite(p.time_s) and p.time_s > 0 for p in best.best)
    if VARIANTS[name].reads:                      # without the values: every key tile not ruled out is visited
        bound = map_design(c, shapes=s, dtype="f32", top=1)
        assert any("an upper bound" in note for note in bound.best[0].notes)
        assert not any("an upper bound" in note for note in best.best[0].notes)
        upper = predict_fused(recognise(c, env), MAPPING, load_gpu("h100"), env)
        assert upper.parts["tiles_skipped"] <= pred.parts["tiles_skipped"]
        assert upper.time_s >= pred.time_s
        assert any("upper bound" in note for note in upper.notes)


def test_attnc_map_takes_a_data_masks_values_from_an_npz(tmp_path, capsys):
    """The command line's path: `attnc map --inputs FILE.npz` tiles the tree
    mask from its ancestor matrix; without it, the upper bound says so."""
    from attnc.cli import main
    name = "tree-causal"
    c, s, a = case(name)
    np.savez(tmp_path / "L_tree.npz", **reads(name))
    path = CORPUS / f"{name}.ein"
    argv = ["map", str(path), "--dtype", "f32", "--top", "1", "--shape", *(f"{k}={s[k]}" for k in "B H E F PL".split())]
    assert main(argv + ["--inputs", str(tmp_path / "L_tree.npz")]) == 0
    given = capsys.readouterr().out
    assert main(argv + [f"P={s['P']}"]) == 0            # P from the shapes: ANC gave it above
    bound = capsys.readouterr().out
    assert "without its values" in bound and "without its values" not in given


@pytest.mark.parametrize("lam", [2, 0.75])
def test_differential_attention_is_one_kernel_where_flex_attention_needs_two_calls(lam):
    """tests/flex/beyond/differential.ein: softmax(Q1 K1^T) V - LAM softmax(Q2 K2^T) V,
    causal, as one fused kernel, against two flex_attention calls subtracted."""
    c = ei.load(str(CORPUS.parent / "beyond" / "differential.ein"))
    s = dict(B=2, H=1, P=36, E=8, F=8, LAM=lam)
    a = ei.random_inputs(c, s, seed=3, dtype="float32")
    block = create_block_mask(lambda b, h, q, k: k <= q, s["B"], s["H"], s["P"], s["P"], device="cpu")

    def flex(qn, kn):
        q, k, v = (torch.tensor(a[n]).double().permute(0, 1, 3, 2) for n in (qn, kn, "V"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return flex_attention(q, k, v, block_mask=block).permute(0, 1, 3, 2).numpy()
    want = flex("Q1", "K1") - s["LAM"] * flex("Q2", "K2")
    close(ei.execute(c, a, s, dtype="float64")["AV"], want, 1e-9)
    kernel = FusedKernel(c, MAPPING, s)
    assert len(kernel.form.scores) == 2
    close(kernel(**{k: torch.tensor(v) for k, v in a.items()}).double().numpy(), want, 2e-5)

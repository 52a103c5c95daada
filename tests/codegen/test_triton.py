"""Generated Triton kernels, run by Triton's interpreter on the CPU
(TRITON_INTERPRET=1, set in tests/conftest.py), against the reference
executor: every library design the fused family accepts, a design written
only here, split-KV decode, and the errors for designs outside the family."""
import numpy as np
import pytest
import torch

import attnc
from codegen.runtime import FusedKernel, cache_dir, cache_key
from einsum_ir import execute, library, parse, random_inputs
from einsum_ir.analysis.fused import FusedFormError, recognise
from einsum_ir.shapes import symbols_used
from mappers.gpu_mapping import GPUMapping

# lengths that are not multiples of the 32 x 32 tiles; B, H > 1
BASE = dict(B=2, H=3, P=45, M=70, E=16, F=8, W=13, NS=3, TQ=16, TK=16, G=3, D=12, R=4, ST=2, DL=3, TOPK=2, HS=2,
            NP=8, BS=16)
def _fits(name):
    try:
        recognise(library.load(name))
        return True
    except FusedFormError:
        return False


FAMILY = [n for n in library.names() if _fits(n)]
MAPPING = GPUMapping(32, 32, dtype="f32")


def _shapes(c):
    used = symbols_used(c)
    derived = {r.name for r in c.ranks if r.definition is not None}
    shapes = {k: v for k, v in BASE.items() if k in used and k not in derived}
    if "G" in used:
        shapes["H"] = 6                     # query heads in groups of G sharing a KV head
    return shapes


def _inputs(c, shapes, seed=0):
    inp = random_inputs(c, shapes, seed=seed, dtype="float32")
    if "LAM" in inp:                        # a decay rate in (0, 1)
        inp["LAM"] = np.random.default_rng(seed).uniform(0.5, 0.99, inp["LAM"].shape).astype("float32")
    return inp


def _check(c, shapes, mapping=MAPPING, seed=0):
    inp = _inputs(c, shapes, seed)
    ref = execute(c, inp, shapes, dtype="float64")
    out = FusedKernel(c, mapping, shapes)(**{k: torch.tensor(v) for k, v in inp.items()})
    outs = out if isinstance(out, dict) else {c.outputs[0].name: out}
    for name, r in ref.items():
        o = outs[name].double().numpy()
        assert np.array_equal(np.isnan(o), np.isnan(r)), f"{name}: NaN where the reference has none (or v.v.)"
        ok = ~np.isnan(r)
        scale = np.abs(r[ok]).max()
        assert np.abs(o[ok] - r[ok]).max() <= 1e-4 * scale, f"{name}: max error {np.abs(o[ok] - r[ok]).max()}"
    return ref


def test_the_family_covers_the_softmax_sigmoid_relu_and_decode_designs():
    for name in ("cab-self", "cab-self-causal", "alibi", "sliding-window", "gqa", "mqa", "softcap", "sink-logit",
                 "sink-tokens", "gated-attention", "clipped-softmax", "sigmoid-attention", "relu-attention",
                 "decode", "block-sparse", "relative-bias", "dense-bias"):
        assert name in FAMILY


@pytest.mark.parametrize("name", FAMILY)
def test_library_design_matches_the_reference(name):
    c = library.load(name)
    _check(c, _shapes(c))


def test_fully_masked_rows_come_out_as_the_design_says():
    """block-sparse: query blocks with no key block kept end as 0 (its select);
    causal cross attention with fewer keys than queries: rows with no key."""
    c = library.load("block-sparse")
    shapes = _shapes(c)
    inp = _inputs(c, shapes)
    inp["BM"][:, :, :, 1] = False            # the second query block sees nothing
    ref = execute(c, inp, shapes, dtype="float64")["AV"]
    out = FusedKernel(c, MAPPING, shapes)(**{k: torch.tensor(v) for k, v in inp.items()}).double().numpy()
    assert np.all(ref[..., 16:32] == 0) and np.all(out[..., 16:32] == 0)
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()


def test_a_design_written_only_for_this_test():
    """A new score map (soft-capped scores with a distance penalty) and a new
    mask (a strided band that leaves the first rows empty), with a guarded
    epilogue: no generator change."""
    c = parse("""
rank B, H, P, E, F
rank M = P
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
input TEMP[H]: f32
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]
S[b, h, m, p] = 3 * tanh(QK[b, h, m, p] / 3) - TEMP[h] * abs(p - m) / P where (p - m) % 3 != 1 and m <= p + 5 and p >= 7
GM[b, h, p] = max[m] S[b, h, m, p] where (p - m) % 3 != 1 and m <= p + 5 and p >= 7
SN[b, h, m, p] = exp(S[b, h, m, p] - GM[b, h, p]) where (p - m) % 3 != 1 and m <= p + 5 and p >= 7
SD[b, h, p] = SN[b, h, m, p] where (p - m) % 3 != 1 and m <= p + 5 and p >= 7
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m] where (p - m) % 3 != 1 and m <= p + 5 and p >= 7
AV[b, h, f, p] = select(SD[b, h, p] > 0, SNV[b, h, f, p] / max(SD[b, h, p], 1e-30), -1)
""", "custom.ein")
    ref = _check(c, dict(B=2, H=2, P=77, E=16, F=8))
    assert np.all(ref["AV"][..., :7] == -1)          # the empty rows


@pytest.mark.parametrize("splits", [1, 2, 3, 5])
def test_split_kv_decode_matches(splits):
    c = library.load("decode")
    _check(c, dict(B=2, H=3, M=333, E=16, F=8), GPUMapping(16, 32, splits=splits, dtype="f32"))


def test_split_kv_with_a_sink_and_gqa():
    _check(library.load("sink-logit"), dict(B=1, H=2, P=50, E=16, F=8), GPUMapping(32, 32, splits=3, dtype="f32"))
    _check(library.load("gqa"), dict(B=2, H=4, G=2, P=1, M=200, E=16, F=8), GPUMapping(16, 32, splits=4, dtype="f32"))


@pytest.mark.parametrize("name, why", [("attention-1pass", "RM: an explicit recurrence"),
                                       ("linear-attention", "associative"),
                                       ("gna-2d", "no score contraction")])
def test_designs_outside_the_family_are_refused_by_name(name, why):
    with pytest.raises(FusedFormError, match=why):
        recognise(library.load(name))


def test_a_design_outside_both_families_gets_both_reasons():
    shapes = dict(B=1, H=2, PY=20, PX=20, E=16, F=8, WY=3, WX=3, STY=1, STX=1, DLY=1, DLX=1)
    with pytest.raises(FusedFormError, match="(?s)no score contraction.*chunked linear kernel"):
        attnc.compile("gna-2d", shapes, mapping=MAPPING)


def test_generated_source_is_readable_and_skips_tiles():
    c = library.load("cab-self-causal")
    k = FusedKernel(c, MAPPING, {})
    src = k.source(dict(B=1, H=1, P=64, M=64, E=16, F=8))
    assert src.text.startswith("# Generated by attnc")
    assert "GM[b, h, p] = max[m] QK[b, h, m, p] where m <= p" in src.text     # the cascade in the header
    assert src.text.count("for i in range(") == 2                           # full, then partial tiles
    assert "tl.exp2" in src.text and "LOG2E" in src.text
    assert "keep0 = inb & (offs_m[None, :] <= offs_p[:, None])" in src.text   # the predicate, from the IR


def test_kernels_are_cached_by_hash_of_cascade_mapping_and_shapes():
    c = library.load("cab-self")
    a = cache_key(c, MAPPING, dict(E=16, F=8))
    assert a == cache_key(library.load("cab-self"), MAPPING, dict(E=16, F=8))
    assert a != cache_key(c, MAPPING.with_changes(block_n=64), dict(E=16, F=8))
    assert a != cache_key(c, MAPPING, dict(E=32, F=8))
    assert a != cache_key(library.load("cab-self-causal"), MAPPING, dict(E=16, F=8))
    shapes = dict(B=1, H=1, P=40, E=16, F=8)
    _check(c, shapes)
    assert (cache_dir() / f"attnc_{a}.py").exists()


def test_compile_chooses_the_mapping_by_the_model():
    k = attnc.compile("cab-self", dict(B=1, H=2, P=4096, E=64, F=64))
    assert k.mapping.block_m in (64, 128) and k.mapping.block_n in (32, 64, 128)


def test_one_kernel_object_serves_several_shapes():
    """Per-shape plans (env, module, tables, launch arguments) are cached by
    the inputs' shapes: a second length must not reuse the first's."""
    c = library.load("cab-self-causal")
    k = FusedKernel(c, MAPPING, {})
    for n, seed in ((40, 0), (75, 1), (40, 2)):
        shapes = dict(B=1, H=2, P=n, E=16, F=8)
        inp = _inputs(c, shapes, seed)
        out = k(**{name: torch.tensor(v) for name, v in inp.items()}).double().numpy()
        ref = execute(c, inp, shapes, dtype="float64")["AV"]
        assert out.shape == ref.shape and np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()
    assert len(k._plans) == 2

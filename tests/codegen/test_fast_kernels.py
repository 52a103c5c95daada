"""How the fastest attention kernels are built, checked in the generated
source and against the reference in Triton's interpreter: no masks on the
full-tile loop's loads, 64-bit offsets where a tensor can exceed 2^31
elements, and split-KV decode with the split count the model chooses."""
import re

import numpy as np
import pytest

import einsum_ir as ei
from einsum_ir import library
from einsum_ir.analysis.fused import recognise
from einsum_ir.shapes import resolve
from mappers.gpu_mapping import GPUMapping

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

import codegen.triton as cg  # noqa: E402
from codegen.runtime import FusedKernel  # noqa: E402


def _source(design: str, shapes: dict, m: GPUMapping) -> str:
    c = library.load(design)
    env = resolve(c, shapes)
    return cg.generate(recognise(c, env), m, env).text


def _loop(text: str, kind: str) -> list[str]:
    """The lines of the first `kind` (full | partial) key-tile loop."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if f"# {kind} key tiles" in ln)
    indent = len(lines[start + 1]) - len(lines[start + 1].lstrip())
    body = []
    for ln in lines[start + 1:]:
        if ln.strip() and len(ln) - len(ln.lstrip()) < indent:
            break
        body.append(ln)
    return body


def _key_loads(body: list[str]) -> list[str]:
    return [ln for ln in body if "tl.load(" in ln and "offs_m" in ln and "_idx" not in ln]


@pytest.mark.parametrize("design, shapes", [
    ("gqa", dict(B=1, H=4, G=2, P=256, M=256, E=64, F=64)),
    ("cab-self-causal", dict(B=1, H=2, P=256, E=128, F=128)),
    ("decode", dict(B=2, H=4, M=512, E=128, F=128)),
    ("sliding-window", dict(B=1, H=2, P=512, E=64, F=64, W=128)),
])
def test_full_tile_loop_loads_k_and_v_without_masks(design, shapes):
    c = library.load(design)
    env = resolve(c, shapes or {})
    text = cg.generate(recognise(c, env), GPUMapping(64, 64), env).text
    full, part = _key_loads(_loop(text, "full")), _key_loads(_loop(text, "partial"))
    assert full and part
    assert not [ln for ln in full if "mask=" in ln], full
    assert all("mask=" in ln for ln in part)          # the partial loop still checks bounds


def test_a_head_dim_below_its_block_keeps_only_that_mask():
    """E = 40 pads to a block of 64: the e axis is checked, the key axis not."""
    text = _source("gqa", dict(B=1, H=2, G=1, P=128, M=128, E=40, F=64), GPUMapping(64, 64))
    k = [ln for ln in _key_loads(_loop(text, "full")) if "_K" in ln.split("=")[0] or "ld0" in ln][0]
    mask = k.split("mask=")[1]
    assert "offs_e" in mask and "offs_m" not in mask


def test_64_bit_offsets_exactly_where_a_tensor_can_exceed_2_31_elements():
    big = dict(B=8, H=64, G=8, P=32768, M=32768, E=128, F=128)       # Q: 2^31 elements, K: 2^28
    text = _source("gqa", big, GPUMapping(128, 64))
    for name, wide in (("Q", True), ("K", False), ("V", False), ("AV", True)):
        lines = [ln for ln in text.splitlines() if re.search(rf"t\d+_{name} \+", ln)]
        assert lines, name
        assert all((".to(tl.int64)" in ln) == wide for ln in lines), (name, lines)
    small = _source("gqa", dict(B=1, H=2, G=1, P=64, M=64, E=16, F=16), GPUMapping(16, 16))
    assert "int64" not in small


def _reference_check(c, shapes, m, **gen):
    from einsum_ir import execute, random_inputs
    inputs = random_inputs(c, shapes, dtype="float32", seed=3)
    k = FusedKernel(c, m, shapes)
    out = k(**{n: torch.tensor(v) for n, v in inputs.items()})
    ref = execute(c, inputs, shapes)[c.outputs[0].name]
    got = out.double().numpy()
    ok = ~np.isnan(ref)
    assert np.isnan(got[~ok]).all() or not (~ok).any()
    np.testing.assert_allclose(got[ok], ref[ok], rtol=2e-4, atol=2e-5)
    return k


@pytest.mark.parametrize("design, shapes", [
    ("cab-self-causal", dict(B=1, H=2, P=64, E=16, F=16)),
    ("gqa", dict(B=1, H=4, G=2, P=48, M=64, E=16, F=16)),
])
def test_unmasked_and_64_bit_kernels_match_the_reference(monkeypatch, design, shapes):
    """Full tiles (no masks) and, with every tensor treated as wide, 64-bit
    offsets, give the reference's numbers in the interpreter."""
    c = library.load(design)
    _reference_check(c, shapes, GPUMapping(16, 16, dtype="f32"))
    monkeypatch.setattr(cg, "WIDE_ELEMENTS", 1)
    k = _reference_check(c, shapes, GPUMapping(16, 16, dtype="f32"))
    assert "tl.int64" in k.source(resolve(k.cascade, shapes)).text


def test_decode_split_count_is_the_models_choice_and_matches_at_several_splits():
    from attnc.gpu import kernel_mapping
    c = library.load("decode")
    big = dict(B=1, H=8, M=32768, E=128, F=128)
    m, pred = kernel_mapping(c, "h100", big)
    assert m.splits > 1 and pred.mapping.splits == m.splits   # few heads, long cache: the model splits
    k = FusedKernel(c, m, big)
    src = k.source(resolve(k.cascade, big))
    assert src.splits == m.splits and f"split-KV into {m.splits}" in src.text
    small = dict(B=1, H=2, M=300, E=16, F=16)
    for splits in sorted({2, 3, min(m.splits, 8)}):
        _reference_check(c, small, m.with_changes(splits=splits, block_n=32, dtype="f32"))

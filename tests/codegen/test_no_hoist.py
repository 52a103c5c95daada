"""Nothing over keys x queries leaves the fused kernel (issue 22, item 3): a
second score contraction over another head dimension (MLA's rotary part) is
a second tensor-core product in the tile; a bias reduced over another rank is
a loop inside the tile. What is still computed before the kernel (over rows
or keys only) is charged by the GPU model and named in its notes. Checked by
instrumenting the runtime's hoisted allocations and against the executor."""
import numpy as np
import pytest
import torch

import codegen.runtime as runtime
from codegen.runtime import FusedKernel
from einsum_ir import execute, library, parse, random_inputs
from einsum_ir.analysis.fused import FusedFormError, recognise
from einsum_ir.shapes import resolve
from hw_models.gpu import load_gpu
from mappers.gpu_mapping import GPUMapping, padded
from simulator.gpu import predict_fused, tile_work

from .test_tile_program import _env
from .test_triton import FAMILY

H100 = load_gpu("h100")
HEAD = """rank B, H, M, P, E, F{ranks}
input Q[B, H, E, P]: f16
input K[B, H, E, M]: f16
input V[B, H, F, M]: f16
{inputs}
S[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]
"""
TAIL = """GM[b, h, p] = max[m] T[b, h, m, p]
SN[b, h, m, p] = exp(T[b, h, m, p] - GM[b, h, p])
SD[b, h, p] = SN[b, h, m, p]
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m]
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]
"""
ROTARY = (", R", "input QR[B, H, R, P]: f16\ninput KR[B, H, R, M]: f16")
FEATURES = (", D", "input X[B, D, P]: f16\ninput Y[B, D, M]: f16")
WRITTEN = {   # (extra ranks, inputs), the Einsums between the score S and the softmax of T
    "mla-rotary": (ROTARY, "SR[b, h, m, p] = QR[b, h, r, p] * KR[b, h, r, m]\n"
                           "T[b, h, m, p] = S[b, h, m, p] + SR[b, h, m, p]\n"),
    "reduction-bias": (FEATURES, "BI[b, m, p] = max[d] X[b, d, p] - Y[b, d, m]\n"
                                 "T[b, h, m, p] = S[b, h, m, p] + BI[b, m, p]\n"),
    "shared-product-bias": (FEATURES, "BI[b, m, p] = X[b, d, p] * Y[b, d, m]\n"
                                      "T[b, h, m, p] = S[b, h, m, p] + 0.5 * BI[b, m, p]\n"),
    "causal-mla": (ROTARY, "SR[b, h, m, p] = QR[b, h, r, p] * KR[b, h, r, m] where m <= p\n"
                           "T[b, h, m, p] = S[b, h, m, p] + SR[b, h, m, p] where m <= p\n"),
    "masked-reduction-bias": (FEATURES, "BI[b, m, p] = max[d] X[b, d, p] - Y[b, d, m] where d < 2\n"
                                        "T[b, h, m, p] = S[b, h, m, p] + BI[b, m, p]\n"),
}
SHAPES = dict(B=1, H=2, M=40, P=24, E=16, F=8, R=4, D=3)


def written(name):
    (ranks, inputs), body = WRITTEN[name]
    return parse(f"# {name}\n" + HEAD.format(ranks=ranks, inputs=inputs) + body + TAIL)


def _over_tile(form, name) -> bool:
    """Is tensor `name` written over both the key and the query variables?"""
    e = form.cascade.writers(name)[0]
    return form.key in e.output_vars and (form.query is None or form.query in e.output_vars)


@pytest.mark.parametrize("name", FAMILY)
def test_no_library_design_hoists_a_tensor_over_keys_and_queries(name):
    c = library.load(name)
    shapes, env = _env(c)
    form = FusedKernel(c, GPUMapping(32, 32, dtype="f32"), shapes).form
    assert not [h.name for h in form.hoisted if _over_tile(form, h.name)]


@pytest.mark.parametrize("name", [n for n in WRITTEN if n != "masked-reduction-bias"]
                         + ["gated-attention", "moh-attention", "flashbias-lowrank"])
def test_the_kernel_allocates_nothing_over_keys_and_queries_and_matches(name, monkeypatch):
    if name in WRITTEN:
        c = written(name)
        shapes = {k: v for k, v in SHAPES.items() if k in {r.name for r in c.ranks}}
    else:
        c = library.load(name)
        shapes = _env(c)[0]
    allocated = []
    real = runtime._hoisted

    def spy(cc, f, env, inputs):
        out = real(cc, f, env, inputs)
        allocated.extend(out)
        return out
    monkeypatch.setattr(runtime, "_hoisted", spy)
    k = FusedKernel(c, GPUMapping(16, 16, dtype="f32"), shapes)
    inp = random_inputs(c, shapes, seed=2)
    ref = execute(c, inp, shapes, dtype="float64")
    out = k(**{n: torch.tensor(v) for n, v in inp.items()})
    assert not [t for t in allocated if _over_tile(k.form, t)]
    assert set(allocated) == {h.name for h in k.form.hoisted}
    r = ref[c.outputs[0].name]
    assert np.abs(out.double().numpy() - r).max() <= 1e-4 * np.abs(r).max()


def test_a_second_score_over_another_head_dimension_is_a_second_tensor_core_product():
    c = written("mla-rotary")
    form = recognise(c)
    assert [(s.name, s.contracted) for s in form.scores] == [("S", "e"), ("SR", "r")]
    env = resolve(c, dict(B=1, H=2, M=256, P=256, E=128, F=128, R=64))
    m = GPUMapping(64, 64)
    src = FusedKernel(c, m).source(env)
    body = src.text.split("# full key tiles")[1].split("# partial key tiles")[0]
    assert body.count("tl.dot(") == 3 and "BLOCK_E1" in body
    assert src.blocks == {"BLOCK_E1": 64}
    w = tile_work(form, 0, m, env)
    assert w.tensor_flops == 2 * 64 * 64 * (padded(128) + padded(64) + padded(128))


def test_an_in_tile_reduction_is_charged_per_reduced_step():
    c = written("reduction-bias")
    m = GPUMapping(64, 32)
    base = dict(B=1, H=2, M=256, P=256, E=64, F=64)
    w4, w8 = (tile_work(recognise(c), 0, m, resolve(c, dict(base, D=d))) for d in (4, 8))
    # per reduced step and point: X - Y, and the running max
    assert w8.fp32_full - w4.fp32_full == 4 * 2 * m.block_m * m.block_n
    pred = predict_fused(recognise(c), m, H100, resolve(c, dict(base, D=4)))
    assert any("BI" in n and "tile walk" in n for n in pred.notes)


def test_what_is_still_materialised_is_named_in_the_prediction():
    c = library.load("gated-attention")
    shapes, env = _env(c)
    form = recognise(c)
    assert form.hoisted and not any(_over_tile(form, h.name) for h in form.hoisted)
    pred = predict_fused(form, GPUMapping(32, 32), H100, env)
    for h in form.hoisted:
        assert any(n.startswith(f"materialised before the kernel: {h.name}[") for n in pred.notes)
    assert pred.parts["hoisted_s"] > 0


def test_an_in_tile_reduction_with_a_predicate_over_its_reduced_rank_is_refused():
    with pytest.raises(FusedFormError, match="BI: a predicate over the reduced rank d"):
        recognise(written("masked-reduction-bias"))

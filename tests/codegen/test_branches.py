"""Several score branches over the same keys (differential attention) and
branches stacked on a component rank read at constant indices: one fused
kernel walks the keys once for every branch, each branch with its own online
normaliser; the GPU model charges every branch. Regression tests for two
silent failures: the second branch treated as hoisted (KeyError at run
time; the model priced one branch) and constant indices dropped by the
generator (relative error 1.1 reported as success)."""
from pathlib import Path

import numpy as np
import pytest
import torch

from codegen.runtime import ChunkedKernel, FusedKernel, compile_kernel
from einsum_ir import execute, parse, parse_file, random_inputs
from einsum_ir.analysis.fused import FusedFormError, recognise
from hw_models.gpu import load_gpu
from mappers.gpu_mapping import GPUMapping
from simulator.gpu import predict_fused, tile_work

DESIGNS = Path(__file__).parent / "designs"
MAPPING = GPUMapping(32, 32, dtype="f32")
SHAPES = dict(B=2, H=2, M=45, P=37, E=16, F=8)


def _run(kernel, c, shapes, seed=0):
    inp = random_inputs(c, shapes, seed=seed, dtype="float32")
    ref = execute(c, inp, shapes)["AV"]
    out = kernel(**{k: torch.tensor(v) for k, v in inp.items()}).double().numpy()
    assert np.array_equal(np.isnan(out), np.isnan(ref))
    ok = ~np.isnan(ref)
    return np.abs(out[ok] - ref[ok]).max() / np.abs(ref[ok]).max()


def test_differential_attention_is_one_walk_with_two_normalisers():
    c = parse_file(DESIGNS / "diff_attention.ein")
    f = recognise(c)
    assert [s.name for s in f.scores] == ["S1", "S2"] and f.passes == 1
    assert f.normalisers == {0: ("G1", "G2")}
    assert {r.name: r.rescaled_by for r in f.reductions if r.kind != "max"} == \
        {"D1": "G1", "D2": "G2", "NV1": "G1", "NV2": "G2"}
    assert not f.hoisted
    k = FusedKernel(c, MAPPING, SHAPES)
    text = k.source(dict(SHAPES)).text
    assert text.count("for i in range(lo_full") == 1        # one walk over the keys
    assert "tl.dot(q0" in text and "tl.dot(q1" in text
    assert _run(k, c, SHAPES) < 1e-5


def test_differential_attention_split_kv_combines_both_normalisers():
    c = parse_file(DESIGNS / "diff_attention.ein")
    shapes = dict(SHAPES, P=5)
    k = FusedKernel(c, GPUMapping(16, 16, splits=3, dtype="f32"), shapes)
    assert k.source(dict(shapes)).splits == 3
    assert _run(k, c, shapes, seed=3) < 1e-5


def test_component_rank_read_at_constant_indices_is_unrolled():
    c = parse_file(DESIGNS / "diff_attention_component.ein")
    shapes = dict(SHAPES, C=2)
    k = compile_kernel(c, MAPPING, shapes)
    assert isinstance(k, FusedKernel)
    assert [s.name for s in k.form.scores] == ["S_C0", "S_C1"]
    assert _run(k, c, shapes, seed=1) < 1e-5
    with pytest.raises(Exception, match="C = 3"):
        k(**{n: torch.tensor(v) for n, v in random_inputs(c, dict(shapes, C=3), dtype="float32").items()})


def test_constant_indices_in_the_chunked_kernel():
    c = parse("""
rank B, H, C, M, P, E, F
input Q[B, H, C, E, P]: f16
input K[B, H, C, E, M]: f16
input V[B, H, F, M]: f16
FQ[b, h, c, e, p] = sigmoid(Q[b, h, c, e, p])
FK[b, h, c, e, m] = sigmoid(K[b, h, c, e, m])
KV[b, h, c, e, f] = FK[b, h, c, e, m] * V[b, h, f, m]
KS[b, h, c, e] = FK[b, h, c, e, m]
NUM[b, h, c, f, p] = FQ[b, h, c, e, p] * KV[b, h, c, e, f]
DEN[b, h, c, p] = FQ[b, h, c, e, p] * KS[b, h, c, e]
AV[b, h, f, p] = NUM[b, h, 0, f, p] / DEN[b, h, 0, p] - 0.5 * NUM[b, h, 1, f, p] / DEN[b, h, 1, p]
""", name="two-feature-maps")
    shapes = dict(B=1, H=2, C=2, M=37, P=37, E=8, F=8)
    k = compile_kernel(c, MAPPING, shapes)
    assert isinstance(k, ChunkedKernel)
    assert _run(k, c, shapes) < 1e-5


def test_a_constant_index_out_of_range_is_refused_before_any_kernel_runs():
    text = (DESIGNS / "diff_attention_component.ein").read_text().replace("SD[b, h, 1, p]", "SD[b, h, 2, p]")
    c = parse(text, name="bad-component")
    with pytest.raises(FusedFormError, match="reads index 2 of SD's rank 3 \\(C\\), which has 2"):
        compile_kernel(c, MAPPING, dict(SHAPES, C=2))
    text = (DESIGNS / "diff_attention_component.ein").read_text().replace(
        "S[b, h, c, m, p] = Q[b, h, c, e, p]", "S[b, h, c, m, p] = Q[b, h, 3, e, p]")
    with pytest.raises(FusedFormError, match="reads index 3 of Q's rank 3"):
        compile_kernel(parse(text, name="bad-input"), MAPPING, dict(SHAPES, C=2))


@pytest.mark.parametrize("read, why", [("SD[b, h, p - 1]", "not at the indices it is written at"),
                                       ("SD[b, h, 0]", "cannot unroll P: the output AV carries it")])
def test_a_row_value_read_away_from_its_own_coordinates_is_refused(read, why):
    c = parse(f"""
rank B, H, M, P, E, F
input Q[B, H, E, P]: f16
input K[B, H, E, M]: f16
input V[B, H, F, M]: f16
S[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]
GM[b, h, p] = max[m] S[b, h, m, p]
SN[b, h, m, p] = exp(S[b, h, m, p] - GM[b, h, p])
SD[b, h, p] = SN[b, h, m, p]
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m]
AV[b, h, f, p] = SNV[b, h, f, p] / {read} where p >= 1
""", name="shifted")
    with pytest.raises(FusedFormError, match=why):
        recognise(c, dict(B=1, H=1, M=8, P=8, E=4, F=4))


def test_the_gpu_model_charges_every_branch():
    one = parse_file(DESIGNS / "diff_attention.ein")
    single = parse("""
rank B, H, M, P, E, F
input Q1[B, H, E, P]: f16
input K1[B, H, E, M]: f16
input V[B, H, F, M]: f16
input LAM[H]: f32
S1[b, h, m, p] = Q1[b, h, e, p] * K1[b, h, e, m] where m <= p
G1[b, h, p] = max[m] S1[b, h, m, p] where m <= p
N1[b, h, m, p] = exp(S1[b, h, m, p] - G1[b, h, p]) where m <= p
D1[b, h, p] = N1[b, h, m, p] where m <= p
NV1[b, h, f, p] = N1[b, h, m, p] * V[b, h, f, m] where m <= p
AV[b, h, f, p] = NV1[b, h, f, p] / D1[b, h, p] * LAM[h]
""", name="one-branch")
    env = dict(B=4, H=16, M=4096, P=4096, E=128, F=128)
    m = GPUMapping(128, 64, 8, 2, dtype="bf16")
    two_w, one_w = tile_work(recognise(one), 0, m, env), tile_work(recognise(single), 0, m, env)
    assert two_w.tensor_flops == 2 * one_w.tensor_flops           # two QK^T and two PV products per tile
    assert two_w.row_sfu == 2 * one_w.row_sfu                     # two rescale factors per row per tile
    gpu = load_gpu("h100")
    t2 = predict_fused(recognise(one), m, gpu, env)
    t1 = predict_fused(recognise(single), m, gpu, env)
    assert t2.flops == pytest.approx(2 * t1.flops)
    assert t2.time_s > 1.6 * t1.time_s

"""Computed indices in the fused kernel (Triton's interpreter) against the
reference executor: T5's bucket computed in the index (`TB[h, bucket(m - p)]`
with floor(log(...))), the tree mask's `ANC[p, clip(m - PL, 0, P - 1)]`, an
index of the head alone; an index that leaves its tensor, or whose floor( )
is not finite, raises (the executor's error), never a clipped read."""
import numpy as np
import pytest
import torch

from codegen.runtime import FusedKernel
from einsum_ir import EinError, execute, parse, random_inputs
from einsum_ir.shapes import symbols_used
from mappers.gpu_mapping import GPUMapping

HEAD = """\
rank B, H, P, E, F, NBK
rank M = P
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
input TB[H, NBK]: f32
let exact() = NBK // 4
let far(n) = min(exact() + floor(log(max(n, 1) / exact()) / log(MD / exact()) * (NBK // 2 - exact())), NBK // 2 - 1)
let bucket(r) = (r > 0) * (NBK // 2) + select(abs(r) < exact(), abs(r), far(abs(r)))
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]
S[b, h, m, p] = QK[b, h, m, p] + BIAS
GM[b, h, p] = max[m] S[b, h, m, p]
SN[b, h, m, p] = exp(S[b, h, m, p] - GM[b, h, p])
SD[b, h, p] = SN[b, h, m, p]
AV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m] / SD[b, h, p]
"""
SHAPES = dict(B=1, H=2, P=20, E=8, F=8, NBK=8, MD=16)
MAPPING = GPUMapping(16, 16, dtype="f32")


def _both(text, shapes, inputs=None):
    c = parse(text, "computed.ein")
    shapes = {k: v for k, v in shapes.items() if k in symbols_used(c)}
    x = random_inputs(c, shapes, seed=4, dtype="float32")
    x.update(inputs or {})
    kernel = FusedKernel(c, MAPPING, shapes)
    return c, x, shapes, lambda: kernel(**{k: torch.tensor(v) for k, v in x.items()}).double().numpy()


@pytest.mark.parametrize("bias", [
    "TB[h, bucket(m - p)]",                                   # T5: floor(log(..)) inside the index
    "TB[clip(h - 1, 0, H - 1), ceil((m + p) / 5) % NBK]",     # an index of the head alone; ceil of a quotient
    "TB[h, select(m <= p, (p - m) % 4, 4 + (m > p + 2))]",    # conditions as 0/1 and select
])
def test_the_kernel_reads_a_computed_index_where_the_executor_does(bias):
    c, x, shapes, call = _both(HEAD.replace("BIAS", bias), SHAPES)
    want = execute(c, x, shapes, dtype="float32")["AV"]
    np.testing.assert_allclose(call(), want, rtol=1e-4, atol=1e-5)


TREE = """\
rank B, H, P, E, F
rank M = P + PL
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
input ANC[P, P]: bool
mask vis = m < PL or ANC[p, clip(m - PL, 0, P - 1)]
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m] where vis
GM[b, h, p] = max[m] QK[b, h, m, p] where vis
SN[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p]) where vis
SD[b, h, p] = SN[b, h, m, p] where vis
AV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m] / SD[b, h, p] where vis
"""


def test_the_tree_mask_with_a_clipped_index_matches_a_numpy_mask():
    shapes = dict(B=1, H=2, P=18, E=8, F=8, PL=5)
    rng = np.random.default_rng(0)
    parent = [-1] + [int(rng.integers(0, i)) for i in range(1, 18)]
    anc = np.eye(18, dtype=bool)
    for node in range(1, 18):
        anc[node] |= anc[parent[node]]
    c, x, shapes, call = _both(TREE, shapes, {"ANC": anc})
    m, p = np.meshgrid(np.arange(23), np.arange(18), indexing="ij")
    keep = (m < 5) | anc[p, np.clip(m - 5, 0, 17)]
    s = np.einsum("bhep,bhem->bhmp", x["Q"].astype(float), x["K"].astype(float))
    s = np.where(keep, s, -np.inf)
    a = np.exp(s - s.max(axis=2, keepdims=True))
    want = np.einsum("bhmp,bhfm->bhfp", a / a.sum(axis=2, keepdims=True), x["V"].astype(float))
    np.testing.assert_allclose(execute(c, x, shapes)["AV"], want, rtol=1e-10)
    np.testing.assert_allclose(call(), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bias, words", [
    ("TB[h, select(m > p, m - p + 3, 0)]", "out of range"),              # past the end of TB's NBK = 8
    ("TB[h, clip(floor(log(abs(m - p))), 0, NBK - 1)]", "not a finite"),  # log(0): the clip cannot hide it
])
def test_a_bad_computed_index_is_an_error_in_the_kernel_as_in_the_executor(bias, words):
    c, x, shapes, call = _both(HEAD.replace("BIAS", bias), SHAPES)
    with pytest.raises(EinError, match=words):
        execute(c, x, shapes)
    with pytest.raises(EinError, match="out of range|not a finite"):
        call()


def test_the_chunked_kernel_and_the_spatial_model_refuse_a_computed_index_by_name():
    from codegen.runtime import compile_kernel
    from einsum_ir import library
    from hw_models.schema import HardwareError
    from simulator.tiling import refuse_gathers
    text = library.path("linear-attention").read_text().replace(
        "PK[b, h, e, m] = select(K[b, h, e, m] > 0,", "PK[b, h, e, m] = select(K[b, h, e, clip(M - 1 - m, 0, M - 1)] > 0,")
    c = parse(text, "lin.ein")
    with pytest.raises(EinError, match=r"the chunked kernel does not compute the index clip\(M - 1 - m, 0, M - 1\)"):
        compile_kernel(c, MAPPING, dict(B=1, H=1, M=40, P=20, E=8, F=8))
    with pytest.raises(HardwareError, match=r"reads K\[b, h, e, clip\(M - 1 - m, 0, M - 1\)\] at the computed index"):
        refuse_gathers(c)

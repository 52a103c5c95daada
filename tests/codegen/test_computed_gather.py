"""A gather through an index computed in the tile (T5's relative-position
buckets): the kernel reads the bias at the computed bucket, and an index that
is not a whole number is an error, as in the executor (never truncated)."""
import numpy as np
import pytest
import torch

from codegen.runtime import FusedKernel
from einsum_ir import EinError, execute, parse, random_inputs
from mappers.gpu_mapping import GPUMapping

DESIGN = """
rank B, H, P, E, F, NBK
rank M = P
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
input TB[H, NBK]: f32
tensor BKT[M, P]: i32
BKT[m, p] = clip(BUCKET, 0, NBK - 1)
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]
S[b, h, m, p] = QK[b, h, m, p] + TB[h, BKT[m, p]]
GM[b, h, p] = max[m] S[b, h, m, p]
SN[b, h, m, p] = exp(S[b, h, m, p] - GM[b, h, p])
SD[b, h, p] = SN[b, h, m, p]
AV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m] / SD[b, h, p]
"""
SHAPES = dict(B=1, H=2, P=20, E=8, F=8, NBK=9)


def _run(bucket: str):
    c = parse(DESIGN.replace("BUCKET", bucket), "computed_gather.ein")
    x = random_inputs(c, SHAPES, seed=3)
    kernel = FusedKernel(c, GPUMapping(16, 16, dtype="f32"), SHAPES)
    return c, x, lambda: kernel(**{k: torch.tensor(v, dtype=torch.float32) for k, v in x.items()})


def test_a_whole_computed_bucket_reads_the_bias_there():
    c, x, call = _run("(m - p) // 3 + 4")
    m, p = np.meshgrid(np.arange(20), np.arange(20), indexing="ij")
    bkt = np.clip((m - p) // 3 + 4, 0, 8)
    s = np.einsum("bhep,bhem->bhmp", x["Q"], x["K"]) + x["TB"][:, bkt][None]
    a = np.exp(s - s.max(axis=2, keepdims=True))
    want = np.einsum("bhmp,bhfm->bhfp", a / a.sum(axis=2, keepdims=True), x["V"])
    np.testing.assert_allclose(execute(c, x, SHAPES)["AV"], want, rtol=1e-10)
    np.testing.assert_allclose(call().double().numpy(), want, rtol=1e-4, atol=1e-5)


def test_a_fractional_computed_bucket_is_an_error_not_truncated():
    c, x, call = _run("(m - p) / 3 + 4")
    with pytest.raises(EinError, match="not a whole"):
        execute(c, x, SHAPES)
    with pytest.raises(EinError, match="not a whole"):
        call()

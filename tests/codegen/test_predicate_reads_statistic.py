"""A predicate over a tensor the cascade computes (a running statistic)
cannot drive a block table, which is built before the kernel runs: the
kernel is refused with the reason, never run with a wrong table."""
import pytest
import torch

import einsum_ir as ei
from codegen.runtime import FusedKernel
from einsum_ir.errors import ShapeError
from mappers.gpu_mapping import GPUMapping

DESIGN = """
rank B, H, P, E, F
rank M = P
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]
GM[b, h, p] = max[m] QK[b, h, m, p]
SN[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p])
SD[b, h, p] = SN[b, h, m, p] where QK[b, h, m, p] > GM[b, h, p] - 1
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m]
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]
"""


def test_a_predicate_reading_a_computed_statistic_is_refused_with_the_reason():
    c = ei.parse(DESIGN)
    shapes = dict(B=1, H=1, P=32, E=16, F=16)
    inp = ei.random_inputs(c, shapes, seed=0, dtype="float32")
    kernel = FusedKernel(c, GPUMapping(16, 16, dtype="f32"), shapes)
    with pytest.raises(ShapeError, match=r"reads GM, QK, computed by the cascade.*no fused kernel"):
        kernel(**{n: torch.tensor(v) for n, v in inp.items()})

"""A shape symbol that is not a whole number (a gate LAM = 0.75, a
temperature T = 0.3) reaches the kernel as that number: it was passed as
int(value), so the kernel computed with 0 and matched nothing."""
import numpy as np
import pytest
import torch

from codegen.runtime import ChunkedKernel, FusedKernel, scalar_arg
from einsum_ir import execute, parse, random_inputs
from mappers.gpu_mapping import GPUMapping

SOFTMAX = """
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
S[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m] where m <= p + OFF
GM[b, h, p] = max[m] S[b, h, m, p]
SN[b, h, m, p] = exp(T * (S[b, h, m, p] - GM[b, h, p]))
SD[b, h, p] = SN[b, h, m, p]
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m]
O[b, h, f, p] = LAM * SNV[b, h, f, p] / SD[b, h, p]
"""

LINEAR = """
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
KV[b, h, e, f] = K[b, h, e, m] * V[b, h, f, m]
O[b, h, f, p] = LAM * Q[b, h, e, p] * KV[b, h, e, f]
"""


def test_scalar_arguments_keep_their_fractions():
    assert scalar_arg(0.75) == 0.75 and isinstance(scalar_arg(3.0), int) and scalar_arg(-2) == -2


@pytest.mark.parametrize("lam, t", [(0.75, 0.3), (2, 1), (-1.5, 2.5)])
def test_fused_kernel_uses_fractional_symbols(lam, t):
    c = parse(SOFTMAX, "fractional.ein")
    shapes = dict(B=1, H=2, M=24, P=20, E=8, F=8, LAM=lam, T=t, OFF=3)
    x = random_inputs(c, shapes, seed=1)
    ref = execute(c, x, shapes)["O"]
    out = FusedKernel(c, GPUMapping(16, 16, dtype="f32"), shapes)(**{k: torch.tensor(v, dtype=torch.float32)
                                                                    for k, v in x.items()})
    np.testing.assert_allclose(out.double().numpy(), ref, rtol=1e-4, atol=1e-5)


def test_chunked_kernel_uses_fractional_symbols():
    c = parse(LINEAR, "fractional_linear.ein")
    shapes = dict(B=1, H=2, M=24, P=20, E=8, F=8, LAM=0.75)
    x = random_inputs(c, shapes, seed=2)
    ref = execute(c, x, shapes)["O"]
    out = ChunkedKernel(c, GPUMapping(16, 16, dtype="f32"), shapes)(**{k: torch.tensor(v, dtype=torch.float32)
                                                                     for k, v in x.items()})
    np.testing.assert_allclose(out.double().numpy(), ref, rtol=1e-4, atol=1e-5)

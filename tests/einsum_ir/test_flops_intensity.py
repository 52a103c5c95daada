"""The public `flops` and `intensity` of a cascade against counts by hand,
and against what `analyze` reports for the same cascade."""
import sympy

import einsum_ir as ei
from einsum_ir.analysis import analyze, flops, intensity

M, N, K = sympy.symbols("M N K", positive=True, integer=True)

MATMUL_SCALED = """rank M, N, K
input A[M, K]: f16
input B[K, N]: f32
Z[m, n] = A[m, k] * B[k, n]
W[m, n] = Z[m, n] * 3
"""


def test_flops_count_a_mac_as_two():
    """M N K multiply-adds (2 each) and M N multiplies by 3."""
    c = ei.parse(MATMUL_SCALED)
    assert sympy.simplify(flops(c) - (2 * M * N * K + M * N)) == 0


def test_intensity_is_flops_per_compulsory_byte():
    """A in f16 (2 bytes), B in f32 (4), the output W undeclared, so f16 by
    default (docs/notation.md); Z is no output and costs no traffic."""
    c = ei.parse(MATMUL_SCALED)
    by_hand = (2 * M * N * K + M * N) / (2 * M * K + 4 * K * N + 2 * M * N)
    assert sympy.simplify(intensity(c) - by_hand) == 0
    a = analyze(c)
    assert sympy.simplify(a.flops - flops(c)) == 0 and sympy.simplify(a.intensity - intensity(c)) == 0

"""FlashBias against a dense bias, from the analysis of the two library
cascades, compared with the hand-derived differences (docs/zoo.md): per
batch and head FlashBias does M*P*R more MACs and M*P fewer adds, and reads
2*R*(M+P) bytes of U, W instead of 2*M*P bytes of bias (f16)."""
import pytest

import einsum_ir as ei
from einsum_ir.analysis import analyze


@pytest.mark.parametrize("B,H,M,P,E,R", [(1, 32, 4096, 4096, 128, 8), (2, 3, 1000, 700, 64, 16),
                                         (4, 8, 65536, 65536, 128, 64)])
def test_flashbias_differences_match_the_formulas(B, H, M, P, E, R):
    shape = dict(B=B, H=H, M=M, P=P, E=E, F=E)
    dense = analyze(ei.library.load("dense-bias")).at(shape)
    low = analyze(ei.library.load("flashbias-lowrank")).at(dict(shape, R=R))
    assert low["ops"]["mac"] - dense["ops"]["mac"] == B * H * M * P * R
    assert dense["ops"]["add"] - low["ops"]["add"] == B * H * M * P
    saved = dense["traffic"]["total_bytes"] - low["traffic"]["total_bytes"]
    assert saved == 2 * B * H * (M * P - R * (M + P))

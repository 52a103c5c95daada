"""Wrong kernels that the soundness benchmark found in generated designs
(benchmarks/soundness.py), each written small here: every one ran, returned
numbers and used to be reported as success."""
import numpy as np
import pytest
import torch

from codegen.runtime import compile_kernel
from einsum_ir import execute, parse, random_inputs
from mappers.gpu_mapping import GPUMapping

SOFTMAX = """rank B, H, M, P, E, F
{inputs}
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]
{score}
GM[b, h, p] = max[m] S[b, h, m, p]
SN[b, h, m, p] = exp(S[b, h, m, p] - GM[b, h, p])
SD[b, h, p] = SN[b, h, m, p]
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m]
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]
"""
QKV = "input Q[B, H, E, P]: f16\ninput K[B, H, E, M]: f16\ninput V[B, H, F, M]: f16"
SHAPES = dict(B=1, H=2, M=37, P=39, E=4, F=3, W=5)


def _error(text, shapes=SHAPES):
    c = parse(text, name="found")
    x = random_inputs(c, shapes, seed=0, dtype="float32")
    ref = execute(c, x, shapes)["AV"]
    out = compile_kernel(c, GPUMapping(16, 16, dtype="f32"), shapes)(**{k: torch.tensor(v) for k, v in x.items()})
    assert out.dtype == torch.float32
    out = out.double().numpy()
    assert np.array_equal(np.isnan(out), np.isnan(ref))
    return np.nanmax(np.abs(out - ref)) / np.nanmax(np.abs(ref))


def test_a_max_map_keeps_minus_infinity_at_removed_points_of_a_partial_tile():
    # `max[]` maps hold -inf where the predicate removes a point; the kernel held 0 there,
    # so GM saw a 0 that does not exist and exp(S - GM) was wrong on every partial tile
    score = "S[b, h, m, p] = max[] QK[b, h, m, p] where m <= p and p - m < W"
    assert _error(SOFTMAX.format(inputs=QKV, score=score)) < 1e-5


@pytest.mark.parametrize("pred", ["MK[m, p]", "m <= p or MK[m, p]"])
def test_outputs_are_floating_point_when_a_mask_is_the_first_input(pred):
    # the outputs took the type of the first input: a bool mask declared before Q made them bool
    text = SOFTMAX.format(inputs="input MK[M, P]: bool\n" + QKV, score="S[b, h, m, p] = QK[b, h, m, p]")
    text = "\n".join(ln + f" where {pred}" if ln.startswith(("GM[", "SN[", "SD[", "SNV[")) else ln
                     for ln in text.splitlines())
    text = text.replace("/ SD[b, h, p]", "/ max(SD[b, h, p], 1e-30)")          # rows the mask empties
    shapes = {k: v for k, v in SHAPES.items() if k != "W"}
    assert _error(text, shapes) < 1e-5


def test_a_value_contraction_divided_by_a_row_statistic():
    # `sum[m] SN * V / SD` was refused (only products were split into weight and value);
    # it is the 3-pass form with the division inside the sum: two passes over the keys
    text = SOFTMAX.format(inputs=QKV, score="S[b, h, m, p] = QK[b, h, m, p] where m <= p")
    text = text.replace("SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m]",
                        "SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m] / SD[b, h, p]")
    text = text.replace("AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]", "AV[b, h, f, p] = SNV[b, h, f, p]")
    shapes = {k: v for k, v in SHAPES.items() if k != "W"}
    assert _error(text, shapes) < 1e-5


def test_a_hoisted_einsum_that_broadcasts_over_an_output_rank():
    # `X[b, h, e] = W[h]`-like hoisted Einsums crashed the launcher (torch.einsum has no broadcast output)
    text = SOFTMAX.format(inputs=QKV + "\ninput SC[H]: f32", score="S[b, h, m, p] = QK[b, h, m, p] * T[b, h, p]")
    text = text.replace("QK[b, h, m, p] = Q", "T[b, h, p] = SC[h]\nQK[b, h, m, p] = Q")
    shapes = {k: v for k, v in SHAPES.items() if k != "W"}
    assert _error(text, shapes) < 1e-5


@pytest.mark.parametrize("extra", ["V[b, h, f, 0]", "V[b, h, f, M - 1] * Q[b, h, 0, p]"])
def test_an_epilogue_that_reads_an_input_at_a_constant_key(extra):
    """A row Einsum after the walk reading V at one key (the first, the
    last) is a plain load in the epilogue, not a tile read."""
    text = SOFTMAX.format(inputs=QKV, score="S[b, h, m, p] = QK[b, h, m, p]").replace(
        "AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]", f"AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p] + {extra}")
    assert _error(text, dict(B=1, H=2, M=37, P=39, E=4, F=3)) < 1e-5


LOG_SUM_EXP = """rank B, H, M, P, E, F
{inputs}
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m] where m <= p
GM[b, h, p] = max[m] QK[b, h, m, p] where m <= p
SD[b, h, p] = exp(QK[b, h, m, p] - GM[b, h, p]) where m <= p
LSD[b, h, p] = GM[b, h, p] + log(SD[b, h, p])
SNV[b, h, f, p] = exp(QK[b, h, m, p] - LSD[b, h, p]) * V[b, h, f, m] where m <= p
AV[b, h, f, p] = SNV[b, h, f, p] * 1
"""


def test_a_row_value_computed_between_two_passes():
    """The log-sum-exp LSD is a row value made of pass 1's statistics and
    read by pass 2's tiles: it is computed between the walks, once per row
    (the tile program places it before pass 2), and the kernel matches."""
    from einsum_ir.analysis.fused import recognise
    from einsum_ir.analysis.tile_program import tile_program
    text = LOG_SUM_EXP.format(inputs=QKV)
    first, second = tile_program(recognise(parse(text))).passes
    assert [e.name for e in first.rows] == [] and [e.name for e in second.rows] == ["LSD"]
    assert _error(text, dict(B=1, H=2, M=37, P=39, E=4, F=3)) < 1e-5

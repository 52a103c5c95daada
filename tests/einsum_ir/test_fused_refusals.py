"""The fused recogniser's refusals of Einsums a fused attention kernel does
not compute (einsum_ir.analysis.fused), each at its Einsum and line with
its whole reason, on a softmax broken in one place."""
import pytest

from einsum_ir import parse
from einsum_ir.analysis.fused import FusedFormError, recognise

from ..designs import softmax

BASE = softmax("""rank B, H, P, E, F, G
rank M = P
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
INPUTS
""")
SNV = "SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m]"
NEITHER = ("a sum over keys that is neither a row statistic nor a value contraction (a tile term times one input "
           "V[.., f, m])")


@pytest.mark.parametrize("inputs, old, new, at, why", [
    ("input W[B, H, G, M]: f32", "AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]",
     "SNW[b, h, g, p] = SN[b, h, m, p] * W[b, h, g, m]\nAV[b, h, f, g, p] = SNV[b, h, f, p] * SNW[b, h, g, p] / SD[b, h, p]",
     "SNW", "SNW: value contractions over two feature variables (f, g)"),
    ("", "GM[b, h, p] = max[m] QK[b, h, m, p]", "GM[b, h, p] = max[m, f] QK[b, h, m, p] + V[b, h, f, m]", "GM",
     "GM: reduces over f together with the key rank m; a fused kernel reduces only over keys"),
    ("", "AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]",
     "AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p] + Q[b, h, e, p]", "AV",
     "AV: reduces over e; a fused kernel reduces only over keys"),
    ("", SNV, "SNV[b, h, f, p] = SN[b, h, m, p] * exp(V[b, h, f, m])", "SNV", f"SNV: {NEITHER}"),
    ("input W[B, H, F, M]: f32", SNV, SNV + " * W[b, h, f, m]", "SNV", f"SNV: {NEITHER}"),
    ("input W[B, H, F, P]: f32", SNV, SNV + " * W[b, h, f, p]", "SNV",
     "SNV: the term multiplying the values depends on the feature variable"),
])
def test_an_einsum_no_fused_kernel_computes_is_refused_at_its_line(inputs, old, new, at, why):
    text = BASE.replace("INPUTS", inputs).replace(old, new)
    if "G" not in text.split("rank B, H, P, E, F, G", 1)[1]:
        text = text.replace("rank B, H, P, E, F, G", "rank B, H, P, E, F")
    with pytest.raises(FusedFormError) as err:
        recognise(parse(text, name="broken"))
    assert err.value.message == f"broken does not fit a fused attention kernel: {why}"
    assert err.value.line == next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(at + "["))

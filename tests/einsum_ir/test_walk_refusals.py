"""The key walk's refusals (einsum_ir.rewrites.walk.recognise), the
online and split-KV rewrites' first step: each names the Einsum that does
not fit, points at its line, and says why, on a 3-pass softmax broken in
one place."""
import pytest

from einsum_ir import parse
from einsum_ir.rewrites import RewriteError
from einsum_ir.rewrites.walk import recognise

from ..designs import softmax

BASE = softmax("""rank B, H, P, E, F
rank M = P
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
""")
SNV = "SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m]"
SN = "exp(QK[b, h, m, p] - GM[b, h, p])"


def test_the_base_design_is_a_walk():
    w = recognise(parse(BASE), "M", "online")
    assert set(w.reductions) == {"GM", "SD", "SNV"} and w.normalisers == {"GM"}


@pytest.mark.parametrize("edit, key, line, why", [
    (("rank M = P\n", "rank M = P\nrank J = M\n"), "M", 10,
     "R: rank J = M pairs two key positions in one Einsum; the online form walks one key at a time"),
    (("input V[B, H, F, M]: f32\n", "input V[B, H, F, M]: f32\noutput SN[B, H, M, P]: f32\noutput AV[B, H, F, P]: f32\n"),
     "M", 10, "SN: an output over the key rank M; a walk over the keys never holds it whole"),
    ((BASE, BASE), "F", None, "no Einsum reduces over f"),
    (("AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]", "AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p] + SN[b, h, 0, p]"),
     "M", 11, "AV: reads the tile tensor SN outside the walk over m"),
    ((SNV, "SNV[b, h, f, p] = SN[b, h, m, 0] * V[b, h, f, m]"), "M", 10,
     "SNV: reads SN[b, h, m, 0] where SN is written as SN[b, h, m, p]; the walk holds a tile only at the indices it "
     "is written at"),
    ((SN, "exp(QK[b, h, m, p] - GM[b, h, 0])"), "M", 8,
     "SN: reads the statistic GM[b, h, 0] inside the walk, not at the indices it is written at (GM[b, h, p])"),
    ((SNV, SNV + " where QK[b, h, m, p] > GM[b, h, p] - 5"), "M", 10,
     "SNV: its where clause reads GM, a statistic over the keys"),
    ((SN, SN + " where QK[b, h, m, p] > GM[b, h, p] - 5"), "M", 8,       # a tile's, before its readers
     "SN: its where clause reads GM, a statistic over the keys"),
])
def test_a_design_that_is_no_walk_is_refused_at_its_einsum(edit, key, line, why):
    text = BASE.replace(*edit)
    if edit[0] == "rank M = P\n":
        text = text.replace("SD[b, h, p] = SN[b, h, m, p]", "R[b, h, m, p] = SN[b, h, j, p] where j <= m\n"
                                                             "SD[b, h, p] = R[b, h, m, p]")
    with pytest.raises(RewriteError) as err:
        recognise(parse(text, name="broken"), key, "online")
    assert err.value.message == f"cannot rewrite broken to the online form: {why}"
    assert err.value.line == line

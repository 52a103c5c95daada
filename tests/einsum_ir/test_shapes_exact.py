"""A derived rank written with `/` is exact division, checked when shapes are
given; `//` floors (docs/notation.md, ranks)."""
import pytest

import einsum_ir as ei
from einsum_ir.errors import ShapeError

DESIGN = """
rank B, H, M, P, E, F
rank KH = H / G, PB = (P + T - 1) // T
input Q[B, H, E, P]: f32
input K[B, KH, E, M]: f32
input BIAS[PB]: f32
S[b, h, m, p] = Q[b, h, e, p] * K[b, h / G, e, m] + BIAS[p / T]
"""


def test_exact_division_is_checked_and_floor_division_floors():
    c = ei.parse(DESIGN)
    env = ei.resolve(c, dict(B=1, H=4, G=2, M=3, P=5, E=2, F=1, T=2))
    assert env["KH"] == 2 and env["PB"] == (5 + 2 - 1) // 2
    with pytest.raises(ShapeError, match=r"KH = H / G gives 1\.5"):
        ei.resolve(c, dict(B=1, H=3, G=2, M=3, P=5, E=2, F=1, T=2))


def test_the_two_divisions_print_as_written():
    c = ei.parse(DESIGN)
    text = str(c)
    assert "rank KH = H / G" in text and "PB = (P + T - 1) // T" in text
    assert ei.parse(text) == c

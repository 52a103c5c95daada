"""Found by checking the library's paged-attention against the traversal
(issue 18): an input read through a gather (a paged pool, `S[BT[b, m // BS],
m % BS]` or `S[BT[b, m // BS] * BS + m % BS]`) and read again after a full
reduction over m needs a second traversal of m, as the same input stored
contiguously (`S[b, m]`) does; the pass analysis counts 1. A pass count too
low is a wrong answer: passes.py now places a reduction of a gathered read
at the visit of R's variables in the gather, as a read at that position
(the reduction GM[b] over m is ready after the pass, not streamed)."""
import pytest

import einsum_ir as ei
from einsum_ir.analysis import passes

DESIGN = """rank B, M, NP, BS, T
rank NB = (M + BS - 1) // BS
input S[{decl}]: f32
input BT[B, NB]: i32
GM[b] = max[m] {read}
Y[b, m] = exp({read} - GM[b])
"""
CONTIGUOUS = ("B, M", "S[b, m] * BT[b, m // BS]")
GATHERED = [("NP, BS", "S[BT[b, m // BS], m % BS]"), ("T", "S[BT[b, m // BS] * BS + m % BS]")]


def _passes(decl, read):
    return passes(ei.parse(DESIGN.format(decl=decl, read=read)), "M")


def test_the_contiguous_form_needs_two_passes():
    r = _passes(*CONTIGUOUS)
    assert r.passes == 2 and r.einsum_pass == {"GM": 1, "Y": 2}


@pytest.mark.parametrize("decl, read", GATHERED)
def test_a_gathered_input_re_read_after_a_full_reduction_needs_a_second_pass(decl, read):
    r = _passes(decl, read)
    assert r.passes == 2 and r.einsum_pass == {"GM": 1, "Y": 2}

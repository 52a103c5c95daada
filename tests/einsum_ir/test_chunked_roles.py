"""Where the chunked kernel computes each Einsum (einsum_ir.analysis.chunked),
on a linear recurrence over chunks whose roles are plain from the text:
the chunk's key-value sum runs in the loop over m1, the state steps there,
a weight made of inputs alone before the kernel, the final state's output
after the loop; and the refusal of a loop that would read its own result."""
import pytest

from einsum_ir import parse
from einsum_ir.analysis.chunked import ChunkedFormError, explain, recognise

STATE = """rank B, H, E, F
partition M -> M1, M0
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
input W[H, E]: f32
NL[h] = W[h, e] * W[h, e]
KDV[b, h, e, f, m1] = K[b, h, e, m1 * M0 + m0] * V[b, h, f, m1 * M0 + m0]
KV[b, h, e, f, 0] = 0
KV[b, h, e, f, m1 + 1] = NL[h] * KV[b, h, e, f, m1] + KDV[b, h, e, f, m1]
OUT
"""


def test_each_einsum_has_the_role_the_text_gives_it():
    c = parse(STATE.replace("OUT", "ST[b, h, e, f] = KV[b, h, e, f, M1] * 2"))
    assert explain(c).splitlines() == [
        "NL: hoisted: computed before the kernel",
        "KDV: loop over m1 (chunk axes m0): reduction",
        "KV: state: initial value",
        "KV: loop over m1 (chunk axes m0): state step",
        "ST: after the loops",
    ]
    f = recognise(c)
    assert [e.name for e in f.hoisted] == ["NL"]
    assert [lp.var for lp in f.loops] == ["m1"] and [tuple(e.name for e in a) for a in f.after] == [("ST",)]


def test_a_loop_that_reads_what_runs_after_it_is_refused_at_the_reader():
    text = STATE.replace("OUT", "FS[b, h, f] = KV[b, h, e, f, M1]\nAV[b, h, f, m] = V[b, h, f, m] * FS[b, h, f]")
    with pytest.raises(ChunkedFormError) as err:
        recognise(parse(text, name="early"))
    assert err.value.message == ("early does not fit a chunked linear kernel: AV: reads FS, which runs after the "
                                 "loop over m1 (it needs that loop's results), inside that loop")
    assert err.value.line == 11

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


def test_a_design_neither_kernel_takes_is_located_at_the_likelier_reason():
    """With a recurrence (a state carried over chunks) the design is the
    chunked generator's business: the combined refusal points at AV's
    line, where that reason is, not at the recurrence the fused generator
    refuses; both reasons are in the message."""
    from codegen.runtime import compile_kernel
    from einsum_ir.analysis.fused import FusedFormError
    from mappers.gpu_mapping import GPUMapping
    text = STATE.replace("OUT", "FS[b, h, f] = KV[b, h, e, f, M1]\nAV[b, h, f, m] = V[b, h, f, m] * FS[b, h, f]")
    with pytest.raises(FusedFormError) as err:
        compile_kernel(parse(text, name="early"), GPUMapping(16, 16), dict(B=1, H=1, E=16, F=16, M=32, M0=16))
    first, second = err.value.message.split("\n  and ")
    assert first.startswith("early does not fit a fused attention kernel: ")
    assert second.startswith("early does not fit a chunked linear kernel: AV: reads FS")
    assert err.value.line == 11


def test_a_design_without_a_recurrence_is_located_at_the_fused_reason():
    """No recurrence: the fused generator's reason places the refusal."""
    from attnc.gpu import map_design
    from einsum_ir.analysis.fused import FusedFormError
    text = ("rank B, H, E, M, P\ninput Q[B, H, E, P]: f16\ninput K[B, H, E, M]: f16\n"
            "QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]\nY[b, p] = QK[b, h, m, p]\n")
    with pytest.raises(FusedFormError) as err:
        map_design(parse(text, name="plain"), "h100", dict(B=1, H=1, E=16, M=32, P=32))
    assert "\n  and " in err.value.message
    fused_alone = err.value.message.split("\n  and ")[0]
    from einsum_ir.analysis.fused import recognise as recognise_fused
    with pytest.raises(FusedFormError) as alone:
        recognise_fused(parse(text, name="plain"))
    assert alone.value.message == fused_alone and err.value.loc == alone.value.loc and err.value.line == 5

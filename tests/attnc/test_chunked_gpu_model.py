"""The soundness stage `gpu-model` for chunked kernels: the work the GPU model
charges a chunk program is at least the analysis's counts (tensor-core flops
of the Einsums run as dots, every transcendental, every input and output
once), for every library design the chunked generator accepts and for a
seeded sample of generated designs; a model that leaves work out is caught."""
import pytest

from attnc import soundness as sound
from einsum_ir import library
from einsum_ir.ir import Access
from einsum_ir.random_designs import random_designs

from ..codegen import test_chunked

CHUNKED = test_chunked.FAMILY


@pytest.mark.parametrize("name", CHUNKED)
def test_library_chunked_designs_are_charged_at_least_the_analysis(name):
    c = library.load(name)
    assert sound.check_gpu_model(c, test_chunked._shapes(c)) == ("ok", "chunked")


def test_generated_linear_and_online_designs_have_no_mismatch():
    seen = 0
    for d in random_designs(12, seed=3, families=("linear", "online")):
        status, detail = sound.check_gpu_model(d.cascade(), d.shapes)
        assert status in ("ok", "n/a", "refused"), (d.name, detail)
        seen += detail == "chunked"
    assert seen >= 3                        # the sample reaches chunked kernels


def test_a_model_that_skips_substituted_einsums_is_caught(monkeypatch):
    """attention-1pass's exponentials live in element-wise Einsums (SLN,
    PRM) substituted where they are read: a model that charged a step's own
    expression only would undercount the SFU."""
    import simulator.gpu as g
    c = library.load("attention-1pass")
    shapes = test_chunked._shapes(c)
    assert sound.check_gpu_model(c, shapes)[0] == "ok"
    orig = g._chunk_expr_ops

    def shallow(program, x, loop, out):
        if not isinstance(x, Access):
            orig(program, x, loop, out)
    monkeypatch.setattr(g, "_chunk_expr_ops", shallow)
    status, detail = sound.check_gpu_model(c, shapes)
    assert status == "mismatch" and "sfu_ops" in detail


def test_a_model_that_drops_a_dot_is_caught(monkeypatch):
    import simulator.gpu as g
    c = library.load("lightning-attention")
    shapes = test_chunked._shapes(c)
    orig = g.step_work

    def no_dot(program, s, loop):
        t, ops = orig(program, s, loop)
        return (0.0 if s.name == "OX" else t), ops
    monkeypatch.setattr(g, "step_work", no_dot)
    status, detail = sound.check_gpu_model(c, shapes)
    assert status == "mismatch" and "tensor_flops" in detail

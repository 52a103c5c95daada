"""One tile program for the kernel and the GPU model: every library design
the fused generator accepts is rendered from a TileProgram, and the GPU model
charges that same object, statement by statement, so what runs and what is
predicted cannot differ (the second softmax branch was once compiled one way
and charged another)."""
import dataclasses
import re

import pytest

from codegen.runtime import FusedKernel
from codegen.triton import generate
from einsum_ir import library
from einsum_ir.analysis.fused import recognise
from einsum_ir.analysis.tile_program import tile_program
from einsum_ir.shapes import resolve, symbols_used
from hw_models.gpu import load_gpu
from mappers.gpu_mapping import GPUMapping, padded
from simulator.gpu import predict_fused, tile_work

from .test_triton import FAMILY   # every library design the fused generator accepts

BASE = dict(B=1, H=2, P=64, M=96, E=16, F=8, W=13, NS=3, TQ=16, TK=16, G=2, D=12, R=4, ST=2, DL=3, TOPK=2, HS=2,
            NP=8, BS=16)
MAPPING = GPUMapping(32, 32, dtype="f32")
H100 = load_gpu("h100")




def _env(c):
    used = symbols_used(c)
    shapes = {k: v for k, v in BASE.items() if k in used and k not in {r.name for r in c.ranks if r.definition is not None}}
    if "G" in used:
        shapes["H"] = 4
    return shapes, resolve(c, shapes)


@pytest.mark.parametrize("name", FAMILY)
def test_the_kernel_and_the_model_read_one_program(name):
    c = library.load(name)
    shapes, env = _env(c)
    k = FusedKernel(c, MAPPING, shapes)
    src = k.source(dict(env))
    assert src.program is k.program
    pred = k.predict(H100, dict(env), inputs=None if not k.reads_tensors else _inputs(c, shapes))
    assert pred.program is k.program
    # what the source does per tile is what the program lists, and what the model charges
    m = k._mapping_for(env)
    kernel = src.text.split("def attnc_combine")[0]
    for pp in k.program.passes:
        dots = len(pp.scores) + len(pp.values)
        w = tile_work(k.program, pp.index, m, env)
        e, f = padded(env[k.form.contracted.upper()]), padded(env[k.form.feature.upper()]) if k.form.feature else 0
        assert w.tensor_flops == 2 * m.block_m * m.block_n * (e * len(pp.scores) + f * len(pp.values))
        assert w.row_sfu == len(pp.normalise) * m.block_m
        body = _pass_text(kernel, pp.index)
        assert body.count("tl.dot(") == 2 * dots                 # the full-tile loop and the partial-tile loop
        assert body.count("alpha = ") == 2 * len(pp.normalise)
        for t in pp.tile_einsums:
            assert len(re.findall(rf"\bv\d+_{t.name} = ", body)) == 2


def _pass_text(text, k):
    start = text.index(f"# ---- pass {k}:")
    end = text.find(f"# ---- pass {k + 1}:")
    return text[start:end if end >= 0 else None]


def _inputs(c, shapes):
    from einsum_ir import random_inputs
    return random_inputs(c, shapes, seed=0)


def test_a_statement_dropped_from_the_program_leaves_both_the_kernel_and_the_model():
    from pathlib import Path
    from einsum_ir import parse_file
    c = parse_file(Path(__file__).parent / "designs" / "diff_attention.ein")
    form = recognise(c)
    full = tile_program(form)
    pp = full.passes[0]
    one = dataclasses.replace(full, passes=(dataclasses.replace(pp, scores=pp.scores[:1]),))
    env = resolve(c, dict(B=1, H=2, M=64, P=64, E=16, F=16))
    assert generate(one, MAPPING, env).text.count("tl.dot(") == generate(full, MAPPING, env).text.count("tl.dot(") - 2
    a, b = predict_fused(full, MAPPING, H100, env), predict_fused(one, MAPPING, H100, env)
    assert b.work["tensor_flops"] < a.work["tensor_flops"]

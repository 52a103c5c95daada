"""One program for each kernel and the GPU model (issue 21): every library
design the fused or the chunked generator accepts is compiled, its kernel
source is rendered from the kernel's program object and the GPU model's
prediction charges that same object; the model's per-tile (per-chunk) work is
checked against counts read independently (from the source text and the
BLOCK sizes the launcher passes). A step changed in the program changes both
the kernel and the prediction."""
import dataclasses
import re

import pytest

from codegen.chunked import generate as generate_chunked
from codegen.runtime import ChunkedKernel, FusedKernel, compile_kernel
from einsum_ir import library
from einsum_ir.analysis.chunk_program import chunk_program
from einsum_ir.analysis.chunked import recognise
from einsum_ir.shapes import resolve
from hw_models.gpu import load_gpu
from mappers.gpu_mapping import GPUMapping, padded
from simulator.gpu import chunk_work, predict_chunked, tile_work

from . import test_chunked, test_tile_program

H100 = load_gpu("h100")
MAPPING = GPUMapping(32, 32, dtype="f32")
FUSED = test_tile_program.FAMILY
CHUNKED = test_chunked.FAMILY


def _compile(name):
    c = library.load(name)
    if name in CHUNKED:
        shapes = test_chunked._shapes(c)
    else:
        shapes, _ = test_tile_program._env(c)
    return c, shapes, resolve(c, shapes), compile_kernel(c, MAPPING, shapes)


def _loop_text(text: str, k: int) -> str:
    """The body of the k-th chunk walk of a chunked kernel (up to the next walk)."""
    starts = [m.start() for m in re.finditer(r"# ---- loop over ", text)]
    return text[starts[k]:starts[k + 1] if k + 1 < len(starts) else None]


@pytest.mark.parametrize("name", FUSED + CHUNKED)
def test_kernel_source_and_prediction_read_one_program(name):
    c, shapes, env, k = _compile(name)
    if name in CHUNKED:
        assert isinstance(k, ChunkedKernel)
        program = k.program_for(env)
        assert k.program is program                       # the compile result holds it
    else:
        assert isinstance(k, FusedKernel)
        program = k.program
    src = k.source(dict(env))
    inputs = test_tile_program._inputs(c, shapes) if getattr(k, "reads_tensors", False) else None
    pred = k.predict(H100, dict(env), inputs) if inputs is not None else k.predict(H100, dict(env))
    assert src.program is program
    assert pred.program is program
    if name in CHUNKED:
        _chunked_counts_agree(program, src, pred)
    else:
        m = k._mapping_for(env)
        for pp in program.passes:
            e = padded(env[k.form.contracted.upper()])
            f = padded(env[k.form.feature.upper()]) if k.form.feature else 0
            assert tile_work(program, pp.index, m, env).tensor_flops == \
                2 * m.block_m * m.block_n * (e * len(pp.scores) + f * len(pp.values))


def _chunked_counts_agree(program, src, pred):
    """Per walk: the source's tl.dot and tl.cumsum calls (from the walk's
    header to the next) are the program's dot and cumsum steps, and the
    model's tensor flops per chunk are 2 x the BLOCK sizes the launcher
    passes, multiplied over each dot's three axes."""
    block = {a: src.blocks[f"BLOCK_{a.upper()}"] for a in program.axes}

    def flops(steps):
        return sum(2.0 * block[s.dot.a] * block[s.dot.b] * block[s.dot.c] for s in steps if s.how == "dot")
    total = 0.0
    for k, lp in enumerate(program.loops):
        body = _loop_text(src.text, k)
        every = lp.states + lp.steps + lp.after
        assert body.count("tl.dot(") == sum(s.how == "dot" for s in every)
        assert body.count("tl.cumsum(") == sum(s.how == "cumsum" for s in every)
        w = chunk_work(program, k)
        assert w.tensor_flops == flops(lp.steps)
        assert w.dots == sum(s.how == "dot" for s in lp.steps)
        total += lp.trips * flops(lp.steps) + flops(lp.states + lp.after)
    kernel = total * pred.parts["programs"]          # hoisted Einsums' GEMMs come on top
    assert pred.work["tensor_flops"] == pytest.approx(kernel, rel=1e-12) if not program.hoisted else \
        pred.work["tensor_flops"] >= kernel


def test_linear_attention_tensor_work_is_the_hand_count():
    """Non-causal linear attention, KV = K^T V then Q KV, per (b, h): the walk
    over m runs ceil(M / BLOCK_N) chunks of one E x F x BLOCK_N dot, the walk
    over p ceil(P / BLOCK_N) chunks of one BLOCK_N x F x E dot."""
    c = library.load("linear-attention")
    shapes = dict(B=2, H=3, M=200, P=100, E=20, F=40)
    env = resolve(c, shapes)
    for bn in (32, 64):
        program = chunk_program(recognise(c, env), env, bn)
        pred = predict_chunked(program, GPUMapping(64, bn, dtype="bf16"), H100, env)
        e, f = padded(20), padded(40)
        want = 2 * 3 * (-(-200 // bn) * 2.0 * e * f * bn + -(-100 // bn) * 2.0 * bn * f * e)
        assert pred.work["tensor_flops"] == want
        # every input read and the output written, at least once
        assert pred.work["hbm_bytes"] >= 2 * (2 * 3 * (200 * (20 + 40) + 100 * 20) + 2 * 3 * 100 * 40)


def test_a_step_changed_in_the_program_changes_the_kernel_and_the_model():
    c = library.load("lightning-attention")
    shapes = test_chunked._shapes(c)
    env = resolve(c, shapes)
    program = chunk_program(recognise(c, env), env, MAPPING.block_n)
    lp = program.loops[0]
    i = next(i for i, s in enumerate(lp.steps) if s.how == "dot")
    s = lp.steps[i]
    red = dataclasses.replace(s, how="reduce", dot=None)          # the same product, as a masked reduction
    one = dataclasses.replace(program, loops=(dataclasses.replace(lp, steps=lp.steps[:i] + (red,) + lp.steps[i + 1:]),))
    full, less = generate_chunked(program, MAPPING, env), generate_chunked(one, MAPPING, env)
    assert less.text.count("tl.dot(") == full.text.count("tl.dot(") - 1
    a, b = predict_chunked(program, MAPPING, H100, env), predict_chunked(one, MAPPING, H100, env)
    assert b.work["tensor_flops"] < a.work["tensor_flops"]
    assert b.work["fp32_ops"] > a.work["fp32_ops"]                 # the reduction's adds moved to the vector units


def test_the_program_is_immutable():
    c = library.load("linear-attention")
    env = resolve(c, test_chunked._shapes(c))
    program = chunk_program(recognise(c, env), env, 32)
    with pytest.raises(dataclasses.FrozenInstanceError):
        program.loops = ()
    with pytest.raises(TypeError):
        program.blocks["m"] = 1


def _inputs_reached(c, name: str) -> set[str]:
    """The inputs a tensor is computed from, through every tensor between."""
    seen, todo, found = set(), [name], set()
    while todo:
        t = todo.pop()
        if t in seen:
            continue
        seen.add(t)
        if c.tensor(t).role == "input":
            found.add(t)
        todo += [a.tensor for e in c.einsums if e.name == t for a in e.reads()]
    return found


GATE_SCANS = library.path("gla-chunkwise").read_text().replace(
    "LB[b, h, e, m1, m0] = LA[b, h, e, m1 * M0 + j] where j <= m0",
    "LB[b, h, e, m1, m0] = cumsum[m0] LA[b, h, e, m1 * M0 + m0]").replace(
    "AV[b, h, f, m] = OI[b, h, f, m / M0, m % M0] + OX[b, h, f, m / M0, m % M0]",
    "VS[b, h, f, m1, m0] = cumsum[m0] V[b, h, f, m1 * M0 + m0]\n"
    "AV[b, h, f, m] = OI[b, h, f, m / M0, m % M0] + OX[b, h, f, m / M0, m % M0] + 0 * VS[b, h, f, m / M0, m % M0]")
assert GATE_SCANS.count("cumsum[m0]") == 2 and "VS" in GATE_SCANS


@pytest.mark.parametrize("name", CHUNKED + ["gla-two-scans"])
def test_each_step_loads_only_what_its_einsum_reads(name):
    """A step's loads are the tiles its own Einsum needs (inputs it reaches
    through tensors computed inline), each once: a scan placed after steps
    with other loads (VS after GT's ALPHA) lists V alone, so the kernel
    loads and the model charges nothing twice."""
    from einsum_ir import parse
    c = parse(GATE_SCANS, "gla-two-scans.ein") if name == "gla-two-scans" else library.load(name)
    shapes = dict(B=1, H=1, M=40, E=16, F=8, M0=16) if name == "gla-two-scans" else test_chunked._shapes(c)
    p = chunk_program(recognise(c), resolve(c, shapes), block_n=16)
    steps = [s for lp in p.loops for s in lp.steps]
    assert steps
    for s in steps:
        tensors = [ld.access.tensor for ld in s.loads]
        assert len(set(map(str, (ld.access for ld in s.loads)))) == len(s.loads), s.einsum.name
        assert set(tensors) <= _inputs_reached(c, s.einsum.name), (s.einsum.name, tensors)
    if name == "gla-two-scans":
        vs = next(s for s in steps if s.einsum.name == "VS")
        assert vs.how == "scan" and [ld.access.tensor for ld in vs.loads] == ["V"]


def test_an_inlined_masked_einsum_is_charged_its_body_and_its_select():
    """lightning-attention's intra-chunk output OI = BS x DM x V (masked
    j <= m0) is a dot over j: BS and DM on its [j, m0] side, V on [f, j],
    and the chunk's valid rows (m1 * M0 + m0 < M) on its [f, m0] result.
    DM[h, m0, j] = exp((m0 - j) * log(LAM[h])) where j <= m0 is computed
    inline, so on the [j, m0] side (32 x 32) each element costs DM's body
    (a subtract, a multiply, a log, an exp) and its mask (a compare, a
    select), the dot's own mask j <= m0 (a compare, a select) and the
    product BS x DM (a multiply); each of the [f, m0] result's 32 x 32
    elements its row mask (a multiply, an add, a compare, a select). Counted
    by hand from the .ein text."""
    from simulator.gpu import step_work
    c = library.load("lightning-attention")
    shapes = dict(B=2, H=3, M=70, E=12, F=20, M0=32)
    env = resolve(c, shapes)
    p = chunk_program(recognise(c, env), env, 32)
    lp = p.loops[0]
    oi = next(s for s in lp.steps if s.einsum.name == "OI")
    assert oi.how == "dot" and "DM" in p.inline
    side, out = 32 * 32, 32 * 32                      # [j, m0] at 32 x 32; [f, m0]: F = 20 padded to 32
    tensor, ops = step_work(p, oi, lp.var)
    assert tensor == 2.0 * 32 * 32 * 32
    assert dict(ops) == {"select": 2 * side + out, "compare": 2 * side + out, "exp": side, "log": side,
                         "mul": 2 * side + out, "add": side + out}


def test_an_inlined_masked_einsum_read_inside_a_product_keeps_its_mask():
    """decode-split-kv's LNV = SN x V summed over the chunk m0, with SN =
    exp(BQK - LM) computed inline and masked to the chunk's valid keys (m1 x
    M0 + m0 < M), read as an operand of the product. Per element of its
    F x M0 = 32 x 32 tile: the product (a multiply); SN's body (a subtract,
    an exp) and its mask (a multiply, an add, a compare, a select); LNV's
    own mask (the same four); the sum (an add). LD = sum of SN over m0
    (a 32-element tile) costs the same without the product. By hand."""
    from simulator.gpu import step_work
    c = library.load("decode-split-kv")
    env = resolve(c, dict(B=2, H=3, M=70, E=12, F=20, M0=32))
    p = chunk_program(recognise(c, env), env, 32)
    lp = p.loops[0]
    step = {s.einsum.name: s for s in lp.steps}
    assert "SN" in p.inline
    _, lnv = step_work(p, step["LNV"], lp.var)
    n = 32 * 32
    assert dict(lnv) == {"mul": 3 * n, "add": 4 * n, "exp": n, "compare": 2 * n, "select": 2 * n}
    _, ld = step_work(p, step["LD"], lp.var)
    assert dict(ld) == {"mul": 2 * 32, "add": 4 * 32, "exp": 32, "compare": 2 * 32, "select": 2 * 32}


def test_a_scan_steps_work_by_hand():
    """Two scans along the chunk of gla-two-scans (chunks of 16, E = F = 16),
    each on a 16 x 16 tile: VS = cumsum of V adds once per element beside its
    mask of the chunk's valid keys (m1 x M0 + m0 < M: a multiply, an add, a
    compare, a select); LB = cumsum of LA = log(ALPHA), computed inline,
    adds the log and LA's own mask of the same keys."""
    from einsum_ir import parse
    from simulator.gpu import step_work
    c = parse(GATE_SCANS, "gla-two-scans.ein")
    env = resolve(c, dict(B=1, H=1, M=40, E=16, F=8, M0=16))
    p = chunk_program(recognise(c), env, block_n=16)
    lp = p.loops[0]
    scans = {s.einsum.name: s for s in lp.steps if s.how == "scan"}
    n = 16 * 16
    assert dict(step_work(p, scans["VS"], lp.var)[1]) == {"add": 2 * n, "mul": n, "compare": n, "select": n}
    assert dict(step_work(p, scans["LB"], lp.var)[1]) == {"add": 3 * n, "mul": 2 * n, "compare": 2 * n,
                                                         "select": 2 * n, "log": n}

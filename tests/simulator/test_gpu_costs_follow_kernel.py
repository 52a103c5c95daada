"""The GPU model charges what the fused kernel runs (issue 22, item 2): a
predicate once per partial tile however many Einsums repeat it, none on full
tiles; integer index arithmetic as integer work at the shape Triton computes
it (per row, per key, per point, or once); a divisor uniform over the tile
inverted once; and block-sparse patterns (neighborhood 1D / 2D, tiled and
Morton-ordered neighborhoods, sliding windows) cost by the key tiles they
visit. Hand-derived counts and the generated source are the references."""
import re

import numpy as np
import pytest
import torch

from codegen.runtime import FusedKernel
from einsum_ir import execute, parse, random_inputs
from einsum_ir.analysis.fused import recognise
from einsum_ir.analysis.tile_program import KEY, POINT, ROW, UNIFORM, statement_ops, tile_program
from einsum_ir.shapes import resolve, symbols_used
from hw_models.gpu import load_gpu
from mappers.gpu_mapping import GPUMapping
from simulator.gpu import predict_fused, tile_work
from tests.designs import softmax

H100 = load_gpu("h100")


def design(pred: str = "", lets: str = "", score: str = "QK[b, h, m, p] / sqrt(E)"):
    """Softmax attention with `pred` on every Einsum that ranges over keys."""
    w = f" where {pred}" if pred else ""
    return parse(f"""# test design
rank B, H, P, E, F
rank M = P
{lets}
input Q[B, H, E, P]: f16
input K[B, H, E, M]: f16
input V[B, H, F, M]: f16
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]{w}
T[b, h, m, p] = {score}{w}
GM[b, h, p] = max[m] T[b, h, m, p]{w}
SN[b, h, m, p] = exp(T[b, h, m, p] - GM[b, h, p]){w}
SD[b, h, p] = SN[b, h, m, p]{w}
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m]{w}
AV[b, h, f, p] = select(SD[b, h, p] > 0, SNV[b, h, f, p] / max(SD[b, h, p], 1e-30), 0)
""")


# a 1D / 2D neighborhood clamped at the borders (NATTEN's rule), on a grid of HI x WI tokens laid out
# row-major (p // WI, p % WI), in TH x TW tiles, or in Morton (Z) order up to 64 x 64 (digit sums)
NB = "let st(q, n, w) = min(max(q - w // 2, 0), n - w)\nlet nb(q, k, n, w) = st(q, n, w) <= k and k < st(q, n, w) + w"
TILED = NB + ("\nlet ty(i) = i // (TH * TW) // (WI // TW) * TH + i % (TH * TW) // TW"
              "\nlet tx(i) = i // (TH * TW) % (WI // TW) * TW + i % TW")
MORTON = NB + ("\nlet mx(i) = i % 2 + i // 4 % 2 * 2 + i // 16 % 2 * 4 + i // 64 % 2 * 8 + i // 256 % 2 * 16"
               " + i // 1024 % 2 * 32"
               "\nlet my(i) = i // 2 % 2 + i // 8 % 2 * 2 + i // 32 % 2 * 4 + i // 128 % 2 * 8 + i // 512 % 2 * 16"
               " + i // 2048 % 2 * 32")
PATTERNS = {
    "neighborhood-1d": ("nb(p, m, P, KW1)", NB),
    "neighborhood-2d": ("nb(p // WI, m // WI, HI, KH) and nb(p % WI, m % WI, WI, KW)", NB),
    "neighborhood-tiled": ("nb(ty(p), ty(m), HI, KH) and nb(tx(p), tx(m), WI, KW)", TILED),
    "neighborhood-morton": ("nb(my(p), my(m), HI, KH) and nb(mx(p), mx(m), WI, KW)", MORTON),
    "sliding-window": ("m <= p and p - m < W", ""),
}
SHAPES = dict(B=1, H=16, P=4096, E=256, F=256, HI=64, WI=64, KH=21, KW=21, KW1=1024, TH=8, TW=8, W=1024)


def _env(c, shapes):
    used = symbols_used(c)
    return resolve(c, {k: v for k, v in shapes.items() if k in used})


def _extra(c, m):
    """Partial-tile extra work of pass 0 (fp32 and integer operations)."""
    w = tile_work(recognise(c), 0, m, _env(c, dict(B=1, H=1, P=64, E=16, F=16, D=3)))
    return w.fp32_partial - w.fp32_full, w.int_partial - w.int_full, w


def test_a_predicate_repeated_on_every_einsum_is_charged_once_and_not_on_full_tiles():
    m = GPUMapping(64, 32)
    pts = m.block_m * m.block_n
    fp_none, int_none, w_none = _extra(design(), m)
    fp_one, int_one, w_one = _extra(design("m <= p"), m)
    # the kernel's partial tile: inb (a compare per key, an `and` per point), keep0 = inb & (m <= p)
    # (one integer compare and one `and` per point), and one select per masked statement
    prog = tile_program(recognise(design("m <= p"))).passes[0]
    assert prog.predicates == (design("m <= p").einsums[0].predicate,)
    assert int_one - int_none == pts                       # m <= p: one integer compare per point, once
    selects = len(prog.masked) - len(tile_program(recognise(design())).passes[0].masked)
    assert fp_one - fp_none == pts * (1 + selects)         # keep = inb & ..., and the selects
    # full tiles evaluate no predicate: the same work as the unmasked design's
    assert (w_one.fp32_full, w_one.sfu_full, w_one.int_full) == (w_none.fp32_full, w_none.sfu_full, 0)


def test_the_generated_partial_tile_computes_each_distinct_predicate_once():
    for pred, lets in PATTERNS.values():
        c = design(pred, lets)
        k = FusedKernel(c, GPUMapping(64, 32))
        src = k.source(_env(c, dict(SHAPES, P=64 * 64)))
        pp = k.program.passes[0]
        partial = src.text.split("# partial key tiles")[1].split("# ---- epilogue")[0]
        assert len(re.findall(r"\bkeep\d+ = ", partial)) == len(pp.predicates) == 1
        assert len(re.findall(r"tl\.where\((keep\d+|inb),", partial)) == len(pp.masked)
        assert "# full key tiles" in src.text and "keep" not in src.text.split("# full key tiles")[1].split(
            "# partial key tiles")[0]


def test_integer_index_arithmetic_is_integer_work_at_its_own_shape():
    c = design("nb(p // WI, m // WI, HI, KH) and nb(p % WI, m % WI, WI, KW)", NB)
    f = recognise(c)
    ops = statement_ops(f, c.einsums[0].predicate, cond=True)
    kinds = {k for k, _ in ops}
    assert kinds <= {"int", "logic"}                      # no SFU divide, no float work
    # per point: two comparisons per axis; three `and`s; the rest per row, per key or once (KW // 2)
    assert ops["int", POINT] == 4 and ops["logic", POINT] == 3
    assert ops["int", ROW] > 0 and ops["int", KEY] > 0 and ops["int", UNIFORM] > 0


def test_a_divisor_uniform_over_the_tile_is_one_reciprocal_and_a_multiply_per_point():
    c = design()
    f = recognise(c)
    ops = statement_ops(f, c.einsums[1].expr)               # QK / sqrt(E)
    assert ops == {("sqrt", UNIFORM): 1, ("divide", UNIFORM): 1, ("mul", POINT): 1}
    src = FusedKernel(c, GPUMapping(64, 32)).source(_env(c, dict(B=1, H=1, P=64, E=16, F=16)))
    assert "* (1.0 / tl.sqrt(" in src.text


def test_checkerboard_score_modification_costs_about_dense():
    """(p + m) % 2 in integer arithmetic: a few integer ops per point, no SFU."""
    shapes = dict(B=1, H=16, P=4096, E=128, F=128)
    m = GPUMapping(128, 64)
    dense = predict_fused(recognise(design()), m, H100, _env(design(), shapes))
    cb = design(score="select((p + m) % 2 == 0, QK[b, h, m, p] * 0.5, QK[b, h, m, p] * 2.0)")
    pred = predict_fused(recognise(cb), m, H100, _env(cb, shapes))
    assert pred.work["sfu_ops"] <= dense.work["sfu_ops"] * 1.001
    assert pred.time_s < 1.25 * dense.time_s


@pytest.mark.parametrize("name", list(PATTERNS))
def test_block_sparse_patterns_cost_by_the_key_tiles_they_visit(name):
    m = GPUMapping(128, 64, warps=8)
    dense_c = design()
    dense = predict_fused(recognise(dense_c), m, H100, _env(dense_c, SHAPES))
    c = design(*PATTERNS[name])
    pred = predict_fused(recognise(c), m, H100, _env(c, SHAPES))
    visited = pred.parts["tiles_full"] + pred.parts["tiles_partial"]
    frac = visited / (visited + pred.parts["tiles_skipped"])
    assert frac < 0.5
    assert pred.time_s <= dense.time_s
    assert pred.time_s <= 1.5 * dense.time_s * frac, (pred.time_s, dense.time_s * frac)


@pytest.mark.parametrize("name, score", [
    ("neighborhood-2d", "QK[b, h, m, p] / sqrt(E)"),
    ("dense", "select((p - m) % 3 == 1, QK[b, h, m, p] * 0.5, QK[b, h, m, p] / (2 + (m - p) // 2 % 3))"),
    ("dense", "QK[b, h, m, p] + p * m * 4194304 * 1e-9"),     # beyond int32 at P = 32: the float form, no wrap
])
def test_the_kernels_match_the_executor(name, score):
    """The integer rendering of coordinates, the reciprocal of a uniform
    divisor and the masks left out (TileProgram.masked) keep the results."""
    pred, lets = PATTERNS.get(name, ("", ""))
    c = design(pred, lets, score)
    shapes = {k: v for k, v in dict(B=1, H=1, P=32, E=16, F=8, HI=4, WI=8, KH=3, KW=5).items()
              if k in symbols_used(c) or k in "BHPEF"}
    inp = random_inputs(c, shapes, seed=3)
    ref = execute(c, inp, shapes, dtype="float64")["AV"]
    out = FusedKernel(c, GPUMapping(16, 16, dtype="f32"), shapes)(**{k: torch.tensor(v) for k, v in inp.items()})
    o = out.double().numpy()
    assert np.abs(o - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.mark.parametrize("name,shapes,mapping", [
    ("gqa", dict(B=2, H=8, G=4, M=1024, P=1, E=64, F=40), GPUMapping(16, 32, splits=4, dtype="bf16", pack_heads=4)),
    ("mqa", None, GPUMapping(16, 64, splits=3, dtype="bf16")),
    ("cab-cross", dict(B=1, H=3, M=2048, P=20, E=32, F=32), GPUMapping(16, 32, splits=2, dtype="bf16")),
])
def test_split_kv_is_charged_the_statistics_each_split_stores(name, shapes, mapping):
    """Split-KV: every program of every split stores its statistics whole
    (padding included) and the combine kernel reads them back. Read from the
    generated source: BLOCK_M floats per row store, BLOCK_M x BLOCK_F per
    feature store; the model's combine time is those bytes over the
    bandwidth, two memory round trips and the combine launch, and they are
    all the HBM bytes the splits add (written, then read back)."""
    from einsum_ir import library
    c = library.load(name)
    if shapes is None:
        from tests.codegen import test_tile_program
        shapes, _ = test_tile_program._env(c)
    env = resolve(c, shapes)
    k = FusedKernel(c, mapping, shapes)
    src = k.source(dict(env))
    assert src.splits == mapping.splits
    stores = src.text.split("# ---- this split's statistics")[1].split("\n\n")[0]
    features = len(re.findall(r"tl\.store\(base .*BLOCK_F \+ offs_f", stores))
    rows = stores.count("tl.store(base") - features
    assert rows >= 2
    pred = k.predict(H100, dict(env))
    per_program = mapping.block_m * (rows + features * src.block_f) * 4
    stored = pred.parts["programs"] * per_program              # programs: row tiles x head blocks x splits
    want = stored / H100.bandwidth + 2 * H100.efficiency["latency_ns"] * 1e-9 + H100.efficiency["combine_us"] * 1e-6
    assert pred.parts["combine_s"] == pytest.approx(want, rel=1e-12)
    # the splits read the same keys and query rows as one program would: HBM grows by the statistics alone
    whole = predict_fused(k.program, mapping.with_changes(splits=1), H100, dict(env))
    assert pred.hbm_bytes - whole.hbm_bytes == pytest.approx(2 * stored, rel=1e-12)


TWO_VALUES = softmax("""rank B, H, M, P, E, F
input Q[B, H, E, P]: f16
input K[B, H, E, M]: f16
input V[B, H, F, M]: f16
input W[B, H, F, M]: f16
""").replace("AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]",
             "SNW[b, h, f, p] = SN[b, h, m, p] * W[b, h, f, m]\n"
             "AV[b, h, f, p] = (SNV[b, h, f, p] + SNW[b, h, f, p]) / SD[b, h, p]")
assert "SNW" in TWO_VALUES


@pytest.mark.parametrize("name", ["cab-cross", "cab-self-causal", "two-values"])
def test_a_tile_steps_operations_by_hand(name):
    """Per point of a tile, every tile: the running max (a max), the score
    less the max (an add), its exp, the sum (an add) and P converted to 16
    bit for each value product (one per `.to(` in the kernel's loop).
    A partial tile adds: the key bounds (a compare per key), `keep` (a
    logic op per point, and one more to and it with a predicate); causal's
    m <= p (an integer compare); and a select per statement the tile masks:
    every reduction without a predicate (GM, SD and each value product),
    QK and SN under one (the reductions of SN then need none)."""
    from einsum_ir.analysis import tile_program as TP
    from einsum_ir import library
    from simulator.gpu import _pass_ops
    c = parse(TWO_VALUES, name="two-values") if name == "two-values" else library.load(name)
    shapes = dict(B=1, H=2, M=64, P=64, E=16, F=16) if name != "cab-self-causal" else dict(B=1, H=2, P=64, E=16, F=16)
    form = recognise(c)
    env = resolve(c, shapes)
    per, extra, nvalue = _pass_ops(tile_program(form).passes[0], form, env)
    values = 2 if name == "two-values" else 1
    assert nvalue == values
    assert per == {("max", POINT): 1, ("add", POINT): 2, ("exp", POINT): 1, ("convert", POINT): values}
    masked = {("select", POINT): 2, ("logic", POINT): 2, ("int", POINT): 1} if name == "cab-self-causal" else \
        {("select", POINT): 2 + values, ("logic", POINT): 1}
    assert extra == {("compare", KEY): 1, **masked}
    src = FusedKernel(c, GPUMapping(16, 16, dtype="bf16"), shapes).source(dict(env)).text
    loop = src.split("# full key tiles")[1].split("# partial key tiles")[0] if "# partial key tiles" in src else src
    assert len(re.findall(r"\)\.to\(t\d+_[VW]\.dtype", loop)) == values

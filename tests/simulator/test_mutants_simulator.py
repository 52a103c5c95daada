"""Behaviours that the mutation run of `simulator` (docs/benchmarks.md,
"Mutation testing") found untested: what a spatial report states besides
its numbers (the byte rule, the critical path), where a schedule error
points, the fast count path, the timeline's critical rows, and what the GPU
model's fused prediction reports (its footprint, its binding resource, the
note on a mask without values, the epilogue's per-SM time)."""
import dataclasses
import re

import numpy as np
import pytest
import sympy

import einsum_ir as ei
import hw_models as hw
from einsum_ir import library
from einsum_ir.analysis.fused import recognise
from einsum_ir.ops import DTYPE_BYTES, KIND_UNITS
from einsum_ir.shapes import resolve, symbols_used
from mappers.gpu_mapping import GPUMapping, footprint
from mappers.mapping import Add, Max, Name, Num, Scale, load_mapping, parse_critical_path
from simulator.analytical import simulate
from simulator.facts import Count
from simulator.schedule import Schedule, timeline

FUSEMAX = hw.load_spatial("fusemax")
BINDING = load_mapping("fusemax-binding")
ONE_PASS = ei.library.load("attention-1pass")
SMALL = dict(B=1, H=1, M=512, P=512, E=64, F=64)
H100 = hw.load_gpu("h100")


# ------------------------------------------------------------------ spatial reports

def test_the_byte_rule_names_each_dram_tensor_at_its_declared_type():
    """The rule line lists exactly the tensors that touch DRAM, each at the
    type the cascade declares and that type's byte width."""
    text = str(ONE_PASS)
    for t, d in (("Q", "f32"), ("V", "bf16")):
        text, n = re.subn(rf"^(input {t}\[[^\]]*\]): \w+$", rf"\1: {d}", text, flags=re.M)
        assert n == 1
    c = ei.parse(text, name="retyped")
    r = simulate(c, BINDING, FUSEMAX, SMALL)
    listed = re.search(r"declared type \((.*)\); on the chip", r.bytes_rule).group(1)
    got = {}
    for group in listed.split("; "):
        names, kind = group.split(": ")
        dtype, width = kind.split(", ")
        assert width == f"{DTYPE_BYTES[dtype]} B"
        got.update({n: dtype for n in names.split(", ")})
    in_dram = {t.name for t in r.tensors if t.dram_read_bytes or t.dram_write_bytes}
    assert in_dram == {"Q", "K", "V", "AV"}
    assert got == {n: c.tensor(n).dtype for n in in_dram}
    assert got["Q"] == "f32" and got["V"] == "bf16"


def _value(node, env):
    """The critical path's tree evaluated here, not by the mapping's classes."""
    if isinstance(node, Name):
        return env[node.name]
    if isinstance(node, Num):
        return node.number
    if isinstance(node, Add):
        return sum(_value(t, env) for t in node.terms)
    if isinstance(node, Max):
        return max(_value(a, env) for a in node.args)
    assert isinstance(node, Scale)
    return node.factor * _value(node.arg, env)


@pytest.mark.parametrize("stated", [True, False])
def test_the_reported_critical_path_gives_the_cycles_per_epoch(stated):
    """The report's critical path is the expression the latency used: read
    back and evaluated at each Einsum's busy cycles per epoch it gives the
    per-epoch cycles (170 by hand for fusemax-binding, test_analytical); a
    mapping without one reports the default, every Einsum in sequence."""
    m = BINDING if stated else BINDING.with_changes(critical_path=None)
    r = simulate(ONE_PASS, m, FUSEMAX, SMALL)
    per_epoch = {e.name: e.busy_cycles / r.epochs for e in r.einsums}
    path = parse_critical_path(r.critical_path).expr
    assert _value(path, per_epoch) == pytest.approx(r.critical_path_cycles)
    if stated:
        assert r.critical_path_cycles == 170
    else:
        assert sorted(n.name for n in path.terms) == sorted(per_epoch)
        assert r.critical_path_cycles == pytest.approx(sum(per_epoch.values()))


def test_a_phase_error_points_into_the_overlap_block():
    """A phase list changed in code and missing an Einsum is refused at
    simulate time, located at the mapping's `overlap` entry (not at the top
    of the file)."""
    m = load_mapping("unfused")
    text = m.node.source
    overlap_line = text[:text.index("\noverlap:")].count("\n") + 2
    with pytest.raises(hw.HardwareError, match="SD is in no phase") as e:
        simulate(ei.library.load(m.cascade), m.with_changes(phases=(("QK",), ("GM", "SN", "A"), ("AV",))),
                 hw.load_spatial(m.hardware), dict(B=1, H=2, E=64, F=64, M=1024, P=1024))
    assert e.value.loc.line >= overlap_line


@pytest.mark.parametrize("expr,env", [
    ("3*M*P + 2*M - 7", dict(M=5, P=11)),
    ("M**2*P + 1", dict(M=3, P=4)),
    ("4", {}),
    ("2*x*M + 1", dict(x=0.5, M=3)),            # a lower-case (non-shape) symbol, not an integer
    ("x**2 + y", dict(x=1.5, y=0.25)),
    ("M/2 + P", dict(M=3, P=1)),                 # a rational coefficient
])
def test_a_count_equals_its_expression_at_any_values(expr, env):
    """Count takes an integer fast path for integer polynomials in shape
    symbols; everywhere it must equal the expression itself (sympy's
    substitution), a fractional value of another symbol included."""
    e = sympy.sympify(expr)
    want = float(e.subs({sympy.Symbol(k): sympy.nsimplify(v) for k, v in env.items()}))
    assert float(Count(e)(env)) == pytest.approx(want, rel=1e-12, abs=0)


@pytest.mark.parametrize("mapping", ["unfused", "flat"])
def test_the_longest_row_of_each_group_is_the_critical_one(mapping):
    """Phases and overlapped timelines: in each phase the critical bars are
    those of the row (a unit, or DRAM) whose bars add up to the most, and
    the last critical bar ends at the latency."""
    m = load_mapping(mapping)
    a = hw.load_spatial(m.hardware)
    r = simulate(ei.library.load(m.cascade), m, a, dict(B=1, H=2, E=64, F=64, M=1024, P=1024))
    sch = Schedule(r.latency_cycles, r.epochs, r.critical_path_cycles, r.latency_rule, r.critical_path,
                   r.unit_busy_cycles)
    bars = timeline(m.for_shapes(r.shapes), r.einsums, a, sch, r.dram_cycles, r.dram_by_einsum)
    for k in {b.epoch for b in bars}:
        rows: dict = {}
        for b in bars:
            if b.epoch == k:
                rows.setdefault(b.unit, []).append(b)
        total = {u: sum(b.end - b.start for b in bs) for u, bs in rows.items()}
        longest = max(total.values())
        for u, bs in rows.items():
            assert all(b.critical == (total[u] == longest) for b in bs), (k, u)
    assert max(b.end for b in bars if b.critical) == pytest.approx(r.latency_cycles)


# ------------------------------------------------------------------ the GPU model's fused prediction

def _fused(name, **shapes):
    form = recognise(library.load(name))
    return form, resolve(form.cascade, shapes)


def test_a_prediction_reports_the_footprint_it_was_charged_at():
    """parts carries the mapping's footprint (shared memory, registers,
    blocks per SM) as mappers.gpu_mapping.footprint computes it."""
    from simulator.gpu import predict_fused
    form, env = _fused("cab-self", B=1, H=2, P=256, E=64, F=64)
    m = GPUMapping(64, 64, 4, 2, 1)
    fp = footprint(form, m, env, H100)
    p = predict_fused(form, m, H100, env).parts
    assert (p["smem_bytes"], p["regs_per_thread"], p["blocks_per_sm"]) == \
        (fp.smem_bytes, fp.regs_per_thread, fp.blocks_per_sm)


def _documented_binding(p: dict) -> str:
    """docs/gpu.md: launch when launches are over half the time; else
    occupancy/waves when the schedule is over 15% longer than the busiest
    resource (tensor + SFU + fp32 time, or HBM); else HBM when its time
    outlasts the units' together (they run one after another within a
    tile; commit 56180f7), else the largest unit."""
    total = p["time_s"]
    if p["launch_s"] > 0.5 * total:
        return "launch"
    ideal = max(p["tensor_s"] + p["sfu_s"] + p["fp32_s"], p["hbm_s"])
    if p["schedule_s"] > 1.15 * ideal and p["schedule_s"] >= p["hbm_s"]:
        return "occupancy/waves"
    units = {"tensor cores": p["tensor_s"], "SFU": p["sfu_s"], "fp32 vector": p["fp32_s"]}
    return "HBM" if p["hbm_s"] >= sum(units.values()) else max(units, key=units.get)


@pytest.mark.parametrize("name,shapes,m", [
    ("cab-self", dict(B=2, H=8, P=1024, E=128, F=128), GPUMapping(128, 64, 8, 2, 1)),   # fp32 time decides
    ("cab-self", dict(B=1, H=2, P=256, E=64, F=64), GPUMapping(64, 64, 4, 2, 1)),
    ("sliding-window", dict(B=1, H=4, P=1024, E=64, F=64, W=128), GPUMapping(128, 64, 8, 2, 1)),
    ("softcap", dict(B=8, H=16, M=1024, P=1024, E=64, F=64), GPUMapping(128, 64, 8, 2, 1)),    # SFU-bound
    # the bias's bucket arithmetic outlasts the exps at head dim 16: the fp32 (and integer) pipe binds
    ("relative-bias", dict(B=4, H=16, M=4096, P=4096, E=16, F=16), GPUMapping(128, 64, 8, 2, 1)),
])
def test_the_binding_resource_follows_the_documented_rule(name, shapes, m):
    from simulator.gpu import predict_fused
    form, env = _fused(name, **shapes)
    pred = predict_fused(form, m, H100, env)
    assert pred.binding == _documented_binding(dict(pred.parts, time_s=pred.time_s))
    if name == "relative-bias":
        assert pred.binding == "fp32 vector"


def test_a_mask_without_its_values_is_an_upper_bound_that_says_so():
    """Block-sparse attention: without BM's values every key tile is counted
    (partial) and a note names BM; with the values the kernel's block table
    is counted exactly (here half the blocks are off) and no note is left."""
    from simulator.gpu import predict_fused
    form, env = _fused("block-sparse", B=1, H=2, P=256, M=256, E=64, F=64, TQ=64, TK=64)
    m = GPUMapping(64, 64, 4, 2, 1)
    bound = predict_fused(form, m, H100, env)
    assert any("the mask reads BM" in n and "upper bound" in n for n in bound.notes)
    bm = np.zeros((1, 2, 4, 4), dtype=bool)
    bm[..., ::2, :] = True                     # every other key block on, for every query block
    exact = predict_fused(form, m, H100, env, inputs={"BM": bm})
    assert not any("BM" in n for n in exact.notes)
    visited = exact.parts["tiles_full"] + exact.parts["tiles_partial"]
    assert visited == bm.sum()                 # one 64 x 64 tile per block at BLOCK_M = BLOCK_N = 64
    assert bound.parts["tiles_full"] + bound.parts["tiles_partial"] == bm.size
    assert exact.time_s < bound.time_s


def test_the_epilogue_takes_its_rows_at_one_sms_rates():
    """A program's row Einsums run on one SM: BLOCK_M rows x (SFU operations
    / one SM's SFU rate + fp32 operations / one SM's fp32 rate), by hand for
    block-sparse's epilogue `select(SD > 0, SNV / max(SD, 1e-30), 0)` over F:
    per row F divides on the SFU, and F compares, maxima and selects on fp32
    (the per-kind costs of einsum_ir.ops.KIND_UNITS)."""
    from simulator.gpu import _epilogue_s, _program, row_work
    form, env = _fused("block-sparse", B=1, H=2, P=256, M=256, E=64, F=64, TQ=64, TK=64)
    program = _program(form)
    work = row_work(program, env)
    sfu = sum(v * KIND_UNITS[k].get("sfu", 0) for k, v in work.items())
    fp = sum(v * (KIND_UNITS[k].get("fp32", 0) + KIND_UNITS[k].get("int", 0)) for k, v in work.items())
    assert sfu >= 64 and fp >= 64
    for gpu in (H100, dataclasses.replace(H100, sms=2 * H100.sms, fp32_flops=2 * H100.fp32_flops)):
        per_sm_sfu = gpu.sfu_ops_per_clock_per_sm * gpu.clock_hz
        per_sm_fp = gpu.fp32_flops / 2 / gpu.sms
        for bm in (32, 128):
            want = bm * (sfu / per_sm_sfu + fp / per_sm_fp)
            assert _epilogue_s(program, GPUMapping(bm, 64, 4, 2, 1), gpu, env) == pytest.approx(want, rel=1e-12, abs=0)


@pytest.mark.parametrize("rows", [256, 16])
def test_linear_chunked_time_by_hand(rows):
    """The linearised kernel, by its algorithm: per chunk of C = 64 queries
    the intra-chunk QK^T and its product with V (2 C^2 (E + F) flops), the
    inter-chunk Q S and the state update K^T V (4 C E F), C^2 masking
    operations on fp32, Q, K, V and O moved once; decode (fewer rows than a
    chunk) reads and writes the fp32 E x F state instead. Time: max(compute,
    bytes / bandwidth) + one launch; nothing on the SFU."""
    from simulator.gpu import predict_linear_chunked
    form, env = _fused("cab-self", B=1, H=2, P=rows, E=64, F=32)
    heads, e, f, c, b = 2, 64, 32, 64, 2
    if rows >= c:
        chunks = rows // c
        flops = heads * chunks * (2.0 * c * c * (e + f) + 4.0 * c * e * f)
        moved = heads * rows * (2 * e + 2 * f) * b
    else:
        chunks = 1
        flops = heads * rows * 4.0 * e * f
        moved = heads * (rows * (2 * e + 2 * f) * b + 2 * e * f * 4)
    eff = H100.efficiency["fused_tensor"] * H100.path_fraction("mma")
    compute = flops / (eff * H100.tensor_peak("bf16")) + heads * chunks * c * c / H100.fp32_ops_per_s
    want = max(compute, moved / H100.bandwidth) + H100.efficiency["launch_us"] * 1e-6
    p = predict_linear_chunked(env, form, H100)
    assert (p.flops, p.hbm_bytes) == (flops, moved)
    assert p.parts["compute_s"] == pytest.approx(compute, rel=1e-12, abs=0)
    assert p.time_s == pytest.approx(want, rel=1e-12, abs=0)


@pytest.mark.parametrize("shapes,stages", [(dict(B=4, H=16, M=256, P=256, E=16, F=16), 2),
                                           (dict(B=1, H=2, M=1024, P=1024, E=32, F=16), 8)])
def test_a_chunked_prediction_is_bounded_by_one_sm_doing_everything(shapes, stages):
    """A chunked kernel (linear attention, one program per batch
    coordinate): programs fill ceil(programs / (SMs x blocks per SM))
    waves, and the kernel is never slower than every program run one after
    another on one SM, each streaming its bytes at that SM's load rate (or
    slower, at `stages` chunks in flight per memory latency) and computing
    all the work the model charges, plus its latencies and the launch."""
    from einsum_ir.analysis.chunk_program import chunk_program
    from einsum_ir.analysis.chunked import recognise as recognise_chunked
    from simulator.gpu import chunk_traffic, predict_chunked
    c = library.load("linear-attention")
    env = resolve(c, shapes)
    program = chunk_program(recognise_chunked(c, env), env, 64)
    m = GPUMapping(64, 64, 4, stages, dtype="bf16")
    p = predict_chunked(program, m, H100, env)
    nprog = shapes["B"] * shapes["H"]
    assert p.kind == "chunked" and p.parts["programs"] == nprog
    assert p.parts["waves"] == -(-nprog // (H100.sms * p.parts["blocks_per_sm"]))
    prog_bytes, chunk_bytes = chunk_traffic(program, m, env)
    latency = H100.efficiency["latency_ns"] * 1e-9
    rate = min(stages * chunk_bytes / latency, H100.sm_load_bytes_per_clock * H100.clock_hz)
    serial_compute = (p.parts["tensor_s"] + p.parts["sfu_s"] + p.parts["fp32_s"]) * H100.sms
    bound = nprog * (prog_bytes / rate + 2 * latency) + serial_compute + p.parts["launch_s"]
    assert p.hbm_bytes / H100.bandwidth <= p.time_s <= bound


def test_a_chunk_steps_operations_add_up_by_hand():
    """Linear attention's KS[b, h, e] = sum[m] PK[b, h, e, m], with PK =
    select(K > 0, K + 1, exp(K)) substituted where it is read and the
    chunk's bound m < M as a masked select: over one chunk's tile (E = 12
    padded to 16 lanes, 64 tokens: T = 1024 elements) each element costs a
    compare, an add, an exp and a select for PK, a compare and a select for
    the bound, an add for the sum; the accumulator adds its 16 lanes once."""
    from einsum_ir.analysis.chunk_program import chunk_program
    from einsum_ir.analysis.chunked import recognise as recognise_chunked
    from simulator.gpu import step_work
    c = library.load("linear-attention")
    env = resolve(c, dict(B=2, H=3, P=45, M=70, E=12, F=20))
    program = chunk_program(recognise_chunked(c, env), env, 64)
    loop = next(lp for lp in program.loops if any(s.name == "KS" for s in lp.steps))
    step = next(s for s in loop.steps if s.name == "KS")
    tensor, ops = step_work(program, step, loop.var)
    t = 16 * 64
    assert tensor == 0.0
    assert {k: v for k, v in ops.items() if v} == {"compare": 2 * t, "select": 2 * t, "exp": t, "add": 2 * t + 16}


def test_an_sfu_bound_kernel_is_named_so():
    """softcap's tanh per score makes the SFU time the largest unit's: the
    binding names it "SFU" (the word docs/gpu.md uses), not another unit."""
    from simulator.gpu import predict_fused
    form, env = _fused("softcap", B=8, H=16, M=1024, P=1024, E=64, F=64)
    pred = predict_fused(form, GPUMapping(128, 64, 8, 2, 1), H100, env)
    p = pred.parts
    assert p["sfu_s"] > max(p["tensor_s"], p["fp32_s"]) and pred.binding == "SFU"


# ------------------------------------------------------------------ found by the fresh run (fourth session)

def test_the_report_states_the_latency_rule_it_used():
    """The report's latency_rule names the schedule that combined the
    latency: the mapping's stated critical path, the default sequence when
    it states none, the overlapped maximum."""
    stated = simulate(ONE_PASS, BINDING, FUSEMAX, SMALL).latency_rule
    default = simulate(ONE_PASS, BINDING.with_changes(critical_path=None), FUSEMAX, SMALL).latency_rule
    over = simulate(ONE_PASS, BINDING.with_changes(overlap="overlapped"), FUSEMAX, SMALL).latency_rule
    assert "critical_path" in stated and "no critical_path" not in stated
    assert default == ("epochs: no critical_path stated; default: every Einsum in sequence (the sum over units of "
                       "their busy time, an upper bound)")
    assert over == "overlapped: max of DRAM time and each unit's busy time"
    unfused = load_mapping("unfused")
    phases = simulate(ei.library.load(unfused.cascade), unfused, hw.load_spatial(unfused.hardware), SMALL).latency_rule
    assert phases == "phases: sum over 3 phases of max(DRAM, each unit)"


def test_an_operation_on_fewer_variables_is_noted_with_them_and_its_count():
    """A factor exp(RM[m1]) in SLN depends on (b, h, m1, p), not on m0: the
    report notes it with exactly those variables and B x H x M1 x P, the
    number of distinct values it is charged for."""
    old = "SLN[b, h, m1, m0, p] = exp(BQK[b, h, m1, m0, p] - RM[b, h, m1 + 1, p])"
    text = str(ONE_PASS)
    assert text.count(old) == 1
    c = ei.parse(text.replace(old, old + " * exp(RM[b, h, m1, p])"), name="sln-factor")
    r = simulate(c, BINDING, FUSEMAX, SMALL)
    notes = [n for n in r.notes if n.startswith("SLN: ") and " only: charged " in n]
    m1 = r.shapes["M1"] if "M1" in r.shapes else -(-SMALL["M"] // r.shapes["M0"])
    want = SMALL["B"] * SMALL["H"] * m1 * SMALL["P"]
    assert notes == [f"SLN: exp depends on (b, h, m1, p) only: charged {want} times, not once per point"]


def test_a_tensor_through_the_staging_file_is_written_once_and_read_by_its_reader():
    """fusemax-binding passes LM, SLD and SLNV from one array to the other
    through the staging register file: each written there once, its whole
    extent at the declared type's width, and read once by its one reader."""
    r = simulate(ONE_PASS, BINDING, FUSEMAX, SMALL)
    staged = {t.name: t for t in r.tensors if t.staging_read_bytes or t.staging_write_bytes}
    assert set(staged) == {"LM", "SLD", "SLNV"}
    for name, t in staged.items():
        decl = ONE_PASS.tensor(name)
        elems = np.prod([r.shapes[x] for x in decl.ranks])
        assert t.staging_write_bytes == t.staging_read_bytes == elems * DTYPE_BYTES[decl.dtype], name


def test_a_data_mask_is_not_evaluated_for_the_visited_fraction():
    """A predicate that reads a tensor has no kept grid without the tensor's
    values: the visited fraction is 1 and the reason names the tensor
    (tests/simulator/test_mask_values_spatial.py: with its values)."""
    from simulator.skipping import visited_factor
    c = ei.parse("""rank M, P, E
input Q[E, P]: f16
input K[E, M]: f16
input MK[M, P]: f16
output S[M, P]: f16
S[m, p] = Q[e, p] * K[e, m] where MK[m, p] > 0 and m <= p
""", name="data-mask")
    assert visited_factor(c, c.einsums[0], dict(M=64, P=64, E=8), {"m": 16, "p": 16}) == \
        (1.0, "the predicate reads MK, whose values are not given (--inputs)")


def test_the_hoisted_note_gives_the_tensors_size_in_mib():
    """gated-attention's gate G is materialised before the kernel: the note
    gives its elements (B x H x F x P) and their fp32 size in MiB."""
    from simulator.gpu import predict_fused
    form, env = _fused("gated-attention", B=2, H=16, M=1024, P=1024, E=64, F=64, D=64)
    pred = predict_fused(form, GPUMapping(64, 64, 4, 2, 1), H100, env)
    notes = [n for n in pred.notes if n.startswith("materialised before the kernel: G[")]
    assert len(notes) == 1
    n = 2 * 16 * 64 * 1024
    assert f"{n:,} elements ({n * 4 / 2 ** 20:,.1f} MiB fp32)" in notes[0]     # 8.0 MiB


def test_the_encoder_layers_linear_gemms_by_hand():
    """A BERT-style encoder layer's linear work beside attention: Q, K, V
    projections D -> H x E, the output projection H x E -> D, the FFN
    D -> S -> D, each a GEMM over B x P tokens; MACs and DRAM words by hand."""
    from simulator.linear import encoder_linear_layers
    B, P, H, E, D, S = 2, 128, 4, 16, 64, 256
    got = encoder_linear_layers(B, P, H, E, D, S, FUSEMAX)
    n = B * P
    want = [("Q projection", n, D, H * E), ("K projection", n, D, H * E), ("V projection", n, D, H * E),
            ("output projection", n, H * E, D), ("FFN up", n, D, S), ("FFN down", n, S, D)]
    assert [(g.name, g.rows, g.inner, g.cols) for g in got] == want
    for g, (_, r, i, o) in zip(got, want):
        assert g.macs == r * i * o
        assert g.dram_bytes == (r * i + i * o + r * o) * FUSEMAX.word_bytes
        assert g.latency_cycles >= g.macs / FUSEMAX.unit("pe2d").pes


def test_a_chunked_kernels_hoisted_work_is_charged_by_hand():
    """A chunked kernel whose hoisted WN[h] = sum[f] W[h, f] * DC[h] reads the
    element-wise DC[h] = exp(M0 * log(LAM[h])): before the kernel, H x F
    MACs on the tensor cores and per head a multiply (fp32), a log and an
    exp (SFU), at the GEMM efficiency and the SFU / fp32 rates."""
    from codegen.runtime import ChunkedKernel
    from simulator.gpu import predict_chunked
    from tests.codegen.test_chunked import EDGE_CASES
    c = ei.parse(EDGE_CASES["hoisted-reads-element-wise"][0], name="hoisted-reads-element-wise")
    env = resolve(c, dict(B=2, H=3, E=16, F=32, M=128, M0=16))
    m = GPUMapping(16, 16, 4, 2, dtype="f32")
    program = ChunkedKernel(c, m).program_for(env)
    assert [h.name for h in program.hoisted] == ["WN"]
    H, F = 3, 32
    want = (2.0 * H * F / (H100.efficiency["gemm_tensor"] * H100.tensor_peak("f32"))
            + 2 * H / H100.sfu_ops_per_s + H / H100.fp32_ops_per_s)
    p = predict_chunked(program, m, H100, env)
    assert p.parts["hoisted_s"] == pytest.approx(want, rel=1e-12, abs=0)


def _costs(**busy):
    """Hand-made per-Einsum costs (the fields timeline reads): name=(unit, busy cycles)."""
    from types import SimpleNamespace
    return [SimpleNamespace(name=n, unit=u, busy_cycles=float(b)) for n, (u, b) in busy.items()]


def test_an_epoch_timeline_by_hand_with_dram_as_long_as_the_path():
    """Epochs, no stated path (every Einsum in sequence): A (30 cycles per
    epoch on pe2d) then B (10 on pe1d) in each of 2 epochs of 40 cycles;
    DRAM takes exactly 40 per epoch too. The Einsums follow each other and
    stay on the critical path at the tie (something sets the latency); the
    DRAM bar is critical only when it outlasts them."""
    from simulator.schedule import Bar
    m = BINDING.with_changes(critical_path=None)
    costs = _costs(A=("pe2d", 60), B=("pe1d", 20))
    for dram, dram_critical in ((80.0, False), (100.0, True)):
        sch = Schedule(max(80.0, dram), 2, 40.0, "epochs", "A + B", {"pe2d": 60.0, "pe1d": 20.0})
        bars = timeline(m, costs, FUSEMAX, sch, dram, {})
        want = []
        for k in (0, 1):
            t = 40.0 * k
            want += [Bar("pe2d", "A", k, t, t + 30, not dram_critical), Bar("pe1d", "B", k, t + 30, t + 40,
                                                                             not dram_critical),
                     Bar("dram", "DRAM", k, t, t + dram / 2, dram_critical)]
        assert sorted(bars, key=str) == sorted(want, key=str)


def test_a_phase_without_work_takes_no_time():
    """Phases: a phase whose Einsums do no work (initial values) and move no
    DRAM bytes has no bars and lasts 0 cycles; the next phase starts at 0."""
    from types import SimpleNamespace

    from mappers.mapping import Overlap
    from simulator.schedule import Bar
    m = SimpleNamespace(overlap=Overlap.PHASES, phases=(("INIT",), ("A", "B")), critical_path=None)
    costs = _costs(INIT=("pe1d", 0), A=("pe2d", 50), B=("pe1d", 20))
    sch = Schedule(70.0, 1, 0.0, "phases", "", {"pe2d": 50.0, "pe1d": 20.0})
    bars = timeline(m, costs, FUSEMAX, sch, 0.0, {})
    assert sorted(bars, key=str) == sorted([Bar("pe2d", "A", 1, 0.0, 50.0, True),
                                            Bar("pe1d", "B", 1, 0.0, 20.0, False)], key=str)


def test_a_fixed_index_on_a_rank_that_is_not_iterative_counts_the_rank_whole():
    """traffic.accessed's rule: an iterative rank (RD's M1) counts one
    iterate where the access names a fixed one; every other rank counts its
    whole extent, as for a tensor without iterative ranks, whatever its
    index. So AV reading RD[b, h, M1, 0] moves the bytes RD[b, h, M1, p]
    does (an upper bound for the fixed query; docs/spatial.md's traffic)."""
    old = "AV[b, h, f, p] = RNV[b, h, f, M1, p] / RD[b, h, M1, p]"
    text = str(ONE_PASS)
    assert text.count(old) == 1
    fixed = ei.parse(text.replace(old, old.replace("RD[b, h, M1, p]", "RD[b, h, M1, 0]")), name="fixed-query")

    def rd(c):
        t = next(t for t in simulate(c, BINDING, FUSEMAX, SMALL).tensors if t.name == "RD")
        return t.dram_read_bytes, t.buffer_read_bytes, t.buffer_write_bytes

    assert rd(fixed) == rd(ONE_PASS)
    assert rd(ONE_PASS)[1] > 0


@pytest.mark.parametrize("bm, f", [(128, 64), (64, 32)])
def test_a_tiles_once_per_row_work_by_hand(bm, f):
    """Online softmax, per row of a (row tile, key tile) step: one exp for
    the rescale factor exp(old max - new max) (SFU); on the fp32 units the
    max and the subtraction, and the rescaling of each running sum: SD (one
    number) and SNV (F numbers) where the output is SNV / SD (flex corpus
    `full`, one pass), SD alone where the values are weighted after the
    division (library attention-3pass: its second pass does A V)."""
    from pathlib import Path
    from simulator.gpu import tile_work
    full = ei.load(str(Path(__file__).resolve().parents[1] / "flex" / "corpus" / "full.ein"))
    for c, per_row in ((full, f + 1 + 2), (library.load("attention-3pass"), 1 + 2)):
        env = resolve(c, dict(B=1, H=2, P=256, E=64, F=f, **({"M": 256} if "M" in symbols_used(c) else {})))
        w = tile_work(recognise(c, env), 0, GPUMapping(bm, 64, dtype="bf16"), env)
        assert w.row_sfu == bm
        assert w.row_fp32 == bm * per_row


# ---- survivors of the seed-22 sample (docs/benchmarks.md)

def test_a_decode_row_is_predicted_at_the_best_mapping_the_model_finds():
    """A published decode row (one query) is not a fixed kernel class's
    tiles: calibrate predicts it at the shortlist's best, the least time
    over every candidate mapping predicted one by one."""
    from hw_models import HardwareError
    from mappers.gpu_search import candidates
    from simulator.calibrate import Case, predict_case
    from simulator.gpu import predict_fused
    h100 = hw.load_gpu("h100")
    row = dict(device="h100", kernel="k", dtype="bf16", batch=2, heads=8, kv_heads=2, q_len=1, kv_len=2048,
               head_dim=64, causal=0)
    env = dict(B=2, H=8, G=4, P=1, M=2048, E=64, F=64)
    got = predict_case(Case(row, "gqa", env, 1.0), h100)
    form = recognise(library.load("gqa"))
    renv = resolve(form.cascade, env)
    times = []
    for m in candidates(form, h100, renv, "bf16"):
        try:
            times.append(predict_fused(form, m, h100, renv).time_s)
        except HardwareError:
            pass
    assert len(times) > 1 and got.time_s == pytest.approx(min(times), rel=1e-12)


def test_a_kernel_filter_that_matches_no_row_names_the_kernel(tmp_path):
    from simulator.calibrate import CalibrationError, read_results
    path = tmp_path / "r.csv"
    path.write_text("device,kernel,dtype,batch,heads,kv_heads,q_len,kv_len,head_dim,causal,time_s,tflops\n"
                    "x,fa2,bf16,1,2,2,256,256,64,0,1e-5,0\n")
    with pytest.raises(CalibrationError, match=r"r\.csv: no rows for kernel fa3, triton$"):
        read_results(str(path), ["fa3", "triton"])


def test_a_mask_read_from_a_table_costs_a_compare_not_the_predicate():
    """power-attention's predicate (exp2, floor, log2 of the offset) is
    read from the block tables' mask bytes unpacked: its partial tiles add
    no SFU work to a full tile's, where evaluating the predicate would."""
    from simulator.gpu import _pass_ops, _weigh, tile_work
    from einsum_ir.analysis.tile_program import tile_program
    c = library.load("power-attention")
    form = recognise(c)
    program = tile_program(form)
    env = resolve(c, dict(B=1, H=2, P=256, E=64, F=64))
    m = GPUMapping(64, 64, 4, 2, dtype="bf16")
    assert program.passes[0].mask_table
    w = tile_work(program, 0, m, env)
    assert w.sfu_partial == w.sfu_full
    _, computed, _ = _pass_ops(program.passes[0], form, env, table=False)
    assert _weigh(computed, m)[0] > 0          # the predicate itself has SFU work the table saves


def test_a_unit_with_no_busy_time_under_its_einsums_work_is_an_internal_error():
    """check_work names the unit and its 0 busy cycles (no unit entry)."""
    from simulator import tiling
    from simulator.invariants import InvariantError, check_work
    c = library.load(BINDING.cascade)
    r = simulate(c, BINDING, FUSEMAX, SMALL)
    env = tiling.space(c, BINDING, FUSEMAX, SMALL).env
    check_work(c, BINDING, FUSEMAX, env, r)                     # as simulated: consistent
    with pytest.raises(InvariantError, match=r"pe2d is busy 0 cycles, below its Einsums' operations"):
        check_work(c, BINDING, FUSEMAX, env, dataclasses.replace(r, unit_busy_cycles={}))


def test_a_scaled_term_of_the_critical_path_by_hand():
    """`2 * A + B`: A's bar runs 30 cycles from 0 and the path waits for it
    twice (B starts at 60); B runs 10. Both are on the critical path."""
    from simulator.schedule import Bar
    m = BINDING.with_changes(critical_path=parse_critical_path("2 * A + B"))
    costs = _costs(A=("pe2d", 30), B=("pe1d", 10))
    sch = Schedule(70.0, 1, 70.0, "epochs", "2 * A + B", {"pe2d": 30.0, "pe1d": 10.0})
    assert sorted(timeline(m, costs, FUSEMAX, sch, 0.0, {}), key=str) == sorted(
        [Bar("pe2d", "A", 0, 0.0, 30.0, True), Bar("pe1d", "B", 0, 60.0, 70.0, True)], key=str)


def test_a_critical_path_is_laid_out_bar_by_bar_by_hand():
    """`A + max(B, C + 2) + 2 * D` with A 3 cycles, B 4, C 1, D 5 and E
    named nowhere in `per` (an Einsum without work): A from 0 to 3; B from
    3 to 7 beside C from 3 to 4 and 2 idle cycles (B is the longer branch,
    7 against 6); D from 7 to 12, waited twice (the epoch ends at 17); E a
    bar of no length at 17. The critical bars: A, B, D and E."""
    from simulator.schedule import _place
    out = []
    end, crit = _place(parse_critical_path("A + max(B, C + 2) + 2 * D + E").expr, 0.0,
                       {"A": 3.0, "B": 4.0, "C": 1.0, "D": 5.0}, out)
    assert out == [("A", 0.0, 3.0), ("B", 3.0, 7.0), ("C", 3.0, 4.0), ("D", 7.0, 12.0), ("E", 17.0, 17.0)]
    assert end == 17.0 and [out[i][0] for i in crit] == ["A", "B", "D", "E"]

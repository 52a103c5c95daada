"""Figures the GPU model reports, counted by hand on small designs: a
packed GQA decode with a key-padding mask (tiles, flops, exponentials, and
the time of one wave), a chunked kernel's HBM bytes and time, the hoisted
Einsums' integer work, and the prediction's dictionary."""
from collections import Counter

import numpy as np
import pytest

import einsum_ir as ei
from einsum_ir import library
from einsum_ir.analysis.chunk_program import chunk_program
from einsum_ir.analysis.chunked import recognise as recognise_chunked
from einsum_ir.analysis.fused import recognise
from einsum_ir.shapes import resolve
from hw_models import load_gpu
from mappers.gpu_mapping import GPUMapping
from simulator.gpu import _hoisted_cost, chunk_traffic, predict_chunked, predict_fused, predict_unfused

H100 = load_gpu("h100")

GQA_KEY_PADDING = """rank B, H, M, P, E, F
rank KH = H / G
input Q[B, H, E, P]: f16
input K[B, KH, E, M]: f16
input V[B, KH, F, M]: f16
input VALID[B, M]: i32
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h / G, e, m] where VALID[b, m] > 0
GM[b, h, p] = max[m] QK[b, h, m, p] where VALID[b, m] > 0
SN[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p]) where VALID[b, m] > 0
SD[b, h, p] = SN[b, h, m, p] where VALID[b, m] > 0
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h / G, f, m] where VALID[b, m] > 0
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]
"""


def test_a_packed_gqa_decode_with_key_padding_by_hand():
    """Decode (P = 1), B = 2, H = 8 in groups of G = 4, 256 keys of which
    sequence 0 keeps the first 100 and sequence 1 the first 200. Tiles of
    16 rows x 32 keys: sequence 0 has 3 full key tiles (0-95), 1 partial
    (96-127) and 4 empty; sequence 1 has 6 full, 1 partial, 1 empty. One
    program per head (pack 1: 8 per sequence) or per KV head with its 4
    query heads packed into its rows (pack 4: 2 per sequence). Per visited
    tile: 2 x 16 x 32 x (E + F) tensor flops and 16 x 32 + 16 exponentials
    (the scores and the running max's rescale); the epilogue divides each
    of the 16 rows' 64 features once. Either way every program runs in one
    wave, and the longest walks 7 key tiles of the same shape: the same time."""
    c = ei.parse(GQA_KEY_PADDING, name="gqa-key-padding")
    form = recognise(c)
    env = resolve(c, dict(B=2, H=8, G=4, M=256, P=1, E=64, F=64))
    valid = np.zeros((2, 256), np.int32)
    valid[0, :100] = valid[1, :200] = 1
    got = {}
    for pack, heads in ((1, 8), (4, 2)):
        p = predict_fused(form, GPUMapping(16, 32, 4, 2, 1, pack), H100, env, inputs={"VALID": valid})
        full, partial, empty = heads * (3 + 6), heads * (1 + 1), heads * (4 + 1)
        assert (p.parts["tiles_full"], p.parts["tiles_partial"], p.parts["tiles_skipped"]) == (full, partial, empty)
        assert p.parts["programs"] == 2 * heads
        assert p.work["tensor_flops"] == (full + partial) * 2 * 16 * 32 * 128
        assert p.work["sfu_ops"] == (full + partial) * (16 * 32 + 16) + 2 * 8 * 64
        assert p.work["fp32_ops"] >= (full + partial) * 16 * 32 * 2     # at least a max and an add per score
        assert p.flops == 8 * (100 + 200) * 2 * (64 + 64)     # 8 heads keep 100 keys, 8 heads 200
        got[pack] = p
    assert got[4].time_s == pytest.approx(got[1].time_s, rel=0.05)
    assert got[4].hbm_bytes < got[1].hbm_bytes          # K and V read once per KV head, not per query head


def test_a_chunked_kernels_bytes_and_time_by_hand():
    """Non-causal linear attention, B x H = 6 programs, chunks of 32: the
    walk over m loads per chunk a K tile (E = 20 padded to 32) and a V tile
    (F = 40 padded to 64), 7 chunks for 200 keys; the walk over p a Q tile
    per chunk, 4 chunks for 100 queries; 2 bytes each; the output once.
    The kernel is not memory-bound here, so its time is the programs'
    schedule and one launch."""
    c = library.load("linear-attention")
    env = resolve(c, dict(B=2, H=3, M=200, P=100, E=20, F=40))
    program = chunk_program(recognise_chunked(c, env), env, 32)
    m = GPUMapping(64, 32, dtype="bf16")
    per_program = (7 * (32 * 32 + 64 * 32) + 4 * 32 * 32) * 2
    assert chunk_traffic(program, m, env) == (per_program, (32 * 32 + 64 * 32) * 2)
    pred = predict_chunked(program, m, H100, env)
    assert pred.kind == "chunked" and pred.parts["programs"] == 6
    assert pred.hbm_bytes == pred.work["hbm_bytes"] == 6 * per_program + 2 * 3 * 100 * 40 * 2
    q = pred.parts
    assert q["hbm_s"] < q["schedule_s"]
    assert q["launch_s"] == pytest.approx(H100.efficiency["launch_us"] * 1e-6)
    assert pred.time_s == pytest.approx(q["schedule_s"] + q["launch_s"] + q["hoisted_s"], rel=1e-12)
    # useful flops: the dots at the ranks' extents (E = 20, F = 40), each chunk of 32 tokens whole
    assert pred.flops == 6 * (7 * 2 * 20 * 40 * 32 + 4 * 2 * 32 * 40 * 20)
    assert pred.peak_flops == H100.tensor_peak("bf16")
    assert pred.fraction_of_peak == pytest.approx(pred.flops / pred.time_s / H100.tensor_peak("bf16"))
    assert q["sfu_s"] == pytest.approx(pred.work["sfu_ops"] / H100.sfu_ops_per_s)
    assert q["hbm_s"] == pytest.approx(pred.hbm_bytes / H100.bandwidth)


@pytest.mark.parametrize("latency_ns", [500.0, 1000.0])
def test_a_chunked_program_streams_its_chunks_at_its_stages_per_latency(latency_ns):
    """The same kernel at a memory latency L: a program keeps `stages` = 2
    chunks in flight, so it streams its 51,200 bytes at 2 x 6,144 bytes
    per L, and waits two round trips (its first load, its last store): with
    its six programs in one wave, the schedule is L x (51,200 / 12,288 + 2)."""
    c = library.load("linear-attention")
    env = resolve(c, dict(B=2, H=3, M=200, P=100, E=20, F=40))
    program = chunk_program(recognise_chunked(c, env), env, 32)
    m = GPUMapping(64, 32, dtype="bf16")
    assert m.stages == 2
    pred = predict_chunked(program, m, H100.with_efficiency(latency_ns=latency_ns), env)
    assert pred.parts["schedule_s"] == pytest.approx(latency_ns * 1e-9 * (51200 / (2 * 6144) + 2), rel=1e-12)


def test_hoisted_integer_work_is_charged_on_the_alu():
    """An Einsum hoisted before a kernel that shifts and masks an integer
    tensor: two integer operations per point, no SFU work, charged at the
    ALU rate; its input and its result pass through HBM once each way."""
    c = ei.parse("rank B, M\ninput A[B, M]: i32\nX[b, m] = (A[b, m] >> 1) & 3\n", name="bits")
    env = dict(B=4, M=100)
    parts, work = Counter(), Counter()
    t, nbytes = _hoisted_cost(c, c.einsums, GPUMapping(64, 64, dtype="bf16"), H100, env, parts, work)
    assert work == Counter(tensor_flops=0.0, sfu_ops=0.0, fp32_ops=2 * 400)
    assert t == parts["hoisted_s"] == pytest.approx(800 / H100.fp32_ops_per_s)
    assert nbytes == 2 * (400 + 400) * 2


def test_the_prediction_as_a_dictionary():
    f = recognise(library.load("cab-cross"))
    env = resolve(f.cascade, dict(B=1, H=2, M=1024, P=512, E=64, F=64))
    p = predict_fused(f, GPUMapping(64, 64, 4, 2, 1), H100, env)
    d = p.as_dict()
    assert d == {"kind": "fused", "time_s": p.time_s, "tflops": p.flops / p.time_s / 1e12,
                 "fraction_of_peak": p.flops / p.time_s / p.peak_flops, "binding": p.binding,
                 "hbm_bytes": p.hbm_bytes, "flops": p.flops, "mapping": str(p.mapping), "kernel_class": "triton",
                 "parts": p.parts, "notes": p.notes}
    assert p.flops == 2 * 2 * 512 * 1024 * (64 + 64)          # every (query, key) point kept: 2 (E + F) each


def test_a_single_wave_pays_its_round_trips_and_program_cycles_once():
    """Cross attention without a mask, 2 heads x 4 row tiles = 8 equal
    programs, fewer than the SMs: each alone on its SM, so the schedule's
    fixed part is one program's fixed cycles and its two memory round
    trips (its first load and last store)."""
    f = recognise(library.load("cab-cross"))
    env = resolve(f.cascade, dict(B=1, H=2, M=1024, P=512, E=64, F=64))
    p = predict_fused(f, GPUMapping(128, 64, 4, 2, 1), H100, env)
    assert p.parts["programs"] == 8 < H100.sms
    want = 2 * H100.efficiency["latency_ns"] * 1e-9 + H100.efficiency["program_cycles"] / H100.clock_hz
    assert p.parts["fixed_s"] == pytest.approx(want, rel=1e-9)


def test_the_unfused_kernels_of_equal_head_dimensions_take_equal_time():
    """With E = F, QK^T (2 n E flops; Q, K in, the scores out) and PV (2 n F
    flops; P, V in, the output out) move and compute the same: equal times."""
    f = recognise(library.load("cab-cross"))
    env = resolve(f.cascade, dict(B=1, H=2, M=1024, P=512, E=64, F=64))
    p = predict_unfused(f, H100, env)
    assert set(p.parts) == {"qk_s", "softmax_s", "pv_s"}
    assert p.parts["qk_s"] == pytest.approx(p.parts["pv_s"], rel=1e-12)
    assert p.time_s == pytest.approx(sum(p.parts.values()), rel=1e-12)


def test_linearised_decode_without_a_query_rank_updates_the_state_once():
    """The `decode` design has no query rank: one row per head, which reads
    and writes the E x F state (fp32) and its q, k, v, o vectors once."""
    from simulator.gpu import predict_linear_chunked
    f = recognise(library.load("decode"))
    assert f.query is None
    env = resolve(f.cascade, dict(B=2, H=4, M=512, E=64, F=32))
    p = predict_linear_chunked(env, f, H100)
    heads = 2 * 4
    assert (p.flops, p.hbm_bytes) == (heads * 4.0 * 64 * 32, heads * ((2 * 64 + 2 * 32) * 2 + 2 * 64 * 32 * 4))


def test_a_hoisted_projection_runs_as_a_gemm_before_the_kernel():
    """gated-attention's gate G = X . WG (B x H x F x P x D multiply-adds)
    reads no score, so it is hoisted before the kernel: charged as a GEMM,
    2 flops per multiply-add at the GEMM efficiency, nothing on the vector
    units."""
    f = recognise(library.load("gated-attention"))
    assert [e.name for e in f.hoisted] == ["G"]
    env = resolve(f.cascade, dict(B=1, H=2, M=256, P=128, E=64, F=64, D=96))
    p = predict_fused(f, GPUMapping(64, 64, 4, 2, 1), H100, env)
    macs = 1 * 2 * 64 * 128 * 96
    assert p.parts["hoisted_s"] == pytest.approx(
        2.0 * macs / (H100.efficiency["gemm_tensor"] * H100.tensor_peak("bf16")), rel=1e-12)


LSE = """rank B, H, M, P, E
input Q[B, H, E, P]: f16
input K[B, H, E, M]: f16
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]
GM[b, h, p] = max[m] QK[b, h, m, p]
SD[b, h, p] = exp(QK[b, h, m, p] - GM[b, h, p])
L[b, h, p] = GM[b, h, p] + log(SD[b, h, p])
"""


def test_a_log_sum_exp_kernels_tile_work_by_hand():
    """The log-sum-exp of each query's scores, no value product: per
    64 x 32 tile each score is compared into the running max, has the max
    subtracted, is exponentiated and added into the sum (3 fp32 operations
    and 1 exp per point), and each row rescales its sum when the max moves
    (an exp per row); one 64 x 32 x 64 dot."""
    from einsum_ir.analysis.tile_program import tile_program
    from simulator.gpu import tile_work
    c = ei.parse(LSE, name="lse")
    f = recognise(c)
    assert f.feature is None
    env = resolve(c, dict(B=1, H=2, M=256, P=128, E=64))
    w = tile_work(tile_program(f), 0, GPUMapping(64, 32, 4, 2, 1), env)
    assert (w.tensor_flops, w.sfu_full, w.fp32_full, w.row_sfu) == (2 * 64 * 32 * 64, 64 * 32, 3 * 64 * 32, 64)


def test_without_the_masks_values_every_kept_tile_is_partial_and_the_notes_say_so():
    """The key-padding decode with no values for VALID: every one of a
    program's 256 / 32 = 8 key tiles is counted visited and partial (an
    upper bound), which the note names; the fixed cost per program is most
    of so short a kernel, which the second note states with its figures.
    Two mask tensors without values: 'their'."""
    c = ei.parse(GQA_KEY_PADDING, name="gqa-key-padding")
    env = resolve(c, dict(B=2, H=8, G=4, M=256, P=1, E=64, F=64))
    p = predict_fused(recognise(c), GPUMapping(16, 32, 4, 2, 1, 4), H100, env)
    assert (p.parts["tiles_full"], p.parts["tiles_partial"], p.parts["tiles_skipped"]) == (0, 4 * 8, 0)
    bound = ("without its values every key tile the index-only conditions keep is counted as visited and partial, "
             "an upper bound; give the values (inputs=, --inputs FILE.npz) for the block table the kernel builds")
    assert p.notes == [
        f"the mask reads VALID: {bound}",
        f"each program visits 8.0 key tiles on average; what each pays outside them (program_cycles and two "
        f"memory round trips, fitted to published short-sequence measurements) is {p.parts['fixed_s'] * 1e6:,.1f} "
        f"of the {p.time_s * 1e6:,.1f} us: longer rows of visited tiles (longer sequences, documents or windows) "
        f"amortise it"]
    assert p.parts["fixed_s"] >= 0.2 * p.time_s
    assert predict_unfused(recognise(c), H100, env).notes == [f"the mask reads VALID: {bound}"]
    two = ei.parse(GQA_KEY_PADDING.replace("input VALID[B, M]: i32", "input VALID[B, M]: i32\ninput KEEP[B, M]: i32")
                   .replace("where VALID[b, m] > 0", "where VALID[b, m] > 0 and KEEP[b, m] > 0"), name="two-masks")
    got = predict_fused(recognise(two), GPUMapping(16, 32, 4, 2, 1, 4), H100, env).notes[0]
    assert got == "the mask reads KEEP, VALID: " + bound.replace("its values", "their values")


def test_a_long_kernel_has_no_fixed_cost_note_and_a_hoisted_tensor_is_named():
    """At 8192 keys the per-program cost is a small part: no note. The
    hoisted gate G[B, H, F, P] = 1 x 2 x 64 x 128 = 16,384 elements, 64 KiB
    in fp32, is named with its size."""
    f = recognise(library.load("gated-attention"))
    env = resolve(f.cascade, dict(B=1, H=2, M=8192, P=128, E=64, F=64, D=96))
    p = predict_fused(f, GPUMapping(64, 64, 4, 2, 1), H100, env)
    assert p.notes == ["materialised before the kernel: G[B, H, F, P], 16,384 elements (0.1 MiB fp32), charged "
                       "as hoisted work and traffic"]


TWO_SCORES = """rank B, H, M, P, E, F
input Q[B, H, E, P]: f16
input K[B, H, E, M]: f16
input R[B, H, E, P]: f16
input W[B, H, E, M]: f16
input V[B, H, F, M]: f16
S1[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]
S2[b, h, m, p] = R[b, h, e, p] * W[b, h, e, m]
T[b, h, m, p] = S1[b, h, m, p] + S2[b, h, m, p]
GM[b, h, p] = max[m] T[b, h, m, p]
SN[b, h, m, p] = exp(T[b, h, m, p] - GM[b, h, p])
SD[b, h, p] = SN[b, h, m, p]
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m]
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]
"""


@pytest.mark.parametrize("e", [64, 1024])
def test_two_score_gemms_unfused_cost_twice_one(e):
    """Scores summed from two contractions: the unfused QK^T step runs two
    GEMMs, each with the flops and bytes of cross attention's one, in one
    launch: twice its time less one launch, whether memory-bound (E = 64)
    or compute-bound (E = 1024)."""
    two = recognise(ei.parse(TWO_SCORES, name="two-scores"))
    one = recognise(library.load("cab-cross"))
    assert len(two.scores) == 2
    shapes = dict(B=1, H=2, M=4096, P=4096, E=e, F=64)
    t2 = predict_unfused(two, H100, resolve(two.cascade, shapes)).parts["qk_s"]
    t1 = predict_unfused(one, H100, resolve(one.cascade, shapes)).parts["qk_s"]
    launch = H100.efficiency["launch_us"] * 1e-6
    assert t2 - launch == pytest.approx(2 * (t1 - launch), rel=1e-12)


@pytest.mark.parametrize("warps", [4, 8, 16])
def test_a_chunked_kernels_blocks_per_sm_take_the_tightest_limit(warps):
    """Blocks per SM: the register file over registers x threads, the
    thread limit over threads, the block limit. On H100 (64 K registers,
    2,048 threads) the registers bind (every thread holds more than 32);
    with a register file 16 times larger the threads do: 2048 / (32 x warps)."""
    import dataclasses
    from simulator.gpu import _chunk_registers
    c = library.load("linear-attention")
    env = resolve(c, dict(B=2, H=3, M=64, P=64, E=16, F=16))
    program = chunk_program(recognise_chunked(c, env), env, 16)
    m = GPUMapping(64, 16, warps, dtype="bf16")
    regs, threads = _chunk_registers(program, m), 32 * warps
    assert regs > 32
    assert predict_chunked(program, m, H100, env).parts["blocks_per_sm"] == min(65536 // (regs * threads), 32)
    big = dataclasses.replace(H100, registers_per_sm=16 * 65536)
    assert predict_chunked(program, m, big, env).parts["blocks_per_sm"] == 2048 // threads


def test_a_normalisers_chain_is_charged_once_per_row_per_key_tile(monkeypatch):
    """sink-logit's normaliser GM = max(LM, SINK[h]) is recomputed from the
    running max at every key tile: one max per row per tile, 64 rows x 40
    visited tiles (causal, 256 keys in 64 x 32 tiles: 4 row tiles visit 2,
    4, 6 and 8 key tiles, 2 heads). Without the chain the model charges
    exactly that many fewer fp32 operations and nothing else."""
    import simulator.gpu as G
    f = recognise(library.load("sink-logit"))
    env = resolve(f.cascade, dict(B=1, H=2, P=256, E=64, F=64))
    m = GPUMapping(64, 32, 4, 2, 1)
    with_chain = predict_fused(f, m, H100, env)
    assert with_chain.parts["tiles_full"] + with_chain.parts["tiles_partial"] == 2 * (2 + 4 + 6 + 8)
    monkeypatch.setattr(G, "chain_work", lambda pp: Counter())
    without = predict_fused(f, m, H100, env)
    assert with_chain.work["fp32_ops"] - without.work["fp32_ops"] == 64 * 40
    assert with_chain.work["sfu_ops"] == without.work["sfu_ops"]


@pytest.mark.parametrize("name", ["cab-cross", "attention-3pass"])
def test_the_epilogue_runs_once_in_the_last_passs_programs(monkeypatch, name):
    """Eight equal programs, one wave, each alone on its SM: a second of
    epilogue per program makes the kernel exactly a second longer than
    none, once however many passes it has."""
    import simulator.gpu as G
    f = recognise(library.load(name))
    env = resolve(f.cascade, dict(B=1, H=2, M=1024, P=512, E=64, F=64))
    m = GPUMapping(128, 64, 4, 2, 1)
    times = {}
    for seconds in (0.0, 1.0):
        monkeypatch.setattr(G, "_epilogue_s", lambda *a, s=seconds: s)
        p = predict_fused(f, m, H100, env)
        assert p.parts["programs"] == 8
        times[seconds] = p.time_s
    assert times[1.0] - times[0.0] == pytest.approx(1.0, rel=1e-9)


def test_key_tiles_come_from_hbm_once_per_head_per_wave_while_l2_holds_them():
    """Cross attention, 1024 keys (K and V: 1024 x (64 + 64) x 2 bytes =
    256 KiB per head), 64-row programs, 5 blocks per SM on 132 SMs (660
    slots). Each program reads its Q tile once and writes its output.
    - 2 heads x 512 queries: 16 programs, one wave: K and V once per head;
    - an L2 smaller than the tiles all slots have in flight (a byte, 10
      MB): every program reads every key tile (16 x 16 tiles of 64 x 128 x
      2 bytes);
    - 1 head x 65,536 queries: 1024 programs, two waves: K and V twice;
      split in two, 2048 programs in four waves: K and V four times."""
    import dataclasses
    f = recognise(library.load("cab-cross"))
    m = GPUMapping(64, 64, 4, 2, 1)
    kv_head = 1024 * 128 * 2
    env = resolve(f.cascade, dict(B=1, H=2, M=1024, P=512, E=64, F=64))
    q_and_out = 2 * (2 * 512 * 64 * 2)
    p = predict_fused(f, m, H100, env)
    assert (p.parts["programs"], p.parts["blocks_per_sm"]) == (16, 5)
    assert p.hbm_bytes == 2 * kv_head + q_and_out
    assert predict_fused(f, m, dataclasses.replace(H100, l2_bytes=1), env).hbm_bytes == \
        16 * 16 * (64 * 128 * 2) + q_and_out
    # what all 660 slots have in flight, 2 stages of 16 KiB each, is 21.6 MB: an L2 of 10 MB holds less
    assert predict_fused(f, m, dataclasses.replace(H100, l2_bytes=10e6), env).hbm_bytes == \
        16 * 16 * (64 * 128 * 2) + q_and_out
    assert predict_fused(f, m, dataclasses.replace(H100, l2_bytes=22e6), env).hbm_bytes == 2 * kv_head + q_and_out
    env = resolve(f.cascade, dict(B=1, H=1, M=1024, P=65536, E=64, F=64))
    p = predict_fused(f, m, H100, env)
    assert (p.parts["programs"], p.parts["blocks_per_sm"]) == (1024, 5)
    assert p.hbm_bytes == 2 * kv_head + 2 * (65536 * 64 * 2)
    # split in two along the keys: 2048 programs, four waves, K and V four times; each program stores 64 rows
    # of its max, sum and normaliser and 64 x 64 accumulators (fp32), written and read back
    p = predict_fused(f, m.with_changes(splits=2), H100, env)
    assert p.parts["programs"] == 2048
    assert p.hbm_bytes == 4 * kv_head + 2 * (65536 * 64 * 2) + 2 * 2048 * 64 * (3 + 64) * 4
    # 1000 keys: each row tile's last key tile is partial, masked by its bounds, not by a table: no table bytes
    env = resolve(f.cascade, dict(B=1, H=2, M=1000, P=512, E=64, F=64))
    p = predict_fused(f, m, H100, env)
    assert p.parts["tiles_partial"] == 16 and p.hbm_bytes == 2 * (1000 * 128 * 2) + q_and_out


def test_a_paged_caches_key_tile_is_its_keys_rows_once():
    """paged-attention reads K and V through the block table:
    KC[BT[b, m // BS], h / G, e, m % BS]. The key picks a block and a slot
    (two ranks), but a key tile of 32 keys still loads 32 rows of E = 64
    (not 32 x 32): K and V 2 x 32 x 64 x 2 bytes, and the table's entry for
    each key at its declared 4 bytes; all 1024 keys of a head likewise.
    Per program, once: the query's row of Q and the sequence's length LEN
    (i32, 4 bytes). Its prediction reads what a contiguous GQA decode reads,
    plus the table and the lengths."""
    from simulator.gpu import traffic
    f = recognise(library.load("paged-attention"))
    env = resolve(f.cascade, dict(B=2, H=8, G=4, M=1024, E=64, F=64, NP=128, BS=16))
    t = traffic(f, 0, GPUMapping(16, 32, 4, 2), env)
    assert (t.key_tile, t.pair_tile) == (2 * 32 * 64 * 2 + 32 * 4, 0)
    assert t.key_head == 2 * 1024 * 64 * 2 + 1024 * 4
    assert t.program == 64 * 2 + 4


def test_a_relative_bias_band_and_element_widths():
    """relative-bias reads T[h, p - m + M - 1]: a 64-query x 32-key tile
    touches the 64 + 32 - 1 diagonals of the band. Integer and bool tensors
    load at their declared width, any other at the mapping's."""
    from simulator.gpu import element_bytes, traffic
    f = recognise(library.load("relative-bias"))
    env = resolve(f.cascade, dict(B=1, H=2, M=256, P=256, E=64, F=64))
    assert traffic(f, 0, GPUMapping(64, 32, 4, 2), env).pair_tile == (64 + 32 - 1) * 2
    c = ei.parse("rank M\ninput X[M]: f32\ninput I[M]: i32\ninput J[M]: i8\ninput K[M]: bool\n"
                 "Y[m] = X[m] + I[m] + J[m] where K[m]\n", name="widths")
    assert [element_bytes(c, t, "bf16") for t in "XIJK"] == [2, 4, 1, 1]
    assert [element_bytes(c, t, "f32") for t in "XIJK"] == [4, 4, 1, 1]


L1_SCORE = """rank B, H, M, P, E, F
input Q[B, H, E, P]: f16
input K[B, H, E, M]: f16
input V[B, H, F, M]: f16
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]
L1[b, h, m, p] = abs(Q[b, h, e, p] - K[b, h, e, m])
S[b, h, m, p] = QK[b, h, m, p] - L1[b, h, m, p]
GM[b, h, p] = max[m] S[b, h, m, p]
SN[b, h, m, p] = exp(S[b, h, m, p] - GM[b, h, p])
SD[b, h, p] = SN[b, h, m, p]
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m]
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]
"""


def test_a_reduction_inside_the_tile_walk_is_noted_with_its_steps():
    """An L1 distance between query and key, summed over the E = 64 head
    dimensions, is no dot product: the kernel loops over e inside each
    tile (64 steps, vector work), which the prediction's note says."""
    c = ei.parse(L1_SCORE, name="l1-score")
    env = resolve(c, dict(B=1, H=2, M=256, P=128, E=64, F=64))
    notes = predict_fused(recognise(c), GPUMapping(64, 32, 4, 2, 1), H100, env).notes
    assert "computed in the tile walk: L1, a sum over e (64 steps per tile, vector work)" in notes


@pytest.mark.parametrize("warps", [1, 2, 4])
def test_a_chunked_kernels_registers_by_hand(warps):
    """Linear attention, E = F = 16 in chunks of 16: the states KV (16 x 16)
    and KS (16) live across the walk, 272 elements; the largest step tile
    is 16 x 16, about two of which are live at a time: 784 registers'
    worth over 32 x warps threads, plus the kernel's fixed 32."""
    from simulator.gpu import _chunk_registers
    c = library.load("linear-attention")
    env = resolve(c, dict(B=2, H=3, M=64, P=64, E=16, F=16))
    program = chunk_program(recognise_chunked(c, env), env, 16)
    assert _chunk_registers(program, GPUMapping(64, 16, warps, dtype="bf16")) == -(-(272 + 2 * 256) // (32 * warps)) + 32


def test_the_unfused_kernels_binding_weighs_all_three_kernels():
    """Cross attention unfused, 2 heads x 4096 x 4096 (n = 33.6 M scores),
    E = F = e, bf16 on H100: compute is 2 n (E + F) flops at the GEMM
    efficiency plus the softmax's n exponentials and 4 n fp32 operations;
    memory is Q, K, S (QK^T), S in and P out (softmax), P, V, O (PV). HBM
    binds where memory outlasts compute. At the first e where compute
    outlasts memory by less than the softmax's compute, the softmax decides:
    tensor cores (at the preset's constants, about e = 544)."""
    f = recognise(library.load("cab-cross"))
    n, rows, cols, b = 2 * 4096 * 4096, 4096, 4096, 2
    softmax = n / H100.sfu_ops_per_s + 4 * n / H100.fp32_ops_per_s

    def hand(e):
        flops = 2 * n * 2 * e / (H100.efficiency["gemm_tensor"] * H100.tensor_peak("bf16"))
        moved = (2 * (rows + cols) * e * b + n * b) + 2 * n * b + (n * b + 2 * (rows + cols) * e * b)
        return flops + softmax, moved / H100.bandwidth

    def binding(e):
        return predict_unfused(f, H100, resolve(f.cascade, dict(B=1, H=2, M=4096, P=4096, E=e, F=e))).binding
    comp, mem = hand(64)
    assert mem > comp and binding(64) == "HBM"
    close = next(e for e in range(64, 8192, 16) if hand(e)[0] - softmax < hand(e)[1] < hand(e)[0])
    assert binding(close) == "tensor cores"


@pytest.mark.parametrize("e,f,memory", [(64, 32, 1), (1024, 512, 1), (64, 32, 100)])
def test_the_unfused_kernels_by_hand(e, f, memory):
    """Cross attention as QK^T, a softmax kernel and PV, 2 heads x 2048
    queries x 4096 keys (n = 16.8 M scores), bf16, the scores and the
    probabilities through HBM at 2 bytes. Each kernel takes the larger of
    its compute and its bytes over the bandwidth, plus a launch:
    - QK^T: 2 n E flops at the GEMM efficiency; Q, K and S moved;
    - softmax: n exponentials and 4 n fp32 operations; S in, P out;
    - PV: 2 n F flops; P, V in, O out.
    Useful flops: 2 (E + F) per (query, key). On H100 the softmax is
    always memory-bound; with 100 times its bandwidth its compute binds.
    """
    import dataclasses
    gpu = dataclasses.replace(H100, hbm_bytes_per_s=H100.hbm_bytes_per_s * memory,
                              measured={k: v * memory if k == "hbm_bandwidth" else v for k, v in H100.measured.items()})
    assert gpu.bandwidth == H100.bandwidth * memory
    fm = recognise(library.load("cab-cross"))
    env = resolve(fm.cascade, dict(B=1, H=2, M=4096, P=2048, E=e, F=f))
    heads, rows, cols, b = 2, 2048, 4096, 2
    n = heads * rows * cols
    gemm = gpu.efficiency["gemm_tensor"] * gpu.tensor_peak("bf16")
    launch, bw = gpu.efficiency["launch_us"] * 1e-6, gpu.bandwidth
    qk = (2 * n * e / gemm, (heads * (rows + cols) * e + n) * b / bw)
    softmax = (n / gpu.sfu_ops_per_s + 4 * n / gpu.fp32_ops_per_s, 2 * n * b / bw)
    pv = (2 * n * f / gemm, (n + heads * rows * f + heads * cols * f) * b / bw)
    p = predict_unfused(fm, gpu, env)
    assert (softmax[0] > softmax[1]) == (memory == 100)
    assert p.parts == pytest.approx({"qk_s": max(qk) + launch, "softmax_s": max(softmax) + launch,
                                     "pv_s": max(pv) + launch}, rel=1e-12)
    assert p.time_s == pytest.approx(sum(max(k) for k in (qk, softmax, pv)) + 3 * launch, rel=1e-12)
    assert p.hbm_bytes == ((heads * (rows + cols) * e + n) + 2 * n + (n + heads * rows * f + heads * cols * f)) * b
    assert p.flops == 2 * (e + f) * n
    assert p.binding == ("HBM" if qk[1] + softmax[1] + pv[1] > qk[0] + softmax[0] + pv[0] else "tensor cores")


def test_partial_tiles_share_the_sm_and_the_pipeline_as_full_ones(monkeypatch):
    """A causal kernel's full and partial tiles run in the same programs:
    both tile times are taken with the same streams, blocks per SM and
    stages (they differ only in the mask's work)."""
    import simulator.gpu as G
    calls = []
    real = G._tile_times

    def spy(*args, **kw):
        calls.append(args[8:])
        return real(*args, **kw)
    monkeypatch.setattr(G, "_tile_times", spy)
    f = recognise(library.load("cab-self-causal"))
    env = resolve(f.cascade, dict(B=1, H=2, P=1024, E=64, F=64))
    p = predict_fused(f, GPUMapping(64, 64, 4, 3, 1), H100, env)
    full, partial = calls                                  # (streams, blocks per SM, stages)
    assert full == partial == (1, p.parts["blocks_per_sm"], 3)     # wgmma: 4 warps are one stream


def test_an_in_tile_reductions_term_runs_once_per_reduced_coordinate():
    """The L1 score sums |Q - K| over E = 64 inside each tile: per point, 64
    subtracts, 64 absolute values and 64 adds, beside the softmax's own
    (the running max, the score less the max, its exp, the sum) and QK - L1."""
    from einsum_ir.analysis.tile_program import POINT, tile_program
    from simulator.gpu import _pass_ops
    c = ei.parse(L1_SCORE, name="l1-score")
    form = recognise(c)
    env = resolve(c, dict(B=1, H=2, M=256, P=128, E=64, F=64))
    per, _, _ = _pass_ops(tile_program(form).passes[0], form, env)
    assert per == {("add", POINT): 64 + 64 + 1 + 2, ("abs", POINT): 64, ("max", POINT): 1, ("exp", POINT): 1,
                   ("convert", POINT): 1}

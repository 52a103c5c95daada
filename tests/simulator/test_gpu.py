"""The GPU model's invariants, hand-checkable cases, and its agreement with
the published FlashAttention-2 figures (benchmarks/published)."""
from pathlib import Path

import numpy as np
import dataclasses

import pytest
from hypothesis import given, settings, strategies as st

import einsum_ir as ei
from einsum_ir import library
from einsum_ir.analysis.fused import recognise
from einsum_ir.ops import DTYPE_BYTES
from einsum_ir.shapes import resolve
from hw_models import HardwareError, load_gpu
from mappers.gpu_mapping import GPUMapping, footprint
from mappers.gpu_search import shortlist
from simulator.calibrate import fit, median_abs, read_results, validate
from simulator.gpu import predict_fused, predict_unfused

H100 = load_gpu("h100")


def _form(name):
    return recognise(library.load(name))


def _floors(form, env, gpu, dtype="bf16"):
    """Compute floor: useful FLOPs at the tensor peak; bandwidth floor: Q, K,
    V and O read or written once at the HBM rate."""
    b = DTYPE_BYTES[dtype]
    heads = env["B"] * env["H"]
    rows = env.get("P", 1)
    cols = env["M"]
    kvh = env["B"] * env.get("KH", env["H"])
    compulsory = (heads * rows * (env["E"] + env["F"]) + kvh * cols * (env["E"] + env["F"])) * b
    return compulsory / gpu.bandwidth


@settings(max_examples=25, deadline=None)
@given(design=st.sampled_from(["cab-self", "cab-self-causal", "sliding-window", "gqa", "alibi"]),
       p=st.integers(1, 6).map(lambda k: 64 * k), b=st.integers(1, 3), h=st.sampled_from([2, 4, 8]),
       d=st.sampled_from([32, 64, 128]), bm=st.sampled_from([16, 64, 128]), bn=st.sampled_from([32, 64, 128]),
       warps=st.sampled_from([4, 8]), splits=st.sampled_from([1, 2, 4]))
def test_time_never_below_the_compute_or_bandwidth_floor(design, p, b, h, d, bm, bn, warps, splits):
    form = _form(design)
    shapes = dict(B=b, H=h, P=p, E=d, F=d)
    if design == "gqa":
        shapes.update(M=p, G=2)
    if design == "sliding-window":
        shapes["W"] = 100
    env = resolve(form.cascade, shapes)
    try:
        pred = predict_fused(form, GPUMapping(bm, bn, warps, 2, splits), H100, env)
    except HardwareError:
        return
    assert pred.time_s >= pred.flops / H100.tensor_peak("bf16")
    assert pred.time_s >= _floors(form, env, H100)
    assert pred.hbm_bytes >= _floors(form, env, H100) * H100.bandwidth * 0.999


def test_skipping_empty_tiles_is_never_slower_and_counts_them():
    form = _form("sliding-window")
    env = resolve(form.cascade, dict(B=1, H=8, P=2048, E=64, F=64, W=256))
    m = GPUMapping(64, 64)
    skip = predict_fused(form, m, H100, env)
    visit = predict_fused(form, m, H100, env, skip_empty=False)
    assert skip.time_s < visit.time_s
    # every (query tile, key tile) pair is full, partial or skipped: 32 x 32 per head
    assert skip.parts["tiles_full"] + skip.parts["tiles_partial"] + skip.parts["tiles_skipped"] == 8 * 32 * 32
    # a window of 256 keys touches at most 5 key tiles of 64 per query tile of 64
    assert skip.parts["tiles_full"] + skip.parts["tiles_partial"] <= 8 * 32 * 5


def test_causal_costs_about_half_of_full_at_long_lengths():
    """With many programs per slot (the triangle's uneven programs even out)."""
    env = dict(B=4, H=16, P=8192, E=128, F=128)
    m = GPUMapping(128, 64)
    full = predict_fused(_form("cab-self"), m, H100, resolve(_form("cab-self").cascade, env))
    causal = predict_fused(_form("cab-self-causal"), m, H100, resolve(_form("cab-self-causal").cascade, env))
    assert 0.45 < causal.time_s / full.time_s < 0.62
    assert causal.flops / full.flops == pytest.approx(0.5, rel=0.01)


def test_programs_are_charged_only_for_the_co_residents_they_have():
    """One row tile per head, identical compute-bound programs: up to one per
    SM each runs alone (flat time); past the SMs two share an SM (slower,
    though less than twice: each hides part of its softmax under the
    other's MMAs); past SMs x blocks per SM a partial wave follows."""
    form = _form("gqa")
    m = GPUMapping(128, 64, 4, 2)
    env = lambda h: resolve(form.cascade, dict(B=1, H=h, G=1, P=128, M=4096, E=64, F=64))
    per = footprint(form, m, env(1), H100).blocks_per_sm
    assert per >= 2
    sms, slots = H100.sms, H100.sms * per
    fast_hbm = dataclasses.replace(H100, hbm_bytes_per_s=1e16, measured={})     # compute-bound at every count
    t = {h: predict_fused(form, m, fast_hbm, env(h)).time_s for h in (1, sms, sms + 1, slots, slots + 1)}
    assert t[sms] == pytest.approx(t[1], rel=1e-6)
    assert t[sms + 1] > 1.3 * t[sms]
    assert 0.6 * per * t[sms] < t[slots] < per * t[sms]
    assert t[slots + 1] > t[slots] + 0.5 * t[1]


def test_a_mapping_over_the_shared_memory_limit_is_rejected_with_numbers():
    form = _form("cab-self")
    env = resolve(form.cascade, dict(B=1, H=1, P=1024, E=256, F=256))
    with pytest.raises(HardwareError, match=r"KiB of shared memory.*allows 227 KiB"):
        footprint(form, GPUMapping(128, 128, 8, 4), env, H100)
    with pytest.raises(HardwareError, match="registers per thread"):
        footprint(form, GPUMapping(128, 128, 4, 2), resolve(form.cascade, dict(B=1, H=1, P=128, E=128, F=128)),
                  H100)


def test_footprint_by_hand():
    """BLOCK 128 x 64, head dim 128, 2 stages, bf16: Q 128*128*2 = 32 KiB, K/V
    2 * 64 * 256 * 2 = 64 KiB; registers (128*128 + 128*64) / 128 + 32."""
    form = _form("cab-self")
    fp = footprint(form, GPUMapping(128, 64, 4, 2), resolve(form.cascade, dict(B=1, H=1, P=128, E=128, F=128)),
                   H100)
    assert fp.smem_bytes == 96 * 1024
    assert fp.regs_per_thread == (128 * 128 + 128 * 64) // 128 + 32
    assert fp.blocks_per_sm == 2     # 65536 registers / (224 * 128) = 2.28


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("kv", [4096, 65536, 524288])
def test_decode_split_kv_beats_no_split_when_tiles_are_fewer_than_sms(batch, kv):
    form = _form("gqa")
    env = resolve(form.cascade, dict(B=batch, H=32, G=4, P=1, M=kv, E=128, F=128))
    best = shortlist(form, H100, env, top=1)[0]
    assert best.mapping.splits > 1
    programs = batch * 8    # one block per KV head (4 query heads packed)
    assert programs < H100.sms
    nosplit = predict_fused(form, best.mapping.with_changes(splits=1), H100, env)
    assert best.time_s < nosplit.time_s


def test_fused_beats_unfused_for_long_sequences():
    form = _form("cab-self")
    env = resolve(form.cascade, dict(B=1, H=16, P=4096, E=128, F=128))
    assert shortlist(form, H100, env, top=1)[0].time_s < predict_unfused(form, H100, env).time_s


def test_published_flash_attention_2_within_25_percent():
    """The FA2-class mapping with the preset's constants against the
    published H100 figures (bf16, head dims 64/128, causal and not, 512..16K)."""
    cases = read_results(str(Path(__file__).resolve().parents[2] / "benchmarks" / "published" / "h100_attention.csv"),
                         ["flash-attention-2"])
    assert len(cases) == 18
    errors = validate(cases, H100)
    # these 18 points are not in the fit (gpu_measured.csv is), the one clean out-of-sample check of FA2 on
    # H100 (docs/benchmarks.md): median 13.2% before warps and stages had terms of their own, 15.2% with
    # them, 16.8% with the longest-first launch order too; 12.6% (worst 22.1%, non-causal at 512 tokens)
    # with the round trips waited once per wave, the fitted per-program cycles and H100's mma fraction
    # derived from A100's rather than fitted, each refitted (2026-11-29); nearly all predicted too slow
    assert max(abs(e.relative) for e in errors) < 0.25
    assert median_abs(errors) < 0.14


def test_calibration_recovers_a_known_constant(tmp_path):
    """Times generated by the model with fused_tensor = 0.4 are fitted back."""
    truth = H100.with_efficiency(fused_tensor=0.4)
    lines = ["device,kernel,dtype,batch,heads,kv_heads,q_len,kv_len,head_dim,causal,time_s,tflops"]
    from simulator.calibrate import predict_case, Case
    for n, d, c in [(512, 64, 0), (1024, 128, 0), (1024, 128, 1)]:
        row = dict(device="x", kernel="k", dtype="bf16", batch=2, heads=4, kv_heads=4, q_len=n, kv_len=n,
                   head_dim=d, causal=c)
        design = "cab-self-causal" if c else "gqa"
        env = dict(B=2, H=4, P=n, E=d, F=d) if c else dict(B=2, H=4, G=1, P=n, M=n, E=d, F=d)
        t = predict_case(Case(row, design, env, 1.0), truth).time_s
        lines.append(",".join(str(row[k]) for k in row) + f",{t},0")
    path = tmp_path / "r.csv"
    path.write_text("\n".join(lines) + "\n")
    fitted = fit(read_results(path), H100, ("fused_tensor",))
    assert fitted.efficiency["fused_tensor"] == pytest.approx(0.4, abs=0.005)
    assert median_abs(validate(read_results(path), fitted)) < 0.01


def test_the_unfused_kernels_bind_on_hbm_until_the_gemms_outlast_the_score_traffic():
    """Three kernels with the scores through HBM: at head dim 64 the traffic
    binds; at 4096 the two GEMMs' tensor-core time is longer than it."""
    f = recognise(library.load("cab-self"))
    bound = {e: predict_unfused(f, load_gpu("h100"), resolve(f.cascade, dict(B=1, H=1, P=2048, E=e, F=e))).binding
             for e in (64, 4096)}
    assert bound == {64: "HBM", 4096: "tensor cores"}


def test_a_chunked_kernel_holds_its_state_in_registers_and_says_when_it_spills():
    """Linear attention's E x F state lives in registers across the walk:
    at least E F / (32 warps) per thread above the fixed overhead; at
    E = F = 128 with 4 warps that is past 255 and the prediction says the
    kernel spills."""
    from einsum_ir.analysis.chunk_program import chunk_program
    from einsum_ir.analysis.chunked import recognise as recognise_chunked
    from mappers.gpu_mapping import REG_OVERHEAD
    from simulator.gpu import _chunk_registers, predict_chunked
    c = library.load("linear-attention")
    m = GPUMapping(16, 16, 4, 2, dtype="f32")
    for e in (16, 128):
        env = resolve(c, dict(B=1, H=2, M=256, P=256, E=e, F=e))
        program = chunk_program(recognise_chunked(c), env, block_n=16)
        regs = _chunk_registers(program, m)
        assert regs >= REG_OVERHEAD + e * e / (32 * 4)
        spills = [n for n in predict_chunked(program, m, load_gpu("h100"), env).notes if "spills" in n]
        assert spills == ([f"about {regs} registers per thread: the kernel spills (more warps, or smaller chunks)"]
                          if e == 128 else [])


def test_each_per_pair_input_is_loaded_per_key_tile():
    """Dense bias, and the same design with a second bias over (m, p): per
    key tile a program loads BLOCK_M x BLOCK_N of each, 2 bytes an element
    (bf16), so the pair traffic doubles; the key-only K and V tiles stay."""
    from simulator.gpu import traffic
    one = library.path("dense-bias").read_text()
    two = one.replace("input BIAS[B, H, M, P]: f16", "input BIAS[B, H, M, P]: f16\ninput BIAS2[B, H, M, P]: f16") \
        .replace("+ BIAS[b, h, m, p]", "+ BIAS[b, h, m, p] * BIAS2[b, h, m, p]")
    m = GPUMapping(64, 32, 4, 2)
    got = []
    for text in (one, two):
        f = recognise(ei.parse(text))
        env = resolve(f.cascade, dict(B=1, H=2, M=256, P=256, E=64, F=64))
        got.append(traffic(f, 0, m, env))
    assert [t.pair_tile for t in got] == [64 * 32 * 2, 2 * 64 * 32 * 2]
    assert got[0].key_tile == got[1].key_tile


def test_the_work_hoisted_before_a_chunked_kernel_is_charged():
    """A per-head weight computed before the kernel (NL[h], from W[h, e]):
    written with an exp, the prediction's SFU work grows by the H x E
    exponentials the analysis counts, each at its SFU cost."""
    from einsum_ir.analysis.chunk_program import chunk_program
    from einsum_ir.analysis.chunked import recognise as recognise_chunked
    from simulator.gpu import kind_units, predict_chunked
    text = ("rank B, H, E, F\npartition M -> M1, M0\ninput K[B, H, E, M]: f32\ninput V[B, H, F, M]: f32\n"
            "input W[H, E]: f32\nNL[h] = W[h, e] * W[h, e]\n"
            "KDV[b, h, e, f, m1] = K[b, h, e, m1 * M0 + m0] * V[b, h, f, m1 * M0 + m0]\n"
            "KV[b, h, e, f, 0] = 0\nKV[b, h, e, f, m1 + 1] = NL[h] * KV[b, h, e, f, m1] + KDV[b, h, e, f, m1]\n"
            "ST[b, h, e, f] = KV[b, h, e, f, M1] * 2\n")
    shapes, sfu = dict(B=1, H=3, E=16, F=16, M=64, M0=16), []
    for t in (text, text.replace("NL[h] = W[h, e] * W[h, e]", "NL[h] = exp(W[h, e]) * W[h, e]")):
        c = ei.parse(t)
        env = resolve(c, shapes)
        form = recognise_chunked(c)
        assert [e.name for e in form.hoisted] == ["NL"]
        sfu.append(predict_chunked(chunk_program(form, env, block_n=16), GPUMapping(16, 16, dtype="f32"),
                                   load_gpu("h100"), env).work["sfu_ops"])
    assert sfu[1] - sfu[0] == pytest.approx(3 * 16 * kind_units("exp")["sfu"])
    # two hoisted Einsums with an exp each: both charged (3 x 16 exps each)
    two = text.replace("NL[h] = W[h, e] * W[h, e]", "NL[h] = exp(W[h, e]) * W[h, e]\nNG[h] = exp(W[h, e])") \
        .replace("= NL[h] * KV", "= NL[h] * NG[h] * KV")
    c = ei.parse(two)
    env = resolve(c, shapes)
    form = recognise_chunked(c)
    assert sorted(e.name for e in form.hoisted) == ["NG", "NL"]
    pred = predict_chunked(chunk_program(form, env, block_n=16), GPUMapping(16, 16, dtype="f32"), load_gpu("h100"), env)
    assert pred.work["sfu_ops"] - sfu[0] == pytest.approx(2 * 3 * 16 * kind_units("exp")["sfu"])
    assert pred.parts["schedule_s"] > 0          # the programs' makespan, which the binding rule reads


@pytest.mark.parametrize("off", [0, 2])
def test_the_unfused_flops_count_the_points_a_data_mask_keeps(off):
    """Block-sparse attention at B = 2, H = 3 with BM's values: the unfused
    kernels' flops are 2 (E + F) per kept point, over every batch and head
    (all blocks on; or every other key block off: half the points)."""
    f = recognise(library.load("block-sparse"))
    env = resolve(f.cascade, dict(B=2, H=3, P=256, M=256, E=64, F=64, TQ=64, TK=64))
    bm = np.ones((2, 3, 4, 4), dtype=bool)
    if off:
        bm[..., ::off, :] = False
    kept = 2 * 3 * 256 * 256 * (1 - (1 / off if off else 0))
    assert predict_unfused(f, load_gpu("h100"), env, inputs={"BM": bm}).flops == 2 * (64 + 64) * kept


def test_the_unfused_kernels_move_the_score_and_probability_matrices_through_hbm():
    """QK^T writes the scores (n = H P M elements), softmax reads them and
    writes the probabilities, PV reads them with V and writes O; plus Q and
    K: H b ((P + M) E + 4 P M + P F + M F) bytes at b = 2 (bf16), by hand.
    Its report names every figure."""
    f = recognise(library.load("cab-self"))
    h, p_, m_, e, f_ = 2, 512, 512, 64, 32      # self-attention: M = P
    env = resolve(f.cascade, dict(B=1, H=h, P=p_, E=e, F=f_))
    pred = predict_unfused(f, load_gpu("h100"), env)
    assert pred.hbm_bytes == h * 2 * ((p_ + m_) * e + 4 * p_ * m_ + p_ * f_ + m_ * f_)
    d = pred.as_dict()
    assert (d["flops"], d["hbm_bytes"], d["binding"]) == (pred.flops, pred.hbm_bytes, pred.binding)


def test_two_unequal_programs_on_one_sm_share_it_with_each_other_only():
    """Two programs (alone 1 and 2, each 1 when sharing) on one SM with four
    slots: each runs beside the other only, so co = 2 and each takes
    max(alone, 2 x 1) = 2; both start at once: makespan 2 (by hand). A third
    program on a second SM does not add a co-resident to the first."""
    from simulator.gpu import _schedule
    assert _schedule(np.array([1.0, 2.0]), np.array([1.0, 1.0]), 1, 4) == 2.0
    assert _schedule(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 1.0]), 3, 4) == 3.0


def test_the_median_error_of_an_even_count_is_the_mean_of_the_middle_two():
    """|relative errors| 0.1, 0.4, 0.2, 0.3: the median is (0.2 + 0.3) / 2."""
    from types import SimpleNamespace
    from simulator.calibrate import Error

    def err(r):
        return Error(SimpleNamespace(measured_s=1.0), 1.0 + r)
    assert median_abs([err(x) for x in (0.1, -0.4, 0.2, 0.3)]) == pytest.approx(0.25)
    assert median_abs([err(x) for x in (0.1, -0.4, 0.2)]) == pytest.approx(0.2)


def test_launch_binds_when_launches_are_over_half_the_time():
    from collections import Counter
    from simulator.gpu import _binding
    parts = Counter(launch_s=3.0, tensor_s=1.0, hbm_s=0.5)
    assert _binding(parts, ideal=1.0, total=5.0) == "launch"
    assert _binding(Counter(tensor_s=1.0, hbm_s=0.5, launch_s=2.0), ideal=1.0, total=5.0) == "tensor cores"


def test_a_schedule_longer_than_the_ideal_binds_unless_hbm_is_longer_still():
    from collections import Counter
    from simulator.gpu import _binding
    assert _binding(Counter(schedule_s=3.0, tensor_s=1.0, hbm_s=2.0), ideal=1.0, total=3.5) == "occupancy/waves"
    assert _binding(Counter(schedule_s=3.0, tensor_s=1.0, hbm_s=4.0), ideal=1.0, total=4.5) == "HBM"
    assert _binding(Counter(schedule_s=1.1, tensor_s=1.0, hbm_s=0.5), ideal=1.0, total=1.5) == "tensor cores"


def test_a_two_pass_kernel_walks_the_key_tiles_twice():
    """attention-3pass fuses into two passes over the keys (the max, then
    the rest): each program walks 1024 / 64 = 16 key tiles per pass, 32 in
    all, where one-pass cross attention walks 16 (by hand); its makespan
    is that of both passes, more than the one-pass kernel's."""
    m, gpu = GPUMapping(64, 64, 4, 2, 1), load_gpu("h100")
    got = {}
    for name in ("attention-3pass", "cab-cross"):
        f = recognise(library.load(name))
        env = resolve(f.cascade, dict(B=1, H=2, M=1024, P=512, E=64, F=64))
        got[name] = (f.passes, predict_fused(f, m, gpu, env).parts)
    (p3, three), (p1, one) = got["attention-3pass"], got["cab-cross"]
    assert (p3, p1) == (2, 1)
    assert (three["key_tiles_per_program"], one["key_tiles_per_program"]) == (32.0, 16.0)
    assert three["schedule_s"] > one["schedule_s"]


@pytest.mark.parametrize("name", ["attention-3pass", "attention-naive", "clipped-softmax"])
def test_a_multi_pass_kernels_time_is_every_pass_schedule_plus_launches(name):
    """Each pass is its own launch: its time is the larger of its programs'
    schedule and its bytes over the bandwidth, plus a launch. At 4096 keys
    these passes are compute-bound (all passes' HBM time together is under a
    tenth of the schedule), so the kernel's time is the schedules of both
    passes added, the hoisted Einsums and two launches: the parts the
    prediction reports add up to its time."""
    m, gpu = GPUMapping(64, 64, 4, 2, 1), load_gpu("h100")
    f = recognise(library.load(name))
    env = resolve(f.cascade, dict(B=2, H=8, M=4096, P=4096, E=64, F=64))
    pred = predict_fused(f, m, gpu, env)
    q = pred.parts
    assert f.passes == 2
    assert q["launch_s"] == pytest.approx(2 * gpu.efficiency["launch_us"] * 1e-6)
    assert q["hbm_s"] < q["schedule_s"] / 10
    assert pred.time_s == pytest.approx(q["schedule_s"] + q["hoisted_s"] + q["launch_s"], rel=1e-12)


def test_tma_is_charged_as_pointer_loads_and_the_report_says_so():
    f = recognise(library.load("cab-cross"))
    env = resolve(f.cascade, dict(B=1, H=2, M=1024, P=512, E=64, F=64))
    gpu = load_gpu("h100")
    plain = predict_fused(f, GPUMapping(64, 64, 4, 2, 1), gpu, env)
    tma = predict_fused(f, GPUMapping(64, 64, 4, 2, 1, tma=True), gpu, env)
    assert (tma.time_s, tma.hbm_bytes) == (plain.time_s, plain.hbm_bytes)
    added = [n for n in tma.notes if n not in plain.notes]
    assert added == ["K and V through TMA descriptors: charged as the same bytes as pointer loads (no "
                     "measurement yet tells them apart)"]

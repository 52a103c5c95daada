"""The fused kernel's launch order (most key tiles first), the schedule's
memory round trips filled by co-resident programs, and integer work on its
own pipe: each against a hand-derived schedule or rate."""
import numpy as np
import pytest
import torch

import einsum_ir as ei
from codegen.runtime import FusedKernel
from einsum_ir.analysis.tiles import launch_order
from hw_models.gpu import load_gpu
from mappers.gpu_mapping import GPUMapping
from simulator import gpu as G
from einsum_ir.analysis.fused import recognise
from simulator.gpu import _rates, _schedule, kernel_class, predict_fused
from tests.designs import masked_softmax


def test_launch_order_is_most_tiles_first_ties_row_tiles_last_first():
    tiles = np.array([[1, 3, 2, 3], [4, 0, 4, 1]])
    order = launch_order(tiles)
    brute = sorted(range(8), key=lambda i: (-tiles.reshape(-1)[i], i // 4, -(i % 4)))
    assert order.tolist() == brute
    assert sorted(order.tolist()) == list(range(8))           # a permutation: every program once


def test_longest_first_shortens_a_schedule_with_one_long_program_last():
    # two slots; programs of 1, 1, 1 and 4: in launch order the 4 starts at t = 1 and ends at 5;
    # longest first it runs alone on one slot while the other runs the three 1s: 4
    times = np.array([1.0, 1, 1, 4])
    assert _schedule(times, times / 2, sms=2, per_sm=1) == pytest.approx(5.0)
    assert _schedule(times[::-1].copy(), times[::-1] / 2, sms=2, per_sm=1) == pytest.approx(4.0)


def test_a_round_trip_is_waited_once_per_program_not_once_per_co_resident():
    # alone on its SM: 3 of work plus 1 of round trips
    assert _schedule(np.array([3.0]), np.array([2.0]), sms=1, per_sm=1, stall=1.0) == pytest.approx(4.0)
    # two co-resident programs start and stall together, then share the SM: 1 + max(3, 2 x 2) = 5;
    # not 2 x (2 + 1) = 6 (each one's wait charged as SM time), nor 4 (the waits hidden entirely)
    assert _schedule(np.array([3.0, 3.0]), np.array([2.0, 2.0]), sms=1, per_sm=2, stall=1.0) == pytest.approx(5.0)
    uneven = np.array([3.0, 1.0, 3.0])           # the list schedule: the same rule per program
    assert _schedule(uneven, uneven / 2, sms=1, per_sm=2, stall=1.0) == pytest.approx(
        max(1 + max(3, 2 * 1.5), 1 + max(1, 2 * 0.5) + 1 + max(3, 1 * 1.5)))


@pytest.mark.parametrize("gpu,fp,it,clocks", [
    ("a100", 640.0, 640.0, 10.0),        # 64 FP32 + 64 INT32 lanes, 128 issued a clock: both pipes busy 10 clocks
    ("h100", 1280.0, 640.0, 15.0),       # 128 FP32 lanes = the issue rate: 1920 instructions / 128
    ("h100", 0.0, 640.0, 10.0),          # integer only: 64 lanes
])
def test_integer_work_runs_on_its_own_pipe_and_shares_the_issue_slots(gpu, fp, it, clocks):
    g = load_gpu(gpu)
    r = _rates(g, GPUMapping(), kernel_class("triton"))
    assert r.alu_s(fp, it) * g.clock_hz == pytest.approx(clocks)


DOC = masked_softmax("""
rank B, H, P, E, F
rank M = P
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
input DOC[B, P]: i32
mask vis = DOC[b, p] == DOC[b, m] and m <= p
""")


def test_the_kernel_launches_in_the_order_the_model_schedules(monkeypatch):
    c = ei.parse(DOC)
    shapes = dict(B=2, H=2, P=96, E=16, F=16)
    inp = ei.random_inputs(c, shapes, seed=3, dtype="float32")
    inp["DOC"] = np.array([[0] * 10 + [1] * 70 + [2] * 16, [0] * 50 + [1] * 46]).astype(np.int32)
    kernel = FusedKernel(c, GPUMapping(16, 16, dtype="f32"), shapes)
    env = ei.resolve(c, shapes, inp)
    order = kernel.launch_order(env, {"DOC": inp["DOC"]}, "cpu").numpy()
    # the model's: key tiles per (batch x head, row tile) from its own tile classes
    program = kernel.program
    gpu = load_gpu("h100")
    fp = G.footprint(program.form, kernel.mapping, env, gpu)
    grid = G._grid(program, kernel.mapping, gpu, env, fp.blocks_per_sm)
    nf, npt, *_ = G._tile_classes(program.form, 0, kernel.mapping, env, {"DOC": inp["DOC"]}, None, grid, True)
    tiles = np.tile(nf + npt, (grid.head_blocks // nf.shape[0], 1))
    assert order.tolist() == launch_order(tiles).tolist()
    assert tiles.reshape(-1)[order][0] == tiles.max() > tiles.min()       # skewed: the order matters here
    out = kernel(**{k: torch.tensor(v) for k, v in inp.items()}).double().numpy()
    ref = ei.execute(c, inp, shapes, dtype="float64")["AV"]
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()
    # the order predict_fused schedules is the kernel's
    scheduled = []
    monkeypatch.setattr(G, "launch_order", lambda t: scheduled.append(launch_order(t)) or scheduled[-1])
    fast = predict_fused(program, kernel.mapping, gpu, env, inputs={"DOC": inp["DOC"]})
    assert [o.tolist() for o in scheduled] == [order.tolist()]
    monkeypatch.undo()
    # and the model with this order is no slower than launching head by head
    slow = predict_fused(program, kernel.mapping, gpu, env, inputs={"DOC": inp["DOC"]}, order="head-major")
    assert fast.time_s <= slow.time_s


def test_each_program_adds_its_cycles_outside_the_tile_loop_once():
    # 8 programs on 132 SMs: one wave, each alone on its SM, so 1980 cycles more (1 us at 1.98 GHz) add
    # exactly 1 us to the makespan
    c = ei.library.load("cab-self-causal")
    env = ei.resolve(c, dict(B=1, H=1, P=1024, E=64, F=64))
    gpu = load_gpu("h100")
    m = GPUMapping(128, 64)
    assert gpu.clock_hz == pytest.approx(1.98e9)
    base = predict_fused(recognise(c), m,
                         gpu.with_efficiency(program_cycles=0), env)
    more = predict_fused(base.program, m, gpu.with_efficiency(program_cycles=1980), env)
    assert more.parts["programs"] == 8
    assert more.parts["schedule_s"] - base.parts["schedule_s"] == pytest.approx(1e-6, rel=1e-9)


def test_a_tile_steps_overlap_and_stall_by_hand():
    """One tile step with 10 s of MMAs and 4 s of vector work (3 on the SFU,
    1 on the FP32 pipe), serial_overlap 0.5, ws_overlap 0.8:
    - serial, 4 streams per block, 2 blocks per SM: alone the 4 s hide by
      0.5 x (1 - 1/4), shared by 0.5 x (1 - 1/8): 12.5 s and 12.25 s;
    - warp-specialised: 0.8 always: 10.8 s;
    - the chunked model (no streams): the fitted 0.5: 12 s;
    - with 2 stages and a 10 s memory latency a step waits 10 exp(-t / 10)
      alone, shared among the 8 streams of the SM."""
    from simulator.gpu import KERNEL_CLASSES, _Rates, _tile_times
    gpu = load_gpu("h100").with_efficiency(serial_overlap=0.5, ws_overlap=0.8, latency_ns=10e9)
    r = _Rates(tensor=1.0, smem=1e12, sfu=1.0, fp32=1.0, int=1.0, issue=1e12, path="mma")
    serial, ws = KERNEL_CLASSES["triton"], KERNEL_CLASSES["hopper-ws"]
    assert _tile_times(10.0, 0.0, 3.0, 1.0, 0.0, r, gpu, serial, 4, 2) == pytest.approx((12.5, 12.25))
    assert _tile_times(10.0, 0.0, 3.0, 1.0, 0.0, r, gpu, ws, 4, 2) == pytest.approx((10.8, 10.8))
    assert _tile_times(10.0, 0.0, 3.0, 1.0, 0.0, r, gpu, serial) == pytest.approx((12.0, 12.0))
    assert _tile_times(10.0, 0.0, 3.0, 1.0, 0.0, r, gpu, serial, 4, 2, stages=2) == pytest.approx(
        (12.5 + 10 * np.exp(-1.25), 12.25 + 10 * np.exp(-1.225) / 8))
    # shared memory bounds the MMAs when it is the slower: 20 bytes at 1 byte/s
    slow_smem = _Rates(tensor=1.0, smem=1.0, sfu=1.0, fp32=1.0, int=1.0, issue=1e12, path="mma")
    assert _tile_times(10.0, 20.0, 3.0, 1.0, 0.0, slow_smem, gpu, ws, 4, 2) == pytest.approx((20.8, 20.8))


def test_an_unknown_kernel_class_or_operation_kind_is_named():
    from hw_models import HardwareError
    from simulator.gpu import kind_units
    with pytest.raises(HardwareError, match=r"^error: unknown kernel class 'fa3'; known: triton, fa2, hopper-ws$"):
        kernel_class("fa3")
    with pytest.raises(ValueError, match=r"^the GPU model has no cost for operation kind 'fft' \(add it to "
                                         r"einsum_ir\.ops\.KIND_UNITS\)$"):
        kind_units("fft")
    assert kind_units("convert") == {"fp32": 1} and kind_units("pow") == {"sfu": 2, "fp32": 1}

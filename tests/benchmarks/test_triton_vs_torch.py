"""benchmarks/triton_vs_torch.py without a GPU: the sweep is the stated one,
flop counts match hand computations, every design in the sweep compiles and
runs (Triton's interpreter, TRITON_INTERPRET=1 from tests/conftest.py) with
the script's own input layouts and agrees with the reference executor, the
script's float32 reference and its SDPA/Flex baselines (eager on the CPU),
and without CUDA the script refuses with status 2 and a message, not a
traceback."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import attnc
from einsum_ir import execute
from mappers.gpu_mapping import GPUMapping

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "triton_vs_torch.py"
MAPPING = GPUMapping(32, 32, dtype="f32")


def _load():
    spec = importlib.util.spec_from_file_location("triton_vs_torch", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tt = _load()


def test_flops_by_hand():
    # B=4, H=16, N=4096, D=128: 2 matmuls x 2 flops x 4*16*4096*4096*128
    full = 4 * 4 * 16 * 4096 * 4096 * 128
    assert tt.flops("cab-self", 4, 16, 4096, 4096, 128) == full == 549_755_813_888
    assert tt.flops("gated-attention", 4, 16, 4096, 4096, 128) == full
    assert tt.flops("cab-self-causal", 4, 16, 4096, 4096, 128) == full / 2
    assert tt.flops("alibi", 4, 16, 4096, 4096, 128) == full / 2
    # window 1024 at N=4096: 4096*1024 - 1024*1023/2 = 3_670_528 kept pairs per head
    assert tt.flops("sliding-window", 4, 16, 4096, 4096, 128, window=1024) == 4 * 4 * 16 * 3_670_528 * 128
    # a window as long as the sequence keeps the causal triangle, diagonal included
    assert tt.flops("sliding-window", 1, 1, 8, 8, 1, window=8) == 4 * 36
    assert tt.flops("sliding-window", 1, 1, 8, 8, 1, window=100) == 4 * 36
    assert tt.flops("decode", 8, 16, 1, 65536, 128) == 4 * 8 * 16 * 65536 * 128
    with pytest.raises(ValueError):
        tt.flops("sliding-window", 1, 1, 8, 8, 1)


def test_sliding_window_pairs_count_the_mask():
    n, w = 50, 13
    q, k = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    kept = int(((k <= q) & (q - k < w)).sum())
    assert tt.flops("sliding-window", 1, 1, n, n, 1, window=w) == 4 * kept


@pytest.mark.parametrize("quick", [False, True])
def test_sweep(quick):
    pts = tt.points(quick)
    keys = {"design", "batch", "heads", "q_len", "kv_len", "head_dim", "window"}
    assert pts and all(set(p) == keys for p in pts)
    assert all(p["heads"] == 16 and p["head_dim"] == 128 for p in pts)
    prefill = [p for p in pts if p["design"] != "decode"]
    decode = [p for p in pts if p["design"] == "decode"]
    lengths = {4096} if quick else {4096, 8192, 16384}
    assert {(p["design"], p["q_len"]) for p in prefill} == {(d, n) for d in tt.PREFILL_DESIGNS for n in lengths}
    assert len(prefill) == 5 * len(lengths)
    for p in prefill:
        assert p["batch"] * p["q_len"] == 16384 and p["q_len"] == p["kv_len"]
        assert p["window"] == (1024 if p["design"] == "sliding-window" else None)
    kv = {8192} if quick else {8192, 65536}
    assert {(p["kv_len"], p["batch"]) for p in decode} == {(k, b) for k in kv for b in (1, 8)}
    assert all(p["q_len"] == 1 and p["window"] is None for p in decode)
    # decode first, then prefill shortest first with every design at a length before the next length
    assert pts[:len(decode)] == decode
    assert [p["q_len"] for p in prefill] == sorted(p["q_len"] for p in prefill)
    assert {p["design"] for p in pts} == set(tt.DESIGNS)


def test_kernels_and_baselines():
    assert set(tt.KERNELS) == set(tt.BASELINE) == set(tt.DESIGNS)
    for d, ks in tt.KERNELS.items():
        assert ks[-1] == "attnc" and tt.BASELINE[d] in ks[:-1]
        assert set(ks) <= {"attnc", "sdpa", "flex", "flex+gate", "sdpa+gate"}
    assert tt.BASELINE["alibi"] == tt.BASELINE["sliding-window"] == "flex"
    assert tt.BASELINE["gated-attention"] == "flex+gate"
    assert tt.BASELINE["cab-self"] == tt.BASELINE["cab-self-causal"] == tt.BASELINE["decode"] == "sdpa"


def test_hw_preset_from_the_device_name():
    assert tt.hw_for("NVIDIA H100 80GB HBM3") == "h100"
    assert tt.hw_for("NVIDIA H200") == "h200"
    assert tt.hw_for("NVIDIA A100-SXM4-80GB") == "a100"
    assert tt.hw_for("NVIDIA GeForce RTX 4090") == "h100"


def test_shapes_give_every_extent():
    for p in tt.points(False):
        s = tt.shapes_for(p)
        c = attnc.design(p["design"])
        assert {r.name for r in c.ranks if r.definition is None} <= set(s)
        if p["design"] == "sliding-window":
            assert s["W"] == 1024
        if p["design"] == "gated-attention":
            assert s["D"] == 2048 and s["M"] == s["P"]


def test_args():
    a = tt.parse_args(["--out", "x.csv", "--quick", "--time-limit", "60", "--designs", "alibi,decode"])
    assert (a.out, a.quick, a.time_limit, a.designs) == ("x.csv", True, 60.0, ["alibi", "decode"])
    assert tt.parse_args([]).designs == list(tt.DESIGNS)
    with pytest.raises(SystemExit):
        tt.parse_args(["--designs", "nope"])


def test_summary_renders_rows():
    p = dict(design="cab-self", batch=4, heads=16, q_len=4096, kv_len=4096, head_dim=128, window=None)
    rows = [dict(p, kernel="sdpa", time_s=1e-3, tflops=500.0, ratio=None, mapping="", max_err=3e-3),
            dict(p, kernel="attnc", time_s=2e-3, tflops=250.0, ratio=0.5,
                 mapping="BLOCK_M=128 BLOCK_N=64 warps=4 stages=2", max_err=4e-3)]
    s = tt.summary(rows)
    assert "0.50x" in s and "BLOCK_M=128" in s and "cab-self" in s


def _tiny(design):
    if design == "decode":
        return dict(design=design, batch=2, heads=2, q_len=1, kv_len=100, head_dim=16, window=None)
    return dict(design=design, batch=1, heads=2, q_len=64, kv_len=64, head_dim=16,
                window=16 if design == "sliding-window" else None)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("design", tt.DESIGNS)
def test_each_design_compiles_and_agrees_on_the_cpu(design):
    """The script's own inputs, layouts and reference at a tiny shape: attnc's kernel (interpreted), the
    reference executor and the float32 reference agree; so do the torch baselines the script times."""
    assert os.environ.get("TRITON_INTERPRET") == "1"
    p = _tiny(design)
    shapes = tt.shapes_for(p)
    t = tt.make_inputs(torch, p, dtype=torch.float32, device="cpu")
    ref = tt.reference(torch, design, t)
    assert ref.shape == t["q"].shape and torch.isfinite(ref).all()

    inputs = tt.attnc_inputs(design, t)
    kern = attnc.compile(design, shapes, mapping=MAPPING)
    out = tt.attnc_output(design, kern(**inputs))
    assert out.shape == ref.shape
    assert tt.max_err(torch, out, ref) < 1e-4

    c = attnc.design(design)
    ex = execute(c, {k: v.numpy() for k, v in inputs.items()}, shapes, dtype="float64")["AV"]
    assert tt.max_err(torch, tt.attnc_output(design, torch.tensor(ex)), ref) < 1e-4

    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    for kernel in tt.KERNELS[design][:-1]:
        base = tt.baseline_fn(torch, kernel, design, t, flex_attention, create_block_mask)()
        assert base.shape == ref.shape
        assert tt.max_err(torch, base, ref) < 1e-4, kernel


def test_alibi_bias_and_window_follow_the_designs():
    """The reference's ALiBi and window against explicit per-pair loops at a tiny size."""
    p = dict(design="alibi", batch=1, heads=2, q_len=9, kv_len=9, head_dim=4, window=None)
    t = tt.make_inputs(torch, p, dtype=torch.float64, device="cpu")
    ref = tt.reference(torch, "alibi", t).double()
    q, k, v, sl = t["q"][0].double(), t["k"][0].double(), t["v"][0].double(), t["slopes"].double()
    assert torch.allclose(sl, torch.tensor([2 ** -4, 2 ** -8], dtype=torch.float64))
    for h in range(2):
        for i in range(9):
            s = torch.stack([q[h, i] @ k[h, j] + sl[h] * (j - i) for j in range(i + 1)])
            assert torch.allclose(ref[0, h, i], torch.softmax(s, 0) @ v[h, :i + 1], atol=1e-5)
    p = dict(design="sliding-window", batch=1, heads=1, q_len=9, kv_len=9, head_dim=4, window=3)
    t = tt.make_inputs(torch, p, dtype=torch.float64, device="cpu")
    ref = tt.reference(torch, "sliding-window", t).double()
    q, k, v = t["q"][0, 0].double(), t["k"][0, 0].double(), t["v"][0, 0].double()
    for i in range(9):
        lo = max(0, i - 2)
        s = q[i] @ k[lo:i + 1].T
        assert torch.allclose(ref[0, 0, i], torch.softmax(s, 0) @ v[lo:i + 1], atol=1e-5)


def test_without_cuda_exits_2_with_a_message(tmp_path):
    out = tmp_path / "triton.csv"
    env = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
    r = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--quick"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert "no CUDA GPU: this benchmark needs one" in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()

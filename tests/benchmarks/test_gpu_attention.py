"""benchmarks/gpu_attention.py without a GPU: its sweeps are the papers'
settings, its flop and byte counts match hand computations, and without CUDA
it refuses with status 2 and a message, not a traceback."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_attention.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_attention", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ga = _load()


def test_flops_by_hand_and_causal_halves():
    # B=2, H=16, N=1024, D=128: 2 matmuls x 2 flops x 2*16*1024*1024*128
    assert ga.attention_flops(2, 16, 1024, 1024, 128, False) == 4 * 2 * 16 * 1024 * 1024 * 128 == 17_179_869_184
    assert ga.attention_flops(2, 16, 1024, 1024, 128, True) == 8_589_934_592
    assert ga.attention_flops(8, 32, 1, 65536, 128, False) == 4 * 8 * 32 * 65536 * 128


@pytest.mark.parametrize("quick", [False, True])
def test_prefill_sweep_is_the_flashattention_setting(quick):
    points = ga.prefill_points(quick)
    assert points
    for p in points:
        assert set(p) == {"batch", "heads", "kv_heads", "q_len", "kv_len", "head_dim", "causal"}
        assert p["batch"] * p["q_len"] == 16384 and p["heads"] * p["head_dim"] == 2048
        assert p["q_len"] == p["kv_len"] and p["heads"] == p["kv_heads"]
    assert {p["head_dim"] for p in points} == {64, 128}
    assert {bool(p["causal"]) for p in points} == {False, True}
    lengths = {p["q_len"] for p in points}
    assert lengths == ({1024, 4096} if quick else {512, 1024, 2048, 4096, 8192, 16384})
    assert len(points) == len(lengths) * 4


@pytest.mark.parametrize("quick", [False, True])
def test_decode_sweep_is_one_query_token_with_gqa(quick):
    points = ga.decode_points(quick)
    assert points
    assert all(p["q_len"] == 1 and not p["causal"] and p["heads"] == 32 and p["kv_heads"] == 8
               and p["head_dim"] == 128 for p in points)
    kv = {4096, 65536} if quick else {4096, 16384, 65536, 131072, 524288}
    batch = {1, 8} if quick else {1, 8, 64}
    assert {(p["kv_len"], p["batch"]) for p in points} == {(k, b) for k in kv for b in batch}


def test_bytes_needed_by_hand():
    p = dict(batch=8, heads=32, kv_heads=8, q_len=1, kv_len=131072, head_dim=128, causal=False)
    q_and_o = 2 * 8 * 32 * 1 * 128 * 2          # 131072
    k_and_v = 2 * 8 * 8 * 131072 * 128 * 2      # 4 GiB
    assert ga.bytes_needed(p) == q_and_o + k_and_v == 4_295_098_368
    assert ga.bytes_needed(p, dtype_bytes=4) == 2 * ga.bytes_needed(p)


def test_largest_decode_point_is_skipped_on_an_80gb_gpu():
    need = {(p["kv_len"], p["batch"]): ga.bytes_needed(p) for p in ga.decode_points(False)}
    budget = ga.MEMORY_FRACTION * 80e9
    assert need[524288, 64] > budget > need[524288, 8] and need[131072, 64] < budget


def test_without_cuda_exits_2_with_a_message(tmp_path):
    out = tmp_path / "results.csv"
    env = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
    r = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--quick"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert "no CUDA GPU: this benchmark needs one" in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()

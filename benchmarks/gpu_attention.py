"""Measured forward attention on the CUDA GPU at hand, for calibrating and
validating the GPU model (simulator/calibrate.py reads the CSV this writes).
Prefill: SDPA and FlexAttention in the FlashAttention papers' setting (bf16,
batch x length = 16K tokens, heads x head_dim = 2048). Decode: one query
token against a long GQA KV cache. Rows are written as they finish, so a run
cut short still leaves its results. Cheap kernels run first (SDPA, then Flex,
whose first call at each shape compiles), and no point starts after
--time-limit seconds. Run: PYTHONPATH=. python benchmarks/gpu_attention.py
--out results.csv [--quick]"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cuda_timing import CudaTimer, compiled_flex_attention, first_line  # noqa: E402  (shared with triton_vs_torch.py)

COLUMNS = ("device", "kernel", "dtype", "batch", "heads", "kv_heads", "q_len", "kv_len", "head_dim", "causal",
           "time_s", "tflops")
PREFILL_LENGTHS = (512, 1024, 2048, 4096, 8192, 16384)
PREFILL_LENGTHS_QUICK = (1024, 4096)
DECODE_KV = (4096, 16384, 65536, 131072, 524288)
DECODE_KV_QUICK = (4096, 65536)
DECODE_BATCH = (1, 8, 64)
DECODE_BATCH_QUICK = (1, 8)
MEMORY_FRACTION = 0.6      # of the device's total: the most a point's Q, K, V and O may take
DEVICE = "cuda"


def attention_flops(batch, heads, q_len, kv_len, head_dim, causal) -> float:
    """Two matmuls (QK^T and PV) of 2 flops per multiply-add; causal skips half (q_len == kv_len)."""
    flops = 4 * batch * heads * q_len * kv_len * head_dim
    return flops / 2 if causal else flops


def prefill_points(quick: bool) -> list[dict]:
    """FlashAttention-2/3's sweep: 16K tokens per batch, 2048 channels of heads, head_dim 64 and 128."""
    points = []
    for head_dim in (64, 128):
        for causal in (False, True):
            for n in PREFILL_LENGTHS_QUICK if quick else PREFILL_LENGTHS:
                heads = 2048 // head_dim
                points.append(dict(batch=16384 // n, heads=heads, kv_heads=heads, q_len=n, kv_len=n,
                                   head_dim=head_dim, causal=causal))
    return points


def decode_points(quick: bool) -> list[dict]:
    """One new token per sequence, Llama-style GQA (32 query heads sharing 8 KV heads), head_dim 128."""
    return [dict(batch=b, heads=32, kv_heads=8, q_len=1, kv_len=kv, head_dim=128, causal=False)
            for kv in (DECODE_KV_QUICK if quick else DECODE_KV)
            for b in (DECODE_BATCH_QUICK if quick else DECODE_BATCH)]


def bytes_needed(point, dtype_bytes=2) -> int:
    """Q and O (query heads) plus K and V (KV heads); the kernel's own workspace is small beside them."""
    p = point
    return 2 * p["batch"] * p["head_dim"] * dtype_bytes * (p["heads"] * p["q_len"] + p["kv_heads"] * p["kv_len"])


def label(point) -> str:
    p = point
    what = "decode" if p["q_len"] == 1 else ("causal" if p["causal"] else "full")
    return f"{what} B={p['batch']} H={p['heads']}/{p['kv_heads']} N={p['q_len']}x{p['kv_len']} D={p['head_dim']}"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results.csv", help="CSV to write (default results.csv)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: prefill 1K and 4K, decode KV 4K and 64K at batch 1 and 8")
    ap.add_argument("--time-limit", type=float, default=480.0, metavar="S",
                    help="start no point after S seconds (default 480: one 10-minute device call)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    import torch
    if not torch.cuda.is_available():
        print("no CUDA GPU: this benchmark needs one; run it on a machine with an NVIDIA GPU "
              "(PYTHONPATH=. python benchmarks/gpu_attention.py --out results.csv)", file=sys.stderr)
        return 2
    bench = _Bench(torch)
    prefill, decode = prefill_points(args.quick), decode_points(args.quick)
    runs = ([("sdpa", p) for p in prefill] + [("sdpa", p) for p in decode]
            + [("flex", p) for p in prefill] + [("flex", p) for p in decode])
    print(f"{bench.device}: {bench.total_bytes / 2**30:.1f} GiB, torch {torch.__version__}, "
          f"{len(runs)} runs, time limit {args.time_limit:.0f} s", flush=True)
    written = 0
    with open(args.out, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(COLUMNS)
        f.flush()
        for i, (kernel, p) in enumerate(runs, start=1):
            tag = f"[{i}/{len(runs)}] {kernel:4s} {label(p)}"
            if time.perf_counter() - start > args.time_limit:
                print(f"{tag}: skip: past the time limit ({args.time_limit:.0f} s)", flush=True)
                continue
            need = bytes_needed(p)
            if need > MEMORY_FRACTION * bench.total_bytes:
                print(f"{tag}: skip: needs {need / 2**30:.1f} GiB, over {MEMORY_FRACTION:.0%} of "
                      f"{bench.total_bytes / 2**30:.1f} GiB", flush=True)
                continue
            if kernel == "flex" and not bench.flex_ok(p):
                print(f"{tag}: skip: flex failed at this shape before", flush=True)
                continue
            try:
                t, note = bench.time(kernel, p)
            except Exception as e:  # an unsupported shape or an out-of-memory: record nothing, go on
                bench.failed(kernel, p, e)
                print(f"{tag}: failed: {type(e).__name__}: {first_line(e)}", flush=True)
                t = None
            bench.release()
            if t is None:
                continue
            flops = attention_flops(p["batch"], p["heads"], p["q_len"], p["kv_len"], p["head_dim"], p["causal"])
            tflops = flops / t / 1e12
            out.writerow([bench.device, kernel, "bf16", p["batch"], p["heads"], p["kv_heads"], p["q_len"],
                          p["kv_len"], p["head_dim"], int(p["causal"]), f"{t:.6e}", f"{tflops:.2f}"])
            f.flush()
            written += 1
            print(f"{tag}: {t * 1e3:9.4f} ms {tflops:7.1f} TFLOP/s{note}", flush=True)
    print(f"wrote {written} rows to {args.out} in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


def _causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


class _Bench:
    """The GPU side: inputs, kernels and CUDA-event timing. Built only once a GPU is known to be there."""

    def __init__(self, torch):
        self.torch = torch
        self.device = torch.cuda.get_device_name()
        self.total_bytes = torch.cuda.get_device_properties(0).total_memory
        self.timer = CudaTimer(torch, DEVICE)
        self.sdpa_gqa = self._sdpa_has_gqa()
        self._flex = None
        self._flex_failed = set()   # (q_len, head_dim): a failed compile would only fail again, slowly
        self._tensors = ()

    def _sdpa_has_gqa(self) -> bool:
        torch = self.torch
        q = torch.zeros(1, 4, 1, 64, dtype=torch.bfloat16, device=DEVICE)
        kv = torch.zeros(1, 2, 8, 64, dtype=torch.bfloat16, device=DEVICE)
        try:
            torch.nn.functional.scaled_dot_product_attention(q, kv, kv, enable_gqa=True)
            return True
        except (TypeError, RuntimeError):
            print("sdpa has no enable_gqa: expanding K and V with repeat_interleave", flush=True)
            return False

    def flex_ok(self, p) -> bool:
        return (p["q_len"], p["head_dim"]) not in self._flex_failed

    def failed(self, kernel, p, e):
        if kernel == "flex" and not isinstance(e, self.torch.cuda.OutOfMemoryError):
            self._flex_failed.add((p["q_len"], p["head_dim"]))

    def release(self):
        self._tensors = ()
        self.timer.release()

    def time(self, kernel, p) -> tuple[float, str]:
        """Median seconds per call and a note for the summary line."""
        torch = self.torch
        b, d = p["batch"], p["head_dim"]
        q = torch.randn(b, p["heads"], p["q_len"], d, dtype=torch.bfloat16, device=DEVICE)
        k = torch.randn(b, p["kv_heads"], p["kv_len"], d, dtype=torch.bfloat16, device=DEVICE)
        v = torch.randn(b, p["kv_heads"], p["kv_len"], d, dtype=torch.bfloat16, device=DEVICE)
        self._tensors = (q, k, v)
        note = ""
        if kernel == "sdpa":
            fn = self._sdpa(q, k, v, p)
        else:
            fn = self._flex_fn(q, k, v, p)
            t0 = time.perf_counter()
            fn()   # compiles at a new shape
            torch.cuda.synchronize()
            note = f" (first call {time.perf_counter() - t0:.1f} s)"
        return self.timer.median_s(fn), note

    def _sdpa(self, q, k, v, p):
        torch = self.torch
        sdpa = torch.nn.functional.scaled_dot_product_attention
        causal = bool(p["causal"])
        if p["heads"] == p["kv_heads"]:
            return lambda: sdpa(q, k, v, is_causal=causal)
        if self.sdpa_gqa:
            return lambda: sdpa(q, k, v, is_causal=causal, enable_gqa=True)
        g = p["heads"] // p["kv_heads"]
        k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
        self._tensors += (k, v)
        return lambda: sdpa(q, k, v, is_causal=causal)

    def _flex_fn(self, q, k, v, p):
        torch = self.torch
        from torch.nn.attention.flex_attention import create_block_mask
        if self._flex is None:
            self._flex = compiled_flex_attention(torch)
        mask = None
        if p["causal"]:
            mask = create_block_mask(_causal, None, None, p["q_len"], p["kv_len"], device=DEVICE)
        gqa = p["heads"] != p["kv_heads"]
        flex = self._flex
        return lambda: flex(q, k, v, block_mask=mask, enable_gqa=gqa)


if __name__ == "__main__":
    sys.exit(main())

"""CUDA-event timing shared by the GPU benchmarks: each repetition starts
with L2 flushed (a larger buffer zeroed), and the repetitions cover about
TARGET_S of GPU time; the median is reported."""
from __future__ import annotations

import math
import statistics

WARMUP = 3
TARGET_S = 0.1             # repetitions cover about this much GPU time
MIN_REPS, MAX_REPS = 5, 1000
L2_FLUSH_BYTES = 256 << 20  # larger than any current L2: each repetition starts cold, as a real decode step does


def first_line(e) -> str:
    s = str(e).strip()
    return s.splitlines()[0][:200] if s else ""


def compiled_flex_attention(torch):
    """FlexAttention compiled once, with dynamo's recompile limits raised:
    every shape is its own static compile, and the default limit (8) would
    fall back to eager flex."""
    from torch.nn.attention.flex_attention import flex_attention
    cfg = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit",
                 "accumulated_cache_size_limit"):
        if hasattr(cfg, name):
            setattr(cfg, name, 4096)
    return torch.compile(flex_attention, dynamic=False)


class CudaTimer:
    def __init__(self, torch, device: str = "cuda"):
        self.torch = torch
        self.flush_buf = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.int32, device=device)

    def median_s(self, fn) -> float:
        """Median seconds per call of `fn` (already compiled)."""
        warm = [self._timed_many(fn, 1)[0] for _ in range(WARMUP)]
        est = max(statistics.median(warm), 1e-7)
        reps = min(MAX_REPS, max(MIN_REPS, math.ceil(TARGET_S / est)))
        return statistics.median(self._timed_many(fn, reps))

    def release(self):
        try:
            self.torch.cuda.synchronize()
            self.torch.cuda.empty_cache()
        except RuntimeError as e:  # a kernel fault is sticky: the points after it fail and say why
            print(f"cuda: {first_line(e)}", flush=True)

    def _timed_many(self, fn, reps) -> list[float]:
        """Event pairs around each call; zeroing the flush buffer first empties L2 and lets the CPU run
        ahead of the GPU, so a short kernel's launch overhead stays outside its events (as far as the
        flush's GPU time covers it: a call whose host side is longer, or that synchronises, is timed
        with its host side)."""
        torch = self.torch
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
        for s, e in events:
            self.flush_buf.zero_()
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize()
        return [s.elapsed_time(e) / 1e3 for s, e in events]

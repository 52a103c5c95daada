"""Autotuning over the model's shortlist: on a GPU, time only the few
mappings the GPU model ranks best (never a blind grid), keep the fastest."""
from __future__ import annotations

from dataclasses import dataclass

import einsum_ir as ei
from einsum_ir.shapes import resolve


@dataclass
class Tuned:
    kernel: object                     # codegen.runtime.FusedKernel
    timings: list                      # (mapping, predicted_s, measured_s), best measured first


def autotune(design, inputs: dict, shapes: dict | None = None, hw: str = "h100", top: int = 4,
             dtype: str = "bf16", reps: int = 20) -> Tuned:
    """Time the model's `top` mappings on `inputs` (CUDA tensors) and return
    the fastest kernel with every timing."""
    import torch

    from attnc.gpu import map_design
    from codegen.runtime import FusedKernel
    c = ei.load(design) if isinstance(design, str) else design
    env = resolve(c, shapes or {}, inputs)
    given = {k: v for k, v in env.items() if k in (shapes or {}) or k not in {r.name for r in c.ranks}}
    preds = map_design(c, hw, env, dtype, top=top).best
    rows = []
    for p in preds:
        k = FusedKernel(c, p.mapping, given)
        k(**inputs)                                    # compile
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            k(**inputs)
        end.record()
        torch.cuda.synchronize()
        rows.append((k, p.mapping, p.time_s, start.elapsed_time(end) / 1e3 / reps))
    rows.sort(key=lambda r: r[3])
    return Tuned(rows[0][0], [(m, pt, mt) for _, m, pt, mt in rows])


__all__ = ["Tuned", "autotune"]

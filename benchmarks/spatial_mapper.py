"""Speed and quality of the spatial mapper (docs/mapper.md): mappings
evaluated per second (vectorised screening, one core), time to the best
FuseMax mapping at 64K tokens, and the found latency against the paper's
hand mappings (FuseMax +Binding on `fusemax`, FLAT on `flat`) for the four
workloads at 1K..1M tokens.

    .venv/bin/python benchmarks/spatial_mapper.py [--quick]
"""
from __future__ import annotations

import sys
import time

import einsum_ir as ei
from attnc.reproduce import BATCH, LENGTHS, MODELS
from hw_models import load_spatial
from mappers.mapping import load_mapping
from mappers.spatial_eval import Evaluator
from mappers.spatial_search import fused, search
from mappers.spatial_space import roles
from simulator.analytical import simulate


def throughput(n: int = 65536) -> None:
    """Mappings per CPU second of this process (one core; the wall clock on a
    shared machine counts other processes' time too), compile included."""
    c, hw = ei.load("attention-1pass"), load_spatial("fusemax")
    shapes = dict(B=BATCH, H=12, E=64, F=64, M=n, P=n)
    t0 = time.process_time()
    ev = Evaluator(roles(c, hw, shapes))
    fused(ev, "latency", budget=10**9, restarts=0)            # compiles the pieces the search needs
    warm = time.process_time() - t0
    before, pruned, t1 = ev.evaluations, ev.pruned, time.process_time()
    fused(ev, "latency", seed=1, budget=10**9, restarts=8)
    dt = time.process_time() - t1
    done, cut = ev.evaluations - before, ev.pruned - pruned
    print(f"vectorised evaluation: {done / dt:,.0f} mappings per CPU second ({done:,} in {dt:.2f} s CPU, "
          f"first search with compiling: {warm:.1f} s CPU); {cut:,} of them settled by the lower bound, "
          f"{(done - cut) / dt:,.0f} per CPU second fully costed")
    t0, w0 = time.process_time(), time.perf_counter()
    f = search(c, hw, shapes)
    print(f"best FuseMax mapping at {n // 1024}K tokens: {time.process_time() - t0:.1f} s CPU "
          f"({time.perf_counter() - w0:.1f} s wall on the shared machine; {f.evaluated:,} mappings)")


def quality(lengths=LENGTHS) -> None:
    for design, hw_name, hand_name in (("attention-1pass", "fusemax", "fusemax-binding"),
                                       ("attention-3pass", "flat", "flat")):
        c, hw, hand = ei.load(design), load_spatial(hw_name), load_mapping(hand_name)
        for model, (H, E, _, _) in MODELS.items():
            for n in lengths:
                shapes = dict(B=BATCH, H=H, E=E, F=E, M=n, P=n)
                h = simulate(c, hand, hw, shapes).latency_cycles
                t0 = time.perf_counter()
                f = search(c, hw, shapes)
                print(f"{design:16s} {hw_name:8s} {model:5s} {n:>8d}  found/hand = "
                      f"{f.report.latency_cycles / h:.4f}  ({time.perf_counter() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    throughput()
    quality(LENGTHS[:2] if "--quick" in sys.argv else LENGTHS)

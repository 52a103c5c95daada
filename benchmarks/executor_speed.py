"""Wall time of the numpy reference executor at the size issue 2 names
(B=2, H=4, M=P=256, E=F=64), for every library design that has those ranks.
The target is "well under a second". Run: python benchmarks/executor_speed.py"""
from __future__ import annotations

import time

import numpy as np

import einsum_ir as ei

SIZE = dict(B=2, H=4, M=256, P=256, E=64, F=64)
PARAMS = dict(M0=64, G=2, W=64, ST=1, DL=1, NS=4, HS=2, TQ=64, TK=64, R=4, D=64, N=16, TOPK=2)


def main():
    print(f"{'design':28s} {'seconds':>8s}")
    for name in ei.library.names():
        c = ei.library.load(name)
        free = [s for s in ei.shapes.symbols_used(c)
                if not any(r.name == s and (r.definition is not None or r.part == "outer") for r in c.ranks)]
        shapes = {s: {**SIZE, **PARAMS}[s] for s in free if s in {**SIZE, **PARAMS}}
        if len(shapes) != len(free):
            continue
        x = ei.random_inputs(c, shapes, seed=0)
        for k in ("LAM", "ALPHA"):
            if k in x:
                x[k] = 1 / (1 + np.exp(-x[k]))
        best = min(_timed(c, x, shapes) for _ in range(3))
        print(f"{name:28s} {best:8.3f}")


def _timed(c, x, shapes):
    t0 = time.perf_counter()
    ei.execute(c, x, shapes)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()

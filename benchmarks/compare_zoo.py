"""Wall time of `attnc compare` over the whole library at M = P = 64K (issue
3 asks for under 10 seconds), run as a user would: a fresh process per
length. Run: python benchmarks/compare_zoo.py [LENGTH ...] (default 4096 65536)"""
from __future__ import annotations

import subprocess
import sys
import time

import einsum_ir as ei
from attnc.compare import ZOO_SHAPE


def shape_args(n: int) -> list[str]:
    """docs/zoo.md's shape at M = P = n (gna-2d: a square image of n tokens)."""
    side = int(round(n ** 0.5))
    shape = dict(ZOO_SHAPE, M=n, P=n, PY=side, PX=side)
    return [f"{k}={v}" for k, v in shape.items()]


def main(lengths):
    designs = list(ei.library.names())
    print(f"{'M = P':>8s} {'designs':>8s} {'seconds':>8s}")
    for n in lengths:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "attnc", "compare", *designs, "--shape", *shape_args(n)],
                       check=True, stdout=subprocess.DEVNULL)
        print(f"{n:>8d} {len(designs):8d} {time.perf_counter() - t:8.2f}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [4096, 65536])

"""Wall time of `attnc compare` over the whole library at M = P = 64K (issue
3 asks for under 10 seconds), run as a user would: a fresh process per
length. Run: python benchmarks/compare_zoo.py [LENGTH ...]"""
from __future__ import annotations

import subprocess
import sys
import time

import einsum_ir as ei

# The standard zoo shape of docs/zoo.md; each design takes the symbols it uses.
SHAPE = ("B=1 H=32 E=128 F=128 W=512 ST=1 DL=1 M0=256 G=4 NS=4 HS=16 TQ=128 TK=128 density_BM=0.25 "
         "R=8 D=4096 N=49 TOPK=8 PY=256 PX=256 WY=13 WX=13 STY=1 STX=1 DLY=1 DLX=1").split()


def main(lengths):
    designs = list(ei.library.names())
    print(f"{'M = P':>8s} {'designs':>8s} {'seconds':>8s}")
    for n in lengths:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "attnc", "compare", *designs, "--shape", f"M={n}", f"P={n}",
                        *SHAPE], check=True, stdout=subprocess.DEVNULL)
        print(f"{n:>8s} {len(designs):8d} {time.perf_counter() - t:8.2f}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["4K", "64K"])

"""Differential soundness at scale (issue 13): N generated designs through every
stage of attnc, each against an independent reference (attnc.soundness), and
a table of what was accepted, refused (grouped by reason) and wrong.

Run: TRITON_INTERPRET=1 python benchmarks/soundness.py [--n 2000] [--seed 0] [--jobs 2]
     [--family softmax ...] [--stages parse executor passes kernel gpu-model] [--out FILE.md]
Exit status 1 when any stage gave a wrong answer or an internal error.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TRITON_INTERPRET", "1")      # before triton is imported anywhere

from attnc.soundness import STAGES, run  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="number of generated designs (default 2000)")
    ap.add_argument("--seed", type=int, default=0, help="first seed (designs use seed .. seed + n - 1)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    ap.add_argument("--family", action="append", help="only these families (repeatable)")
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    ap.add_argument("--spatial", type=int, default=100, help="random points over the shipped spatial mappings")
    ap.add_argument("--out", help="also write the table to this markdown file")
    a = ap.parse_args(argv)
    summary = run(a.n, a.seed, a.family, a.stages, jobs=a.jobs, spatial_points=a.spatial)
    text = (f"attnc soundness benchmark, {time.strftime('%Y-%m-%d')}, seeds {a.seed}..{a.seed + a.n - 1}, "
            f"{a.jobs} worker(s)\n\n" + summary.table())
    print(text)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text + "\n")
    return 1 if summary.mismatches else 0


if __name__ == "__main__":
    sys.exit(main())

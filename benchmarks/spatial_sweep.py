"""The spatial mapper against the paper's hand mappings at every length
(1K..1M) and workload (docs/mapper.md): the 1-pass cascade on `fusemax`
against FuseMax's +Binding mapping, the 3-pass cascade on `flat` against
FLAT's configuration. Runs through `attnc sweep` (resumable CSV), then
prints found / hand per point.

    .venv/bin/python benchmarks/spatial_sweep.py [--out FILE.csv] [--jobs N] [--lengths 1K..1M]
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attnc.sweep import grid, parse_lengths, run  # noqa: E402

PAIRS = (("attention-1pass", "fusemax", "fusemax-binding"), ("attention-3pass", "flat", "flat"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="spatial_sweep.csv")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--lengths", default="1K..1M")
    ap.add_argument("--workloads", default="BERT,TrXL,T5,XLM")
    a = ap.parse_args()
    lengths, works = parse_lengths(a.lengths), a.workloads.split(",")
    points = []
    for design, hw, hand in PAIRS:
        points += grid([design], [hw], lengths, works) + grid([design], [hw], lengths, works, mapping=hand)
    run(points, a.out, jobs=a.jobs, progress=sys.stderr.isatty())
    with open(a.out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    at = {(r["design"], r["hw"], r["workload"], r["length"], r["mapping"]): r for r in rows}
    print("| design | hw | workload | length | found / hand latency | found energy / hand | k0 q0 q1 | search s |")
    print("|---|---|---|---|---|---|---|---|")
    worst = {}
    for design, hw, hand in PAIRS:
        for p in grid([design], [hw], lengths, works):
            f, h = at[p.key()[:4] + ("",)], at[p.key()[:4] + (hand,)]
            if f["status"] != "ok" or h["status"] != "ok":
                print(f"| {design} | {hw} | {p.workload} | {p.length} | refused: {f['error'] or h['error']} |")
                continue
            ratio = float(f["latency_cycles"]) / float(h["latency_cycles"])
            worst[design] = max(worst.get(design, 0.0), ratio)
            print(f"| {design} | {hw} | {p.workload} | {p.length} | {ratio:.4f} | "
                  f"{float(f['energy_pj']) / float(h['energy_pj']):.3f} | {f['k0']} {f['q0']} {f['q1']} | "
                  f"{f['search_s']} |")
    print("\nworst found / hand: " + ", ".join(f"{d} {w:.4f}" for d, w in worst.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

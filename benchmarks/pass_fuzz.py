"""The pass analysis against the traversal simulator on random cascades
whose Einsums read positions computed from m (`m - 1`, `m // 2`,
`(m + 1) // 2`, `M - 1 - m`, `m * 2`, ...), over M whole or in tiles, with
reductions over M read back: a wrong answer is fewer passes than a
traversal needs, or streamable where no traversal streams. A fixed-seed
sample runs in tests/einsum_ir/test_passes_random_indices.py.

    python benchmarks/pass_fuzz.py --n 2000 --seed 0

Prints how many the analysis got exact, over-counted (held where it cannot
prove a position never after m's tile) or refused though a traversal
streams them, and each wrong answer; exit status 1 if there is one.
"""
from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import einsum_ir as ei  # noqa: E402
from einsum_ir.analysis import passes  # noqa: E402
from einsum_ir.analysis.traversal import simulate_passes  # noqa: E402


INDICES = ["m", "m - 1", "m - 2", "m + 1", "m // 2", "(m - 1) // 2", "m // 3", "(m + 1) // 2", "(m + 2) // 2",
           "M - 1 - m", "m * 2", "m // 2 + 1", "-1 + m // 2", "(m + 5) // 3"]


def random_cascade(seed: int) -> tuple[str, list[dict]]:
    """A cascade of one to four Einsums over M and P, and its two shapes."""
    r = random.Random(seed)
    tiled = r.random() < 0.5
    lines, names = [], ["K", "V"]

    def inside(ix):
        return f"{ix} >= 0 and {ix} < M"
    for i in range(r.randint(1, 4)):
        src, ix, kind = r.choice(names), r.choice(INDICES), r.random()
        if kind < 0.6:
            other, ix2 = r.choice(names), r.choice(["m", ix]) if r.random() < 0.3 else "m"
            lines.append(f"Y{i}[m, p] = {src}[{ix}, p] * {other}[{ix2}, p] where {inside(ix)} and {inside(ix2)}")
        elif kind < 0.8:
            lines.append(f"R{i}[p] = {r.choice(['max', 'sum'])}[m] {src}[{ix}, p] where {inside(ix)}")
            lines.append(f"Y{i}[m, p] = {r.choice(names)}[m, p] - R{i}[p]")
        else:
            lines.append(f"Y{i}[m, p] = {src}[{ix}, p] + 1 where {inside(ix)}")
        names.append(f"Y{i}")
    body = "\n".join(lines)
    head = ["rank P", "partition M -> M1, M0" if tiled else "rank M"] + \
        [f"input {x}[M, P]" for x in ("K", "V") if f"{x}[" in body]
    shapes = [dict(M=9, M0=2, P=2), dict(M=13, M0=3, P=2)] if tiled else [dict(M=7, P=2), dict(M=9, P=2)]
    return "\n".join(head) + "\n" + body + "\n", shapes


def compare(seed: int) -> str:
    """'exact', 'over' (more passes than needed), 'refused-streamable' or
    'wrong' (too few passes, or streamable where no traversal streams)."""
    text, shapes = random_cascade(seed)
    c = ei.parse(text)
    claim = passes(c, "M").passes
    sims = [simulate_passes(c, "M", s).passes for s in shapes]
    if claim is None:
        return "exact" if all(s is None for s in sims) else "refused-streamable"
    if any(s is None or s > claim for s in sims):
        return "wrong"
    return "exact" if all(s == claim for s in sims) else "over"



def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="number of cascades (default 2000)")
    ap.add_argument("--seed", type=int, default=0, help="first seed (cascades use seed .. seed + n - 1)")
    a = ap.parse_args(argv)
    counts, wrong = Counter(), []
    for s in range(a.seed, a.seed + a.n):
        outcome = compare(s)
        counts[outcome] += 1
        if outcome == "wrong":
            wrong.append(s)
    print(f"pass analysis on {a.n} random cascades (seeds {a.seed}..{a.seed + a.n - 1}): "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for s in wrong:
        print(f"\nwrong at seed {s}:\n{random_cascade(s)[0]}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())

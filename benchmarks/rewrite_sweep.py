"""The rewrites over generated designs: every form on N designs of
einsum_ir.random_designs; each either applies (and its built-in check on
random inputs passes) or is refused with a RewriteError. A result that
differs from its design, or any other exception, is a failure (exit 1).

    python benchmarks/rewrite_sweep.py --n 200 --seed 11
"""
from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from einsum_ir.errors import EinError  # noqa: E402
from einsum_ir.random_designs import random_designs  # noqa: E402
from einsum_ir.rewrites import FORMS, RewriteError, rewrite  # noqa: E402


def sweep(n: int, seed: int, forms) -> int:
    failures = 0
    for form in forms:
        t0 = time.perf_counter()
        done, reasons, lowered = collections.Counter(), collections.Counter(), 0
        for d in random_designs(n, seed=seed):
            try:
                r = rewrite(d.cascade(), form, shapes=d.shapes)
                done[f"applied ({d.family})"] += 1
                lowered += r.passes_after is not None and r.passes_before is not None \
                    and r.passes_after < r.passes_before
            except RewriteError as e:
                if "differs" in e.message or "does not validate" in e.message:
                    failures += 1
                    print(f"FAIL {d.name} --to {form}: {e.message}")
                else:
                    done[f"refused ({d.family})"] += 1
                    reasons[e.message.split(": ", 2)[-1][:90]] += 1
            except EinError as e:           # the design itself at its shapes
                done["design error"] += 1
                print(f"design error {d.name}: {e.message[:200]}")
            except Exception as e:  # noqa: BLE001
                failures += 1
                print(f"CRASH {d.name} --to {form}: {type(e).__name__}: {e}")
        print(f"--to {form}: {n} designs in {time.perf_counter() - t0:.0f} s; lowered the pass count of {lowered}")
        for k, v in sorted(done.items()):
            print(f"  {v:4d}  {k}")
        print("  most common refusals:")
        for k, v in reasons.most_common(6):
            print(f"  {v:4d}  {k}")
    return failures


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--to", nargs="+", default=list(FORMS), choices=FORMS)
    a = p.parse_args()
    failures = sweep(a.n, a.seed, a.to)
    print(f"{failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

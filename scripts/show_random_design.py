"""Print one random design of einsum_ir.random_designs: its .ein text, the
shapes to run it at and its features (a failing seed from the tests or from a
large run is reproduced this way).

Run: python scripts/show_random_design.py SEED [FAMILY] [--run]
  --run  also parse, execute at the shapes and print each output's shape and
         whether it is finite.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from einsum_ir.random_designs import FAMILIES, random_design  # noqa: E402

USAGE = f"usage: show_random_design.py SEED [FAMILY] [--run]   (families: {', '.join(FAMILIES)})"


def main(argv: list[str]) -> int:
    run = "--run" in argv
    args = [a for a in argv if a != "--run"]
    if not 1 <= len(args) <= 2 or not args[0].lstrip("-").isdigit():
        print(USAGE, file=sys.stderr)
        return 2
    try:
        d = random_design(int(args[0]), args[1] if len(args) > 1 else None)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(d.text, end="")
    print(f"# shapes: {' '.join(f'{k}={v}' for k, v in d.shapes.items())}")
    print(f"# features: {', '.join(sorted(d.features))}")
    if run:
        import numpy as np
        import einsum_ir as ei
        c = d.cascade()
        out = ei.execute(c, ei.random_inputs(c, d.shapes), d.shapes)
        for name, arr in out.items():
            print(f"# {name}: shape {arr.shape}, finite: {bool(np.isfinite(arr).all())}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

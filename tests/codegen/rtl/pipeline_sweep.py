"""Random configurations of the 1-pass cascade on FuseMax's hardware scaled
to small arrays (+Binding and +Architecture, FuseMax's exp or a native
2-cycle one, partial tiles): the simulator's `epoch_pipeline` against the
top's schedule (`Schedule.cycles`, what the Icarus bench measures). Prints
each configuration with a difference or a caveat, then the counts; exits 1
if a prediction differs from the top's without a caveat. Not part of the
test suite (a few minutes): docs/rtl.md, The top against the simulator.

    TRITON_INTERPRET=1 .venv/bin/python -m tests.codegen.rtl.pipeline_sweep [SEED] [COUNT]
"""
from __future__ import annotations

import random
import sys

from codegen.rtl import top
from codegen.rtl.fixed import Fmt, RTLError
from einsum_ir.execute import random_inputs
from simulator.events import epoch_pipeline

from .test_pipeline import one_pass


def sweep(seed: int, count: int) -> dict:
    rng = random.Random(seed)
    out = {"equal": 0, "different, with a caveat": 0, "different, no caveat": 0, "refused by the controller": 0}
    for _ in range(count):
        rows, cols = rng.randint(1, 4), rng.randint(1, 4)
        kw = dict(mapping=rng.choice(["fusemax-binding", "fusemax-architecture"]),
                  exp_cycles=2 if rng.random() < 0.4 else None)
        shapes = dict(B=rng.randint(1, 2), H=1, E=rng.randint(1, 6), F=rng.randint(1, 6),
                      M=max(1, rows * rng.randint(1, 3) - rng.choice([0, 0, 1])), P=cols * rng.randint(1, 3))
        c, hw, m, sh = one_pass(rows, cols, shapes, **kw)
        try:
            t = top.generate_top(c, random_inputs(c, sh, seed=3), sh, Fmt(32, 16), hw, m, name="sweep")
        except RTLError:
            out["refused by the controller"] += 1      # a share of an epoch that is not a whole number of cycles
            continue
        p = epoch_pipeline(c, m, hw, sh)
        same = t.schedule.cycles == p.rtl_cycles
        key = "equal" if same else "different, with a caveat" if p.caveats else "different, no caveat"
        out[key] += 1
        if not same or p.caveats:
            print(f"{rows}x{cols} {kw} {shapes}: top {t.schedule.cycles}, predicted {p.rtl_cycles:g}; {p.caveats}")
    return out


if __name__ == "__main__":
    counts = sweep(int(sys.argv[1]) if len(sys.argv) > 1 else 1, int(sys.argv[2]) if len(sys.argv) > 2 else 60)
    print(counts)
    sys.exit(1 if counts["different, no caveat"] else 0)

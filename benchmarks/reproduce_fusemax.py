"""CPU time of `attnc reproduce fusemax` (issue 14: under 1 s of compute on
one core): every number of the reproduction (120 attention points, 48
end-to-end points, the 6-point array sweep), then the tables, then the
figures, each timed with process CPU time in a fresh process after the
imports. `cold` is the first run (it parses the two cascades and the five
mapping and two hardware files); `warm` a second run in the same process.
Run: python benchmarks/reproduce_fusemax.py [--repeat N]"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _cpu(f):
    t0 = time.process_time()
    out = f()
    return time.process_time() - t0, out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3, help="warm runs (the best is reported)")
    args = ap.parse_args(argv)
    import matplotlib  # noqa: F401  imports are not the reproduction's compute
    import attnc.reproduce as rp
    import einsum_ir  # noqa: F401
    import simulator.analytical  # noqa: F401
    cold, (points, sweep) = _cpu(rp.compute_all)
    warm = min(_cpu(rp.compute_all)[0] for _ in range(args.repeat))
    with tempfile.TemporaryDirectory() as d:
        tables, _ = _cpu(lambda: rp.write_tables(points, Path(d)))
        figures, _ = _cpu(lambda: (rp.plot_speedup(points, Path(d) / "s.png"),
                                   rp.plot_utilisation(points, Path(d) / "u.png"),
                                   rp.plot_energy(points, Path(d) / "e.png"),
                                   rp.plot_sweep(sweep, Path(d) / "a.png")))
    out = {"attention_points": len(points), "end2end_points": len(points), "sweep_points": len(sweep),
           "compute_cold_s": round(cold, 3), "compute_warm_s": round(warm, 3), "tables_s": round(tables, 3),
           "figures_s": round(figures, 3)}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()

"""Leave-one-group-out cross-validation of the GPU model on published
measurements (benchmarks/published/gpu_measured.csv by default, a copy of
../shared/reference/gpu_measured.csv): for each
GPU and each kernel class, fit the model's constants without it and predict
it; print the markdown table of docs/benchmarks.md ("GPU model,
cross-validated") and the in-sample fit. Takes a few minutes on one core.

    .venv/bin/python benchmarks/gpu_validate.py [RESULTS.csv] [--out FILE.md]
"""
from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hw_models.gpu import load_gpu  # noqa: E402
from simulator.calibrate import Error, Fold, cross_validate, fit_many, predict_case, read_results, render_cv  # noqa: E402

DEFAULT = Path(__file__).resolve().parent / "published" / "gpu_measured.csv"   # a copy of the shared reference


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="?", default=str(DEFAULT))
    ap.add_argument("--out", help="also write the markdown here")
    ap.add_argument("--steps", type=int, default=8, help="golden-section steps per constant (default 8)")
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args(argv)
    cases = read_results(a.results)
    gpus = {g: load_gpu(g) for g in sorted({c.row["device"] for c in cases})}
    kw = dict(steps=a.steps, rounds=a.rounds)
    folds = cross_validate(cases, gpus, **kw)
    fitted = fit_many(cases, dict(gpus), **kw)
    folds.append(Fold("none", "all", [Error(c, predict_case(c, fitted[c.row["device"]]).time_s) for c in cases],
                      {}))
    consts = ", ".join(f"{g}: " + ", ".join(f"{k}={fitted[g].efficiency[k]:g}" for k in
                                            ("fused_tensor", "mma", "wgmma", "serial_overlap", "ws_overlap", "program_cycles"))
                       for g in fitted)
    text = (f"Cross-validated {datetime.date.today().isoformat()} on {len(cases)} published measurements "
            f"({Path(a.results).name}); constants fitted to all rows: {consts}.\n\n" + render_cv(folds))
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

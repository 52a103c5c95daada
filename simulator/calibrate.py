"""Fitting the GPU model's efficiency constants to measured kernels, and
reporting its error. Input: the CSV of benchmarks/gpu_attention.py (or the
published figures in benchmarks/published/). Each row becomes a library
design at its shapes: `cab-self-causal` for causal rows, `gqa` (G = heads /
kv_heads) for the rest, decode included. Prefill rows are predicted with a
FlashAttention-2-class mapping (what SDPA's flash backend runs); decode
rows with the model's own best mapping (split-KV, GQA packing)."""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from einsum_ir import library
from einsum_ir.analysis.fused import recognise
from einsum_ir.errors import EinError
from einsum_ir.shapes import resolve
from hw_models.gpu import GPU
from mappers.gpu_mapping import GPUMapping

COLUMNS = ("device", "kernel", "dtype", "batch", "heads", "kv_heads", "q_len", "kv_len", "head_dim", "causal",
           "time_s", "tflops")


class CalibrationError(EinError):
    pass


@dataclass(frozen=True)
class Case:
    row: dict
    design: str
    env: dict
    measured_s: float

    @property
    def label(self) -> str:
        r = self.row
        what = "decode" if int(r["q_len"]) == 1 else ("causal" if int(r["causal"]) else "full")
        return (f"{r['kernel']} {what} B={r['batch']} H={r['heads']}/{r['kv_heads']} "
                f"N={r['q_len']}x{r['kv_len']} D={r['head_dim']}")


def read_results(path, kernels: list[str] | None = None) -> list[Case]:
    path = Path(path)
    try:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    except OSError as e:
        raise CalibrationError(f"cannot read {path}: {e.strerror}") from None
    reader = csv.DictReader(lines)
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise CalibrationError(f"{path}: missing column{'s' * (len(missing) > 1)} {', '.join(missing)} "
                               f"(expected {','.join(COLUMNS)})")
    cases = []
    for n, row in enumerate(reader, start=2):
        if kernels and row["kernel"] not in kernels:
            continue
        try:
            b, h, kvh, q, kv, d = (int(row[k]) for k in ("batch", "heads", "kv_heads", "q_len", "kv_len",
                                                           "head_dim"))
            causal, t = int(row["causal"]), float(row["time_s"])
        except ValueError as e:
            raise CalibrationError(f"{path}: data row {n - 1}: {e}") from None
        if t <= 0 or h % kvh:
            raise CalibrationError(f"{path}: data row {n - 1}: time must be positive and heads a multiple of "
                                   "kv_heads")
        if causal:
            if q != kv or h != kvh:
                raise CalibrationError(f"{path}: data row {n - 1}: causal rows need q_len == kv_len, heads == "
                                       "kv_heads")
            cases.append(Case(row, "cab-self-causal", dict(B=b, H=h, P=q, E=d, F=d), t))
        else:
            cases.append(Case(row, "gqa", dict(B=b, H=h, G=h // kvh, P=q, M=kv, E=d, F=d), t))
    if not cases:
        raise CalibrationError(f"{path}: no rows" + (f" for kernel {', '.join(kernels)}" if kernels else ""))
    return cases


def fa2_mapping(head_dim: int, dtype: str = "bf16") -> GPUMapping:
    """FlashAttention-2's forward tiles on Hopper/Ampere: 128 x 128 for head
    dim 64, 128 x 64 for 128, four warps, two stages."""
    return GPUMapping(128, 128 if head_dim <= 64 else 64, 4, 2, 1, 1, dtype)


def predict_case(case: Case, gpu: GPU):
    from mappers.gpu_search import shortlist
    from simulator.gpu import predict_fused
    form = recognise(library.load(case.design))
    env = resolve(form.cascade, case.env)
    dtype = case.row.get("dtype") or "bf16"
    if int(case.row["q_len"]) <= 16:
        return shortlist(form, gpu, env, dtype, top=1)[0]
    return predict_fused(form, fa2_mapping(int(case.row["head_dim"]), dtype), gpu, env)


@dataclass(frozen=True)
class Error:
    case: Case
    predicted_s: float

    @property
    def relative(self) -> float:
        """(predicted - measured) / measured."""
        return self.predicted_s / self.case.measured_s - 1


def validate(cases: list[Case], gpu: GPU, progress=None) -> list[Error]:
    out = []
    for c in (progress(cases) if progress else cases):
        out.append(Error(c, predict_case(c, gpu).time_s))
    return out


def median_abs(errors: list[Error]) -> float:
    xs = sorted(abs(e.relative) for e in errors)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


RANGES = {"fused_tensor": (0.01, 1.0), "gemm_tensor": (0.01, 1.0), "bandwidth": (0.3, 1.0),
          "latency_ns": (100.0, 3000.0)}


FIT_STEPS = 18


def fit_evaluations(constants) -> int:
    """How many times `fit` evaluates the loss (for a progress bar)."""
    return 2 * len(constants) * (FIT_STEPS + 4)


def fit(cases: list[Case], gpu: GPU, constants=("fused_tensor", "latency_ns"), tick=None) -> GPU:
    """Least squares in log(predicted / measured), one constant at a time
    (golden-section search over its range), twice round. A constant no row
    is sensitive to keeps its value. `tick()` is called once per evaluation
    of the loss (fit_evaluations(constants) in all): a progress bar's."""
    for name in constants:
        if name not in RANGES:
            raise CalibrationError(f"cannot fit {name!r}; fit one of {', '.join(RANGES)}")

    def loss(g: GPU) -> float:
        if tick:
            tick()
        return sum(math.log(predict_case(c, g).time_s / c.measured_s) ** 2 for c in cases)

    for _ in range(2):
        for name in constants:
            lo, hi = RANGES[name]
            phi = (math.sqrt(5) - 1) / 2
            a, b = hi - phi * (hi - lo), lo + phi * (hi - lo)
            fa, fb = loss(gpu.with_efficiency(**{name: a})), loss(gpu.with_efficiency(**{name: b}))
            for _ in range(FIT_STEPS):
                if fa <= fb:
                    hi, b, fb = b, a, fa
                    a = hi - phi * (hi - lo)
                    fa = loss(gpu.with_efficiency(**{name: a}))
                else:
                    lo, a, fa = a, b, fb
                    b = lo + phi * (hi - lo)
                    fb = loss(gpu.with_efficiency(**{name: b}))
            best = (a + b) / 2
            if abs(loss(gpu.with_efficiency(**{name: best})) - loss(gpu)) > 1e-12:
                gpu = gpu.with_efficiency(**{name: float(f"{best:.4g}")})
    return gpu


def write_preset(source: Path, gpu: GPU, out: Path, note: str) -> None:
    """`source`'s text with the efficiency block's values replaced (comments
    kept) and a line saying where they came from."""
    text = Path(source).read_text()
    m = re.search(r"^efficiency:[^\n]*\n((?:[ \t]+.*\n?)+)", text, re.M)
    if not m:
        raise CalibrationError(f"{source} has no efficiency block")
    block = m.group(1)
    for k, v in gpu.efficiency.items():
        block = re.sub(rf"^(\s+{k}:\s*)[^#\n]*", lambda mm: f"{mm.group(1)}{v:g}", block, flags=re.M)
    text = text[:m.start(1)] + block + text[m.end(1):]
    text = re.sub(rf"^{PROVENANCE}.*\n", "", text, flags=re.M)       # the record of an earlier fit
    text = f"{PROVENANCE}{note}\n" + text
    Path(out).write_text(text)


PROVENANCE = "# calibration: "
"""The first line of a preset written by `write_preset`: the command that
fitted it, on what data, and the error before and after, so that the fit
can be re-run (tests/simulator/test_calibration_provenance.py does)."""


def provenance(path) -> str | None:
    """The `attnc calibrate ...` command recorded in a preset, or None."""
    m = re.search(rf"^{PROVENANCE}`(attnc calibrate [^`]*)`", Path(path).read_text(), re.M)
    return m.group(1) if m else None


__all__ = ["COLUMNS", "Case", "CalibrationError", "Error", "fa2_mapping", "fit", "median_abs", "predict_case", "provenance",
           "read_results", "validate", "write_preset"]

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

import einsum_ir as ei
from einsum_ir import library
from einsum_ir.analysis.fused import recognise
from einsum_ir.analysis.tile_program import tile_program
from einsum_ir.analysis.tiles import cell_counts
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
        what = "decode" if int(r["q_len"]) == 1 else (r.get("mask") or ("causal" if int(r["causal"]) else "full"))
        return (f"{r['kernel']} {what} B={r['batch']} H={r['heads']}/{r['kv_heads']} "
                f"N={r['q_len']}x{r['kv_len']} D={r['head_dim']}")


def read_results(path, kernels: list[str] | None = None) -> list[Case]:
    """Cases of a results CSV: benchmarks/gpu_attention.py's columns
    (COLUMNS), or the published-measurement columns (MEASURED_COLUMNS: GPU,
    kernel class, mask, measured microseconds)."""
    path = Path(path)
    try:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    except OSError as e:
        raise CalibrationError(f"cannot read {path}: {e.strerror}") from None
    reader = csv.DictReader(lines)
    cases = (read_measured if "kclass" in (reader.fieldnames or []) else _read_runs)(path, reader, kernels)
    if not cases:
        raise CalibrationError(f"{path}: no rows" + (f" for kernel {', '.join(kernels)}" if kernels else ""))
    return cases


def _read_runs(path: Path, reader, kernels=None) -> list[Case]:
    """Cases of benchmarks/gpu_attention.py's results (COLUMNS)."""
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
    return cases


MEASURED_COLUMNS = ("gpu", "kernel", "kclass", "B", "H", "KVH", "q", "kv", "D", "mask", "measured_us")

# the measured file's GPU names -> presets; its kernel classes -> the model's
GPU_PRESET = {"H100 SXM5 80GB": "h100", "H100 SXM 80GB": "h100", "A100 80GB PCIe": "a100-pcie",
              "A100 SXM 80GB": "a100", "H200 SXM 141GB": "h200"}
MODEL_CLASS = {"FA2": "fa2", "FA2-class sm80": "fa2", "Triton (Hopper)": "triton",
               "Hopper warp-specialised": "hopper-ws"}

_GQA_CAUSAL = """# GQA with bottom-right causal alignment: query p sees keys m <= p + M - P
# (M = P: ordinary causal; P < M: chunked prefill). Every query sees a key.
rank B, H, M, P, E, F
rank KH = H / G
input Q[B, H, E, P]: f16
input K[B, KH, E, M]: f16
input V[B, KH, F, M]: f16
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h / G, e, m] where m <= p + M - P
GM[b, h, p] = max[m] QK[b, h, m, p] where m <= p + M - P
SN[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p]) where m <= p + M - P
SD[b, h, p] = SN[b, h, m, p] where m <= p + M - P
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h / G, f, m] where m <= p + M - P
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]
"""
GENERATED = {"gqa-causal-br": _GQA_CAUSAL}


def read_measured(path: Path, reader, kernels=None) -> list[Case]:
    """Cases of the published-measurement CSV (../shared/reference/
    gpu_measured.csv): GQA designs at each row's shapes, `gqa` for no mask,
    `gqa-causal-br` (bottom-right causal) for causal and causal-br rows."""
    missing = [c for c in MEASURED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise CalibrationError(f"{path}: missing column{'s' * (len(missing) > 1)} {', '.join(missing)}")
    cases = []
    for n, row in enumerate(reader, start=1):
        if kernels and row["kernel"] not in kernels:
            continue
        where = f"{path}: data row {n}"
        try:
            b, h, kvh, q, kv, d = (int(row[k]) for k in ("B", "H", "KVH", "q", "kv", "D"))
            t = float(row["measured_us"]) * 1e-6
        except ValueError as e:
            raise CalibrationError(f"{where}: {e}") from None
        if row["gpu"] not in GPU_PRESET or row["kclass"] not in MODEL_CLASS:
            bad = "gpu" if row["gpu"] not in GPU_PRESET else "kclass"
            known = GPU_PRESET if bad == "gpu" else MODEL_CLASS
            raise CalibrationError(f"{where}: unknown {bad} {row[bad]!r}; known: {', '.join(known)}")
        if t <= 0 or min(b, h, kvh, q, kv, d) < 1 or h % kvh:
            raise CalibrationError(f"{where}: time and shapes must be positive, H a multiple of KVH")
        if row["mask"] not in ("none", "causal", "causal-br") or (row["mask"] == "causal" and q != kv) or q > kv:
            raise CalibrationError(f"{where}: mask must be none, causal (q == kv) or causal-br (q <= kv); "
                                   f"got {row['mask']!r} with q={q}, kv={kv}")
        causal = int(row["mask"] != "none")
        std = dict(device=GPU_PRESET[row["gpu"]], kernel=row["kernel"], dtype="bf16", batch=b, heads=h,
                   kv_heads=kvh, q_len=q, kv_len=kv, head_dim=d, causal=causal, time_s=t,
                   model_class=MODEL_CLASS[row["kclass"]], kclass=row["kclass"], mask=row["mask"])
        env = dict(B=b, H=h, G=h // kvh, P=q, M=kv, E=d, F=d)
        cases.append(Case(std, "gqa-causal-br" if causal else "gqa", env, t))
    return cases


def fa2_mapping(head_dim: int, dtype: str = "bf16") -> GPUMapping:
    """FlashAttention-2's forward tiles on Hopper/Ampere: 128 x 128 for head
    dim 64, 128 x 64 for 128 (four warps), 128 x 64 with eight warps for
    256 (its accumulator needs them), two stages."""
    return GPUMapping(128, 128 if head_dim <= 64 else 64, 8 if head_dim > 128 else 4, 2, 1, 1, dtype)


def class_mapping(kclass: str, head_dim: int, dtype: str = "bf16") -> GPUMapping:
    """The tiles a published kernel of class `kclass` runs: FlashAttention-2's
    (fa2_mapping); Triton's tutorial on Hopper: 128 x 64 (128 x 128 at
    head dim 64), eight warps, three stages; Hopper warp-specialised
    (FlashAttention-3): 128 x 128 (x 64 at head dim 256), two consumer
    warpgroups, two stages."""
    if kclass == "fa2":
        return fa2_mapping(head_dim, dtype)
    if kclass == "triton":
        return GPUMapping(128, 128 if head_dim <= 64 else 64, 8, 3, 1, 1, dtype)
    if kclass == "hopper-ws":
        return GPUMapping(128, 128 if head_dim <= 128 else 64, 8, 2, 1, 1, dtype)
    raise CalibrationError(f"no mapping for kernel class {kclass!r}")


_FORMS: dict = {}


def _form(design: str):
    """(FusedForm, TileProgram) of a library design or of a generated one
    (GENERATED), parsed once."""
    if design not in _FORMS:
        c = ei.parse(GENERATED[design], name=design) if design in GENERATED else library.load(design)
        form = recognise(c)
        _FORMS[design] = (form, tile_program(form))
    return _FORMS[design]


def predict_case(case: Case, gpu: GPU):
    from mappers.gpu_search import shortlist
    from simulator.gpu import predict_fused
    form, program = _form(case.design)
    env = resolve(form.cascade, case.env)
    dtype = case.row.get("dtype") or "bf16"
    kclass = case.row.get("model_class") or "fa2"
    if int(case.row["q_len"]) <= 16:
        return shortlist(form, gpu, env, dtype, top=1)[0]
    counts = [cell_counts(form, k, env) for k in range(form.passes)]
    return predict_fused(program, class_mapping(kclass, int(case.row["head_dim"]), dtype), gpu, env,
                         counts=counts, kclass=kclass, order="head-major")


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
            best = _golden(lambda v: loss(gpu.with_efficiency(**{name: v})), *RANGES[name], FIT_STEPS)
            if abs(loss(gpu.with_efficiency(**{name: best})) - loss(gpu)) > 1e-12:
                gpu = gpu.with_efficiency(**{name: float(f"{best:.4g}")})
    return gpu


def _golden(loss, lo: float, hi: float, steps: int) -> float:
    """The minimiser of a loss over [lo, hi] by golden-section search, the
    interval narrowed `steps` times (the loss is evaluated steps + 2 times)."""
    phi = (math.sqrt(5) - 1) / 2
    a, b = hi - phi * (hi - lo), lo + phi * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(steps):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - phi * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + phi * (hi - lo)
            fb = loss(b)
    return (a + b) / 2


SHARED = ("fused_tensor", "serial_overlap", "ws_overlap")
RANGES.update({"mma": (0.2, 1.0), "wgmma": (0.2, 1.0), "serial_overlap": (0.0, 1.0), "ws_overlap": (0.0, 1.0),
               "program_cycles": (0.0, 20000.0)})


def fittable(cases: list[Case]) -> list[str]:
    """The constants the cases can pin down, each shared by every GPU: the
    attention kernels' fraction of their path's rate, the per-program
    cycles, and each class's overlap where a case of that class is present.
    No path fraction is fitted: a path a GEMM measures keeps the preset's
    value, and Hopper's mma.sync is derived from Ampere's (its preset,
    docs/gpu.md), so a GPU or class left out of the fit is predicted from
    nothing it measured."""
    classes = {c.row.get("model_class", "fa2") for c in cases}
    out = ["fused_tensor", "program_cycles"]
    if classes & {"fa2", "triton"}:
        out.append("serial_overlap")
    if "hopper-ws" in classes:
        out.append("ws_overlap")
    return out


def _set(gpus: dict[str, GPU], name: str, value: float) -> dict[str, GPU]:
    return {g: x.with_efficiency(**{name: value}) for g, x in gpus.items()}


def fit_many(cases: list[Case], gpus: dict[str, GPU], rounds: int = 2, steps: int = 12) -> dict[str, GPU]:
    """The constants `fittable` names, fitted to `cases` on their GPUs
    (least squares in log(predicted / measured), golden-section search per
    constant, `rounds` times round); a value is taken only where it lowers
    the loss."""
    def loss(gs) -> float:
        return sum(math.log(predict_case(c, gs[c.row["device"]]).time_s / c.measured_s) ** 2 for c in cases)

    for _ in range(rounds):
        for name in fittable(cases):
            best = float(f"{_golden(lambda v: loss(_set(gpus, name, v)), *RANGES[name], steps):.4g}")
            if loss(_set(gpus, name, best)) < loss(gpus):
                gpus = _set(gpus, name, best)
    return gpus


@dataclass(frozen=True)
class Fold:
    """One leave-one-group-out fold: the group held out, the constants fitted
    without it and its errors."""
    by: str               # device | kclass | none (all data: the in-sample fit)
    held_out: str
    errors: list
    constants: dict


def cross_validate(cases: list[Case], gpus: dict[str, GPU], by=("device", "kclass"), progress=None,
                   **fit_kw) -> list[Fold]:
    """Leave-one-group-out: for each value of each key in `by` (a GPU, a
    kernel class), fit on the other rows and predict the held-out ones."""
    folds = []
    for key in by:
        groups = sorted({c.row[key] for c in cases})
        if len(groups) < 2:
            raise CalibrationError(f"cross-validation by {key} needs two groups; the data has {groups}")
        for g in (progress(groups) if progress else groups):
            train = [c for c in cases if c.row[key] != g]
            fitted = fit_many(train, dict(gpus), **fit_kw)
            held = [c for c in cases if c.row[key] == g]
            errs = [Error(c, predict_case(c, fitted[c.row["device"]]).time_s) for c in held]
            folds.append(Fold(key, g, errs, _constants(fitted)))
    return folds


def _constants(gpus: dict[str, GPU]) -> dict:
    return {f"{g}.{k}": v for g, x in gpus.items() for k, v in x.efficiency.items()
            if k in SHARED + ("mma", "wgmma")}


def summarise(errors: list[Error]) -> list[tuple]:
    """(GPU, class, points, median |error|, worst |error|, median signed) per
    GPU and measured kernel class."""
    groups: dict = {}
    for e in errors:
        groups.setdefault((e.case.row["device"], e.case.row.get("kclass", e.case.row["kernel"])), []).append(e)
    out = []
    for (g, k), es in sorted(groups.items()):
        signed = sorted(e.relative for e in es)
        out.append((g, k, len(es), median_abs(es), max(abs(x) for x in signed), signed[len(signed) // 2]))
    return out


def render_cv(folds: list[Fold]) -> str:
    """A markdown table of held-out errors per GPU and class, per grouping."""
    lines = []
    for by in dict.fromkeys(f.by for f in folds):
        errs = [e for f in folds if f.by == by for e in f.errors]
        what = {"device": "leave one GPU out", "kclass": "leave one kernel class out",
                "none": "in sample (fitted to all rows)"}.get(by, by)
        lines += [f"**{what}**", "", "| GPU | kernel class | points | median abs error | worst | median signed |",
                  "|---|---|---|---|---|---|"]
        for g, k, n, med, worst, signed in summarise(errs):
            lines.append(f"| {g} | {k} | {n} | {med:.1%} | {worst:.1%} | {signed:+.1%} |")
        lines.append("")
    return "\n".join(lines)


def write_preset(source: Path, gpu: GPU, out: Path, note: str) -> None:
    """`source`'s text with the efficiency block's values replaced (comments
    kept) and a line saying where they came from."""
    text = Path(source).read_text()
    m = re.search(r"^efficiency:[^\n]*\n((?:[ \t]+.*\n?)+)", text, re.M)
    if not m:
        raise CalibrationError(f"{source} has no efficiency block")
    block = m.group(1)
    for k, v in gpu.efficiency.items():
        # the value only: a comment after it keeps its place (and the space before its '#')
        block = re.sub(rf"^(\s+{k}:[ \t]*)[^#\n]*?([ \t]*(?:#.*)?)$", lambda mm: f"{mm.group(1)}{v:g}{mm.group(2)}",
                       block, flags=re.M)
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


__all__ = ["Fold", "GENERATED", "MEASURED_COLUMNS", "class_mapping", "cross_validate", "fit_many", "fittable",
           "read_measured", "render_cv", "summarise", "COLUMNS", "Case", "CalibrationError", "Error", "fa2_mapping", "fit", "median_abs", "predict_case", "provenance",
           "read_results", "validate", "write_preset"]

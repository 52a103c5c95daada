"""Differential soundness checks: every answer right, or refused with a reason.

A design (usually one from `einsum_ir.random_designs`, which nobody wrote by
hand) goes through every stage, and each stage is checked against an
independent reference:

- executor: `einsum_ir.execute` against `einsum_ir.oracle` (plain loops over
  every point) at the design's tiny shapes, every tensor;
- passes: the pass analysis against `einsum_ir.analysis.traversal` (a
  simulated traversal: the count must be enough and minimal);
- kernel: the generated Triton kernel (interpreter) against the executor, or
  a refusal that names the Einsum and the reason;
- gpu-model: the work the GPU model charges (tensor-core flops, SFU
  operations, HBM bytes) is at least the analysis's counts for the design,
  for a fused kernel (its tile program) or a chunked one (its chunk program);
- spatial: the shipped spatial mappings at random shapes: utilisation <= 1,
  busy cycles at least the analysis's operations over the units' peak, latency
  at least every unit's busy time and the DRAM time (`check_spatial`).

Each check returns an `Outcome`: ok, refused (a clean, located refusal),
mismatch (a wrong answer: must never happen), error (an internal error:
a traceback where a refusal was due), or n/a (the stage does not apply).
"""
from __future__ import annotations

import math
import os
import re
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from einsum_ir.errors import EinError

STAGES = ("parse", "executor", "passes", "kernel", "gpu-model", "spatial")
TILE = 16                    # kernel tiles: small, so that tiny sequences span several, the last partial
_SEQ_GROWTH = 2 * TILE       # kernel shapes: each sequence extent grown by this (more tiles, a partial last one)


@dataclass(frozen=True)
class Outcome:
    stage: str
    status: str              # ok | refused | mismatch | error | n/a
    detail: str = ""
    seconds: float = 0.0


@dataclass
class DesignReport:
    name: str
    family: str
    outcomes: list[Outcome] = field(default_factory=list)

    def status(self, stage: str) -> str:
        return next((o.status for o in self.outcomes if o.stage == stage), "n/a")

    @property
    def mismatches(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status in ("mismatch", "error")]


def _reason(err: BaseException) -> str:
    """A refusal's reason, first line, without the design's own names and
    locations, so that refusals group by cause."""
    msg = err.message if isinstance(err, EinError) else str(err)
    lines = msg.strip().splitlines() or [type(err).__name__]
    # "X does not fit a fused ...\n  and X does not fit a chunked ...": both families' reasons
    parts = [lines[0]] + [ln.strip().removeprefix("and ") for ln in lines[1:] if ln.strip().startswith("and ")]
    parts = [re.sub(r"^\S+ does not fit an? (\w+) \w+ kernel: ", r"\1: ", p) for p in parts]
    msg = " | ".join(parts)
    msg = re.sub(r"rand-[\w-]+-\d+", "DESIGN", msg)
    msg = re.sub(r"<[^>]*>:\d+:\d+: ", "", msg)
    msg = re.sub(r"\b[A-Z][A-Z0-9_]*\[[^\]]*\]", "T[..]", msg)
    msg = re.sub(r"\b[A-Z][A-Z0-9_]*\b", "X", msg)
    return " | ".join(p[:110] for p in msg.split(" | "))


def _timed(stage: str, fn) -> Outcome:
    t0 = time.perf_counter()
    try:
        status, detail = fn()
    except EinError as err:
        status, detail = "refused", _reason(err)
    except Exception as err:         # an internal error is a finding, recorded with where it happened
        tb = traceback.extract_tb(err.__traceback__)[-1]
        status, detail = "error", f"{type(err).__name__}: {str(err)[:200]} ({os.path.basename(tb.filename)}:{tb.lineno})"
    return Outcome(stage, status, detail, time.perf_counter() - t0)


# ------------------------------------------------------------------ comparisons

def _close(got: np.ndarray, want: np.ndarray, rtol: float, floor: float = 0.0) -> str | None:
    """None when `got` equals `want` (NaN where it is NaN, within rtol of the
    largest magnitude, or `floor`); else what differs."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return f"shape {got.shape} != {want.shape}"
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    if not np.array_equal(nan_g, nan_w):
        return f"NaN at {int((nan_g != nan_w).sum())} positions where the reference has none (or the reverse)"
    ok = ~nan_w
    if not ok.any():
        return None
    g, w = got[ok], want[ok]
    inf = np.isinf(w) | np.isinf(g)
    if not np.array_equal(g[inf], w[inf]):
        return "infinities differ"
    g, w = g[~inf], w[~inf]
    if g.size == 0:
        return None
    err = float(np.abs(g - w).max())
    scale = float(np.abs(w).max())
    if err > max(rtol * scale, floor):
        return f"max error {err:.3g} (largest magnitude {scale:.3g})"
    return None


# ------------------------------------------------------------------ stages

def check_executor(c, shapes: dict, seed: int = 0) -> tuple[str, str]:
    """Executor against the point-by-point oracle, every tensor."""
    from einsum_ir import execute, random_inputs
    from einsum_ir.oracle import OracleTooLarge, evaluate
    x = random_inputs(c, shapes, seed=seed)
    try:
        want = evaluate(c, x, shapes)
    except OracleTooLarge as err:
        return "n/a", str(err)
    except EinError as err:
        try:
            execute(c, x, shapes)
        except EinError:
            return "refused", _reason(err)
        return "mismatch", f"the oracle refuses ({_reason(err)}) but the executor runs"
    got = execute(c, x, shapes, keep="all")
    for name, arr in got.items():
        if name in want:
            bad = _close(arr, want[name], 1e-9, 1e-12)
            if bad:
                return "mismatch", f"{name}: {bad}"
    return "ok", ""


def check_passes(c, shapes: dict) -> tuple[str, str]:
    """The pass analysis against a simulated traversal of the sequence rank.
    Enough: at the design's shapes and at longer ones, the traversal never
    needs more passes than the analysis says. The analysis counts a fiber's
    dependency chain whatever the mask keeps (a window that keeps two keys per
    row lets a 3-pass chain finish in 2), so the count must also be exactly
    what the design needs without its coordinate predicates, at lengths with
    more positions than passes."""
    from einsum_ir.analysis import sequence_rank
    from einsum_ir.analysis.passes import passes
    from einsum_ir.analysis.traversal import simulate_passes
    rank = sequence_rank(c)
    claim = passes(c, rank)
    longer = _grown(c, shapes, 8, ("M", "P", c.root(rank)))
    for at in (shapes, longer):
        sim = simulate_passes(c, rank, at, max_passes=max(8, (claim.passes or 0) + 2))
        if (claim.passes is None) != (sim.passes is None):
            return "mismatch", (f"over {rank}: the analysis says {claim.passes or 'not streamable'}, the traversal "
                                f"at {at} {sim.passes or 'not streamable'} ({sim.why})")
        if claim.passes is not None and sim.passes > claim.passes:
            return "mismatch", f"over {rank}: {claim.passes} pass(es) is too few: the traversal at {at} needs {sim.passes}"
    if claim.passes is None:
        return "ok", f"over {rank}: not streamable"
    from einsum_ir.shapes import symbols_used
    bare = _unmasked(c)
    used = symbols_used(bare)
    try:
        sim = simulate_passes(bare, rank, {k: v for k, v in longer.items() if k in used}, max_passes=claim.passes + 2)
    except EinError as err:
        return "ok", f"over {rank}: {claim.passes} pass(es); minimality not checked ({_reason(err)})"
    if sim.passes is None or sim.passes > claim.passes:
        return "mismatch", (f"over {rank}: {claim.passes} pass(es) is too few: without its masks the traversal "
                            f"at {longer} needs {sim.passes or 'more'} ({sim.why})")
    if sim.passes < claim.passes:
        return "mismatch", (f"over {rank}: {claim.passes} pass(es) is not minimal: without its masks the traversal "
                            f"at {longer} completes in {sim.passes} ({sim.why})")
    return "ok", f"over {rank}: {claim.passes} pass(es)"


def _unmasked(c):
    """`c` without the conjuncts of its predicates that read no tensor (they
    remove points, never dependencies)."""
    from einsum_ir.ir import Access, Op, conjuncts, walk

    def strip(pred):
        kept = [x for x in conjuncts(pred) if any(isinstance(n, Access) for n in walk(x))]
        out = kept[0] if kept else None
        for x in kept[1:]:
            out = Op("and", (out, x))
        return out
    return c.replace(einsums=tuple(e if e.predicate is None else
                                   type(e)(e.output, e.expr, e.reduce, e.reduced, strip(e.predicate), loc=e.loc, scan=e.scan)
                                   for e in c.einsums))


def _grown(c, shapes: dict, by: int, ranks=("M", "P")) -> dict:
    """`shapes` with the free extents of `ranks` (the sequence ranks M and P)
    grown by `by` (when the design still resolves)."""
    from einsum_ir.shapes import resolve
    grown = dict(shapes)
    for r in dict.fromkeys(ranks):
        if r in grown and not any(x.name == r and x.definition is not None for x in c.ranks):
            grown[r] = shapes[r] + by
    try:
        resolve(c, grown)
        return grown
    except EinError:
        return dict(shapes)


def kernel_shapes(c, shapes: dict) -> dict:
    """The design's shapes with each free sequence extent grown, so that a
    kernel with 16 x 16 tiles walks several tiles and a partial last one."""
    from einsum_ir.shapes import resolve
    grown = _grown(c, shapes, _SEQ_GROWTH)
    for x in c.ranks:                    # hand-written tiles: one Triton tile each
        if x.part == "inner" and x.name in grown:
            grown[x.name] = TILE
    try:
        resolve(c, grown)
        return grown
    except EinError:
        return dict(shapes)


def check_kernel(c, shapes: dict, seed: int = 0) -> tuple[str, str]:
    """The generated kernel in Triton's interpreter against the executor. The
    tolerance follows the design's conditioning: the kernel computes in f32,
    so its error may be a few times that of the executor in f32."""
    import torch

    from codegen.runtime import compile_kernel
    from einsum_ir import execute, random_inputs
    from mappers.gpu_mapping import GPUMapping
    ks = kernel_shapes(c, shapes)
    kernel = compile_kernel(c, GPUMapping(TILE, TILE, dtype="f32"), ks)
    x = random_inputs(c, ks, seed=seed, dtype="float32")
    want = execute(c, x, ks, dtype="float64")
    f32 = execute(c, x, ks, dtype="float32")
    out = kernel(**{k: torch.tensor(v) for k, v in x.items()})
    outs = out if isinstance(out, dict) else {c.outputs[0].name: out}
    for name, ref in want.items():
        if name not in outs:
            continue
        noise = np.nan_to_num(np.abs(np.asarray(f32[name], np.float64) - ref), nan=0.0, posinf=0.0)
        bad = _close(outs[name].double().numpy(), ref, 1e-4, 20 * float(noise.max(initial=0.0)))
        if bad:
            return "mismatch", f"{type(kernel).__name__} {name}: {bad}"
    return "ok", type(kernel).__name__


def _evaluate(expr, env) -> float:
    from einsum_ir.analysis.evaluate import evaluate
    return float(evaluate(expr, env))


_MODEL_TILE = 64
TRANSCENDENTAL = ("exp", "log", "sqrt", "sigmoid", "tanh", "trig", "tan", "erf", "softplus", "log1p", "expm1", "pow")


def _model_shapes(c, shapes: dict, form) -> dict:
    """Shapes at which tiles waste nothing (head dims and lengths multiples of
    the tile), so that a model that leaves work out falls below the counts
    rather than hiding behind padding; the design's own where that fails."""
    from einsum_ir.shapes import resolve
    out = dict(shapes)
    for v in (form.contracted, form.feature):
        if v and v.upper() in out:
            out[v.upper()] = _MODEL_TILE
    for r in ("M", "P"):
        if r in out and not any(x.name == r and x.definition is not None for x in c.ranks):
            out[r] = 4 * _MODEL_TILE
    try:
        resolve(c, out)
        return out
    except EinError:
        return dict(shapes)


def _floor_ops(c, e, env: dict) -> Counter:
    """The analysis's operations of `e` by kind at `env`, as a floor for a
    model: each count the analysis proves exact as it is; an operator whose
    projection it does not prove (a data mask, a condition that is no
    interval: counted once per point, an upper bound, not a floor) at the
    fewest distinct tuples its points allow, the points over the extents
    projected away (a kernel that hoists it computes it no fewer times)."""
    from einsum_ir.analysis.counts import steps
    from einsum_ir.analysis.points import points, projected_points
    from einsum_ir.ir import rank_of
    n = _evaluate(points(c, e), env)
    every = frozenset(e.iteration_vars)
    proj: dict = {}
    out = Counter()
    for s in steps(e):
        if s.per_point or s.vars == every:
            out[s.kind] += n
            continue
        if s.vars not in proj:
            count, why = projected_points(c, e, s.vars)
            away = math.prod(env[rank_of(v)] for v in every - s.vars)
            proj[s.vars] = _evaluate(count, env) if why is None else math.ceil(n / away - 1e-9)
        out[s.kind] += proj[s.vars]
    return out


def check_gpu_model(c, shapes: dict) -> tuple[str, str]:
    """The GPU model's work is at least what the analysis counts: tensor-core
    flops >= 2 x the MACs of the products the kernel runs on tensor cores, SFU
    operations >= the analysis's transcendental and divide counts, HBM bytes
    >= every input read and every output written once."""
    from einsum_ir.analysis.fused import FusedFormError, recognise
    from einsum_ir.shapes import resolve
    from hw_models.gpu import load_gpu
    from mappers.gpu_mapping import GPUMapping
    from simulator.gpu import predict_fused
    ks = kernel_shapes(c, shapes)
    try:
        form = recognise(c, resolve(c, ks))
    except FusedFormError as err:
        return _check_chunked_model(c, ks, "not a fused design: " + _reason(err))
    ks = _model_shapes(c, ks, form)
    env = resolve(c, ks)
    form = recognise(c, env)
    from einsum_ir import random_inputs
    from hw_models.schema import HardwareError
    x = random_inputs(c, ks, seed=0)          # a mask tensor's values decide which tiles exist
    env = {**_measured_densities(c, x, ks), **_measured_densities(form.cascade, x, ks), **env}
    for tile in (_MODEL_TILE, 32, TILE):      # the largest tiles whose operands fit shared memory
        m = GPUMapping(tile, tile, dtype="f32")
        try:
            pred = predict_fused(form, m, load_gpu("h100"), env, inputs=x)
            break
        except HardwareError:
            if tile == TILE:
                raise
    fc = form.cascade
    dots = {s.name for s in form.scores} | {r.name for r in form.reductions if r.kind == "value"}
    return _compare_work(pred, _needed(fc, dots, env, m.dtype, _read_whole(fc, form, pred)), "")


def _measured_densities(c, x: dict, shapes: dict) -> dict:
    """The density of each mask that reads tensors (a document mask, a
    length `m < LEN[b]`), counted from the inputs the model is given, for
    those the shapes do not set (the generator sets a bool mask's): without
    them the floors cannot be evaluated and the check would refuse."""
    from einsum_ir.analysis import analyze
    from einsum_ir.analysis.density import data_densities
    if not set(data_densities(c)) - set(shapes):
        return {}
    return analyze(c, inputs=x, shapes={k: v for k, v in shapes.items() if not k.startswith("density_")}
                   ).measured.get("densities", {})


def _needed(fc, dots: set, env: dict, dtype: str, whole_reads) -> dict:
    """The least work any kernel of `fc` does: 2 flops per MAC of the Einsums
    it runs as dots, every transcendental (a kernel may reassociate divides,
    `SN * V / SD` as `(SN / SD) * V`, never skip an exp), and each tensor of
    `whole_reads` once."""
    from simulator.gpu import element_bytes
    ops = Counter()
    for e in fc.einsums:
        for kind, v in _floor_ops(fc, e, env).items():
            ops[("dot-" if e.name in dots else "") + kind] += v
    return {"tensor_flops": 2.0 * ops["dot-mac"],
            "sfu_ops": sum(v for k, v in ops.items() if k.removeprefix("dot-") in TRANSCENDENTAL),
            "hbm_bytes": sum(element_bytes(fc, t.name, dtype) * math.prod(env[r] for r in t.ranks)
                             for t in whole_reads)}


def _compare_work(pred, need: dict, kind: str) -> tuple[str, str]:
    for key, floor in need.items():
        if pred.work.get(key, 0.0) < floor * (1 - 1e-9):
            return "mismatch", (f"{kind + ' ' if kind else ''}{key}: the model charges "
                                f"{pred.work.get(key, 0.0):.4g}, the analysis counts {floor:.4g}")
    return "ok", kind


def _check_chunked_model(c, ks: dict, not_fused: str) -> tuple[str, str]:
    """check_gpu_model for a chunked kernel: the model charges the chunk
    program the kernel is rendered from (at the kernel stage's mapping), and
    its work is at least the analysis's counts: tensor-core flops >= 2 x the
    MACs of the Einsums the program runs as dots, SFU operations >= every
    transcendental of the cascade, HBM bytes >= every input and output once."""
    from einsum_ir.analysis.chunk_program import chunk_program
    from einsum_ir.analysis.chunked import ChunkedFormError
    from einsum_ir.analysis.chunked import recognise as recognise_chunked
    from einsum_ir.shapes import resolve
    from hw_models.gpu import load_gpu
    from mappers.gpu_mapping import GPUMapping
    from simulator.gpu import predict_chunked
    env = resolve(c, ks)
    m = GPUMapping(TILE, TILE, dtype="f32")
    try:
        program = chunk_program(recognise_chunked(c, env), env, m.block_n)
        ks = _chunk_model_shapes(c, ks, program)
        env = resolve(c, ks)
        program = chunk_program(recognise_chunked(c, env), env, m.block_n)
    except ChunkedFormError as err:
        return "n/a", not_fused + " | not a chunked design: " + _reason(err)
    pred = predict_chunked(program, m, load_gpu("h100"), env)
    from einsum_ir import random_inputs
    x = random_inputs(c, ks, seed=0)
    env = {**_measured_densities(c, x, ks), **_measured_densities(program.cascade, x, ks), **env}
    fc = program.cascade
    dots = {s.name for s in program.steps if s.how == "dot"}
    whole = [t for t in fc.tensors if t.role in ("input", "output")]
    return _compare_work(pred, _needed(fc, dots, env, m.dtype, whole), "chunked")


def _chunk_model_shapes(c, shapes: dict, program) -> dict:
    """Shapes at which a chunk program's blocks waste nothing (register axes
    at their block, sequences whole chunks), so that a model that leaves
    work out falls below the counts rather than hiding behind padding; the
    given shapes where that does not resolve."""
    from einsum_ir.ir import rank_of
    from einsum_ir.shapes import resolve
    f, out = program.form, dict(shapes)
    free = {r for r in out if not any(x.name == r and x.definition is not None for x in c.ranks)}
    tokens = f.token_axes()
    for a in program.axes:
        r = rank_of(a)
        if r in free and a not in tokens:
            out[r] = program.blocks[a]
        elif r in free and not f.partitioned:
            out[r] = -(-out[r] // program.blocks[a]) * program.blocks[a]
    if f.partitioned and rank_of(f.root) in free:
        chunk = program.blocks[f.inner]
        out[rank_of(f.root)] = -(-out[rank_of(f.root)] // chunk) * chunk
    try:
        resolve(c, out)
        return out
    except EinError:
        return dict(shapes)


def _read_whole(c, form, pred) -> list:
    """Tensors a kernel must move whole: the outputs, the inputs without the
    key rank, and the inputs with it when no key tile is skipped (a block
    mask lets a kernel leave the masked keys' K, V and bias unread)."""
    key_rank = c.root(form.key.upper()) if form.key.upper() in {r.name for r in c.ranks} else form.key.upper()
    skipped = pred.parts.get("tiles_skipped", 0) > 0
    return [t for t in c.tensors if t.role == "output" or t.role == "input" and not (
        skipped and any(c.root(r) == key_rank for r in t.ranks))]


def check_spatial_design(c, shapes: dict, seed: int = 0) -> tuple[str, str]:
    """The design mapped onto the FuseMax array by the spatial mapper (a small
    seeded random search) and simulated: the simulator raises on utilisation
    above 1, latency below a unit's busy time or the DRAM time, and busy
    cycles below the analysis's operations over the unit's peak; here the
    utilisation and the busy-time bound are checked again from the report. A
    design no unit can run is refused by the mapper, naming the Einsum."""
    from hw_models.spatial import load_spatial
    from mappers.spatial_search import search
    found = search(c, load_spatial("fusemax"), dict(shapes), method="random", budget=64, seed=seed)
    rep = found.report
    for unit, u in rep.unit_utilisation.items():
        if not 0.0 <= u <= 1.0 + 1e-9:
            return "mismatch", f"utilisation of {unit} is {u:.3f}"
    if rep.latency_cycles * (1 + 1e-9) < max(rep.unit_busy_cycles.values(), default=0.0):
        return "mismatch", "latency below a unit's busy time"
    return "ok", "mapped on fusemax"


def check_design(d, stages=STAGES, seed: int = 0) -> DesignReport:
    """Every stage for one generated design."""
    rep = DesignReport(d.name, d.family)
    holder = {}

    def parse():
        holder["c"] = d.cascade()
        return "ok", ""
    rep.outcomes.append(_timed("parse", parse))
    if "c" not in holder:
        if rep.outcomes[0].status == "refused":      # the generator promises valid designs
            rep.outcomes[0] = Outcome("parse", "error", "generated design rejected: " + rep.outcomes[0].detail)
        return rep
    c = holder["c"]
    runs = {"executor": lambda: check_executor(c, d.shapes, seed), "passes": lambda: check_passes(c, d.shapes),
            "kernel": lambda: check_kernel(c, d.shapes, seed), "gpu-model": lambda: check_gpu_model(c, d.shapes),
            "spatial": lambda: check_spatial_design(c, d.shapes, seed)}
    for stage in stages:
        if stage in runs:
            rep.outcomes.append(_timed(stage, runs[stage]))
    return rep


# ------------------------------------------------------------------ spatial

def check_spatial(seed: int = 0, n: int = 20) -> list[Outcome]:
    """The shipped spatial mappings at random shapes: the simulator's own
    invariants (it raises rather than report an impossible number) and busy
    cycles at least the analysis's operations over each unit's peak."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        out.append(_timed("spatial", lambda: _spatial_point(rng)))
    return out


def _spatial_point(rng) -> tuple[str, str]:
    from einsum_ir import library
    from hw_models.spatial import load_spatial
    from mappers.mapping import load_mapping, mapping_names
    from simulator.analytical import simulate
    name = str(rng.choice(mapping_names()))
    m = load_mapping(name)
    c = library.load(m.cascade)
    hw = load_spatial(m.hardware)
    length = int(2 ** rng.integers(10, 17))
    shapes = dict(B=int(rng.integers(1, 5)), H=int(rng.integers(1, 13)), E=64, F=64, M=length, P=length)
    rep = simulate(c, m.for_shapes(shapes), hw, shapes)
    for unit, u in rep.unit_utilisation.items():
        if not 0.0 <= u <= 1.0 + 1e-9:
            return "mismatch", f"{name} at {length}: utilisation of {unit} is {u:.3f}"
    if rep.latency_cycles * (1 + 1e-9) < max(rep.unit_busy_cycles.values(), default=0.0):
        return "mismatch", f"{name} at {length}: latency below a unit's busy time"
    return "ok", name


# ------------------------------------------------------------------ many designs

@dataclass
class Summary:
    reports: list[DesignReport]
    spatial: list[Outcome]
    seconds: float

    def table(self) -> str:
        """Per stage: accepted, refused, mismatches, internal errors, seconds;
        then the refusals grouped by reason and every mismatch."""
        lines = [f"{len(self.reports)} generated designs, {self.seconds:.1f} s", "",
                 "| stage | ok | refused | n/a | mismatch | internal error | seconds |",
                 "|---|---:|---:|---:|---:|---:|---:|"]
        by_stage = defaultdict(list)
        for r in self.reports:
            for o in r.outcomes:
                by_stage[o.stage].append(o)
        by_stage["spatial (shipped mappings)"] = self.spatial
        for stage, os_ in by_stage.items():
            n = Counter(o.status for o in os_)
            lines.append(f"| {stage} | {n['ok']} | {n['refused']} | {n['n/a']} | {n['mismatch']} | {n['error']} | "
                         f"{sum(o.seconds for o in os_):.1f} |")
        lines += ["", "Kernels per family (compiled and matching / refused):", "",
                  "| family | designs | kernel | refused | share compiled |", "|---|---:|---:|---:|---:|"]
        fam = defaultdict(Counter)
        for r in self.reports:
            fam[r.family][r.status("kernel")] += 1
            fam[r.family]["designs"] += 1
        for f, n in sorted(fam.items()):
            lines.append(f"| {f} | {n['designs']} | {n['ok']} | {n['refused']} | {n['ok'] / n['designs']:.0%} |")
        lines += ["", "Refusals by reason (stage: count x reason):", ""]
        reasons = Counter((o.stage, o.detail) for r in self.reports for o in r.outcomes if o.status == "refused")
        reasons.update(("spatial", o.detail) for o in self.spatial if o.status == "refused")
        lines += [f"- {st}: {k} x {why}" for (st, why), k in reasons.most_common(25)]
        bad = [(r.name, o) for r in self.reports for o in r.mismatches] + [("spatial", o) for o in self.spatial
                                                                           if o.status in ("mismatch", "error")]
        lines += ["", f"Mismatches and internal errors: {len(bad)}"]
        lines += [f"- {name} [{o.stage}] {o.status}: {o.detail}" for name, o in bad]
        return "\n".join(lines)

    @property
    def mismatches(self) -> int:
        return sum(len(r.mismatches) for r in self.reports) + sum(o.status in ("mismatch", "error")
                                                                  for o in self.spatial)


def _one(args):
    seed, family, stages = args
    from einsum_ir.random_designs import random_design
    return check_design(random_design(seed, family), stages)


def run(n: int, seed: int = 0, families=None, stages=STAGES, jobs: int = 1, progress: bool = True,
        spatial_points: int = 20) -> Summary:
    """`n` generated designs (seeds seed .. seed + n - 1) through `stages`."""
    from einsum_ir.random_designs import FAMILIES
    fams = tuple(families or FAMILIES)
    work = [(seed + i, fams[i % len(fams)], tuple(stages)) for i in range(n)]
    t0 = time.perf_counter()
    bar = _bar(n, progress)
    reports = []
    if jobs > 1:
        import multiprocessing as mp
        with mp.get_context("spawn").Pool(jobs) as pool:
            for r in pool.imap(_one, work, chunksize=4):
                reports.append(r)
                bar.update(1)
    else:
        for w in work:
            reports.append(_one(w))
            bar.update(1)
    bar.close()
    spatial = check_spatial(seed, spatial_points) if spatial_points else []
    return Summary(reports, spatial, time.perf_counter() - t0)


def _bar(n: int, progress: bool):
    from tqdm import tqdm
    return tqdm(total=n, unit="design", disable=not progress, desc="soundness")


__all__ = ["STAGES", "DesignReport", "Outcome", "Summary", "check_design", "check_executor", "check_gpu_model",
           "check_kernel", "check_passes", "check_spatial", "kernel_shapes", "run"]

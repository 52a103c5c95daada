"""User-facing GPU functions: choose a fused kernel's mapping by the model
(`attnc map`), and calibrate or validate the model against measured CSVs."""
from __future__ import annotations

from dataclasses import dataclass

import einsum_ir as ei
from einsum_ir.analysis.fused import recognise
from einsum_ir.shapes import resolve, shown_shapes
from hw_models.gpu import GPU, load_gpu
from mappers.gpu_mapping import GPUMapping

from .report import table


@dataclass
class MapResult:
    design: str
    gpu: GPU
    env: dict
    form: object          # FusedForm, or a ChunkedForm for a chunked linear-time kernel
    best: list            # simulator.gpu.Prediction, best first
    unfused: object       # None for a chunked kernel (no score matrix to unfuse)
    linear: object
    inputs: dict | None = None   # the values a mask reads, where given (its block table)


def map_design(design, hw: str | GPU = "h100", shapes: dict | None = None, dtype: str = "bf16",
               top: int = 5, inputs: dict | None = None) -> MapResult:
    """The best fused-kernel mappings of `design` on `hw`, with the unfused
    and the chunked-linear alternatives at the same shapes; for a design
    outside the fused family, the best chunked linear-time kernel mappings."""
    from mappers.gpu_search import shortlist
    from simulator.gpu import predict_linear_chunked, predict_unfused
    from einsum_ir.analysis.fused import FusedFormError
    c = ei.load(design) if isinstance(design, str) else design
    gpu = load_gpu(hw) if isinstance(hw, str) else hw
    env = resolve(c, shapes or {}, inputs)
    try:
        form = recognise(c, env)          # unrolls component ranks read at constant indices
    except FusedFormError as fused:
        return _map_chunked(c, gpu, env, dtype, top, fused)
    best = shortlist(form, gpu, env, dtype, top, inputs)
    return MapResult(c.name, gpu, env, form, best, predict_unfused(form, gpu, env, dtype, inputs),
                     predict_linear_chunked(env, form, gpu, dtype=dtype), inputs)


def _map_chunked(c, gpu: GPU, env: dict, dtype: str, top: int, fused) -> MapResult:
    """A design outside the fused family mapped as a chunked linear-time
    kernel (its chunk program charged by the model), or both families'
    reasons; `unfused` and `linear` are None (there is no score matrix)."""
    from einsum_ir.analysis.chunked import ChunkedFormError
    from einsum_ir.analysis.chunked import recognise as recognise_chunked
    from einsum_ir.analysis.fused import refused_by_both
    from mappers.gpu_search import shortlist_chunked
    try:
        form = recognise_chunked(c, env)
        best = shortlist_chunked(form, gpu, env, dtype, top)
    except ChunkedFormError as chunked:
        raise refused_by_both(c, fused, chunked) from None
    return MapResult(c.name, gpu, env, form, best, None, None)


def kernel_mapping(c, hw: str | GPU, shapes: dict | None, dtype: str = "bf16", inputs: dict | None = None):
    """(mapping, prediction): the GPU model's best for the design's kernel,
    fused or chunked (`inputs`: the values a mask reads, for its block
    table); for a design neither family takes, the defaults (tiles of 64,
    4 warps) and no prediction (compiling it then says why)."""
    from einsum_ir.analysis.fused import FusedFormError
    try:
        best = map_design(c, hw, shapes, dtype, top=1, inputs=inputs).best[0]
        return best.mapping, best
    except FusedFormError:
        return GPUMapping(64, 64, dtype=dtype), None


def _us(t: float) -> str:
    return f"{t * 1e6:,.1f} us" if t < 1e-2 else f"{t * 1e3:,.2f} ms"


def _other_class(r: MapResult, b) -> str:
    """The same mapping as a Hopper warp-specialised kernel, where the GPU has wgmma."""
    from hw_models.schema import HardwareError
    from simulator.gpu import predict_fused
    if not r.gpu.has_wgmma:
        return ""
    try:
        ws = predict_fused(r.form, b.mapping, r.gpu, r.env, r.inputs, kclass="hopper-ws")
    except HardwareError:
        return ""
    return f"\n  as a Hopper warp-specialised kernel (FA3 / cuDNN class): predicted {_us(ws.time_s)}, {ws.tflops:.0f} TFLOP/s"


def render_map(r: MapResult) -> str:
    if r.unfused is None:
        return _render_chunked_map(r)
    b = r.best[0]
    lines = [f"{r.design} on {r.gpu.name} ({r.gpu.doc}), {b.mapping.dtype}, "
             + " ".join(f"{k}={v}" for k, v in shown_shapes(r.env).items()),
             "",
             f"best mapping: {b.mapping}",
             f"  kernel class assumed: {b.kclass.doc if b.kclass else 'triton'}" + _other_class(r, b),
             f"  predicted {_us(b.time_s)}, {b.tflops:.0f} TFLOP/s, {b.fraction_of_peak:.0%} of the "
             f"{b.peak_flops / 1e12:.0f} TFLOP/s peak; bound by {b.binding}",
             f"  tiles: {b.parts['tiles_full']:.0f} full, {b.parts['tiles_partial']:.0f} partial, "
             f"{b.parts['tiles_skipped']:.0f} skipped; {b.parts['blocks_per_sm']} blocks/SM "
             f"({b.parts['smem_bytes'] / 1024:.0f} KiB shared memory, ~{b.parts['regs_per_thread']} registers/thread)",
             f"  {r.form.passes} pass{'es' * (r.form.passes > 1)} over the keys" +
             (f"; online normaliser {', '.join(g for gs in r.form.normalisers.values() for g in gs)}" if r.form.normalisers else ""),
             *[f"  {n}" for n in b.notes], ""]
    rows = [[str(p.mapping) + (f" (= {n} more: {alt})" if n else ""), _us(p.time_s), f"{p.tflops:.0f}", p.binding]
            for p, n, alt in distinct(r.best)]
    rows.append(["same design, unfused (QK^T, softmax, PV through HBM)", _us(r.unfused.time_s),
                 f"{r.unfused.tflops:.0f}", r.unfused.binding])
    rows.append(["other algorithm: linear attention, chunked (not this design)", _us(r.linear.time_s), "-",
                 r.linear.binding])
    lines.append(table(["fused mapping (distinct predictions)", "time", "TFLOP/s", "bound by"], rows, "lrrl"))
    return "\n".join(lines)


def _render_chunked_map(r: MapResult) -> str:
    """`attnc map` for a chunked linear-time kernel: the model's best chunk,
    warps and stages, what bounds it, and the program's walk."""
    b, f = r.best[0], r.form
    walks = "; ".join(f"a walk over {lp.var} ({lp.trips} chunks: " + ", ".join(
        f"{s.name} {s.how}" for s in lp.steps) + ")" for lp in b.program.loops)
    lines = [f"{r.design} on {r.gpu.name} ({r.gpu.doc}), {b.mapping.dtype}, "
             + " ".join(f"{k}={v}" for k, v in shown_shapes(r.env).items()), "",
             f"chunked linear-time kernel: one program per ({', '.join(f.batch)}); {walks}",
             f"best mapping: chunk {b.program.blocks.get(f.loops[0].axes[0])} (BLOCK_N {b.mapping.block_n}), "
             f"{b.mapping.warps} warps, {b.mapping.stages} stages",
             f"  predicted {_us(b.time_s)}, {b.tflops:.1f} TFLOP/s, {b.fraction_of_peak:.1%} of the "
             f"{b.peak_flops / 1e12:.0f} TFLOP/s peak; bound by {b.binding}",
             f"  {b.parts['programs']:.0f} programs, {b.parts['waves']:.0f} wave(s), {b.parts['blocks_per_sm']} "
             f"blocks/SM (~{b.parts['regs_per_thread']} registers/thread)",
             *[f"  {n}" for n in b.notes], ""]
    rows = [[str(p.mapping) + (f" (= {n} more: {alt})" if n else ""), _us(p.time_s), f"{p.tflops:.1f}", p.binding]
            for p, n, alt in distinct(r.best)]
    lines.append(table(["chunked mapping (distinct predictions)", "time", "TFLOP/s", "bound by"], rows, "lrrl"))
    return "\n".join(lines)


def distinct(preds: list) -> list[tuple]:
    """(prediction, how many others tie with it, what differs) for each
    distinct predicted time: mappings the model cannot tell apart are one
    row, not a screenful."""
    groups: dict = {}
    for p in preds:
        groups.setdefault((round(p.time_s, 12), p.binding), []).append(p)
    out = []
    for ps in groups.values():
        first = str(ps[0].mapping).split()
        differ = sorted({w for p in ps[1:] for w in str(p.mapping).split() if w not in first})
        out.append((ps[0], len(ps) - 1, " ".join(differ)))
    return out


def map_json(r: MapResult) -> dict:
    if r.unfused is None:
        return {"design": r.design, "gpu": r.gpu.name, "shapes": r.env, "kernel": "chunked",
                "best": [p.as_dict() for p in r.best]}
    return {"design": r.design, "gpu": r.gpu.name, "shapes": r.env, "passes": r.form.passes,
            "best": [p.as_dict() for p in r.best], "unfused": r.unfused.as_dict(), "linear": r.linear.as_dict()}


__all__ = ["MapResult", "map_design", "map_json", "render_map"]


def usage_example(c, src, shapes: dict, source_path: str) -> str:
    """A script that compiles the design (its text is embedded, so a user's own
    file works as well as a library design) and checks the kernel against the
    reference executor at small shapes, on a GPU or in Triton's CPU
    interpreter; on a GPU it also runs at the compile shapes. Every string from
    the design is written as a Python literal (repr), never as code."""
    from codegen.names import comment_text
    small = _small_shapes(c, shapes)
    return "\n".join([
        f'"""Run the kernel attnc generated for the design {comment_text(c.name)} and check it against the',
        "reference executor.",
        "",
        "The check runs at small shapes (SMALL); on a GPU the kernel then also runs at the shapes it was compiled",
        "for (SHAPES). Without a GPU, set TRITON_INTERPRET=1 to run it in Triton's CPU interpreter.",
        f'Kernel source: {comment_text(source_path)}"""',
        "import os", "import sys", "", "import numpy as np", "import torch", "", "import attnc", "import einsum_ir", "",
        f"DESIGN = {str(c)!r}", f"NAME = {c.name!r}",
        f"SHAPES = {dict(shapes)!r}", f"SMALL = {small!r}", "",
        "if torch.cuda.is_available():", "    device = 'cuda'", "elif os.environ.get('TRITON_INTERPRET') == '1':",
        "    device = 'cpu'", "else:",
        "    sys.exit('no GPU here: run again with TRITON_INTERPRET=1 to use Triton\\'s CPU interpreter (slow, "
        "small shapes), or on a machine with a CUDA GPU')",
        "c = einsum_ir.parse(DESIGN, name=NAME)",
        "kernel = attnc.compile(c, SHAPES)                           # the GPU model's mapping for SHAPES",
        "check = attnc.compile(c, SMALL, mapping=kernel.mapping)     # the same kernel, at SMALL",
        "inputs = einsum_ir.random_inputs(c, SMALL, dtype='float32')",
        "out = check(**{k: torch.tensor(v, device=device) for k, v in inputs.items()})",
        "outs = out if isinstance(out, dict) else {c.outputs[0].name: out}",
        "for name, ref in einsum_ir.execute(c, inputs, SMALL).items():",
        "    got = outs[name].double().cpu().numpy()",
        "    ok = ~np.isnan(ref)",
        "    err = np.abs(got[ok] - ref[ok]).max() / max(np.abs(ref[ok]).max(), 1e-30) if ok.any() else 0.0",
        "    print(f'{name}: shape {tuple(got.shape)}, relative error {err:.1e} against the reference at {SMALL}')",
        "if device == 'cuda':",
        "    big = einsum_ir.random_inputs(c, SHAPES, dtype='float32')",
        "    out = kernel(**{k: torch.tensor(v, device=device) for k, v in big.items()})",
        "    torch.cuda.synchronize()",
        "    print('ran at', SHAPES)",
        ""])


def _small_shapes(c, shapes: dict, cap: int = 64) -> dict:
    """The compile shapes with every extent over `cap` brought down to it
    (tile sizes kept), so the interpreter and the reference run in seconds;
    the compile shapes themselves if the design does not resolve so."""
    from einsum_ir.errors import EinError
    from einsum_ir.shapes import resolve
    tiles = {r.name for r in c.ranks if r.part == "inner"}
    small = {k: (v if k in tiles or not isinstance(v, int) else min(v, cap)) for k, v in shapes.items()}
    try:
        resolve(c, small)
        return small
    except EinError:
        return dict(shapes)
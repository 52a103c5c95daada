"""The `attnc` command line. Each subcommand parses its arguments, calls the
user-facing functions, and formats the result; errors in the user's input
print as `file:line:col: error: ...` and exit with status 2."""
from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

import einsum_ir as ei
from einsum_ir import EinError

from .report import analysis_json, human, render_analysis, table

_SUFFIX = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}


def parse_shapes(items: list[str] | None) -> dict:
    """`M=4096 P=4K density_BM=0.25` (also comma-separated) -> dict."""
    shapes = {}
    for item in items or []:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            if "=" not in part:
                raise EinError(f"--shape expects NAME=VALUE, got {part!r}")
            k, v = (s.strip() for s in part.split("=", 1))
            mult = 1
            if v[-1:].upper() in _SUFFIX and v[:-1].isdigit():
                v, mult = v[:-1], _SUFFIX[v[-1:].upper()]
            if not k:
                raise EinError(f"--shape expects NAME=VALUE, got {part!r}")
            try:
                num = float(v) if any(ch in v for ch in ".eE") else int(v)
            except ValueError:
                raise EinError(f"--shape {k}: {v[:40]!r} is not a number") from None
            if not math.isfinite(num * mult):
                raise EinError(f"--shape {k}: {v[:40]!r} is not a finite number")
            if k in shapes and shapes[k] != num * mult:
                raise EinError(f"--shape {k} is given twice ({shapes[k]} and {num * mult})")
            shapes[k] = num * mult
    return shapes


def _int_arg(lo: int, what: str):
    """An argparse type: an integer of at least `lo` (argparse prints the
    error and exits with status 2)."""
    def conv(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not an integer ({what})") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"{v} is too small ({what}; at least {lo})")
        return v
    return conv


def _length_arg(text: str) -> int:
    try:
        v = parse_shapes([f"L={text}"])["L"]
    except EinError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a sequence length (e.g. 4096 or 4K)") from None
    if v != int(v) or not 1 <= v <= 2 ** 40:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a sequence length between 1 and 2**40")
    return int(v)


def _add_design(p):
    p.add_argument("design", help="a .ein file, or the name of a library design (see `attnc list`)")


def _add_shape(p, required=False):
    p.add_argument("--shape", nargs="+", metavar="SYM=VALUE", required=required,
                   help="shape symbols, e.g. --shape M=4096 P=4096 E=64 F=64 B=64 H=12 (4K = 4096)")


def _add_inputs(p):
    p.add_argument("--inputs", metavar="FILE.npz",
                   help="tensor values by input name (numpy.savez): a mask that reads tensors (a document "
                        "mask, prefix lengths, global tokens) is then counted and tiled from them exactly; "
                        "the arrays also give their extents")


def _inputs(args, c) -> dict | None:
    """The --inputs arrays, checked against the design's inputs (None without the option)."""
    if not getattr(args, "inputs", None):
        return None
    from .inputs import check_inputs, load_inputs
    return check_inputs(c, load_inputs(args.inputs))


def cmd_list(args) -> int:
    """The library's designs, one line each cut to the terminal's width
    (`--long`: the whole first sentence)."""
    import shutil
    names = ei.library.names()
    width = shutil.get_terminal_size((100, 24)).columns
    room = max(20, width - max(map(len, names)) - 3)
    rows = [[n, ei.library.summary(n) if args.long else _clip(ei.library.summary(n), room)] for n in names]
    print(table(["design", "description"], rows, "ll"))
    if not args.long:
        print("\n(--long: full descriptions; `attnc print NAME`: a design)")
    return 0


def _clip(text: str, room: int) -> str:
    """`text` cut at a word to at most `room` characters, '...' marking the cut."""
    if len(text) <= room:
        return text
    return text[:room - 3].rsplit(" ", 1)[0].rstrip(",;:") + "..."


def cmd_check(args) -> int:
    c = ei.load(args.design)
    from einsum_ir.errors import printable
    print(f"{printable(args.design)}: ok ({len(c.einsums)} Einsums; inputs "
          f"{', '.join(t.name for t in c.inputs)}; outputs {', '.join(t.name for t in c.outputs)})")
    return 0


def cmd_print(args) -> int:
    print(ei.load(args.design), end="")
    return 0


def cmd_rewrite(args) -> int:
    """A design rewritten to fewer passes (einsum_ir.rewrites): the `.ein`
    text with the algebra as comments, then what changed, as comments too
    (so the whole output is a design `attnc analyze` reads)."""
    from pathlib import Path
    from einsum_ir.rewrites import rewrite
    c = ei.load(args.design)
    r = rewrite(c, args.to, verify=not args.no_verify, shapes=parse_shapes(args.shape) if args.shape else None,
                rank=args.rank)
    summary = [f"# rewrite: {line}" for line in r.explanation[-2:] if line.startswith(("passes", "checked"))]
    if args.no_verify:
        summary.append("# rewrite: not checked (--no-verify)")
    text = r.text.rstrip("\n") + "\n\n" + "\n".join(summary) + "\n"
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
        print("\n".join(line[2:] for line in summary))
    else:
        print(text, end="")
    return 0


def cmd_analyze(args) -> int:
    from . import analyze
    c = ei.load(args.design)
    inputs, shapes = _inputs(args, c), parse_shapes(args.shape)
    a = analyze(c, rank=args.rank, inputs=inputs, shapes=shapes)
    if args.shape and inputs is None:
        ei.resolve(a.cascade, shapes)      # every value checked, density_T included
    values = a.at(shapes) if args.shape or inputs is not None else None
    if args.json:
        print(json.dumps(analysis_json(a, values), indent=2, default=str))
    else:
        print(render_analysis(a, values))
    return 0


def cmd_run(args) -> int:
    c = ei.load(args.design)
    shapes = parse_shapes(args.shape)
    inputs = ei.random_inputs(c, shapes, seed=args.seed, dtype=args.dtype)
    import time
    t0 = time.perf_counter()
    outs = ei.execute(c, inputs, shapes, dtype=args.dtype)
    dt = time.perf_counter() - t0
    rows = []
    for name, arr in outs.items():
        finite = np.isfinite(arr)
        rows.append([name, "x".join(map(str, arr.shape)), str(arr.dtype), f"{np.sum(arr[finite]):.10g}",
                     f"{np.sqrt(np.mean(arr[finite] ** 2)) if finite.any() else float('nan'):.6g}",
                     int((~finite).sum())])
    print(f"{c.name}: executed in {dt:.3f} s on random normal inputs (seed {args.seed}, {args.dtype})")
    print(table(["output", "shape", "dtype", "sum", "rms", "non-finite"], rows, "lllrrr"))
    return 0


def cmd_compare(args) -> int:
    from pathlib import Path

    from einsum_ir.analysis import KINDS

    from .compare import compare, plot_growth
    if args.plot and Path(args.plot).suffix.lower() not in (".png", ".pdf", ".svg"):
        raise EinError(f"--plot {args.plot}: the file name must end in .png, .pdf or .svg")
    if args.plot and Path(args.plot).is_dir():
        raise EinError(f"--plot {args.plot} is a directory; give a file name")
    for f in (args.plot, args.plot and Path(args.plot).with_suffix(".csv")):
        if f and Path(f).exists() and not args.force:
            raise EinError(f"{f} exists; pass --force to overwrite it or choose another --plot file")
    from .compare import lengths_around
    lengths = args.lengths or lengths_around(parse_shapes(args.shape))
    sweep = lengths if args.plot or args.json else ()     # the table alone needs no sweep
    notes = _check_compare_shapes(args.designs, parse_shapes(args.shape))
    for n in notes:
        print(f"note: {n}", file=sys.stderr if args.json else sys.stdout)
    if notes and not args.json:
        print()
    rows = compare(args.designs, parse_shapes(args.shape), sweep, progress=sys.stderr.isatty())
    if args.json:
        print(json.dumps([{"design": r.design, "rank": r.rank, "assumed": r.assumed, **r.values,
                           "sweep": {n: dict(zip(("ops", "flops", "footprint_bytes"), v))
                                     for n, v in r.sweep.items()}} for r in rows], indent=2, default=str))
    else:
        print(table(["design", "passes", "MACs", "other ops", "flops", "min footprint", "compulsory traffic",
                     "flop/byte"],
                    [[r.design, f"{r.values['passes'][r.rank]} over {r.rank}", human(r.values["ops"].get("mac", 0)),
                      human(sum(v for k, v in r.values["ops"].items() if k != "mac")), human(r.values["flops"]),
                      human(r.values["footprint_bytes"], "B"), human(r.values["traffic"]["total_bytes"], "B"),
                      f"{r.values['intensity']:.3g}"] for r in rows]))
        kinds = [k for k in KINDS if any(r.values["ops"].get(k, 0) for r in rows)]
        print("\nOperations by kind")
        print(table(["design"] + kinds, [[r.design] + [human(r.values["ops"].get(k, 0)) for k in kinds]
                                         for r in rows]))
        flat = [r.design for r in rows if not r.swept]
        if flat and args.plot:
            print(f"\n(no sequence symbol M or P in {', '.join(flat)}: left out of the growth plot)")
    if args.plot:
        data = plot_growth(rows, args.plot, marked=lengths_around(parse_shapes(args.shape), only_given=True))
        print(f"\nwrote {args.plot} and {data}: footprint and operations against sequence length "
              f"({', '.join(map(str, lengths))})", file=sys.stderr if args.json else sys.stdout)
    return 0


def _check_compare_shapes(designs: list[str], shapes: dict) -> list[str]:
    """Each design's share of the shared shape list checked as `resolve`
    checks it (densities included); returns the notes to print (defaults
    assumed, symbols some designs ignore). A design lacking a symbol is one
    line naming it; a density_T that names no design's bool tensor is an
    error, not ignored."""
    from .compare import design_shapes, missing_line, shape_notes
    cascades = [ei.load(d) for d in designs]       # an unknown design first
    used, missing = set(), []
    for c in cascades:
        ds = design_shapes(c, shapes)
        if ds.missing:
            missing.append(missing_line(c.name, ds.missing))
            continue
        ei.resolve(c, ds.values)
        used |= ds.values.keys() | set(ds.assumed.values())
    if missing:
        raise EinError("\n  ".join(["not every design has the symbols it needs:"] + missing)
                       if len(missing) > 1 else missing[0])
    unused = [k for k in shapes if k.startswith("density_") and k not in used]
    if unused:
        raise EinError(f"--shape {unused[0]}: no design compared has a bool tensor {unused[0][8:]}")
    return shape_notes(cascades, shapes)


def cmd_demo(args) -> int:
    """Analyse the canonical cascades on BERT-base at 4K tokens, then check
    the 1-pass cascade against PyTorch attention on small random inputs."""
    from . import analyze
    shapes = dict(B=64, H=12, M=4096, P=4096, E=64, F=64, M0=256)
    print("attnc demo: the FuseMax cascades on BERT-base (B=64, H=12, E=F=64) at 4096 tokens\n")
    rows = []
    for name in ["attention-naive", "attention-3pass", "attention-3pass-deferred", "attention-2pass",
                 "attention-1pass"]:
        a = analyze(name)
        used = ei.shapes.symbols_used(a.cascade)
        v = a.at({k: x for k, x in shapes.items() if k in used})
        rows.append([name, v["passes"][a.rank], human(v["ops"].get("mac", 0)), human(v["ops"].get("exp", 0)),
                     human(v["footprint_bytes"], "B"), human(v["traffic"]["total_bytes"], "B"),
                     f"{v['intensity']:.0f}"])
    print(table(["design", "passes over M", "MACs", "exps", "min footprint", "compulsory traffic",
                 "flop/byte"], rows))
    print("\nWhy the 3-pass cascade needs 3 passes:")
    for line in analyze("attention-3pass").passes["M"].explain():
        print("  " + line)
    print("\nFootprint against sequence length (B=1, H=1): the 3-pass cascade must hold the score "
          "matrix, the 1-pass one does not")
    rows = []
    for n in (1024, 4096, 16384, 65536):
        row = [n]
        for name in ("attention-3pass", "attention-1pass"):
            a = analyze(name)
            used = ei.shapes.symbols_used(a.cascade)
            s = {k: x for k, x in dict(shapes, B=1, H=1, M=n, P=n).items() if k in used}
            row.append(human(a.at(s)["footprint_bytes"], "B"))
        rows.append(row)
    print(table(["tokens", "3-pass", "1-pass"], rows))

    print("\nReference execution of attention-1pass (B=2, H=4, M=P=256, M0=64) against "
          "torch scaled_dot_product_attention:")
    c = ei.load("attention-1pass")
    small = dict(B=2, H=4, M=256, P=256, E=64, F=64, M0=64)
    x = ei.random_inputs(c, small, seed=0)
    out = ei.execute(c, x, small)["AV"]
    try:
        import torch
        t = {k: torch.from_numpy(v).transpose(-1, -2) for k, v in x.items()}
        ref = torch.nn.functional.scaled_dot_product_attention(t["Q"], t["K"], t["V"], scale=1.0)
        err = float(np.abs(out - ref.transpose(-1, -2).numpy()).max() / np.abs(ref.numpy()).max())
        print(f"  max relative error {err:.2e}")
    except ImportError:
        print("  (torch is not installed; skipped)")
    print("\nThe five designs of FuseMax's evaluation on their accelerators (BERT-base, 4096 tokens), "
          "from the analytical model (docs/spatial.md):")
    from hw_models import load_spatial
    from mappers.mapping import load_mapping
    from simulator.analytical import simulate
    rows, base = [], None
    for mname in ("unfused", "flat", "fusemax-cascade", "fusemax-architecture", "fusemax-binding"):
        m = load_mapping(mname)
        r = simulate(ei.load(m.cascade), m, load_spatial(m.hardware), dict(B=64, H=12, E=64, F=64, M=4096, P=4096))
        base = base or r.latency_s
        rows.append([mname, m.hardware, f"{r.latency_s * 1e3:.2f} ms", f"{base / r.latency_s:.1f}x",
                     human(r.dram_bytes, "B"), f"{r.total_energy_pj / 1e12:.1f} J",
                     f"{r.unit_utilisation['pe2d']:.2f}", f"{r.unit_utilisation['pe1d']:.2f}"])
    print(table(["mapping", "hardware", "latency", "vs unfused", "DRAM", "energy", "2D util", "1D util"], rows))
    print("\nOn an H100 (the GPU model, docs/gpu.md): Llama-style sliding-window attention, "
          "B=4, H=16, 8K tokens, head dim 128, window 1024:")
    from .gpu import map_design
    r = map_design("sliding-window", "h100", dict(B=4, H=16, P=8192, E=128, F=128, W=1024), top=1)
    b = r.best[0]
    print(f"  best mapping {b.mapping}: {b.time_s * 1e6:,.0f} us, {b.tflops:.0f} TFLOP/s, bound by {b.binding}; "
          f"{b.parts['tiles_skipped']:.0f} of {b.parts['tiles_skipped'] + b.parts['tiles_full'] + b.parts['tiles_partial']:.0f} "
          f"tiles skipped")
    print(f"  unfused: {r.unfused.time_s * 1e6:,.0f} us ({r.unfused.time_s / b.time_s:.0f}x slower)")
    print("\nIts fused Triton kernel, generated from the cascade (docs/triton.md) and run by Triton's "
          "interpreter on the CPU (B=2, H=2, 200 tokens, window 50) against the reference:")
    import os
    os.environ.setdefault("TRITON_INTERPRET", "1")
    import torch

    from codegen.runtime import FusedKernel
    from mappers.gpu_mapping import GPUMapping
    c = ei.load("sliding-window")
    small = dict(B=2, H=2, P=200, E=32, F=32, W=50)
    kernel = FusedKernel(c, GPUMapping(64, 32, dtype="f32"), small)
    x = ei.random_inputs(c, small, seed=1, dtype="float32")
    got = kernel(**{k: torch.from_numpy(v) for k, v in x.items()}).numpy()
    want = ei.execute(c, x, small)["AV"]
    src = kernel.source(ei.resolve(c, small))
    print(f"  {len(src.text.splitlines())} lines of Triton (first kernel line: "
          f"{next(ln for ln in src.text.splitlines() if ln.startswith('def attnc'))}); "
          f"max relative error {np.abs(got - want).max() / np.abs(want).max():.1e}")
    print("  `attnc compile sliding-window --shape ... --out kernel.py` writes it with a usage example.")
    return 0


def cmd_reproduce(args) -> int:
    from pathlib import Path

    from .reproduce import PAPER, reproduce_fusemax
    out = Path(args.out)
    names = ("attention.csv", "end2end.csv", "summary.csv", "speedup.png", "utilisation.png", "array_sweep.png")
    existing = [n for n in names if (out / n).exists()]
    if existing and not args.force:
        raise EinError(f"{out} already holds {', '.join(existing)}; pass --force to overwrite them "
                       "or choose another --out")
    result = reproduce_fusemax(out, progress=sys.stderr.isatty())
    rows = [[k, f"{v:.3f}", PAPER.get(k, "")] for k, v in result["summary"].items()]
    print(table(["FuseMax (binding)", "this model", "paper"], rows))
    print()
    for f in result["files"].values():
        print(f"wrote {f}")
    return 0


def cmd_simulate(args) -> int:
    from mappers.mapping import load_mapping
    from simulator.skipping import mask_values
    if args.plot:
        from .figures import check_plot_path
        check_plot_path(args.plot, ".csv", args.force)
    shapes, values = parse_shapes(args.shape), None
    if args.inputs:                      # extents and exact mask densities from the tensors
        from .inputs import with_inputs
        ci = ei.load(args.design or load_mapping(args.mapping).cascade)
        values = _inputs(args, ci)
        shapes = with_inputs(ci, shapes, values)
    with mask_values(values):            # and the tiles a mask that reads them visits
        return _simulate(args, shapes)


def _simulate(args, shapes: dict) -> int:
    import dataclasses

    from hw_models import load_spatial
    from mappers.mapping import load_mapping
    from simulator.analytical import simulate

    from .report import render_simulation
    if args.mapping is None:             # no mapping given: the spatial mapper finds one first
        if not args.design or not args.hw:
            raise EinError("simulate without --mapping needs a design and --hw (a spatial preset or file): "
                           "the mapper then finds the mapping (docs/mapper.md)")
        from .spatial_map import map_spatial
        _, _, found, _ = map_spatial(args.design, args.hw, shapes)
        print(f"mapped by the spatial mapper ({found.evaluated:,} mappings in {found.seconds:.1f} s)\n",
              file=sys.stderr)
        m = found.mapping
    else:
        m = load_mapping(args.mapping)
    c = ei.load(args.design or m.cascade)
    hw = load_spatial(args.hw or m.hardware)
    r = simulate(c, m, hw, shapes, accounting=args.accounting)
    found = {}
    if args.formulas:
        from simulator.analytical import formulas
        found = {k: str(v) for k, v in formulas(c, m.for_shapes(r.shapes), hw).items()}
    if args.formulas and not args.json:
        for k, v in found.items():
            print(f"{k} = {v}")
        print(f"(bytes {r.bytes_rule})\n")
    if args.json:              # one JSON document: the formulas inside it, never printed before it
        print(json.dumps(dict(dataclasses.asdict(r), **({"formulas": found} if args.formulas else {})),
                         indent=2, default=str))
    else:
        print(render_simulation(r))
    if args.plot:
        from .figures import plot_timeline
        data = plot_timeline(m, hw, r, args.plot)
        print(f"\nwrote {args.plot} and {data}: which Einsum occupies which unit, the critical path marked",
              file=sys.stderr if args.json else sys.stdout)
    return 0


GPU_MODEL_POSITIONS = 2 ** 30
"""Most query x key positions the GPU model is asked to classify: it visits
every 16 x 16 cell of the score matrix (about 30 s and 2 GiB at 32K x 32K;
minutes and 9 GiB at 64K x 64K), so larger shapes are refused up front."""


def _gpu_model_fits(design: str, shapes: dict) -> None:
    """Refuse shapes whose score matrix the GPU model cannot classify in
    reasonable time: the two longest root ranks stand for queries and keys."""
    c = ei.load(design)
    env = ei.resolve(c, shapes)
    longest = sorted(((int(env[r.name]), r.name) for r in c.ranks if r.parent is None), reverse=True)[:2]
    positions = math.prod(n for n, _ in longest)
    if positions > GPU_MODEL_POSITIONS:
        raise EinError(f"{' x '.join(f'{r}={n}' for n, r in longest)} = {positions:,} positions is more than "
                       f"the GPU model classifies ({GPU_MODEL_POSITIONS:,}, e.g. 32K x 32K): it visits every "
                       "16 x 16 cell of the score matrix; model a shorter sequence")
    if positions > 2 ** 26 and sys.stderr.isatty():     # 8K x 8K and up: seconds to a minute in one step
        print(f"classifying the {positions // 256:,} cells (16 x 16) of the {' x '.join(r for _, r in longest)} "
              "score matrix (the longest step; up to a minute at 32K x 32K)...", file=sys.stderr)


def cmd_map(args) -> int:
    from pathlib import Path

    from .spatial_map import is_spatial
    if Path(args.hw).suffix in (".yaml", ".yml"):
        from hw_models.schema import load_file
        load_file(args.hw)           # bounded and checked (alias bombs, nesting, size) before is_spatial reads it
    if is_spatial(args.hw):
        if args.plot:
            raise EinError(f"--plot draws a GPU roofline; {args.hw} is a spatial array: map it, then "
                           "`attnc simulate --mapping FILE --plot FILE.png` draws its timeline")
        return _map_spatial(args)
    from .gpu import map_design, map_json, render_map
    if args.plot:
        from .figures import check_plot_path
        check_plot_path(args.plot, ".json", args.force)
    from .inputs import with_inputs
    c = ei.load(args.design)
    inputs = _inputs(args, c)
    shapes = with_inputs(c, parse_shapes(args.shape), inputs, densities=False)
    _gpu_model_fits(args.design, shapes)
    r = map_design(c, args.hw, shapes, args.dtype, args.top, inputs=inputs)
    print(json.dumps(map_json(r), indent=2, default=str) if args.json else render_map(r))
    if args.plot:
        from .figures import plot_roofline
        data = plot_roofline(r, args.plot)
        print(f"\nwrote {args.plot} and {data}: the roofline of {r.design} on {r.gpu.name}",
              file=sys.stderr if args.json else sys.stdout)
    return 0


def _map_spatial(args) -> int:
    """`attnc map` on a spatial array: search, write the mapping file, report."""
    from pathlib import Path

    from .spatial_map import map_spatial, render_spatial_map, spatial_json
    if args.out and Path(args.out).exists() and not args.force:
        raise EinError(f"{args.out} exists; pass --force to overwrite it")
    c, hw, found, b = map_spatial(args.design, args.hw, parse_shapes(args.shape), args.objective, args.search,
                                  args.seed, args.budget, progress=sys.stderr.isatty(),
                                  inputs=_inputs(args, ei.load(args.design)))
    if args.out:
        Path(args.out).write_text(found.text)
    print(json.dumps(spatial_json(c, hw, found, b), indent=2, default=str) if args.json
          else render_spatial_map(c, hw, found, b, args.out))
    return 0


def _progress(items, desc):
    if not sys.stderr.isatty():
        return items
    from tqdm import tqdm
    return tqdm(items, desc=desc, file=sys.stderr, leave=False)


MAX_RESULTS_BYTES = 64 << 20
"""Largest results table `validate` and `calibrate` read (64 MiB; the
published one is 5 KB)."""


def _check_results_file(path: str) -> None:
    """A results table that is UTF-8 text of bounded size (`/dev/zero` is
    refused, not read without end), before simulator.calibrate parses it."""
    from einsum_ir.parser import read_source
    read_source(path, MAX_RESULTS_BYTES, EinError)


def cmd_validate(args) -> int:
    from hw_models import load_gpu
    from simulator.calibrate import median_abs, read_results, validate
    gpu = load_gpu(args.hw)
    _check_results_file(args.results)
    cases = read_results(args.results, args.kernel)
    if args.cv:
        return _cross_validate(cases)
    errors = validate(cases, gpu, progress=lambda xs: _progress(xs, "validate"))
    rows = [[e.case.label, f"{e.case.measured_s * 1e6:,.1f}", f"{e.predicted_s * 1e6:,.1f}",
             f"{e.relative:+.1%}"] for e in errors]
    print(table(["point", "measured us", "predicted us", "error"], rows, "lrrr"))
    print(f"\nmedian |error| {median_abs(errors):.1%} over {len(errors)} points; max "
          f"{max(abs(e.relative) for e in errors):.1%} ({gpu.name}: "
          + ", ".join(f"{k}={v:g}" for k, v in gpu.efficiency.items()) + ")")
    return 0


def _cross_validate(cases) -> int:
    """Leave one GPU out and leave one kernel class out: fit without the
    group, predict it (simulator.calibrate.cross_validate)."""
    from hw_models import load_gpu
    from simulator.calibrate import cross_validate, render_cv
    gpus = {g: load_gpu(g) for g in sorted({c.row["device"] for c in cases})}
    print(render_cv(cross_validate(cases, gpus, progress=lambda xs: _progress(xs, "cross-validate"))))
    return 0


def cmd_calibrate(args) -> int:
    from pathlib import Path

    from hw_models import load_gpu
    from hw_models.gpu import GPU_PRESETS
    from simulator.calibrate import fit, median_abs, read_results, validate, write_preset
    source = Path(args.hw) if Path(args.hw).suffix in (".yaml", ".yml") else GPU_PRESETS / f"{args.hw}.yaml"
    gpu = load_gpu(args.hw)
    out = Path(args.out)
    if out.exists() and not args.force:
        raise EinError(f"{out} exists; pass --force to overwrite it or choose another --out")
    _check_results_file(args.results)
    cases = read_results(args.results, args.kernel)
    constants = tuple(args.fit.split(","))
    start = {k: gpu.efficiency[k] for k in constants if k in gpu.efficiency}
    start.update(_start_values(args.start, constants))
    gpu = gpu.with_efficiency(**start)
    args.start = ",".join(f"{k}={v:g}" for k, v in start.items())     # recorded: the fit is reproducible
    from tqdm import tqdm

    from simulator.calibrate import fit_evaluations
    with tqdm(total=2 * len(cases) + fit_evaluations(constants), desc="calibrate", unit="step", leave=False,
              disable=not sys.stderr.isatty(), file=sys.stderr) as bar:
        before = median_abs(validate(cases, gpu))
        bar.update(len(cases))
        fitted = fit(cases, gpu, constants, tick=bar.update)
        after = median_abs(validate(cases, fitted))
        bar.update(len(cases))
    write_preset(source, fitted, out, f"`{_calibrate_command(args)}` on {len(cases)} points of {args.results} "
                                      f"(sha256 {_sha256(args.results)[:16]}): median |error| "
                                      f"{before:.1%} -> {after:.1%}")
    for k in fitted.efficiency:
        if fitted.efficiency[k] != gpu.efficiency[k]:
            print(f"{k}: {gpu.efficiency[k]:g} -> {fitted.efficiency[k]:g}")
    print(f"median |error| {before:.1%} -> {after:.1%} over {len(cases)} points; wrote {out}")
    return 0


def _calibrate_command(args) -> str:
    """The calibrate command that reproduces this fit (its --out aside)."""
    import shlex
    words = ["attnc", "calibrate", args.results, "--hw", args.hw, "--fit", args.fit, "--start", args.start]
    if args.kernel:
        words += ["--kernel", *args.kernel]
    return shlex.join(words)


def _start_values(text: str | None, constants: tuple) -> dict:
    """--start fused_tensor=0.5,latency_ns=600: where the fit starts (the
    search's result depends on it a little; recorded so that it can be re-run)."""
    out = {}
    for k, v in parse_shapes([text] if text else []).items():
        if k not in constants:
            raise EinError(f"--start {k}: not one of the constants fitted ({', '.join(constants)})")
        out[k] = float(v)
    return out


def _sha256(path: str) -> str:
    import hashlib
    from pathlib import Path
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cmd_compile(args) -> int:
    from pathlib import Path
    if args.target == "rtl":
        from codegen.rtl.cli import compile_rtl
        return compile_rtl(args.design, args.hw or "fusemax", args.mapping, args.out, args.force,
                           shapes=parse_shapes(args.shape) if args.shape else None, dataflow=args.dataflow or "os")
    if args.mapping or args.dataflow:
        raise EinError(f"{'--mapping' if args.mapping else '--dataflow'} is for the spatial array: it goes with "
                       "--target rtl")
    if not args.shape and not args.inputs:
        raise EinError("--target triton needs --shape (the GPU model picks the mapping at those shapes)")

    from codegen.runtime import compile_kernel
    from einsum_ir.shapes import resolve

    from .gpu import kernel_mapping, usage_example
    from .inputs import with_inputs
    c = ei.load(args.design)
    inputs = _inputs(args, c)
    shapes = with_inputs(c, parse_shapes(args.shape), inputs, densities=False)
    _gpu_model_fits(args.design, shapes)
    gpu = args.hw or "h100"
    mapping, best = kernel_mapping(c, gpu, shapes, args.dtype, inputs)
    src = compile_kernel(c, mapping, shapes).source(resolve(c, shapes))
    out = Path(args.out or f"{c.name}_triton.py")
    example = out.with_name(out.stem + "_example.py")
    existing = [str(p) for p in (out, example) if p.exists()]
    if existing and not args.force:
        raise EinError(f"{', '.join(existing)} already exist{'s' * (len(existing) == 1)}; pass --force to "
                       "overwrite or choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(src.text)
    example.write_text(usage_example(c, src, shapes, str(out)))
    if best is not None and best.kind == "chunked":
        loops = "; ".join(f"loop over {lp.var} (chunk axes {', '.join(lp.axes)})" for lp in src.form.loops)
        print(f"{c.name}: chunked linear-time kernel, one program per ({', '.join(src.form.batch)}); {loops}; "
              f"{best.mapping.warps} warps on {gpu}, predicted {best.time_s * 1e6:,.1f} us "
              f"(bound by {best.binding})")
    elif best is not None:
        print(f"{c.name}: {best.mapping} on {gpu}, predicted {best.time_s * 1e6:,.1f} us "
              f"({best.tflops:.0f} TFLOP/s, bound by {best.binding})")
    print(f"wrote {out} (kernel source) and {example} (usage)")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block): `attnc run: error: ...`."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="attnc",
        description="attnc: analyse attention designs written as cascades of extended Einsums "
                    "(the .ein notation, docs/notation.md).")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("list", help="list the designs in the built-in library",
                       description="The designs in the built-in library (einsum_ir/library/), each with the "
                                   "first sentence of its header comment, cut to the terminal's width.")
    s.add_argument("--long", action="store_true", help="the full descriptions, not cut to the terminal")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("check", help="parse and validate a design; report errors with file:line:col",
                       description="Parse and validate a design: `ok` with its inputs and outputs, or the "
                                   "first error as file:line:col with the source line (exit status 2).")
    _add_design(s)
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("print", help="print a design in canonical .ein form (all declarations explicit)",
                       description="Print a design in canonical .ein form: every declaration explicit; the "
                                   "text parses back to the same IR.")
    _add_design(s)
    s.set_defaults(func=cmd_print)

    s = sub.add_parser("analyze", help="passes, op counts, footprint, traffic and intensity of a design",
                       description="Symbolic analysis of a design (docs/analysis.md). Without --shape, "
                                   "every figure is a formula in the shape symbols; with --shape, also "
                                   "its value.")
    _add_design(s)
    _add_shape(s)
    s.add_argument("--rank", help="the rank whose traversal the footprint assumes (default: the rank "
                                  "with the most passes, M for attention)")
    _add_inputs(s)
    s.add_argument("--json", action="store_true", help="print JSON instead of tables")
    s.set_defaults(func=cmd_analyze)

    s = sub.add_parser("rewrite", help="rewrite a design to fewer passes: online, deferred or split-kv",
                       description="Rewrite a design to a cascade with fewer passes (docs/analysis.md, "
                                   "Rewrites): `deferred` moves a division by a row normaliser past the value "
                                   "sum, `online` carries the maxima and rescaled sums over tiles of the keys "
                                   "(1 pass), `split-kv` reduces chunks of the keys apart and merges them by an "
                                   "associative combine. Prints the new .ein text with the algebra as comments; "
                                   "the result is checked equal to the design on random inputs at small shapes. "
                                   "A rewrite that does not apply is refused with the Einsum and the reason.")
    _add_design(s)
    s.add_argument("--to", required=True, choices=["online", "deferred", "split-kv"], help="the form to rewrite to")
    s.add_argument("--out", metavar="FILE", help="write the .ein text to FILE instead of printing it")
    _add_shape(s)
    s.add_argument("--rank", help="the rank to lower the passes over (default: the one with the most passes)")
    s.add_argument("--no-verify", action="store_true", help="skip the check on random inputs")
    s.set_defaults(func=cmd_rewrite)

    s = sub.add_parser("run", help="execute a design on random inputs; print output shapes and checksums",
                       description="Run the numpy reference executor on standard-normal inputs.")
    _add_design(s)
    _add_shape(s, required=True)
    s.add_argument("--seed", type=_int_arg(0, "a random seed"), default=0, help="random seed (default 0)")
    s.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                   help="arithmetic precision (default float64)")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("compare", help="compare designs: passes, ops, footprint, traffic; growth plot",
                       description="One row per design at the given shapes (each design takes the symbols it "
                                   "uses from --shape), and optionally a plot of footprint and operation "
                                   "count against sequence length (M and P set to each --lengths value).")
    s.add_argument("designs", nargs="+", metavar="design", help="a .ein file or a library design name")
    _add_shape(s, required=True)
    s.add_argument("--lengths", nargs="+", type=_length_arg, metavar="N",
                   help="sequence lengths of the growth plot (default: 1/8x to 8x the --shape's P or M "
                        "in powers of 2; 512 to 8K when neither is given)")
    s.add_argument("--plot", metavar="FILE.png", help="write the growth plot here (png, pdf or svg), "
                                                      "and its data beside it (FILE.csv)")
    s.add_argument("--force", action="store_true", help="overwrite an existing --plot file")
    s.add_argument("--json", action="store_true", help="print JSON instead of tables")
    s.set_defaults(func=cmd_compare)

    s = sub.add_parser("simulate", help="latency, traffic, energy and utilisation of a design on a spatial array",
                       description="The analytical model (docs/spatial.md) of a design mapped onto a "
                                   "spatial-array accelerator by a mapping file.")
    s.add_argument("design", nargs="?", help="a .ein file or library name (default: the mapping's cascade)")
    s.add_argument("--mapping", help="a mapping file or name (e.g. fusemax-binding); without it the spatial "
                                     "mapper finds one for the design on --hw")
    s.add_argument("--hw", help="a hardware preset or YAML file (default: the mapping's hardware)")
    _add_shape(s)
    s.add_argument("--accounting", choices=["physical", "evaluation"],
                   help="energy rules (docs/spatial.md; default: the hardware file's, else physical)")
    s.add_argument("--formulas", action="store_true",
                   help="also print busy cycles per Einsum and DRAM bytes as formulas in the shape symbols")
    s.add_argument("--plot", metavar="FILE.png", help="write a per-unit timeline here (png, pdf or svg): which "
                                                      "Einsum occupies which unit, the critical path marked; "
                                                      "its bars as FILE.csv beside it")
    s.add_argument("--force", action="store_true", help="overwrite an existing --plot file")
    _add_inputs(s)
    s.add_argument("--json", action="store_true", help="print JSON instead of tables")
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser("map", help="best GPU mapping of a fused kernel for a design, by the model",
                       description="Rank fused-kernel mappings (tile shape, warps, stages, split-KV, GQA "
                                   "packing) by the GPU model (docs/gpu.md); print the best with its predicted "
                                   "time, TFLOP/s, fraction of peak and binding resource, beside the unfused "
                                   "and linearised alternatives.")
    _add_design(s)
    s.add_argument("--hw", default="h100", help="a GPU preset (a100, h100, h200), a spatial preset (fusemax, "
                                                "flat: the spatial mapper, docs/mapper.md) or YAML file "
                                                "(default h100)")
    _add_shape(s)
    s.add_argument("--objective", default="latency", choices=["latency", "energy", "edp", "pareto"],
                   help="spatial: what the mapper minimises (default latency)")
    s.add_argument("--search", default="fused", choices=["fused", "exhaustive", "random"],
                   help="spatial: the search (default fused)")
    s.add_argument("--seed", type=_int_arg(0, "a seed"), default=0, help="spatial: random seed (default 0)")
    s.add_argument("--budget", type=_int_arg(1, "a budget"), help="spatial: mappings to evaluate at most")
    s.add_argument("--out", metavar="MAPPING.yaml", help="spatial: write the best mapping file here")
    s.add_argument("--force", action="store_true", help="overwrite --out (spatial) or --plot")
    s.add_argument("--plot", metavar="FILE.png", help="GPU: write a roofline here (png, pdf or svg): predicted "
                                                      "throughput against arithmetic intensity beside the "
                                                      "compute and HBM roofs; its numbers as FILE.json beside it")
    s.add_argument("--dtype", default="bf16", choices=["bf16", "f16", "f8", "f32"],
                   help="element type of Q, K, V (default bf16)")
    s.add_argument("--top", type=_int_arg(1, "how many mappings to list"), default=5, help="how many mappings to list (default 5)")
    _add_inputs(s)
    s.add_argument("--json", action="store_true", help="print JSON instead of tables")
    s.set_defaults(func=cmd_map)

    from .sweep import add_parser as _add_sweep      # attnc sweep (attnc/sweep.py, docs/mapper.md)
    _add_sweep(sub, _int_arg)

    s = sub.add_parser("compile", help="generate a Triton kernel (fused, or chunked linear-time) for a design",
                       description="Generate the Triton source of a forward kernel for the design "
                                   "(docs/triton.md): a fused attention kernel with the mapping the GPU model "
                                   "picks for --hw at --shape, or a chunked linear-time kernel for linear "
                                   "attention and its relatives; and a usage example beside it. From Python, attnc.compile(...) returns a "
                                   "callable on torch tensors.")
    _add_design(s)
    s.add_argument("--target", default="triton", choices=["triton", "rtl"],
                   help="code generator (default triton; rtl: Verilog for the spatial array, docs/rtl.md)")
    s.add_argument("--hw", default=None, help="the GPU whose model picks the mapping (default h100); "
                                              "with --target rtl the spatial hardware (default fusemax)")
    s.add_argument("--mapping", metavar="FILE", help="--target rtl: the spatial mapping (default: the library's)")
    s.add_argument("--dataflow", choices=["os", "ws"], default=None,
                   help="--target rtl: the 2D PE array, output- (os, default) or weight-stationary (ws)")
    _add_shape(s, required=False)
    s.add_argument("--dtype", default="bf16", choices=["bf16", "f16", "f32"], help="element type (default bf16)")
    s.add_argument("--out", metavar="FILE.py", help="where to write the kernel (default DESIGN_triton.py)")
    _add_inputs(s)
    s.add_argument("--force", action="store_true", help="overwrite existing files")
    s.set_defaults(func=cmd_compile)

    for name, func, what in (("validate", cmd_validate, "the GPU model's error per point against measured times"),
                             ("calibrate", cmd_calibrate, "fit the GPU model's efficiency constants to "
                                                          "measured times; write a preset")):
        s = sub.add_parser(name, help=what, description=what + ". RESULTS.csv is the output of "
                           "benchmarks/gpu_attention.py (or benchmarks/published/h100_attention.csv).")
        s.add_argument("results", metavar="RESULTS.csv")
        s.add_argument("--hw", default="h100", help="a GPU preset or YAML file (default h100)")
        s.add_argument("--kernel", nargs="+", help="only rows of these kernels (e.g. sdpa flash-attention-2)")
        if name == "validate":
            s.add_argument("--cv", action="store_true", help="leave-one-group-out cross-validation: fit without "
                           "each GPU and each kernel class, predict it (published-measurement files)")
        if name == "calibrate":
            s.add_argument("--out", required=True, metavar="FILE.yaml", help="the calibrated preset to write")
            s.add_argument("--fit", default="fused_tensor,latency_ns",
                           help="constants to fit, comma-separated (default fused_tensor,latency_ns)")
            s.add_argument("--force", action="store_true", help="overwrite --out if it exists")
            s.add_argument("--start", metavar="K=V,...", help="the fitted constants' starting values (default: "
                                                              "the preset's); recorded in --out")
        s.set_defaults(func=func)

    s = sub.add_parser("reproduce", help="recompute a paper's evaluation (fusemax)",
                       description="fusemax: the five designs of FuseMax's evaluation on BERT, TrXL, T5 and "
                                   "XLM at 1K..1M tokens; writes CSV tables and figures to --out.")
    s.add_argument("paper", choices=["fusemax"])
    s.add_argument("--out", required=True, metavar="DIR", help="directory for the tables and figures")
    s.add_argument("--force", action="store_true", help="overwrite files of an earlier run in DIR")
    s.set_defaults(func=cmd_reproduce)

    s = sub.add_parser("demo", help="the main demo: analyse the FuseMax cascades and check one against torch",
                       description="The main demo: the FuseMax cascades side by side on BERT-base, the "
                                   "1-pass cascade against PyTorch attention, the five FuseMax designs on "
                                   "their accelerators, and a fused Triton kernel run in the interpreter.")
    s.set_defaults(func=cmd_demo)

    from codegen.rtl.stats import add_parser as _add_rtl_stats   # attnc rtl-stats (codegen/rtl/stats.py, docs/rtl.md)
    _add_rtl_stats(sub)
    return p


def _check_args(args) -> None:
    """Checks shared by every command: a --shape that parses, an --out that is
    not a directory."""
    if args.command in ("map", "simulate") and not args.shape and not getattr(args, "inputs", None):
        raise EinError(f"attnc {args.command} needs --shape (or --inputs FILE.npz giving every extent)")
    from pathlib import Path
    if getattr(args, "shape", None):
        parse_shapes(args.shape)
    out = getattr(args, "out", None)
    if out and args.command == "compile" and getattr(args, "target", "triton") == "triton" and Path(out).is_dir():
        raise EinError(f"--out {out} is a directory; give a file name, e.g. {Path(out) / 'kernel.py'}")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> int:
    """Run one command. A user's mistake prints `error: ...` (with file:line:col
    where there is a file) and returns 2; anything else is attnc's bug and
    prints one line saying so (return 3). No traceback reaches the user
    unless ATTNC_DEBUG=1 asks for it."""
    import os
    debug = os.environ.get("ATTNC_DEBUG", "") not in ("", "0")
    args = build_parser().parse_args(argv)
    try:
        _check_args(args)
        return args.func(args)
    except EinError as e:
        if debug:
            import traceback
            traceback.print_exc()
        print(e.render(), file=sys.stderr)
        return 2
    except BrokenPipeError:          # output piped into `head` and closed: not an error of ours
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001  (the last line of defence: never a traceback)
        if debug:
            raise
        print(_internal(e), file=sys.stderr)
        return 2 if isinstance(e, (MemoryError, OSError)) else 3


def _internal(e: BaseException) -> str:
    """One line for an exception that is not an EinError: out of memory and
    file-system errors are the user's environment; anything else is a bug."""
    if isinstance(e, MemoryError):
        return "error: out of memory (the shapes are too large for this machine)"
    if isinstance(e, OSError):
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        return f"error: cannot access{where}: {e.strerror or _one_line(e)}"
    if isinstance(e, RecursionError):
        return ("internal error (a bug in attnc): input nested too deeply for the implementation; "
                "rerun with ATTNC_DEBUG=1 for the traceback and report it")
    return (f"internal error (a bug in attnc): {type(e).__name__}: {_one_line(e)[:300]}; "
            "rerun with ATTNC_DEBUG=1 for the traceback and report it")


if __name__ == "__main__":
    sys.exit(main())

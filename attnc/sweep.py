"""`attnc sweep`: a grid of spatial-mapper runs (docs/mapper.md), one CSV row
per point, on a local process pool or a Dask cluster.

A point is (design, hardware, workload, length, objective) and, where the
grid varies them, the array side, buffer bytes and DRAM bandwidth of the
hardware. Each point runs the spatial mapper (`mappers.spatial_search`) or,
with a mapping file, simulates that mapping (a hand mapping beside the
searches). A point the mapper or the model refuses is a row with status
`refused` and the reason; nothing is left out silently. Rows are appended
as points finish, so an interrupted sweep resumes where it stopped (points
already in the CSV are skipped); at the end the file is rewritten in grid
order, so a pool and a Dask cluster give the same file.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import os
from dataclasses import dataclass
from itertools import product
from pathlib import Path

from einsum_ir.errors import EinError

from .reproduce import BATCH, MODELS

KEY = ("design", "hw", "workload", "length", "objective", "array", "buffer_bytes", "bandwidth_gib_s", "mapping")
RESULT = ("status", "area_mm2", "latency_cycles", "latency_s", "dram_cycles", "energy_pj", "buffer_used_bytes", "k0", "q0", "q1",
          "evaluated", "error")
TIMING = ("search_s",)          # varies from run to run; everything else is determined by the point
FIELDS = KEY + RESULT + TIMING
_SUFFIX = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


class SweepError(EinError):
    """A sweep that cannot start: a bad grid, a CSV of another sweep."""


@dataclass(frozen=True)
class Point:
    design: str
    hw: str
    workload: str
    length: int
    objective: str = "latency"
    array: int = 0                 # side of every array (0: the hardware's own)
    buffer_bytes: int = 0          # global buffer capacity (0: the hardware's own)
    bandwidth_gib_s: float = 0.0   # DRAM bandwidth in GiB/s (0: the hardware's own)
    mapping: str = ""              # a mapping file to simulate instead of searching

    def key(self) -> tuple[str, ...]:
        return tuple(_cell(getattr(self, f)) for f in KEY)


@dataclass(frozen=True)
class Options:
    """How each point is searched (the same for every point of a sweep)."""

    search: str = "fused"
    budget: int | None = None
    seed: int = 0
    shapes: tuple = ()             # extra shape symbols for every point, e.g. (("G", 2),)


def _cell(v) -> str:
    if isinstance(v, float):
        return repr(v)
    return str(v)


# ------------------------------------------------------------------ the grid

def parse_size(text: str, what: str) -> int:
    """`4096`, `4K`, `16M` -> an integer (K, M, G binary)."""
    t = text.strip()
    mult = _SUFFIX.get(t[-1:].upper(), 1)
    digits = t[:-1] if mult > 1 else t
    if not digits.isdigit() or int(digits) <= 0:
        raise SweepError(f"{what}: {text[:40]!r} is not a positive size (e.g. 4096, 4K, 1M)")
    return int(digits) * mult


def parse_lengths(text: str) -> tuple[int, ...]:
    """`1K,4K`, or `A..B` (A, 4A, 16A, ... up to B: the paper's lengths), or
    `A..B:xN` (steps of a factor N)."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if ".." not in part:
            out.append(parse_size(part, "--lengths"))
            continue
        rng, _, step = part.partition(":")
        lo, hi = (parse_size(x, "--lengths") for x in rng.split("..", 1))
        factor = 4
        if step:
            if not (step[:1] in "xX" and step[1:].isdigit() and int(step[1:]) >= 2):
                raise SweepError(f"--lengths {part!r}: the step is xN with N >= 2 (e.g. 1K..1M:x2)")
            factor = int(step[1:])
        if lo > hi:
            raise SweepError(f"--lengths {part!r}: {lo} is above {hi}")
        n = lo
        while n <= hi:
            out.append(n)
            n *= factor
    if not out:
        raise SweepError("--lengths is empty")
    return tuple(dict.fromkeys(out))


def grid(designs, hws, lengths, workloads=tuple(MODELS), objectives=("latency",), arrays=(0,), buffers=(0,),
         bandwidths=(0.0,), mapping: str = "") -> list[Point]:
    """Every combination, in a fixed order (designs outermost, lengths innermost)."""
    for w in workloads:
        if w not in MODELS:
            raise SweepError(f"unknown workload {w!r}; expected one of {', '.join(MODELS)}")
    from mappers.spatial_search import OBJECTIVES
    for o in objectives:
        if o not in OBJECTIVES or o == "pareto":
            raise SweepError(f"unknown sweep objective {o!r}; expected one of latency, energy, edp")
    return [Point(d, h, w, n, o, a, b, float(bw), mapping)
            for d, h, o, a, b, bw, w, n in product(designs, hws, objectives, arrays, buffers, bandwidths,
                                                   workloads, lengths)]


def load_spec(path: str) -> tuple[list[Point], Options]:
    """A sweep SPEC.yaml: designs, hw, lengths (required), workloads,
    objectives, arrays, buffers, bandwidths (lists or one value), mapping,
    search, budget, seed, shape; errors at the file's line and column."""
    from hw_models.schema import load_file
    top = load_file(Path(path)).mapping(
        required=("designs", "hw", "lengths"),
        optional=("workloads", "objectives", "arrays", "buffers", "bandwidths", "mapping", "search", "budget",
                  "seed", "shape"))
    spec = {k: _plain(v) for k, v in top.items()}

    def lst(k, default):
        v = spec.get(k, default)
        return [str(x) for x in (v if isinstance(v, list) else [v])]

    lengths = parse_lengths(",".join(lst("lengths", [])))
    points = grid(lst("designs", []), lst("hw", []), lengths, lst("workloads", list(MODELS)),
                  lst("objectives", ["latency"]), [parse_size(x, f"{path}: arrays") for x in lst("arrays", [])] or [0],
                  [parse_size(x, f"{path}: buffers") for x in lst("buffers", [])] or [0],
                  [float(x) for x in lst("bandwidths", [])] or [0.0], str(spec.get("mapping") or ""))
    shapes = tuple(sorted((str(k), v) for k, v in (spec.get("shape") or {}).items()))
    budget = spec.get("budget")
    return points, Options(str(spec.get("search", "fused")), int(budget) if budget else None,
                           int(spec.get("seed", 0)), shapes)


def _plain(node):
    """A YAML node as plain Python values."""
    v = getattr(node, "value", node)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


# ------------------------------------------------------------------ one point

def hardware(p: Point):
    """The point's hardware: the named preset or file with its overrides."""
    return _hardware(p.hw, p.array, p.buffer_bytes, p.bandwidth_gib_s)


@functools.lru_cache(maxsize=64)          # loaded once per worker process, not once per point
def _hardware(name: str, array: int, buffer_bytes: int, bandwidth_gib_s: float):
    from hw_models import load_spatial
    hw = load_spatial(name)
    changes = {}
    if array:
        changes["units"] = {u: dataclasses.replace(x, shape=tuple(array for _ in x.shape))
                            for u, x in hw.units.items()}
    if buffer_bytes:
        b = hw.buffer
        changes["buffer"] = dataclasses.replace(b, capacity_bytes=buffer_bytes,
                                                area_um2=b.area_um2 * buffer_bytes / b.capacity_bytes)
    if bandwidth_gib_s:
        changes["dram"] = dataclasses.replace(hw.dram, bandwidth_bytes_per_s=bandwidth_gib_s * (1 << 30))
    return hw.with_changes(**changes) if changes else hw


@functools.lru_cache(maxsize=64)
def _design(name: str):
    import einsum_ir as ei
    return ei.load(name)


@functools.lru_cache(maxsize=64)
def _mapping(name: str):
    from mappers.mapping import load_mapping
    return load_mapping(name)


def shapes_of(c, p: Point, extra=()) -> dict:
    """The workload's sizes (B = 64, its heads and head dims, M = P =
    length) and the `extra` symbols, the part the design uses (with the
    language's defaults); a symbol it needs and neither gives is an error
    naming it (tile symbols are the mapper's to set)."""
    from einsum_ir.errors import ShapeError

    from .compare import design_shapes, missing_line
    H, E, _, _ = MODELS[p.workload]
    ds = design_shapes(c, dict(B=BATCH, H=H, E=E, F=E, M=p.length, P=p.length) | dict(extra))
    tiles = {r.name for r in c.ranks if r.parent is not None}
    missing = [s for s in ds.missing if s not in tiles]
    if missing:
        raise ShapeError(missing_line(c.name, missing))
    return ds.values


def run_point(p: Point, opts: Options = Options()) -> dict:
    """The CSV row of one point; a refusal (the project's own errors) is a row that says why."""
    import time
    t0 = time.perf_counter()
    row = {f: _cell(getattr(p, f)) for f in KEY} | {f: "" for f in RESULT + TIMING}
    try:
        c, hw = _design(p.design), hardware(p)
        row["area_mm2"] = repr(hw.area_um2 / 1e6)      # the area model's: units' PEs and the buffer (Fig. 12's x axis)
        shapes = shapes_of(c, p, opts.shapes)
        if p.mapping:
            from simulator.analytical import simulate
            rep, k = simulate(c, _mapping(p.mapping), hw, shapes), ("", "", "")
            evaluated = 1
        else:
            from mappers.spatial_search import search
            f = search(c, hw, shapes, p.objective, opts.search, opts.seed, opts.budget)
            rep, k, evaluated = f.report, (f.candidate.k0, f.candidate.q0, f.candidate.q1), f.evaluated
    except EinError as e:
        row.update(status="refused", error=e.message.replace("\n", " "))
    else:
        row.update(status="ok", latency_cycles=repr(float(rep.latency_cycles)), latency_s=repr(float(rep.latency_s)),
                   dram_cycles=repr(float(rep.dram_cycles)),
                   energy_pj=repr(float(rep.total_energy())), buffer_used_bytes=repr(float(rep.buffer_bytes)),
                   k0=k[0], q0=k[1], q1=k[2], evaluated=evaluated)
    row["search_s"] = f"{time.perf_counter() - t0:.3f}"
    return row


def _run_many(batch: tuple, opts: Options) -> list[dict]:
    return [run_point(p, opts) for p in batch]


# ------------------------------------------------------------------ the CSV (resumable)

def done_keys(out: Path) -> dict[tuple, dict]:
    """Rows already in the CSV by point key; a CSV of other columns is refused."""
    if not out.exists() or out.stat().st_size == 0:
        return {}
    with out.open(newline="") as fh:
        rd = csv.DictReader(fh)
        if tuple(rd.fieldnames or ()) != FIELDS:
            raise SweepError(f"{out}: its columns ({', '.join(rd.fieldnames or ())}) are not a sweep's "
                             f"({', '.join(FIELDS)}); choose another --out or remove it")
        return {tuple(r[f] for f in KEY): r for r in rd}


def _write(out: Path, rows: list[dict]) -> None:
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, out)


def _batches(points: list[Point], workers: int) -> list[tuple]:
    """Points grouped so that each worker still gets 16 tasks or more (cheap
    points pay the dispatch once per group; a long sweep writes its rows often)."""
    size = max(1, min(32, len(points) // max(1, 16 * workers)))
    return [tuple(points[i:i + size]) for i in range(0, len(points), size)]


def run(points: list[Point], out: str | Path, opts: Options = Options(), jobs: int = 1, dask: bool = False,
        scheduler: str | None = None, progress: bool = False) -> dict:
    """Run the points not yet in `out` (appending rows as they finish), then
    rewrite `out` in grid order. Returns {'ran': n, 'skipped': n, 'refused': n}."""
    from tqdm import tqdm
    out = Path(out)
    have = done_keys(out)
    todo = [p for p in points if p.key() not in have]
    if not out.exists() or out.stat().st_size == 0:
        _write(out, [])
    bar = tqdm(total=len(points), initial=len(points) - len(todo), desc="sweep", unit="point",
               disable=not progress, leave=False)
    new: dict[tuple, dict] = {}
    with out.open("a", newline="") as fh:
        w = csv.DictWriter(fh, FIELDS)
        for rows in _execute(_batches(todo, jobs), opts, jobs, dask, scheduler):
            for row in rows:
                w.writerow(row)
                new[tuple(row[f] for f in KEY)] = row
            fh.flush()
            bar.update(len(rows))
    bar.close()
    rows = have | new
    ordered = [rows[p.key()] for p in points if p.key() in rows]
    ordered += [r for k, r in rows.items() if k not in {p.key() for p in points}]   # other grids' rows kept
    _write(out, ordered)
    return {"ran": len(new), "skipped": len(points) - len(todo),
            "refused": sum(1 for r in new.values() if r["status"] != "ok")}


def _execute(batches: list[tuple], opts: Options, jobs: int, dask: bool, scheduler: str | None):
    """Yield each batch's rows as it finishes: in this process (jobs 1), a
    local process pool, a Dask LocalCluster, or the Dask scheduler at an address."""
    if not batches:
        return
    if dask or scheduler:
        yield from _dask(batches, opts, jobs, scheduler)
    elif jobs <= 1:
        for b in batches:
            yield _run_many(b, opts)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as ex:
            futs = [ex.submit(_run_many, b, opts) for b in batches]
            for f in as_completed(futs):
                yield f.result()


def _dask(batches: list[tuple], opts: Options, jobs: int, scheduler: str | None):
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise SweepError("--dask and --scheduler need dask's distributed package "
                         "(pip install 'dask[distributed]'; scripts/setup.sh installs it)") from None
    cluster = None
    if scheduler:
        client = Client(scheduler, timeout=30)
    else:                       # in this process's threads for one job; local worker processes otherwise
        cluster = LocalCluster(n_workers=max(1, jobs), threads_per_worker=1, processes=jobs > 1,
                               dashboard_address=None, host="127.0.0.1" if jobs > 1 else None)
        client = Client(cluster)
    try:
        futs = client.map(_run_many, batches, opts=opts, pure=False)
        for f in as_completed(futs):
            yield f.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# ------------------------------------------------------------------ the command

def add_parser(sub, int_arg) -> None:
    """`attnc sweep` (registered by attnc.cli)."""
    s = sub.add_parser("sweep", help="a grid of spatial-mapper runs to CSV (local pool or Dask; resumable)",
                       description="Map every point of a grid (designs x hardware x workloads x lengths x "
                                   "objectives x array sides x buffers x bandwidths) with the spatial mapper, "
                                   "or simulate a given --mapping at each, one CSV row per point "
                                   "(docs/mapper.md). Points already in --out are skipped.")
    s.add_argument("designs", nargs="+", metavar="DESIGN", help="library names or .ein files, or one SPEC.yaml")
    s.add_argument("--hw", default="fusemax", help="spatial presets or files, comma-separated (default fusemax)")
    s.add_argument("--lengths", default="1K..1M", help="M = P: 1K,4K or A..B (x4 steps) or A..B:xN (default 1K..1M)")
    s.add_argument("--workloads", default=",".join(MODELS), help=f"comma-separated (default {','.join(MODELS)})")
    s.add_argument("--objectives", default="latency", help="latency, energy, edp, comma-separated")
    s.add_argument("--arrays", default="", help="array sides to sweep, e.g. 16,32,64 (default: the hardware's)")
    s.add_argument("--buffers", default="", help="buffer capacities, e.g. 1M,16M (default: the hardware's)")
    s.add_argument("--bandwidths", default="", help="DRAM GiB/s, e.g. 200,400 (default: the hardware's)")
    s.add_argument("--mapping", default="", help="simulate this mapping file at every point instead of searching")
    s.add_argument("--shape", nargs="*", metavar="NAME=VALUE", help="other sizes for every point (e.g. G=4 W=256)")
    s.add_argument("--search", default="fused", choices=["fused", "exhaustive", "random"])
    s.add_argument("--budget", type=int_arg(1, "a budget"), help="mappings per search at most")
    s.add_argument("--seed", type=int_arg(0, "a seed"), default=0)
    s.add_argument("--jobs", type=int_arg(1, "worker processes"), default=1, help="local worker processes")
    s.add_argument("--dask", action="store_true", help="run on a Dask LocalCluster of --jobs workers")
    s.add_argument("--scheduler", metavar="tcp://HOST:8786", help="run on the Dask cluster at this address")
    s.add_argument("--out", required=True, metavar="FILE.csv", help="results (appended to, then ordered)")
    s.set_defaults(func=cmd_sweep)


def _list(text: str, conv=str, what="") -> list:
    return [conv(x.strip(), what) if conv is parse_size else conv(x.strip()) for x in text.split(",") if x.strip()]


def cmd_sweep(args) -> int:
    import sys

    from .cli import parse_shapes
    if len(args.designs) == 1 and args.designs[0].endswith((".yaml", ".yml")):
        points, opts = load_spec(args.designs[0])
    else:
        try:
            bws = [float(x) for x in _list(args.bandwidths)] or [0.0]
        except ValueError:
            raise SweepError(f"--bandwidths {args.bandwidths[:40]!r}: numbers in GiB/s, comma-separated") from None
        points = grid(args.designs, _list(args.hw), parse_lengths(args.lengths), _list(args.workloads),
                      _list(args.objectives), _list(args.arrays, parse_size, "--arrays") or [0],
                      _list(args.buffers, parse_size, "--buffers") or [0], bws, args.mapping)
        opts = Options(args.search, args.budget, args.seed, tuple(sorted(parse_shapes(args.shape).items())))
    res = run(points, args.out, opts, args.jobs, args.dask, args.scheduler, progress=sys.stderr.isatty())
    print(f"{len(points)} points: {res['ran']} run, {res['skipped']} already in {args.out}, "
          f"{res['refused']} refused (status and reason in the CSV)")
    return 0

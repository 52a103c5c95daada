"""The analytical cost model of a cascade mapped onto a spatial array.

From the cascade's exact point counts (predicates included), the mapping's
loop nest and binding, and the hardware's costs:

- busy cycles of an Einsum on its unit = points x PE cycles per point /
  PEs used, where an array axis holding a factor smaller than the axis (or a
  rank the Einsum does not iterate) leaves PEs idle;
- DRAM traffic per tensor = its size x the extents of the loops, at or
  outside the loop it is kept under, that do not index it (re-streaming),
  plus the spilled fraction of on-chip tensors, written and read back;
- global-buffer occupancy = the tiles kept under each loop; buffer accesses
  (for energy) = every fill from DRAM, every read into the arrays (once per
  temporal iteration that does not index the tensor), every write back;
- latency from the mapping's overlap rule; energy = action counts x energy
  per action (compute, register files, buffer rows, DRAM bits); no leakage.
Assumptions and sources: docs/spatial.md.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from math import ceil, prod

import sympy

from einsum_ir import Cascade
from einsum_ir.analysis import einsum_ops, evaluate, ops_per_point, points
from einsum_ir.ir import Access, accesses
from einsum_ir.shapes import resolve
from hw_models.schema import HardwareError
from hw_models.spatial import SpatialArray
from mappers.mapping import Add, CriticalPath, Leaf, Mapping, Name, check_critical_path

PE_LEVEL, STREAM = "pe", "stream"


@dataclass(frozen=True)
class EinsumCost:
    name: str
    unit: str
    points: int
    cycles_per_point: int
    pes_used: int
    busy_cycles: float          # the unit is occupied this long
    work_cycles: float          # points x cycles per point / all the unit's PEs: useful work
    compute_pj: float
    register_pj: float


@dataclass(frozen=True)
class TensorCost:
    name: str
    keep: str                   # loop it is kept under, `pe`, or `stream`
    home: str                   # dram or chip
    buffer_bytes: float         # occupancy of its kept tile(s)
    dram_read_bytes: float
    dram_write_bytes: float
    buffer_read_bytes: float
    buffer_write_bytes: float


@dataclass(frozen=True)
class Report:
    design: str
    hardware: str
    shapes: dict
    factors: dict               # factor -> extent
    latency_cycles: float
    latency_s: float
    dram_cycles: float
    epochs: int
    critical_path_cycles: float  # per epoch (epochs overlap only)
    einsums: tuple[EinsumCost, ...]
    tensors: tuple[TensorCost, ...]
    unit_busy_cycles: dict
    unit_utilisation: dict      # useful work / (PEs x latency)
    einsum_utilisation: dict    # per Einsum: its useful work on its unit / latency
    buffer_bytes: float
    buffer_capacity_bytes: float
    min_buffer_bytes: float     # with every `fit` factor at 1: the working set the dataflow needs
    energy_pj: dict = field(default_factory=dict)   # compute, register_file, buffer, dram
    latency_rule: str = ""      # how the latency was combined, and which critical path (stated or default)
    critical_path: str = ""     # epochs: the expression used per epoch


    @property
    def dram_bytes(self) -> float:
        return sum(t.dram_read_bytes + t.dram_write_bytes for t in self.tensors)

    @property
    def total_energy_pj(self) -> float:
        return sum(self.energy_pj.values())


# ------------------------------------------------------------------ the loop nest

class _Nest:
    """Loop variables of the mapping resolved against the cascade: the rank
    each one splits and its extent."""

    def __init__(self, c: Cascade, m: Mapping, env: dict, factors: dict):
        self.c, self.m, self.env, self.factors = c, m, env, factors
        self.root_of: dict[str, str] = {}
        for rank, parts in m.factors:
            for f, _ in parts:
                self.root_of[f.lower()] = rank
        for r in c.ranks:
            if r.parent is not None:
                self.root_of.setdefault(r.name.lower(), r.parent)

    def extent(self, var: str) -> int:
        up = var.upper()
        if up in self.factors:
            return self.factors[up]
        if up in self.env:
            return int(self.env[up])
        raise HardwareError(f"mapping {self.m.name}: loop variable {var} is neither a rank of "
                            f"{self.c.name} nor a factor in `factors`")

    def ranks_of(self, var: str) -> set[str]:
        """The ranks a loop over `var` moves along: its own and the rank it splits."""
        out = {var.upper()}
        if var in self.root_of:
            out.add(self.root_of[var])
        return out

    def indexes(self, tensor_ranks, var: str) -> bool:
        return bool(self.ranks_of(var) & set(tensor_ranks))

    def spatial_vars(self, leaf: Leaf) -> set[str]:
        return {v for _, axes in leaf.spatial for v in axes}


# ------------------------------------------------------------------ helpers

def _views(c: Cascade) -> dict[str, str]:
    """Einsums that only re-index an input (BK[.., m1, m0] = K[.., m1*M0+m0]):
    the same data, so their reads count as reads of the input."""
    inputs = {t.name for t in c.inputs}
    out = {}
    for e in c.einsums:
        if isinstance(e.expr, Access) and not e.reduced and e.predicate is None and e.expr.tensor in inputs:
            out[e.name] = e.expr.tensor
    return out


def _factor_extents(c: Cascade, m: Mapping, env: dict, fit) -> dict[str, int]:
    out: dict[str, int] = {}
    pending = []
    for rank, parts in m.factors:
        if rank not in env:
            raise HardwareError(f"mapping {m.name} splits rank {rank}, which {c.name} does not have")
        n = int(env[rank])
        fixed = prod(e for _, e in parts if isinstance(e, int))
        for f, e in parts:
            if isinstance(e, int):
                out[f] = e
        fits = [f for f, e in parts if e == "fit"]
        rest = [f for f, e in parts if e == "rest"]
        if fits:
            pending.append((rank, n, fixed, fits[0], rest[0] if rest else None))
        elif rest:
            out[rest[0]] = max(1, ceil(n / fixed))
    for rank, n, fixed, f, rest in pending:
        remaining = max(1, ceil(n / fixed))
        choices = [d for d in range(remaining, 0, -1) if remaining % d == 0]
        chosen = None
        for d in choices:
            trial = dict(out, **{f: d})
            if rest:
                trial[rest] = remaining // d
            if fit(trial):
                chosen = trial
                break
        if chosen is None:
            trial = dict(out, **{f: 1}, **({rest: remaining} if rest else {}))
            fit(trial, explain=True)
        out = chosen
    return out


class InvariantError(AssertionError):
    """An internal error: the model produced a number that breaks one of its
    invariants (docs/spatial.md). Never a user's mistake; never ignored."""


def _overlap_node(m: Mapping):
    node = m.node.value.get("overlap") if isinstance(m.node.value, dict) else None
    return node if node is not None else m.node


def _check_schedule(c: Cascade, m: Mapping, hw: SpatialArray, costs: list, dram_by_einsum: Counter) -> None:
    """The overlap's names against the cascade: every Einsum with work on the
    critical path (or in exactly one phase), nothing there the cascade lacks."""
    bound = {ec.name: ec.unit for ec in costs}
    others = frozenset(e.name for e in c.einsums if not e.is_initial) - set(bound)
    if m.overlap == "epochs" and m.critical_path is not None:
        check_critical_path(m.critical_path, bound, set(hw.units), f"an Einsum of {c.name} bound to a unit",
                            optional=others)
    if m.overlap != "phases":
        return
    node = _overlap_node(m)
    placed = Counter(n for ph in m.phases for n in ph)
    for n, k in placed.items():
        if n not in bound and n not in others:
            raise node.error(f"`phases` names {n}, which is not an Einsum of {c.name}")
        if k > 1:
            raise node.error(f"{n} is in {k} phases (its time would count {k} times)")
    for n in list(bound) + [n for n, b in dram_by_einsum.items() if b]:
        if n not in placed:
            raise node.error(f"Einsum {n} is in no phase of `overlap.phases`: its "
                             f"{'busy time' if n in bound else 'DRAM traffic'} would be left out of the latency")


def _latency(m: Mapping, costs: list, nest: "_Nest", hw: SpatialArray, dram_cycles: float,
             dram_by_einsum: Counter) -> tuple[float, int, float, str, str]:
    """(latency, epochs, critical path per epoch, the rule used, the path used)."""
    busy = Counter()
    for ec in costs:
        busy[ec.unit] += ec.busy_cycles
    if m.overlap == "overlapped":
        return (max([dram_cycles] + list(busy.values())), 1, 0.0,
                "overlapped: max of DRAM time and each unit's busy time", "")
    if m.overlap == "phases":
        by_name = {ec.name: ec for ec in costs}
        latency = 0.0
        for ph in m.phases:
            unit_time = Counter()
            for n in ph:
                if n in by_name:
                    unit_time[by_name[n].unit] += by_name[n].busy_cycles
            mem = sum(dram_by_einsum[n] for n in ph) / hw.dram_bytes_per_cycle
            latency += max([mem] + list(unit_time.values()))
        return latency, 1, 0.0, f"phases: sum over {len(m.phases)} phases of max(DRAM, each unit)", ""
    named = {ec.name for ec in costs}
    main = max(m.leaves, key=lambda lf: sum(1 for n in lf.run if n in named))
    epochs = prod(nest.extent(v) for v in main.loops)
    per_epoch = {ec.name: ec.busy_cycles / epochs for ec in costs}
    per_epoch.update({f"fill_{u.name}": float(u.shape[0]) for u in hw.units.values()})
    cp: CriticalPath | None = m.critical_path
    if cp is not None:     # names checked by _check_schedule: any other is an Einsum without work
        per_epoch.update({n: 0.0 for n in cp.einsums() if n not in per_epoch})
    if cp is None:
        path = Add(tuple(Name(ec.name, m.node.loc) for ec in costs))
        rule = ("epochs: no critical_path stated; default: every Einsum in sequence "
                "(the sum over units of their busy time, an upper bound)")
    else:
        path, rule = cp.expr, "epochs: the mapping's critical_path"
    per = path.value(per_epoch)
    return max(epochs * per, dram_cycles), epochs, per, rule, str(path)


def _check_invariants(c: Cascade, m: Mapping, hw: SpatialArray, env: dict, r: "Report",
                      dram_by_einsum: Counter) -> None:
    """What must hold for any cascade, mapping and hardware (docs/spatial.md);
    a violation is a bug of the model, raised, never returned as a number."""
    eps = 1e-9
    where = f"{m.name} on {hw.name} at {env}"

    def fail(what: str):
        raise InvariantError(f"internal error: {what} ({where})")

    lat = r.latency_cycles
    for u, b in r.unit_busy_cycles.items():
        if b > lat * (1 + eps):
            fail(f"latency {lat:.6g} cycles is below {u}'s busy time {b:.6g}")
    for u, x in list(r.unit_utilisation.items()) + list(r.einsum_utilisation.items()):
        if not 0 <= x <= 1 + eps:
            fail(f"utilisation of {u} is {x:.6g}, outside [0, 1]")
    if lat < r.dram_bytes / hw.dram_bytes_per_cycle * (1 - eps):
        fail(f"latency {lat:.6g} cycles is below the DRAM time {r.dram_bytes / hw.dram_bytes_per_cycle:.6g}")
    attributed = sum(dram_by_einsum.values())
    if abs(attributed - r.dram_bytes) > eps * max(1.0, r.dram_bytes):
        fail(f"DRAM bytes attributed to Einsums ({attributed:.6g}) differ from the tensors' ({r.dram_bytes:.6g})")
    floor = Counter()
    einsum = {e.name: e for e in c.einsums if not e.is_initial}
    ops = {n: {k: evaluate(v, env) for k, v in einsum_ops(c, e).items()} for n, e in einsum.items()}
    costed = {ec.name for ec in r.einsums}
    for n, counts in ops.items():
        if n not in costed and any(counts.values()):
            fail(f"{n} performs {', '.join(k for k, v in counts.items() if v)} but has no busy time")
    for ec in r.einsums:
        unit = hw.unit(ec.unit)
        counts = ops[ec.name]
        cycles = [n * unit.ops[k].cycles for k, n in counts.items() if n]
        least = (max(cycles, default=0) if ec.name in m.pipelined else sum(cycles)) / unit.pes
        if ec.busy_cycles < least * (1 - eps):
            fail(f"{ec.name} is busy {ec.busy_cycles:.6g} cycles on {ec.unit}, below its operations / the "
                 f"unit's peak ({least:.6g})")
        floor[ec.unit] += least
    for u, least in floor.items():
        if r.unit_busy_cycles.get(u, 0.0) < least * (1 - eps):
            fail(f"{u} is busy {r.unit_busy_cycles.get(u, 0.0):.6g} cycles, below its Einsums' operations / "
                 f"its peak ({least:.6g})")


# ------------------------------------------------------------------ the model

def simulate(c: Cascade, m: Mapping, hw: SpatialArray, shapes: dict) -> Report:
    """Latency, traffic, energy and utilisation of `c` mapped by `m` on `hw`."""
    m = m.for_shapes(shapes)
    shapes = dict(shapes)
    own_tiles = {f: e for _, parts in m.factors for f, e in parts
                 if isinstance(e, int) and any(r.name == f for r in c.ranks)}
    for f, e in own_tiles.items():
        if f in shapes and shapes[f] != e:
            raise m.node.error(f"the mapping sets {f} = {e}, but the shapes give {f} = {shapes[f]}")
    shapes.update(own_tiles)
    env = dict(resolve(c, shapes))
    word = hw.word_bytes
    views = _views(c)
    base = lambda t: views.get(t, t)  # noqa: E731
    einsums = [e for e in c.einsums if not e.is_initial and e.name not in views]

    # every Einsum with work must be placed and bound to a unit that can run it
    per_point = {e.name: ops_per_point(e) for e in einsums}
    for e in einsums:
        if not per_point[e.name]:
            continue
        u = m.unit_of(e.name)
        if u is None:
            raise m.node.error(f"Einsum {e.name} ({', '.join(per_point[e.name])}) is bound to no unit "
                               f"in `binding`")
        unit = hw.unit(u)
        missing = unit.missing(per_point[e.name])
        if missing:
            raise m.node.error(f"Einsum {e.name} needs {', '.join(missing)}, which unit {u} of {hw.name} "
                               f"cannot perform")
        if m.leaf_of(e.name) is None:
            raise m.node.error(f"Einsum {e.name} is not in the nest (no `run` lists it)")
    known = {e.name for e in c.einsums}
    for name, _ in m.binding:
        if name not in known:
            raise m.node.error(f"`binding` names {name}, which is not an Einsum of {c.name}")

    keep = dict(m.keep)
    for t in c.tensors:
        if t.role in ("input", "output") and t.name not in keep:
            raise m.node.error(f"`keep` must say where {t.role} {t.name} is kept (a loop variable, or stream)")
    tensors = [t for t in c.tensors if t.name not in views]

    def tile_elems(t, level: str, nest: _Nest) -> float:
        """Elements of t's tile kept under loop `level` (the largest over the leaves that touch t)."""
        if level in (PE_LEVEL, STREAM):
            return 0
        best = 0
        for lf in m.leaves:
            if not any(base(a.tensor) == t.name for n in lf.run for e in c.writers(n) for a in
                       [e.output] + e.reads()):
                continue
            if level not in lf.loops:
                raise m.node.error(f"{t.name} is kept under loop {level}, which does not enclose the Einsums "
                                   f"{', '.join(lf.run)} that use it")
            inside = set(lf.loops[lf.loops.index(level) + 1:]) | nest.spatial_vars(lf)
            outside = set(lf.loops[:lf.loops.index(level) + 1])
            n = 1
            for r in t.ranks:
                if r in t.iterative:
                    continue            # updated in place: one iterate
                split = [v for v in inside | outside if r in nest.ranks_of(v)]
                if not split:
                    n *= int(env[r])
                else:
                    n *= prod(nest.extent(v) for v in split if v in inside)
            best = max(best, n)
        return best

    def occupancy(factors: dict) -> float:
        nest = _Nest(c, m, env, factors)
        return sum(tile_elems(t, keep.get(t.name, PE_LEVEL), nest) * word for t in tensors)

    def fit(factors: dict, explain=False) -> bool:
        used = occupancy(factors)
        if used <= hw.buffer.capacity_bytes:
            return True
        if explain:
            nest = _Nest(c, m, env, factors)
            parts = ", ".join(f"{t.name} {tile_elems(t, keep.get(t.name, PE_LEVEL), nest) * word:.0f}"
                              for t in tensors if keep.get(t.name, PE_LEVEL) not in (PE_LEVEL, STREAM))
            raise m.node.error(f"no tile fits the {hw.buffer.capacity_bytes} B global buffer of {hw.name}: "
                               f"even the smallest needs {used:.0f} B ({parts})")
        return False

    factors = _factor_extents(c, m, env, fit)
    no_fit = m.with_changes(factors=tuple((r, tuple((f, 1 if e == "fit" else e) for f, e in parts))
                                          for r, parts in m.factors))
    smallest = _factor_extents(c, no_fit, env, fit=None)
    nest = _Nest(c, m, env, factors)
    buffer_bytes = occupancy(factors)
    if buffer_bytes > hw.buffer.capacity_bytes and not m.spill:
        fit(factors, explain=True)

    # ---- compute
    costs: list[EinsumCost] = []
    for e in einsums:
        ops = per_point[e.name]
        if not ops:
            continue
        unit = hw.unit(m.unit_of(e.name))
        leaf = m.leaf_of(e.name)
        n_points = int(evaluate(points(c, e), env))
        cpp = unit.cycles_per_point(ops, pipelined=e.name in m.pipelined)
        its = set(e.iteration_vars)
        used, pad = 1, 1.0
        for size, var in zip(unit.shape, leaf.axes(unit.name)):
            if not (nest.ranks_of(var) & {v.upper() for v in its}):
                continue              # the Einsum does not move along this axis: one PE of it works
            n = nest.extent(var)
            used *= min(n, size)
            root = nest.root_of.get(var, var.upper())
            covered = prod(nest.extent(f.lower()) for rank, parts in m.factors if rank == root for f, _ in parts)
            if covered > int(env.get(root, covered)):
                pad *= covered / int(env[root])
        busy = n_points * cpp / used * pad
        reads = len(accesses(e.expr)) + (1 if e.reduced else 0)
        costs.append(EinsumCost(
            e.name, unit.name, n_points, cpp, used, busy, n_points * cpp / unit.pes,
            n_points * unit.energy_per_point_pj(ops),
            n_points * (reads * unit.register_file.read_pj + unit.register_file.write_pj)))

    # ---- traffic
    def restream(t, leaf: Leaf, level: str) -> int:
        loops = leaf.loops if level in (PE_LEVEL, STREAM) else leaf.loops[:leaf.loops.index(level) + 1]
        return prod(nest.extent(v) for v in loops if not nest.indexes(t.ranks, v))

    def buffer_trips(t, leaf: Leaf) -> int:
        """Times the arrays read (or write back) t in a leaf: once per iteration
        of each loop that does not index t, except loops inside the innermost
        one that does, across which t's element stays in the PE (a stationary
        operand, or a partial sum accumulated in place)."""
        relevant = [k for k, v in enumerate(leaf.loops) if nest.indexes(t.ranks, v)]
        inner = relevant[-1] if relevant else -1
        return prod(nest.extent(v) for k, v in enumerate(leaf.loops) if k < inner and not nest.indexes(t.ranks, v))

    def size_elems(t) -> int:
        return prod(int(env[r]) + (1 if r in t.iterative else 0) for r in t.ranks)

    spill = dict(m.spill)
    dram_by_einsum: Counter = Counter()
    tcosts = []
    for t in tensors:
        level = keep.get(t.name, PE_LEVEL)
        home = "dram" if t.role in ("input", "output") or t.name in m.dram else "chip"
        size = size_elems(t) * word
        readers = [(e, m.leaf_of(e.name)) for e in einsums
                   if any(base(a.tensor) == t.name for a in e.reads()) and m.leaf_of(e.name) is not None]
        writers = [(e, m.leaf_of(e.name)) for e in einsums if e.name == t.name and m.leaf_of(e.name) is not None]
        d_read = d_write = b_read = b_write = 0.0
        counted_levels = set()
        written_in = {id(lf) for _, lf in writers}
        for e, lf in readers:
            if id(lf) in written_in:
                continue                # produced and consumed in the same leaf: passed directly
            b_read += size * buffer_trips(t, lf) if level != PE_LEVEL else 0
            if home == "dram":
                key = (level, lf.loops[:lf.loops.index(level) + 1]) if level in lf.loops else id(lf)
                if key in counted_levels:
                    continue            # kept across both readers: fetched once
                counted_levels.add(key)
                r = size * restream(t, lf, level)
                d_read += r
                dram_by_einsum[e.name] += r
        for e, lf in writers:
            w = size * restream(t, lf, level) if home == "dram" else 0
            d_write += w
            dram_by_einsum[e.name] += w
            if level != PE_LEVEL:
                b_write += size * buffer_trips(t, lf)
        if home == "chip" and spill.get(t.name):
            f = spill[t.name]
            far = [(e, lf) for e, lf in readers if id(lf) not in written_in]
            extra_w, extra_r = f * size, f * size * len(far)
            d_write += extra_w
            d_read += extra_r
            for e, _ in writers:
                dram_by_einsum[e.name] += extra_w
            for e, _ in far:
                dram_by_einsum[e.name] += extra_r / len(far)
        b_write += d_read if level != PE_LEVEL or home == "dram" else 0
        b_read += d_write if level != PE_LEVEL or home == "dram" else 0
        tcosts.append(TensorCost(t.name, level, home, tile_elems(t, level, nest) * word,
                                 d_read, d_write, b_read, b_write))

    dram_bytes = sum(t.dram_read_bytes + t.dram_write_bytes for t in tcosts)
    bpc = hw.dram_bytes_per_cycle
    dram_cycles = dram_bytes / bpc

    # ---- latency
    _check_schedule(c, m, hw, costs, dram_by_einsum)
    busy = Counter()
    for ec in costs:
        busy[ec.unit] += ec.busy_cycles
    latency, epochs, cp, rule, path = _latency(m, costs, nest, hw, dram_cycles, dram_by_einsum)

    # ---- energy
    energy = {
        "compute": sum(ec.compute_pj for ec in costs),
        "register_file": sum(ec.register_pj for ec in costs),
        "buffer": sum(t.buffer_read_bytes / hw.buffer.row_bytes * hw.buffer.read_pj_per_row
                      + t.buffer_write_bytes / hw.buffer.row_bytes * hw.buffer.write_pj_per_row for t in tcosts),
        "dram": dram_bytes * 8 * hw.dram.pj_per_bit,
    }
    work = Counter()
    for ec in costs:
        work[ec.unit] += ec.work_cycles
    report = Report(
        design=m.name, hardware=hw.name, shapes={k: v for k, v in env.items()}, factors=factors,
        latency_cycles=latency, latency_s=latency / hw.clock_hz, dram_cycles=dram_cycles, epochs=epochs,
        critical_path_cycles=cp, einsums=tuple(costs), tensors=tuple(tcosts),
        unit_busy_cycles=dict(busy),
        unit_utilisation={u: work[u] / latency if latency else 0.0 for u in hw.units},
        einsum_utilisation={ec.name: ec.work_cycles / latency if latency else 0.0 for ec in costs},
        buffer_bytes=buffer_bytes, buffer_capacity_bytes=hw.buffer.capacity_bytes,
        min_buffer_bytes=occupancy(smallest), energy_pj=energy, latency_rule=rule, critical_path=path)
    _check_invariants(c, m, hw, env, report, dram_by_einsum)
    return report


# ------------------------------------------------------------------ formulas

def formulas(c: Cascade, m: Mapping, hw: SpatialArray) -> dict[str, sympy.Expr]:
    """The model's main figures as sympy expressions in the shape symbols and
    the mapping's factors (a `fit` factor stays a symbol, e.g. P1; a `rest`
    factor is ceiling(rank / the others)), for explanation: busy cycles per
    Einsum (full tiles assumed, no padding), DRAM bytes per tensor and in
    total. `simulate` gives the numbers; the tests check they agree."""
    from einsum_ir.analysis import points as points_of
    from einsum_ir.sym import shape_symbol

    extent: dict[str, sympy.Expr] = {}
    for rank, parts in m.factors:
        fixed = sympy.Integer(1)
        for f, e in parts:
            if e != "rest":
                extent[f] = sympy.Integer(e) if isinstance(e, int) else shape_symbol(f)
                fixed *= extent[f]
        for f, e in parts:
            if e == "rest":
                extent[f] = sympy.ceiling(shape_symbol(rank) / fixed)
    root_of = {f.lower(): rank for rank, parts in m.factors for f, _ in parts}
    for r in c.ranks:
        if r.parent is not None:
            root_of.setdefault(r.name.lower(), r.parent)

    def ext(v):
        return extent.get(v.upper(), shape_symbol(v.upper()))

    def ranks_of(v):
        return {v.upper(), root_of.get(v, v.upper())}

    views = _views(c)
    word = hw.word_bytes
    out: dict[str, sympy.Expr] = {}
    for e in c.einsums:
        ops = ops_per_point(e)
        if e.is_initial or e.name in views or not ops:
            continue
        unit = hw.unit(m.unit_of(e.name))
        leaf = m.leaf_of(e.name)
        used = sympy.Integer(1)
        its = {v.upper() for v in e.iteration_vars}
        for size, var in zip(unit.shape, leaf.axes(unit.name)):
            if ranks_of(var) & its:
                used *= sympy.Min(ext(var), size)
        cpp = unit.cycles_per_point(ops, pipelined=e.name in m.pipelined)
        out[f"busy_cycles[{e.name}]"] = points_of(c, e) * cpp / used
    keep = dict(m.keep)
    total = sympy.Integer(0)
    for t in c.tensors:
        if t.name in views or not (t.role in ("input", "output") or t.name in m.dram):
            continue
        level = keep.get(t.name, STREAM)
        size = sympy.Mul(*[shape_symbol(r) + (1 if r in t.iterative else 0) for r in t.ranks]) * word
        moved = sympy.Integer(0)
        users = [e for e in c.einsums if not e.is_initial and e.name not in views and m.leaf_of(e.name)
                 and (e.name == t.name or any(views.get(a.tensor, a.tensor) == t.name for a in e.reads()))]
        seen = set()
        for e in users:
            lf = m.leaf_of(e.name)
            loops = lf.loops if level not in lf.loops else lf.loops[:lf.loops.index(level) + 1]
            key = (e.name == t.name, loops if level in lf.loops else id(lf))
            if key in seen:
                continue
            seen.add(key)
            moved += size * sympy.Mul(*[ext(v) for v in loops if not ranks_of(v) & set(t.ranks)])
        out[f"dram_bytes[{t.name}]"] = moved
        total += moved
    out["dram_bytes"] = total
    return out

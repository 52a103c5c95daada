"""A tile-level event simulation of a mapping, to check the analytical model
and to show the stalls it ignores.

The program is the mapping's loop nest walked in order: every iteration of
a leaf is a set of tasks, one per Einsum with work (its busy cycles spread
evenly over the leaf's iterations), each on its unit. A task starts when its
unit is free (units issue in program order) and the tasks producing what it
reads have finished: the same tile's producers, the previous iterate's for a
recurrence (`RM[m1]` after `RM[m1+1]` of the tile before), the last
producer for a value read in another leaf (AV after the last RNV). Inputs
are loaded from DRAM one kept tile at a time (a new tile whenever a loop at
or outside the tensor's keep level moves), as early as the global buffer has
room for them next to what is still in use; outputs are stored after their
producer. DRAM serves loads and stores one at a time at full bandwidth.
A unit whose fill the mapping states as exposed (`fill_<unit>` in an
epochs critical path: +Architecture, no pipelining across tiles) spends its
fill time before the first result of each tile, where the dependencies put
it.
Latency is when the last task ends. Meant for small and medium shapes (one
task per Einsum per tile).

`epoch_pipeline` is the other view of time: the fill and drain of an
`epochs` mapping, one epoch laid out through the blocks attnc generates
(codegen.rtl: their hand-off, skew and II formulas, imported), without
DRAM; the analytical model's epochs x L plus that term is the generated
top's cycle count (docs/spatial.md, Fill and drain of the epochs)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from math import prod

from einsum_ir import Cascade
from einsum_ir.ir import index_vars, offset_of
from hw_models.spatial import SpatialArray
from mappers.mapping import Add, Mapping, Name, Overlap

from .analytical import Report, simulate
from .numbers import Numeric
from .traffic import Home
from .tiling import Nest, nest, views

MAX_TASKS = 2_000_000


@dataclass(frozen=True)
class EventReport:
    latency_cycles: float
    unit_busy_cycles: dict          # unit (and "dram") -> cycles busy
    unit_stall_cycles: dict         # latency - busy
    tasks: int
    analytical: Report
    fill_cycles: dict               # unit -> exposed fill/drain cycles (+Architecture)

    @property
    def relative_error(self) -> float:
        """(analytical - simulated) / simulated latency."""
        return (self.analytical.latency_cycles - self.latency_cycles) / self.latency_cycles


def _program(m: Mapping, n: Nest):
    """(leaf index, {loop var: index}) for every leaf iteration, in nest order."""
    leaves = list(enumerate(m.leaves))

    def walk(group, depth, idx):
        i = 0
        while i < len(group):
            li, lf = group[i]
            if len(lf.loops) == depth:
                yield li, dict(idx)
                i += 1
                continue
            v = lf.loops[depth]
            j = i
            while j < len(group) and len(group[j][1].loops) > depth and group[j][1].loops[depth] == v:
                j += 1
            for k in range(n.extent(v)):
                idx[v] = k
                yield from walk(group[i:j], depth + 1, idx)
            del idx[v]
            i = j
    yield from walk(leaves, 0, {})


class _Run:
    """The state of one event simulation: units' and DRAM's next free time,
    producers' finish times, the buffer's live input tiles."""

    def __init__(self, c: Cascade, m: Mapping, hw: SpatialArray, r: Report):
        self.c, self.m, self.hw, self.r = c, m, hw, r
        self.nest = nest(c, m, r.factors, Numeric(dict(r.shapes)))
        vs = views(c)
        self.base = lambda t: vs.get(t, t)  # noqa: E731
        self.cost = {e.name: e for e in r.einsums}
        self.iters = {i: prod(self.nest.extent(v) for v in lf.loops) for i, lf in enumerate(m.leaves)}
        self.einsum = {e.name: e for e in c.einsums if not e.is_initial}
        self.tensors = {t.name: t for t in c.tensors}
        self.traffic = {t.name: t for t in r.tensors}
        self.reads = {name: self._reads_of(name) for name in self.cost}
        self.leaf_of = {n: i for i, lf in enumerate(m.leaves) for n in lf.run}
        self.finish: dict[tuple, float] = {}       # (tensor, leaf, key) -> finish of its producer
        self.unit_free, self.busy, self.stalls = Counter(), Counter(), Counter()
        self.dram_free, self.last = 0.0, 0.0
        self.resident = sum(t.buffer_bytes for t in r.tensors if self.tensors[t.name].role != "input")
        self.live: list[list] = []                 # [bytes, free time or None while in use]
        self.current_tile: dict[str, list] = {}    # input -> [key, load finish, entry in live, last use]
        stated = m.critical_path.fills() if m.overlap is Overlap.EPOCHS and m.critical_path is not None else ()
        self.exposed = {u.name: float(u.shape[0]) for u in hw.units.values() if u.name in stated}
        self.tile_of_unit: dict[str, tuple] = {}
        self.fetched: set = set()
        self.far_iters = {t: sum(self.iters[i] for i, lf in enumerate(m.leaves)
                                 if any(self.base(a.tensor) == t for n in lf.run if n in self.einsum
                                        for a in self.einsum[n].reads()) and self.leaf_of.get(t) != i) or 1
                          for t in self.tensors}

    def _reads_of(self, name: str) -> list:
        return _reads(self.c, self.einsum, self.base, name)

    def key_loops(self, t: str, lf) -> tuple:
        """The loops whose move brings a new tile of input t: those at or outside its keep level."""
        level = self.m.keep_of(t)
        return lf.loops[:lf.loops.index(level.loop) + 1] if level.in_buffer else lf.loops

    def transfer(self, nbytes: float, not_before: float) -> float:
        t0 = max(self.dram_free, not_before)
        self.dram_free = t0 + nbytes / self.hw.dram_bytes_per_cycle
        self.busy["dram"] += nbytes / self.hw.dram_bytes_per_cycle
        return self.dram_free

    def start_load(self, nbytes: float) -> float:
        """Load as soon as the buffer has room beside the tiles still in use."""
        t0 = self.dram_free
        while True:
            used = self.resident + sum(b for b, free in self.live if free is None or free > t0)
            if used + nbytes <= self.hw.buffer.capacity_bytes or not self.live:
                break
            pending = [free for b, free in self.live if free is not None and free > t0]
            if not pending:
                break                              # the tiles in use are needed now: the mapping overfills
            t0 = min(pending)
        return self.transfer(nbytes, t0)

    def input_ready(self, t: str, lf, idx: dict) -> float:
        key = tuple(idx[v] for v in self.key_loops(t, lf))
        cur = self.current_tile.get(t)
        if cur is None or cur[0] != key:
            if cur is not None:
                cur[2][1] = cur[3]                 # the previous tile is free once its last reader ended
            loads = max(1, prod(self.nest.extent(v) for v in self.key_loops(t, lf)))
            entry = [self.traffic[t].dram_read_bytes / loads, None]
            done = self.start_load(entry[0])
            self.live.append(entry)
            cur = self.current_tile[t] = [key, done, entry, done]
        return cur[1]

    def produced_ready(self, t: str, back, li: int, idx: dict, ready: float) -> float:
        src = self.leaf_of.get(t)
        if src is None:
            return ready
        far_load = (self.traffic[t].home is Home.DRAM and src != li
                    and (t, li, tuple(idx.items())) not in self.fetched)
        shared = tuple(v for v in self.m.leaves[src].loops if v in idx)
        key_idx = dict(idx)
        if back is not None:
            if back not in key_idx or key_idx[back] == 0:
                return ready                       # reads the initial value
            key_idx[back] -= 1
        key = (t, src, tuple((v, key_idx[v]) for v in shared))
        if key in self.finish:
            ready = max(ready, self.finish[key])
        if far_load:                               # an intermediate that went through DRAM comes back
            self.fetched.add((t, li, tuple(idx.items())))
            ready = max(ready, self.transfer(self.traffic[t].dram_read_bytes / self.far_iters[t], ready))
        return ready

    def task(self, name: str, li: int, idx: dict, barrier: float) -> None:
        lf = self.m.leaves[li]
        ready = barrier
        for t, back in self.reads[name]:
            if self.tensors[t].role == "input":
                ready = max(ready, self.input_ready(t, lf, idx))
            else:
                ready = self.produced_ready(t, back, li, idx, ready)
        ec = self.cost[name]
        start = max(ready, self.unit_free[ec.unit])
        here = (li, tuple(idx.items()))
        if ec.unit in self.exposed and self.tile_of_unit.get(ec.unit) != here:
            self.tile_of_unit[ec.unit] = here      # a new tile: the first result comes out a fill later
            start += self.exposed[ec.unit]
            self.stalls[ec.unit] += self.exposed[ec.unit]
        end = start + ec.busy_cycles / self.iters[li]
        self.unit_free[ec.unit] = end
        self.busy[ec.unit] += ec.busy_cycles / self.iters[li]
        for other in self.m.leaves:                # readers in any leaf find it by their shared loops
            shared = tuple(v for v in lf.loops if v in other.loops)
            self.finish[(name, li, tuple((v, idx[v]) for v in shared))] = end
        for t, _ in self.reads[name]:
            if self.tensors[t].role == "input" and t in self.current_tile:
                self.current_tile[t][3] = max(self.current_tile[t][3], end)
        if self.traffic[name].home is Home.DRAM and self.traffic[name].dram_write_bytes:
            end = self.transfer(self.traffic[name].dram_write_bytes / self.iters[li], end)   # the store
        self.last = max(self.last, end)


def simulate_events(c: Cascade, m: Mapping, hw: SpatialArray, shapes: dict) -> EventReport:
    r = simulate(c, m, hw, shapes)
    m = m.for_shapes(shapes)
    run = _Run(c, m, hw, r)
    n_tasks = sum(run.iters[i] * sum(1 for n in lf.run if n in run.cost) for i, lf in enumerate(m.leaves))
    if n_tasks > MAX_TASKS:
        raise ValueError(f"{n_tasks} tasks: the event simulation is for small and medium shapes")
    # `phases`: each phase runs over the whole workload before the next starts
    phases = [set(ph) for ph in m.phases] if m.overlap is Overlap.PHASES else [set(run.cost)]
    for phase in phases:
        barrier = run.last
        for li, idx in _program(m, run.nest):
            for name in m.leaves[li].run:
                if name in run.cost and name in phase:
                    run.task(name, li, idx, barrier)
    latency = max(run.last, run.dram_free)
    busy = dict(run.busy)
    return EventReport(latency, busy, {u: latency - b for u, b in busy.items()}, n_tasks, r, dict(run.stalls))


# ------------------------------------------------------------------ the epochs' pipeline: fill and drain

@dataclass(frozen=True)
class Stage:
    """One Einsum in the epochs' pipeline, in cycles from its epoch's start
    (the last epoch's, for a leaf after the epochs')."""
    einsum: str
    leaf: int                    # 0: the epochs' leaf; 1: a leaf after it
    offset: float                # where the critical path places it in the epoch (the controller's)
    start: float                 # its first issue: the offset, or later when its operands are readable then
    window: float                # its cycles in each epoch (`codegen.rtl.top.window_cycles`)
    ii: int                      # edges between its points (`codegen.rtl.unit.initiation_interval`)
    lanes: int                   # the simulator's PEs for it (1 on the 2D array: one tile at a time)
    outputs: int                 # per epoch (per iteration of its leaf after the epochs')
    points_per_output: int
    fill: int                    # on the 2D array: its skew R' + C' - 2 (`pe_array.fill_cycles`); else 0
    last_issue: float
    first_ready: float           # when a reader may issue on its first result
    last_ready: float            # ... on its last result


@dataclass(frozen=True)
class Pipeline:
    """The epochs through the generated top's blocks (docs/spatial.md,
    Fill and drain): every epoch adds the period L, and the first epoch's
    chain of hand-offs and the last leaf's drain are exposed once:
    latency = epochs x L + fill_drain_cycles."""
    epochs: int
    period: float                # L, the analytical model's critical path per epoch
    stages: dict                 # Einsum -> Stage
    fill_drain_cycles: float
    caveats: tuple               # what the top's schedule assumes that does not hold here (then an estimate)

    @property
    def latency_cycles(self) -> float:
        return self.epochs * self.period + self.fill_drain_cycles

    @property
    def rtl_cycles(self) -> float:
        """The top's edges from start to done: the latency and the start register (docs/rtl.md)."""
        from codegen.rtl.top import BASE
        return self.latency_cycles + BASE

    @property
    def exact(self) -> bool:
        return not self.caveats


def _within(n: Nest, mm: Mapping, loops: set, v: str) -> int:
    """The extent of iteration variable `v` inside one iteration of `loops`."""
    if v in loops:
        return 1
    parts = next((p for rank, p in mm.factors if rank == v.upper()), None)
    if parts is None:
        return int(n.extent(v))
    return prod(int(n.extent(f.lower())) for f, _ in parts if f.lower() not in loops)


def _reads(c: Cascade, einsum: dict, base, name: str) -> list:
    """What an Einsum reads: (tensor, iterative var read one step back, or None)."""
    out = []
    for a in einsum[name].reads():
        back = None
        w = einsum.get(a.tensor)
        if w is not None and w.iterative_var:
            v = w.iterative_var
            if v in index_vars(a) and not any(offset_of(i) == (v, 1) for i in a.indices):
                back = v                       # RM[m1]: the previous iterate
        out.append((base(a.tensor), back))
    return out


def _on_array(c: Cascade, e, ec, hw: SpatialArray, within, dataflow: str):
    """The 2D array's skew R' + C' - 2 where the top runs `e` on it (its
    tile's rows stream one operand, its columns the other), else None."""
    from codegen.rtl import pe_array
    from codegen.rtl.top import systolic
    if not systolic(c, e, ec.unit, dataflow):
        return None
    red = set(e.reduced)
    ins = [set(index_vars(a)) for a in e.expr.args]
    moving = [v for v in e.iteration_vars if v not in red and within(v) > 1]
    if any((v in ins[0]) == (v in ins[1]) for v in moving):
        return None                            # an output index both operands (or neither) move along
    ra = prod(within(v) for v in moving if v in ins[0])
    rb = prod(within(v) for v in moving if v in ins[1])
    rows, cols = (list(hw.unit(ec.unit).shape) + [1])[:2]
    if not ((ra <= rows and rb <= cols) or (rb <= rows and ra <= cols)):
        return None
    return pe_array.fill_cycles(ra, rb)


def _geometry(c: Cascade, mm: Mapping, n: Nest, hw: SpatialArray, ec, e, loops, epochs: int,
              dataflow: str, caveats: list, in_epochs: bool) -> dict:
    """One Einsum's outputs and points per output in one iteration of
    `loops` (an epoch, or its leaf's iteration after the epochs), its II,
    lanes, window and work per lane there (the top's rules)."""
    from codegen.rtl.top import window_cycles
    from codegen.rtl.unit import initiation_interval
    within = lambda v: _within(n, mm, set(loops), v)  # noqa: E731
    red = set(e.reduced)
    outputs = prod(within(v) for v in e.iteration_vars if v not in red)
    ppo = prod(within(v) for v in e.iteration_vars if v in red)
    ii, lanes, share = initiation_interval(ec.cycles_per_point), max(1, int(ec.pes_used)), ec.busy_cycles / epochs
    fill = _on_array(c, e, ec, hw, within, dataflow)
    work = ppo if fill is not None else -(-outputs // lanes) * ppo * ii     # a tile, one step per edge; lanes
    window = window_cycles(share, ppo, ii)
    if share != int(share):
        caveats.append(f"{e.name}: {share:g} cycles per epoch, not a whole number")
    if in_epochs and work > window:
        caveats.append(f"{e.name}: {work} cycles of work per epoch on {lanes} PEs, more than its window of "
                       f"{window:g}: it spills into the next epoch's")
    if e.predicate is not None:
        caveats.append(f"{e.name}: masked (where {e.predicate}): its points per epoch vary")
    return dict(outputs=outputs, ppo=ppo, ii=ii, lanes=1 if fill is not None else lanes, window=window,
                work=work, fill=fill or 0, step=1 if fill is not None else ii)


def _times(g: dict, start: float) -> tuple:
    """(last issue, first result readable, last result readable) of a stage starting at `start`."""
    from codegen.rtl.top import readable
    last = start + g["work"] - g["step"]
    return (last, readable(start + g["ppo"] * g["step"] - g["step"], g["step"]),
            readable(last, g["step"], g["fill"]))


def _main_stages(geo: dict, offset: dict, reads: dict, main: list, loops: list, extent, period: float,
                 caveats: list) -> dict:
    """The epochs' leaf: each Einsum's window opens at its offset, or later
    when every operand its first epoch reads is readable (the top's skew);
    then every epoch keeps the period, if each recurrence's previous value
    is readable in time."""
    start = {x: offset[x] for x in main}
    for _ in range(4 * len(main) + 4):
        times = {x: _times(geo[x], start[x]) for x in main}
        new = {x: max([offset[x]] + [times[y][2] for y, back in reads[x] if y in times and back is None])
               for x in main}
        if new == start:
            break
        start = new
    else:
        raise RuntimeError("the epochs' pipeline did not settle: the windows keep moving")
    for x in main:
        for y, back in reads[x]:
            if y not in times or back is None or (back in loops and extent(back) <= 1):
                continue                       # no previous iterate within the epochs
            gap = prod(extent(v) for v in loops[loops.index(back) + 1:]) if back in loops else 0
            if times[y][2] - gap * period > start[x]:
                caveats.append(f"{x} reads {y} of the previous {back} {gap} epoch(s) later: readable at "
                               f"{times[y][2] - gap * period:g}, after {x}'s window opens at {start[x]:g}")
    return {x: (start[x], *times[x]) for x in main}


def _after_stage(g: dict, offset: float, ready: tuple, gap: int, period: float) -> tuple:
    """A leaf after the epochs' (AV after the key loop) in its last
    iteration, on one of its lanes: its points issue in its window of each
    epoch (the controller's offset, not skewed) and back to back after the
    last epoch, from when the producers' first results are readable, the
    last no earlier than their last; the iteration before it (`gap` epochs
    earlier) first. (start, last issue, first and last result readable),
    in cycles from the last epoch's start."""
    from codegen.rtl.top import BASE, _slots, readable
    first, last = ready
    n = -(-g["outputs"] // g["lanes"]) * g["ppo"]
    runs = gap + 1
    window = (int(offset), int(g["window"]), BASE + runs * period)
    at = BASE + gap * period                 # the last epoch's first edge in this run of gap + 1 epochs
    x = at + first
    if gap:
        before = _slots(at - gap * period + first, n, g["ii"], window, period, runs)
        x = max(x, before[-1] + g["ii"])
    times = _slots(x, n, g["ii"], window, period, runs)
    t = max(times[-1], at + last) - at
    start = times[0] - at
    return (start, t, readable(start + (g["ppo"] - 1) * g["ii"], g["ii"]), readable(t, g["ii"]))


def epoch_pipeline(c: Cascade, m: Mapping, hw: SpatialArray, shapes: dict, dataflow: str = "os") -> Pipeline:
    """The fill and drain of an `epochs` mapping run by the generated top
    (codegen.rtl.top), from the blocks' own latency formulas: each Einsum's
    window opens when its operands are readable (the hand-off, and the 2D
    array's skew), the epochs keep the analytical period L, and the leaves
    after the epochs' drain after the last one. docs/spatial.md."""
    from codegen.rtl.top import BASE, done_edges, write_edge
    from .schedule import _place
    r = simulate(c, m, hw, shapes)
    if m.overlap is not Overlap.EPOCHS:
        raise m.node.error(f"mapping {m.name}: overlap {m.overlap.name.lower()}; the pipeline's fill and drain "
                           "are those of `epochs`")
    mm = m.for_shapes(shapes)
    n = nest(c, mm, r.factors, Numeric(dict(r.shapes)))
    cost = {ec.name: ec for ec in r.einsums}
    main = max(mm.leaves, key=lambda lf: sum(1 for x in lf.run if x in cost))
    E, L, caveats = r.epochs, r.critical_path_cycles, []
    per = {x: ec.busy_cycles / E for x, ec in cost.items()}
    per.update({f"fill_{u.name}": float(u.shape[0]) for u in hw.units.values()})
    path = mm.critical_path.expr if mm.critical_path is not None else Add(tuple(Name(x, None) for x in cost))
    placed: list = []
    _place(path, 0.0, per, placed)
    offset = {x: s for x, s, _ in placed if x in cost}
    einsum = {e.name: e for e in c.einsums if not e.is_initial}
    vs = views(c)
    reads = {x: _reads(c, einsum, lambda t: vs.get(t, t), x) for x in cost}
    side = {x: (mm.leaves.index(mm.leaf_of(x)) > mm.leaves.index(main))
            - (mm.leaves.index(mm.leaf_of(x)) < mm.leaves.index(main)) for x in cost}
    caveats += [f"{x} runs in a leaf before the epochs' (taken as done before the first)" for x in cost if side[x] < 0]
    for rank, size in r.shapes.items():
        parts = next((p for rk, p in mm.factors if rk == rank), None)
        if parts and int(size) % prod(int(r.factors[f]) for f, _ in parts):
            caveats.append(f"{rank} = {size} is not a multiple of its tiles: the last epoch is partial")
    geo = {x: _geometry(c, mm, n, hw, cost[x], einsum[x], (main if side[x] <= 0 else mm.leaf_of(x)).loops, E,
                        dataflow, caveats, side[x] == 0) for x in cost}
    first = [x for x in cost if side[x] == 0]
    stages = _main_stages(geo, offset, reads, first, list(main.loops), lambda v: int(n.extent(v)), L, caveats)
    for x in (x for x in cost if side[x] > 0):
        made = [stages[y] for y, _ in reads[x] if y in stages]
        ready = (max([0] + [s[2] for s in made]), max([0] + [s[3] for s in made]))
        stages[x] = _after_stage(geo[x], offset[x], ready, _gap(mm.leaf_of(x), main, n), L)
    end = max(write_edge(s[1], geo[x]["ii"], geo[x]["fill"]) for x, s in stages.items())
    fill_drain = done_edges(BASE + (E - 1) * L + end) - BASE - E * L
    out = {x: Stage(x, max(0, side[x]), offset[x], s[0], geo[x]["window"], geo[x]["ii"], geo[x]["lanes"],
                    geo[x]["outputs"], geo[x]["ppo"], geo[x]["fill"], s[1], s[2], s[3]) for x, s in stages.items()}
    return Pipeline(E, L, out, fill_drain, tuple(caveats))


def _gap(leaf, main, n: Nest) -> int:
    """Epochs between the last epochs of two consecutive iterations of a
    leaf after the epochs' (0: it runs once)."""
    moving = [v for v in leaf.loops if v in main.loops and int(n.extent(v)) > 1]
    if not moving:
        return 0
    return prod(int(n.extent(v)) for v in main.loops[main.loops.index(moving[-1]) + 1:])

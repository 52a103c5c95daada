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
task per Einsum per tile)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from math import prod

from einsum_ir import Cascade
from einsum_ir.ir import index_vars, offset_of
from hw_models.spatial import SpatialArray
from mappers.mapping import Mapping, Overlap

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
        """What an Einsum reads: (tensor, iterative var read one step back, or None)."""
        out = []
        for a in self.einsum[name].reads():
            back = None
            w = self.einsum.get(a.tensor)
            if w is not None and w.iterative_var:
                v = w.iterative_var
                if v in index_vars(a) and not any(offset_of(i) == (v, 1) for i in a.indices):
                    back = v                       # RM[m1]: the previous iterate
            out.append((self.base(a.tensor), back))
        return out

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

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
from mappers.mapping import Mapping

from .analytical import PE_LEVEL, STREAM, Report, _Nest, _views, simulate

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


def _program(m: Mapping, nest: _Nest):
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
            for k in range(nest.extent(v)):
                idx[v] = k
                yield from walk(group[i:j], depth + 1, idx)
            del idx[v]
            i = j
    yield from walk(leaves, 0, {})


def simulate_events(c: Cascade, m: Mapping, hw: SpatialArray, shapes: dict) -> EventReport:
    r = simulate(c, m, hw, shapes)
    m = m.for_shapes(shapes)
    env, nest = dict(r.shapes), _Nest(c, m, dict(r.shapes), r.factors)
    views = _views(c)
    base = lambda t: views.get(t, t)  # noqa: E731
    cost = {e.name: e for e in r.einsums}
    iters = {i: prod(nest.extent(v) for v in lf.loops) for i, lf in enumerate(m.leaves)}
    n_tasks = sum(iters[i] * sum(1 for n in lf.run if n in cost) for i, lf in enumerate(m.leaves))
    if n_tasks > MAX_TASKS:
        raise ValueError(f"{n_tasks} tasks: the event simulation is for small and medium shapes")
    einsum = {e.name: e for e in c.einsums if not e.is_initial}
    keep = dict(m.keep)
    tensors = {t.name: t for t in c.tensors}
    traffic = {t.name: t for t in r.tensors}

    # what each Einsum reads: (tensor, iterative var read one step back, or None)
    reads = {}
    for name in cost:
        e = einsum[name]
        out = []
        for a in e.reads():
            t = base(a.tensor)
            back = None
            if a.tensor in einsum and einsum[a.tensor].iterative_var:
                v = einsum[a.tensor].iterative_var
                if v in index_vars(a) and not any(offset_of(i) == (v, 1) for i in a.indices):
                    back = v                       # RM[m1]: the previous iterate
            out.append((t, back))
        reads[name] = out

    leaf_of = {n: i for i, lf in enumerate(m.leaves) for n in lf.run}
    finish: dict[tuple, float] = {}                # (tensor, leaf, key) -> finish of its producer
    unit_free = Counter()
    busy = Counter()
    # DRAM: loads of kept input tiles, allocated in the buffer until their last reader ends
    dram_free = 0.0
    resident = sum(t.buffer_bytes for t in r.tensors if tensors[t.name].role != "input")
    live: list[list] = []                          # [bytes, free time or None while in use]
    current_tile: dict[str, tuple] = {}            # input -> (key, load finish, entry in live)
    bpc = hw.dram_bytes_per_cycle

    def key_loops(t, lf):
        """The loops whose move brings a new tile of input t: those at or outside its keep level."""
        level = keep.get(t, STREAM)
        return lf.loops if level in (STREAM, PE_LEVEL) else lf.loops[:lf.loops.index(level) + 1]

    def load_key(t, lf, idx):
        return tuple(idx[v] for v in key_loops(t, lf))

    def transfer(nbytes, not_before):
        nonlocal dram_free
        t0 = max(dram_free, not_before)
        dram_free = t0 + nbytes / bpc
        busy["dram"] += nbytes / bpc
        return dram_free

    def start_load(nbytes):
        t0 = dram_free
        while True:                                # room in the buffer at t0?
            used = resident + sum(b for b, free in live if free is None or free > t0)
            if used + nbytes <= hw.buffer.capacity_bytes or not live:
                break
            pending = [free for b, free in live if free is not None and free > t0]
            if not pending:
                break                              # the tiles in use are needed now: the mapping overfills
            t0 = min(pending)
        return transfer(nbytes, t0)

    # +Architecture: the array drains and refills between tiles (the mapping says so in its critical path)
    stated = m.critical_path.fills() if m.overlap == "epochs" and m.critical_path is not None else ()
    exposed = {u.name: float(u.shape[0]) for u in hw.units.values() if u.name in stated}
    tile_of_unit: dict[str, tuple] = {}
    stalls = Counter()
    state = {"last": 0.0}
    fetched: set = set()
    far_iters = {t: sum(iters[i] for i, lf in enumerate(m.leaves)
                        if any(base(a.tensor) == t for n in lf.run if n in einsum for a in einsum[n].reads())
                        and leaf_of.get(t) != i) or 1
                 for t in tensors}

    def run(li, idx, phase, barrier):
        lf = m.leaves[li]
        for name in lf.run:
            if name not in cost or name not in phase:
                continue
            ready = barrier
            for t, back in reads[name]:
                tt = tensors[t]
                if tt.role == "input":
                    key = load_key(t, lf, idx)
                    cur = current_tile.get(t)
                    if cur is None or cur[0] != key:
                        if cur is not None:
                            cur[2][1] = cur[3]     # the previous tile is free once its last reader ended
                        loads = max(1, prod(nest.extent(v) for v in key_loops(t, lf)))
                        entry = [traffic[t].dram_read_bytes / loads, None]
                        done = start_load(entry[0])
                        live.append(entry)
                        cur = current_tile[t] = [key, done, entry, done]
                    ready = max(ready, cur[1])
                    continue
                src = leaf_of.get(t)
                if src is None:
                    continue
                far_load = traffic[t].home == "dram" and src != li and (t, li, tuple(idx.items())) not in fetched
                shared = tuple(v for v in m.leaves[src].loops if v in idx)
                key_idx = dict(idx)
                if back is not None:
                    if back not in key_idx or key_idx[back] == 0:
                        continue                   # reads the initial value
                    key_idx[back] -= 1
                key = (t, src, tuple((v, key_idx[v]) for v in shared))
                if key in finish:
                    ready = max(ready, finish[key])
                if far_load:                       # an intermediate that went through DRAM comes back
                    fetched.add((t, li, tuple(idx.items())))
                    ready = max(ready, transfer(traffic[t].dram_read_bytes / far_iters[t], ready))
            ec = cost[name]
            dur = ec.busy_cycles / iters[li]
            start = max(ready, unit_free[ec.unit])
            here = (li, tuple(idx.items()))
            if ec.unit in exposed and tile_of_unit.get(ec.unit) != here:
                tile_of_unit[ec.unit] = here       # a new tile: the first result comes out a fill later
                start += exposed[ec.unit]
                stalls[ec.unit] += exposed[ec.unit]
            end = start + dur
            unit_free[ec.unit] = end
            busy[ec.unit] += dur
            for other in m.leaves:                 # readers in any leaf find it by their shared loops
                shared = tuple(v for v in lf.loops if v in other.loops)
                finish[(name, li, tuple((v, idx[v]) for v in shared))] = end
            for t, _ in reads[name]:
                if tensors[t].role == "input" and t in current_tile:
                    current_tile[t][3] = max(current_tile[t][3], end)
            if traffic[name].home == "dram" and traffic[name].dram_write_bytes:
                end = transfer(traffic[name].dram_write_bytes / iters[li], end)   # the store
            state["last"] = max(state["last"], end)

    # `phases`: each phase runs over the whole workload before the next starts
    phases = [set(ph) for ph in m.phases] if m.overlap == "phases" else [set(cost)]
    for phase in phases:
        barrier = state["last"]
        for li, idx in _program(m, nest):
            run(li, idx, phase, barrier)
    latency = max(state["last"], dram_free)
    return EventReport(latency, dict(busy), {u: latency - b for u, b in busy.items()}, n_tasks, r, dict(stalls))

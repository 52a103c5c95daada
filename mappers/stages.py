"""The critical path of a software-pipelined mapping, derived from its
binding and the cascade's dependencies (never written by hand).

An epoch (one iteration of the main leaf: a key tile x a row tile) runs as
a sequence of stages; in a stage every unit runs its Einsums one after
another, and the units run side by side, so the epoch takes

    sum over stages of max over units of (sum of the unit's Einsums' times).

A stage schedule is valid when, for every dependency X -> Y inside one
tile (Y reads the iterate X just wrote, in the same leaf), Y is in a later
stage than X, or in the same stage on the same unit (after X). Pipelining
across tiles: an Einsum whose result only the next tile reads (a
recurrence's update, RD[m1+1] read as RD[m1]) may run in the first stage of
the next epoch ('wrapped'), beside the next tile's first Einsums, provided
every next-tile reader on another unit is in a later stage. Einsums of
other leaves (run once per row tile, or in another pass over the key rank)
depend on this leaf's results only across whole traversals, which the
model spreads over the epochs; only their dependencies within their own
leaf constrain them. The sum of maxima names each Einsum once and no unit
twice within a max, so `mappers.mapping.check_critical_path` accepts it
and it is never below any unit's busy time.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    stages: tuple[tuple[tuple[str, tuple[str, ...]], ...], ...]   # stage -> ((unit, Einsums in order), ...)
    cost: float

    def text(self) -> str:
        parts = []
        for st in self.stages:
            sums = [" + ".join(es) for _, es in st if es]
            if not sums:
                continue
            parts.append(sums[0] if len(sums) == 1 else f"max({', '.join(sums)})")
        return " + ".join(parts)


def _graph(r, binding: dict):
    """(order, intra-tile producers, next-tile readers, wrappable) over the Einsums with work."""
    order = [e for e in r.work]
    leaf = {e: r.leaf_of(e) for e in order}
    same, nxt = {e: [] for e in order}, {e: [] for e in order}
    consumers = {e: 0 for e in order}
    for y in order:
        for x, how in r.deps.get(y, {}).items():
            if x not in leaf or leaf[x] != leaf[y]:
                continue
            if how == "same":
                same[y].append(x)
                consumers[x] += 1
            elif how == "previous":
                nxt[x].append(y)
    main = r.main
    wrappable = {e for e in order if leaf[e] == main and consumers[e] == 0 and nxt[e]}
    return order, same, nxt, wrappable


def derive(r, binding: dict, times: dict, budget: int = 3000) -> Schedule:
    """The stage schedule of least cost for `times` (Einsum -> cycles per
    epoch), by branch and bound over stage assignments in dependency order
    (each Einsum in an existing stage at or after its earliest, a new last
    stage, or wrapped); `budget` bounds the nodes visited, the best found so
    far (at worst everything in sequence) is returned. The bound: a sum of
    stage maxima is never below a unit's total time, so a partial schedule
    costs at least max(its cost, the busiest unit's total)."""
    order, same, nxt, wrappable = _graph(r, binding)
    unit = {e: binding[e] for e in order}
    best = [sum(times[e] for e in order), {e: i for i, e in enumerate(order)}]
    totals: dict = {}
    for e in order:
        totals[unit[e]] = totals.get(unit[e], 0.0) + times[e]
    floor = max(totals.values(), default=0.0)
    loads: list[dict] = []          # stage -> unit -> time, mutated and undone along the search
    peaks: list[float] = []         # stage -> its max
    assign: dict = {}
    nodes = [0]

    def valid():
        return all(unit[c] == unit[w] or assign[c] >= 1
                   for w, s in assign.items() if s == -1 for c in nxt[w])

    def rec(i, cost):
        nodes[0] += 1
        if max(cost, floor) >= best[0] - 1e-12 or nodes[0] > budget or best[0] <= floor + 1e-12:
            return
        if i == len(order):
            if valid():
                best[0], best[1] = cost, dict(assign)
            return
        e, u, t = order[i], unit[order[i]], times[order[i]]
        lb = max([max(assign[x], 0) + (0 if unit[x] == u else 1) for x in same[e]] + [0])
        options = []
        for s in list(range(lb, len(loads) + 1)) + ([-1] if e in wrappable else []):
            k = 0 if s == -1 else s
            delta = t if k == len(loads) else max(peaks[k], loads[k].get(u, 0.0) + t) - peaks[k]
            options.append((delta, s))
        for delta, s in sorted(options, key=lambda x: (x[0], x[1] == -1, x[1])):
            k = 0 if s == -1 else s
            fresh = k == len(loads)
            if fresh:
                loads.append({})
                peaks.append(0.0)
            old_load, old_peak = loads[k].get(u, 0.0), peaks[k]
            loads[k][u] = old_load + t
            peaks[k] = max(old_peak, old_load + t)
            assign[e] = s
            rec(i + 1, cost + delta)
            del assign[e]
            if fresh:
                loads.pop()
                peaks.pop()
            else:
                loads[k][u], peaks[k] = old_load, old_peak
                if not old_load:
                    del loads[k][u]

    rec(0, 0.0)
    return _schedule(order, unit, best[1], best[0])


def _schedule(order, unit, assign, cost) -> Schedule:
    n = max([max(s, 0) for s in assign.values()] + [0]) + 1
    stages = []
    for k in range(n):
        per: dict[str, list[str]] = {}
        wrapped = [e for e in order if assign[e] == -1 and k == 0]
        for e in wrapped + [e for e in order if assign[e] == k]:
            per.setdefault(unit[e], []).append(e)
        stages.append(tuple((u, tuple(es)) for u, es in per.items()))
    return Schedule(tuple(st for st in stages if st), cost)

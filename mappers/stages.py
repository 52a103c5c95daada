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
    far (at worst everything in sequence) is returned."""
    order, same, nxt, wrappable = _graph(r, binding)
    unit = {e: binding[e] for e in order}
    best = [sum(times[e] for e in order), {e: i for i, e in enumerate(order)}]
    nodes = [0]

    def cost_of(loads):
        return sum(max(ld.values(), default=0.0) for ld in loads)

    def valid(assign):
        for w in (e for e, s in assign.items() if s == -1):
            if any(unit[c] != unit[w] and assign[c] < 1 for c in nxt[w]):
                return False
        return True

    units = set(unit.values())
    left = [{u: sum(times[e] for e in order[i:] if unit[e] == u) for u in units} for i in range(len(order) + 1)]
    floor = max(left[0].values(), default=0.0)

    def bound(i, loads, cost):
        """Admissible: work left on a unit beyond the slack of the existing stages adds at least its excess."""
        slack = {u: sum(max(ld.values(), default=0.0) - ld.get(u, 0.0) for ld in loads) for u in units}
        return cost + max([left[i][u] - slack[u] for u in units] + [0.0])

    def rec(i, loads, assign, cost):
        nodes[0] += 1
        if bound(i, loads, cost) >= best[0] - 1e-12 or nodes[0] > budget or best[0] <= floor + 1e-12:
            return
        if i == len(order):
            if valid(assign):
                best[0], best[1] = cost, dict(assign)
            return
        e, u = order[i], unit[order[i]]
        lb = max([max(assign[x], 0) + (0 if unit[x] == u else 1) for x in same[e]] + [0])
        options = []
        for s in list(range(lb, len(loads) + 1)) + ([-1] if e in wrappable else []):
            k = 0 if s == -1 else s
            if k == len(loads):
                delta = times[e]
            else:
                old = max(loads[k].values(), default=0.0)
                delta = max(old, loads[k].get(u, 0.0) + times[e]) - old
            options.append((delta, s))
        for delta, s in sorted(options, key=lambda x: (x[0], x[1] == -1, x[1])):
            k = 0 if s == -1 else s
            new = [dict(ld) for ld in loads] + ([{}] if k == len(loads) else [])
            new[k][u] = new[k].get(u, 0.0) + times[e]
            assign[e] = s
            rec(i + 1, new, assign, cost + delta)
            del assign[e]

    rec(0, [], {}, 0.0)
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

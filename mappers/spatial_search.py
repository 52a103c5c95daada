"""Searches over the spatial mapping space (mappers.spatial_space), scored
by the vectorised evaluator (mappers.spatial_eval), the best few
re-simulated exactly (simulator.analytical.simulate) before one is chosen.

- `exhaustive`: every structure of the space (order, binding, axes, keep
  levels) at every tile-factor point; refused, naming the size, when the
  space exceeds the budget.
- `random`: structures drawn uniformly (a seeded generator), each at every
  factor point.
- `fused`: coordinate descent suited to fused cascades, whose cost
  separates into per-Einsum unit choices and per-tensor keep levels: from a
  start, each dimension in turn is set to its best value with the others
  fixed, until nothing improves; then seeded random restarts while the
  budget lasts.

Objectives: `latency` (cycles), `energy` (pJ), `edp` (their product), or
`pareto` (the front of latency against buffer bytes; the chosen mapping is
its fastest point). Ties are broken by energy, then latency, then buffer.
Every search is deterministic for a seed.
"""
from __future__ import annotations

import heapq
import random as _random
import time
from dataclasses import dataclass, field
from itertools import product

import numpy as np

from . import spatial_space as sp
from .spatial_eval import Evaluator, Structure, _score
from .stages import derive

OBJECTIVES = ("latency", "energy", "edp", "pareto")
METHODS = ("fused", "exhaustive", "random")


@dataclass
class Found:
    """A search's answer: the chosen mapping (exact report), the file text,
    and what the search did."""

    candidate: sp.Candidate
    mapping: object
    text: str
    report: object
    evaluated: int
    seconds: float
    method: str
    objective: str
    front: list = field(default_factory=list)      # pareto: [(latency cycles, buffer bytes, k0, q0, q1)]
    screened: float = 0.0                          # the screening estimate of the chosen point


def score(res: dict, objective: str) -> np.ndarray:
    return _score(res["latency"], res["energy"], objective)


def _key(res: dict, objective: str, i: int) -> tuple:
    return (float(score(res, objective)[i]), float(res["energy"][i]), float(res["latency"][i]),
            float(res["buffer"][i]))


def best_point(res: dict, objective: str) -> tuple[tuple, int]:
    s = score(res, objective)
    lo = np.min(s)
    if not np.isfinite(lo):         # nowhere feasible: the least buffer first, so a descent can walk out
        return (np.inf, np.inf, np.inf, float(np.min(res["buffer"]))), -1
    idx = np.flatnonzero(s <= lo * (1 + 1e-12))
    i = min(idx, key=lambda j: _key(res, objective, int(j)))
    return _key(res, objective, int(i)), int(i)


class _Pool:
    """The best distinct structures seen (their best factor point), and the Pareto points."""

    def __init__(self, objective: str, keep: int = 6):
        self.objective, self.keep, self.heap, self.n = objective, keep, [], 0
        self.front: list = []

    def threshold(self) -> float | None:
        """A score no structure can enter the pool above (None: every
        structure is costed exactly, as the Pareto front needs)."""
        if self.objective == "pareto":
            return None
        return -self.heap[0][0][0] if len(self.heap) >= self.keep else np.inf

    def add(self, st: Structure, res: dict) -> tuple:
        key, i = best_point(res, self.objective)
        if res.get("pruned"):
            return key                     # a lower bound above the pool's worst: never a member
        if i >= 0:
            self.n += 1
            heapq.heappush(self.heap, (tuple(-x for x in key), -self.n, st, i))
            if len(self.heap) > self.keep:
                heapq.heappop(self.heap)
            if self.objective == "pareto":
                ok = np.flatnonzero(res["ok"])
                self.front.extend((float(res["latency"][j]), float(res["buffer"][j]), st, int(j)) for j in ok)
                if len(self.front) > 20000:
                    self.front = pareto(self.front)
        return key

    def best(self) -> list:
        return [(st, i, tuple(-x for x in k)) for k, _, st, i in sorted(self.heap, reverse=True)]


def pareto(points: list) -> list:
    """Points not dominated in (latency, buffer), fastest first."""
    out, least = [], np.inf
    for p in sorted(points, key=lambda p: (p[0], p[1])):
        if p[1] < least:
            out.append(p)
            least = p[1]
    return out


# ------------------------------------------------------------------ the space of structures

def dimensions(ev: Evaluator) -> list[tuple[str, object, list]]:
    """(kind, which, values) of every discrete dimension of the space."""
    r = ev.r
    dims = [("order", None, list(ev.orders))]
    dims += [("unit", e, list(r.units[e])) for e in r.work]
    dims += [("axes", pair, list(ev.axes[pair])) for pair in sorted(ev.axes)]
    tensors = sp.keep_tensors(r)
    dims += [("keep", t, sorted({k for o in ev.orders for k in ev.keeps[o][t]}, key=str)) for t in tensors]
    return dims


def build(ev: Evaluator, choice: dict) -> Structure | None:
    """The structure of a full assignment of the dimensions (None if a keep
    level does not exist under the chosen order)."""
    r, order = ev.r, choice[("order", None)]
    binding = tuple((e, choice[("unit", e)]) for e in r.work)
    used = sorted({(r.leaf_of(e), u) for e, u in binding})
    axes = tuple((pair, choice[("axes", pair)]) for pair in used)
    keep = []
    for t in sp.keep_tensors(r):
        k = choice[("keep", t)]
        if k not in ev.keeps[order][t]:
            return None
        keep.append((t, k))
    return Structure(order, binding, axes, tuple(keep))


def space_size(ev: Evaluator) -> int:
    n = 1
    for _, _, vals in dimensions(ev):
        n *= len(vals)
    return n


def _progress(total, desc, progress):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, disable=not progress, leave=False, unit="mapping", unit_scale=True)


def exhaustive(ev: Evaluator, objective: str, budget: int = 2_000_000, progress: bool = False) -> _Pool:
    dims = dimensions(ev)
    size = space_size(ev)
    points = size * len(ev.grid)
    if points > budget:
        raise sp.MapperError(f"the exhaustive search would evaluate {size:,} structures x {len(ev.grid)} tile "
                             f"points = {points:,} mappings, over the budget of {budget:,}; use the fused "
                             "search (--search fused) or raise the budget")
    pool = _Pool(objective)
    bar = _progress(points, "exhaustive", progress)
    for values in product(*(d[2] for d in dims)):
        st = build(ev, {(k, w): v for (k, w, _), v in zip(dims, values)})
        if st is not None:
            pool.add(st, ev.evaluate(st, objective, pool.threshold()))
        bar.update(len(ev.grid))
    bar.close()
    return pool


def random_search(ev: Evaluator, objective: str, samples: int = 2000, seed: int = 0,
                  progress: bool = False) -> _Pool:
    rng = _random.Random(seed)
    dims = dimensions(ev)
    pool = _Pool(objective)
    bar = _progress(samples * len(ev.grid), "random", progress)
    for _ in range(samples):
        st = build(ev, {(k, w): rng.choice(vals) for k, w, vals in dims})
        if st is not None:
            pool.add(st, ev.evaluate(st, objective, pool.threshold()))
        bar.update(len(ev.grid))
    bar.close()
    return pool


def _start(ev: Evaluator, dims) -> dict:
    """Each Einsum on the unit with the most PEs that can run it; first axes;
    each tensor kept at its innermost loop (the least buffer; a start that
    fits where holding whole heads would not)."""
    r = ev.r
    choice = {(k, w): vals[0] for k, w, vals in dims}
    for e in r.work:
        choice[("unit", e)] = max(r.units[e], key=lambda u: (ev.hw.unit(u).pes, -r.units[e].index(u)))
    for t, opts in ev.keeps[choice[("order", None)]].items():
        loops = [k for k in opts if k not in (sp.STREAM, sp.DRAM, sp.PE)]
        choice[("keep", t)] = loops[-1] if loops else opts[0]
    return choice


def _balanced(ev: Evaluator, dims) -> dict:
    """Einsums, longest first, each on the capable unit that would finish
    its load soonest (times at the reference point with each unit's first
    axes): a start that spreads a cascade over the units as FuseMax's
    binding does, where coordinate descent from one unit moving one Einsum
    at a time can stall."""
    r = ev.r
    choice = _start(ev, dims)
    ref = ev.reference_index()
    epochs = ev.value(("epochs",))[ref]

    def t(e, u):
        pair = (r.leaf_of(e), u)
        return float(ev.value(("busy", e, u, choice[("axes", pair)]))[ref] / epochs)

    load = {u: 0.0 for u in ev.hw.units}
    for e in sorted(r.work, key=lambda e: -min(t(e, u) for u in r.units[e])):
        u = min(r.units[e], key=lambda u: (load[u] + t(e, u), -ev.hw.unit(u).pes))
        choice[("unit", e)] = u
        load[u] += t(e, u)
    return choice


def _frugal(ev: Evaluator, choice: dict, order: str) -> dict | None:
    """The choice in `order` with each tensor kept where its DRAM traffic is
    least within an equal share of the buffer, at the factor point where the
    sum of those least traffics is least (the cost separates per tensor; a
    start from which joint moves, such as a loop order with two tiles held
    under it, are one step)."""
    choice = dict(choice)
    choice[("order", None)] = order
    for t, opts in ev.keeps[order].items():
        choice[("keep", t)] = opts[0]
    st = build(ev, choice)
    if st is None:
        return None
    cov = st.coverage(ev.r)
    share = ev.hw.buffer.capacity_bytes / max(1, len(ev.keeps[order]))
    best, total = {}, np.zeros(len(ev.grid))
    for t, opts in ev.keeps[order].items():
        c = tuple((i, x) for i, x in cov if i in sp.users(ev.r, t))
        traffic = np.array([np.where(ev.value(("occ", order, t, k, c)) <= share,
                                     ev.value(("dram", order, t, k, c)), np.inf) for k in opts])
        best[t] = (opts, np.argmin(traffic, axis=0))
        total = total + np.min(traffic, axis=0)
    at = int(np.argmin(total))
    for t, (opts, pick) in best.items():
        choice[("keep", t)] = opts[int(pick[at])]
    return choice


def fused(ev: Evaluator, objective: str, seed: int = 0, budget: int = 400_000, restarts: int | None = None,
          progress: bool = False) -> _Pool:
    rng = _random.Random(seed)
    dims = dimensions(ev)
    pool = _Pool(objective)
    bar = _progress(budget, "fused", progress)
    seen: dict = {}

    def cost(choice, current=None):
        """The structure's key; a lower bound (never below the true key)
        when that alone shows it improves neither `current` nor the pool."""
        st = build(ev, choice)
        if st is None:
            return (np.inf,) * 5
        limit = pool.threshold()
        if limit is not None and current is not None:
            limit = max(limit, current[0])
        else:
            limit = None
        if st not in seen or seen[st][1] and (limit is None or seen[st][0][0] <= limit):
            res = ev.evaluate(st, objective, limit)
            seen[st] = (pool.add(st, res), bool(res.get("pruned")))
            bar.update(len(ev.grid))
        return seen[st][0]

    def starts():
        yield _start(ev, dims)
        balanced = _balanced(ev, dims)
        yield balanced
        for order in ev.orders:
            frugal = _frugal(ev, balanced, order)
            if frugal is not None:
                yield frugal
        n = 0
        while restarts is None or n < restarts:      # seeded random restarts while the budget lasts
            n += 1
            yield {(k, w): rng.choice(v) for k, w, v in dims}

    stale = 0                      # restarts in a row that found nothing new (a small space is exhausted)
    for choice in starts():
        if stale >= 20:
            break
        before = ev.evaluations
        current = cost(choice)
        improved = True
        while improved and ev.evaluations < budget:
            improved = False
            for k, w, vals in dims:
                for v in vals:
                    trial = dict(choice)
                    trial[(k, w)] = v
                    c = cost(trial, current)
                    if c < current:
                        choice, current, improved = trial, c, True
        stale = stale + 1 if ev.evaluations == before else 0
        if ev.evaluations >= budget:
            break
    bar.close()
    return pool


# ------------------------------------------------------------------ choosing, exactly

def finish(ev: Evaluator, pool: _Pool, objective: str, method: str, t0: float, name: str = "auto") -> Found:
    """Materialise the pool's best structures as mapping files, simulate them
    exactly, and return the best by the objective."""
    from simulator.analytical import simulate
    r = ev.r
    picks = pool.best()
    front = []
    if objective == "pareto":
        pts = pareto(pool.front)
        front = [(lat, buf, *map(int, ev.grid[i])) for lat, buf, _, i in pts]
        picks = [(st, i, (lat,)) for lat, _, st, i in pts[:3]] + picks
    best, errors = None, []
    for st, i, screened in picks:
        k0, q0, q1 = map(int, ev.grid[i])
        cand = _with_path(ev, st, i, k0, q0, q1)
        try:
            m = sp.to_mapping(r, cand, name)
            rep = simulate(r.cascade, m, r.hw, _shapes(r, cand), accounting=ev.acct.name)
        except sp.HardwareError as e:      # a screened point the exact model refuses (e.g. padding)
            errors.append(e.message)
            continue
        key = _exact_key(rep, objective)
        if best is None or key < best[0]:
            best = (key, cand, m, rep, screened[0])
    if best is None:
        why = f" (the exact model refused the best screened mappings: {errors[0]})" if errors else ""
        raise sp.MapperError(f"no mapping of {r.cascade.name} fits {r.hw.name} at these shapes{why}")
    _, cand, m, rep, screened = best
    return Found(cand, m, sp.to_yaml(r, cand, name), rep, ev.evaluations, time.perf_counter() - t0, method,
                 objective, front, screened)


def _with_path(ev: Evaluator, st: Structure, i: int, k0: int, q0: int, q1: int) -> sp.Candidate:
    """The candidate with its critical path derived from the times at its own factor point."""
    cp = ev.path(st.binding, dict(st.axes), at=i)
    return st.candidate(k0, q0, q1, str(cp) if cp is not None else None)


def _shapes(r: sp.Roles, cand: sp.Candidate) -> dict:
    out = dict(r.shapes)
    if r.key_declared:
        out.pop(r.key_names[1], None)      # the mapping sets the cascade's own tile symbol
    return out


def _exact_key(rep, objective: str) -> tuple:
    """The objective on the exact report, in the report's energy accounting
    (the one the search screened in)."""
    lat, en = rep.latency_cycles, rep.total_energy()
    main = {"latency": lat, "pareto": lat, "energy": en, "edp": lat * en}[objective]
    return (main, en, lat, rep.buffer_bytes)


def search(c, hw, shapes: dict, objective: str = "latency", method: str = "fused", seed: int = 0,
           budget: int | None = None, progress: bool = False, accounting: str | None = None) -> Found:
    """The best mapping of cascade `c` on spatial hardware `hw` at `shapes`."""
    if objective not in OBJECTIVES:
        raise sp.MapperError(f"unknown objective {objective!r}; expected one of {', '.join(OBJECTIVES)}")
    if method not in METHODS:
        raise sp.MapperError(f"unknown search {method!r}; expected one of {', '.join(METHODS)}")
    t0 = time.perf_counter()
    ev = Evaluator(sp.roles(c, hw, shapes), accounting)
    if method == "exhaustive":
        pool = exhaustive(ev, objective, budget or 2_000_000, progress)
    elif method == "random":
        pool = random_search(ev, objective, max(1, (budget or 200_000) // len(ev.grid)), seed, progress)
    else:
        pool = fused(ev, objective, seed, budget or 400_000, progress=progress)
    return finish(ev, pool, objective, method, t0)


__all__ = ["search", "exhaustive", "random_search", "fused", "Found", "OBJECTIVES", "METHODS", "derive"]

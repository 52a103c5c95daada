"""A checker of the pass analysis: simulate traversals of a rank R point by
point at tiny concrete shapes, and count the passes they need.

The model (independent of `passes.py`'s symbolic rule):
- A *position* of R is one coordinate m of R, or, when R is partitioned
  (M -> M1, M0), one tile m1 (all m0 of the tile are on chip at once). R's
  family (`passes.rank_family`: its parts and the aliases that walk it,
  `rank J = M`, `rank J = M0`) is R: an element's position comes from its
  index at any slot of a family rank (m, m1, or m // M0 for a partitioned R
  indexed whole; m0 and an alias of M0 name no position).
- A pass visits positions 0 .. n-1 in order. Time runs: before pass 1,
  pass 1 visit 0 .. n-1, between passes 1 and 2, pass 2 visit 0, ...
- An element is *bound* when it has a position and depends on R's data (an
  input with a position, or written by a point that read a bound element).
  A bound element is available only while its position is visited, from the
  visit where it became final on (streamed: re-read or recomputed in a later
  visit of its position, or held if it was accumulated). Iterate i of an
  iterative R rank is made in visit i-1 and carried to visit i, so it is
  available at visits i-1 and i. Any other element (no position, or computed
  from no data of R, such as a decay mask DM[m0, j]) is available from the
  time it is final. Reading the last iterate (`RD[M1, p]`: an index with no
  variable at an iterative slot of R) reads it as such an element: final
  only after the whole recurrence.
- An element is final once every point contributing to it ran (outputs
  accumulate across positions); one with no contributing point (all masked)
  is final from the start.
- A point that reads a bound element runs at the earliest visit at which
  every bound element it reads is available and everything else it reads is
  final; a point that reads no bound element runs at the first time between
  passes after its inputs are final. A point whose bound reads have no
  common visit (`X[m, j] = S[m] * S[j]`, J = M) never runs: not streamable.
- A point of a scan (`cumsum[m]`) contributes to every output element whose
  prefix (or suffix, `reverse`) holds its position, so a suffix scan's
  element m is final only after the last position has been visited.
- Points of one Einsum run in the cascade's dependency order; recurrences
  step by step over their iterative rank. A conjunct of a predicate that
  reads a tensor (a bool mask, `m < LEN[b]`, `DOC[b, p] == DOC[b, m]`) is
  taken as true: every point the other conjuncts keep exists (the pass
  analysis does not look at data either).
- An input element is read at the visit of the position its read names
  (`passes.slot_kind`): a slot of R's family at R's variables (K[m]), or a
  slot of an alias of R outside the family at R's variables (DOC[b, m],
  DOC over P, R = M); a slot of the family read only at variables of an
  alias that is a rank of its own (DOC[b, m] over P) is a load at another
  rank's coordinate, readable at any visit. A read through a gather by R's
  variables (`KC[BT[b, m // BS], .., m % BS]`) happens at their visit; a
  slot of R indexed by data (KC's NP, over NP) has no traversal order.
The pass count is the pass of the latest point (0 if all ran before pass 1).
With few positions, the reduction that ends a pass may complete in its last
visit and let the next pass start early: use at least passes + 1 positions.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from ..errors import EinError
from ..graph import schedule
from ..ir import Access, Cascade, Expr, Idx, Num, Op, Sym, accesses, conjuncts, index_vars, rank_of
from ..ops import RULES
from ..shapes import resolve
from .passes import POS, ROOT, passes, rank_family, slot_kind


@dataclass(frozen=True)
class TraversalResult:
    rank: str
    passes: int | None          # None: not streamable, or more than max_passes
    why: str
    positions: int
    per_einsum_first_pass: dict[str, int] = field(default_factory=dict)
    per_einsum_last_pass: dict[str, int] = field(default_factory=dict)


@dataclass
class _Elem:
    final: int
    bound: bool
    visits: frozenset | None    # None: available at any visit


class _Stop(Exception):
    pass


def _value(e: Expr, env: dict, point: dict):
    """An index or predicate expression at one point; tensor reads inside a
    predicate (bool masks) count as true."""
    if isinstance(e, Num):
        return e.value
    if isinstance(e, Sym):
        return env[e.name]
    if isinstance(e, Idx):
        return point[e.name]
    if isinstance(e, Access):
        return True
    if isinstance(e, Op):
        args = [_value(a, env, point) for a in e.args]
        if e.name not in ("and", "or", "not"):          # a condition as a number is 1 or 0
            args = [int(a) if isinstance(a, (bool, np.bool_)) and not (e.name == "select" and k == 0) else a
                    for k, a in enumerate(args)]
        return RULES[e.name].numpy(*args)
    raise TypeError(e)


class _Sim:
    def __init__(self, c: Cascade, rank: str, env: dict, max_passes: int):
        self.c, self.env, self.max_passes = c, env, max_passes
        self.fam = rank_family(c, rank)
        self.n = env[next(r for r, k in self.fam.kind.items() if k == POS)]
        self.tile = env[self.fam.tile] if self.fam.tile else None
        self.elems: dict[str, dict[tuple, _Elem]] = {t.name: {} for t in c.tensors}
        self.first: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self.valid = [(r.name.lower(), c.inner_of(r.name).lower(), env[r.parent])
                      for r in c.ranks if r.part == "outer"]

    # times: pass k visit v is k*(n+1)+v; "between k and k+1" is k*(n+1)+n
    def pass_of(self, t: int) -> int:
        return t // (self.n + 1)

    def visits_of(self, tensor: str, idx: tuple, indices: tuple | None = None) -> frozenset | None:
        """Visits at which an element with these coordinates can be read; an
        input's, at the slots its read `indices` name a position through
        (`passes.slot_kind`: DOC[b, m] over M at m's, DOC[b, m] over P none)."""
        t = self.c.tensor(tensor)
        out = None
        for k, (r, i) in enumerate(zip(t.ranks, idx)):
            kind = self.fam.kind.get(r) if indices is None else slot_kind(self.c, self.fam, r, indices[k], True)
            if kind not in (POS, ROOT):
                continue
            if r in t.iterative:
                v = frozenset(x for x in (i - 1, i) if 0 <= x < self.n)
            else:
                v = frozenset({i // self.tile if kind == ROOT else i})
            out = v if out is None else out & v
        return out

    def last_iterate(self, a: Access) -> bool:
        """`RD[M1, p]`: no variable at an iterative slot of R's family."""
        t = self.c.tensor(a.tensor)
        return any(r in t.iterative and self.fam.kind.get(r) in (POS, ROOT) and not index_vars(i)
                   for r, i in zip(t.ranks, a.indices))

    def elem(self, a: Access, point: dict) -> tuple[_Elem, frozenset | None]:
        t = self.c.tensor(a.tensor)
        idx = tuple(int(_value(i, self.env, point)) for i in a.indices)
        for r, k, i in zip(t.ranks, idx, a.indices):
            n = self.env[r] + (1 if r in t.iterative else 0)
            if not 0 <= k < n:
                raise EinError(f"{a} reads {r} = {k} outside [0, {n - 1}] at {point} in the traversal of "
                               f"{self.fam.rank}")
        last = self.last_iterate(a)
        if t.role == "input":
            vis = self.visits_of(a.tensor, idx, a.indices)
            for i in (i for i in a.indices if accesses(i)):        # a gather by R's variables: read at their visit
                for v in (v for v in index_vars(i) if self.fam.var_kind(v) in (POS, ROOT)):
                    at = frozenset({point[v] // self.tile if self.fam.var_kind(v) == ROOT else point[v]})
                    vis = at if vis is None else vis & at
            return _Elem(self.n, vis is not None, vis), vis
        e = self.elems[a.tensor].get(idx) or _Elem(self.n, False, None)
        if last or not e.bound:
            return e, None
        return e, self.visits_of(a.tensor, idx)

    def points(self, e, fixed: dict):
        vars_ = [v for v in e.iteration_vars if v not in fixed]
        ranges = [range(self.env[rank_of(v)]) for v in vars_]
        for values in itertools.product(*ranges):
            point = dict(fixed, **dict(zip(vars_, values)))
            if any(o in point and i in point and point[o] * self.tile_of(i) + point[i] >= n
                   for o, i, n in self.valid):
                continue
            if any(not bool(_value(t, self.env, point)) for t in conjuncts(e.predicate) if not accesses(t)):
                continue
            yield point

    def tile_of(self, inner_var: str) -> int:
        return self.env[rank_of(inner_var)]

    def run_point(self, e, point: dict) -> None:
        latest, visits, touches = self.n, None, False
        for a in e.reads():
            el, vis = self.elem(a, point)
            latest = max(latest, el.final)
            if vis is not None:
                touches = True
                visits = vis if visits is None else visits & vis
                if not visits:
                    raise _Stop(f"{e.name} at {_show(point)} reads {a} at a position of {self.fam.rank} "
                                "that no other element it reads shares: not streamable")
        if touches:
            t = self._earliest_visit(latest, visits)
        else:
            t = latest if latest % (self.n + 1) == self.n else (self.pass_of(latest) + 1) * (self.n + 1) - 1
        k = self.pass_of(t)
        if k > self.max_passes:
            raise _Stop(f"{e.name} at {_show(point)} needs more than {self.max_passes} passes")
        self.first[e.name] = min(self.first.get(e.name, k), k)
        self.last[e.name] = max(self.last.get(e.name, k), k)
        idx = tuple(int(_value(i, self.env, point)) for i in e.output.indices)
        for out in self.written(e, idx):
            old = self.elems[e.name].get(out)
            self.elems[e.name][out] = _Elem(max(t, old.final if old else t),
                                            touches or bool(old and old.bound), None)

    def written(self, e, idx: tuple) -> list[tuple]:
        """The output elements a point contributes to: its own, or for a scan
        every element whose prefix (suffix) holds the point's position."""
        if e.scan is None:
            return [idx]
        slot = next(k for k, i in enumerate(e.output.indices) if isinstance(i, Idx) and i.name == e.scan.var)
        j, n = idx[slot], self.env[rank_of(e.scan.var)]
        s = e.scan
        ks = (range(0, j + (0 if s.exclusive else 1)) if s.reverse
              else range(j + (1 if s.exclusive else 0), n))
        return [idx[:slot] + (k,) + idx[slot + 1:] for k in ks]

    def _earliest_visit(self, latest: int, visits) -> int:
        k, v = divmod(latest, self.n + 1)
        later = [x for x in sorted(visits) if x >= v] if k >= 1 else []
        return k * (self.n + 1) + later[0] if later else (max(k, 0) + 1) * (self.n + 1) + min(visits)

    def run(self) -> None:
        for step in schedule(self.c):
            members = [self.c.einsums[i] for i in step.einsums]
            if step.var is None:
                for p in self.points(members[0], {}):
                    self.run_point(members[0], p)
                continue
            for value in range(self.env[rank_of(step.var)]):
                for e in members:
                    for p in self.points(e, {step.var: value}):
                        self.run_point(e, p)


def _show(point: dict) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in point.items()) + ")"


def simulate_passes(c: Cascade, rank: str, shapes: dict, max_passes: int = 8) -> TraversalResult:
    """Traverse `rank` of `c` at concrete `shapes` as the module docstring
    says; the result names the passes needed, or why no number suffices."""
    env = resolve(c, shapes)
    sim = _Sim(c, rank, env, max_passes)
    for e in c.einsums:      # which position a step visits is the data's choice: no order to traverse
        for a in [e.output] + e.reads():
            if any(sim.fam.kind.get(r) and accesses(i) for r, i in zip(c.tensor(a.tensor).ranks, a.indices)):
                return TraversalResult(rank, None, f"{e.name} reads {a} at a position of {rank} given by data",
                                       sim.n)
    try:
        sim.run()
    except _Stop as stop:
        return TraversalResult(rank, None, str(stop), sim.n, sim.first, sim.last)
    total = max(sim.last.values(), default=0)
    latest = [n for n, k in sim.last.items() if k == total]
    why = f"every point has run after pass {total} (the last: {', '.join(latest)})"
    return TraversalResult(rank, total, why, sim.n, sim.first, sim.last)


def check_pass_count(c: Cascade, rank: str, shapes: dict) -> str | None:
    """None when `passes(c, rank)` agrees with the simulated traversal at
    `shapes`: its count is enough (the traversal completes in that many
    passes) and minimal (not in one fewer), or both find the rank not
    streamable; otherwise a message saying how they differ."""
    claim = passes(c, rank)
    sim = simulate_passes(c, rank, shapes, max_passes=max(8, (claim.passes or 0) + 2))
    if claim.passes is None or sim.passes is None:
        if claim.passes is None and sim.passes is None:
            return None
        return (f"{c.name} over {rank}: the analysis says "
                f"{claim.passes if claim.passes is not None else 'not streamable: ' + str(claim.unstreamable)}; "
                f"the traversal at {shapes} says "
                f"{sim.passes if sim.passes is not None else 'not streamable: ' + sim.why}")
    if sim.passes > claim.passes:
        return (f"{c.name} over {rank}: the analysis says {claim.passes} pass(es), not enough: the traversal "
                f"at {shapes} needs {sim.passes} ({sim.why}; last pass of each Einsum {sim.per_einsum_last_pass})")
    if sim.passes < claim.passes:
        return (f"{c.name} over {rank}: the analysis says {claim.passes} pass(es), not minimal: the traversal "
                f"at {shapes} completes in {sim.passes} ({sim.why}); the analysis puts the Einsums in "
                f"{claim.einsum_pass}")
    return None


__all__ = ["TraversalResult", "check_pass_count", "simulate_passes"]

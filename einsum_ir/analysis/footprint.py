"""The minimum live footprint of a schedule that traverses rank R as few
times as the pass analysis allows and reads every input once.

The schedule: pass by pass, the Einsums that iterate R run fused, one step of
R's outermost part at a time (one element of M, or one M0-tile of M1 x M0);
between passes run the Einsums that do not iterate R. What must be on chip:
- a tensor that keeps R and is read only in the pass that produces it: one
  step's slice (the outermost part of R replaced by 1; 2 for an iterative
  rank: the previous and the current iterate), from its producer to its last
  reader within the step;
- a tensor that keeps R and is re-read in a later pass, or whose elements
  combine several positions (a sum over an alias `rank J = M` kept at m):
  all of it, until its last reader;
- a tensor without R (Q, a running max, an accumulator such as GM or AV):
  all of it, throughout every pass that produces or reads it;
- an input read through a gather by R's variables (a paged KV pool
  `KC[BT[b, m // BS], .., m % BS]`): what one step's reads name, as for a
  streamed input (`_gathered_slice`); whole if some read is not tied to
  one position of R.
R means R's family (`passes.rank_family`): its partition parts and the
aliases that walk it. A tensor that keeps only an index inside a tile
(M0, `rank J = M0`) keeps no position of R: it is held like a tensor
without R. A tensor whose writer has a predicate holds only the points it
keeps. A rank that no number of passes traverses (`passes` None) has no
such schedule: `footprint` refuses it.
The footprint is the largest sum of live sizes over the schedule's points;
it is reported for the whole problem (all batches, heads and queries), in
elements and in bytes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from math import prod

import sympy

from ..errors import EinError
from ..ir import Access, Cascade, Num, index_vars, rank_of
from ..ops import DTYPE_BYTES
from ..sym import shape_symbol
from ..graph import schedule
from .passes import POS, ROOT, _gathered_by, has_position, passes, rank_family, slot_kind, _streaming_read
from .points import points


@dataclass(frozen=True)
class Footprint:
    rank: str
    candidates: tuple[tuple[sympy.Expr, tuple[str, ...]], ...]   # (bytes, live tensors) per point
    elements: tuple[sympy.Expr, ...] = field(repr=False, default=())
    sizes: dict[str, sympy.Expr] = field(repr=False, default_factory=dict, compare=False, hash=False)
    """Bytes each tensor holds while it is live (a streamed one: one step's)."""

    @property
    def bytes(self) -> sympy.Expr:
        return sympy.Max(*[b for b, _ in self.candidates])

    def at(self, values: dict) -> tuple[float, tuple[str, ...]]:
        """Bytes and the live tensors at the worst point, at concrete shapes."""
        from .evaluate import evaluate
        best = max(self.candidates, key=lambda bc: float(evaluate(bc[0], values)))
        return float(evaluate(best[0], values)), best[1]


def _step_slice(t, fam, full, pos: str | None = None, kind: str | None = None):
    """Elements of one step of R: the position rank replaced by 1 (2 for an
    iterative rank: previous and current iterate); a partitioned R kept whole
    (`V[f, m]`) by one tile. `pos`, `kind`: an input's slot of an alias of R
    read at R's positions (G[m], G over P)."""
    pos = pos or next(r for r in t.ranks if fam.kind.get(r) in (POS, ROOT))
    kind = kind or fam.kind[pos]
    extent = shape_symbol(pos) + (1 if pos in t.iterative else 0)
    step = 2 if pos in t.iterative else 1
    if kind == ROOT:
        step = shape_symbol(fam.tile)
    return full / extent * step, pos in t.iterative


def _input_positions(c: Cascade, fam, t) -> tuple[str, str] | None:
    """The slot (and its kind) at which every read of input `t` names a
    position of R (`passes.slot_kind`): K[.., m] at M; G[m], G over P, at
    P. None if some read names none (DOC[b, m] over P, M a rank of its
    own: every step loads other elements, so DOC is held whole, as K)."""
    found = []
    for a in (a for e in c.einsums for a in e.reads() if a.tensor == t.name):
        slots = [(r, k) for r, i in zip(t.ranks, a.indices)
                 if (k := slot_kind(c, fam, r, i, True)) in (POS, ROOT)]
        if not slots:
            return None
        found += slots
    own = [f for f in found if f[0] in fam.kind]
    return (own or found or [None])[0]


def _step_values(fam, v: str) -> sympy.Expr:
    """Values variable `v` takes within one step of R: one for R's position
    (m, m1, a walking alias), a tile for a partitioned R indexed whole (m),
    its whole rank otherwise (m0, b, p)."""
    kind = fam.var_kind(v)
    if kind == POS:
        return sympy.Integer(1)
    return shape_symbol(fam.tile) if kind == ROOT else shape_symbol(rank_of(v))


def _read_slice(c: Cascade, fam, t, a: Access) -> sympy.Expr | None:
    """Elements of input `t` that read `a` names in one step of R: a slot
    whose index uses R's variables takes at most as many values as the
    index's other variables (min the slot's extent: `m % BS` one, `BT[b, m
    // BS]` B), jointly at most what those variables take together; a slot
    indexed without R is taken whole, as for a streamed input. None if the
    read is not tied to one position of R (no position variable, or two)."""
    pos = {v for i in a.indices for v in index_vars(i) if fam.var_kind(v) == POS}
    if len(pos) > 1 or not pos and not any(fam.var_kind(v) == ROOT for i in a.indices for v in index_vars(i)):
        return None
    free, tied, seen, shared = sympy.Integer(1), sympy.Integer(1), set(), False
    for r, i in zip(t.ranks, a.indices):
        vs = set(index_vars(i))
        if not any(fam.var_kind(v) for v in vs):
            free *= shape_symbol(r)
            continue
        n = prod((_step_values(fam, v) for v in vs), start=sympy.Integer(1))
        tied *= n if n == 1 else sympy.Min(n, shape_symbol(r))
        shared |= any(_step_values(fam, v) != 1 for v in vs & seen)
        seen |= vs
    if shared:      # a variable in several slots (X[BT[b, m], BU[b, m]]): B tuples, not B x B
        tied = sympy.Min(tied, prod((_step_values(fam, v) for v in seen), start=sympy.Integer(1)))
    return free * tied


def _gathered_slice(c: Cascade, t, fam):
    """Elements of one step of R of an input read through gathers by R's
    variables (`KC[BT[b, m // BS], h / G, e, m % BS]`): which element a step
    reads is the data's choice, but it is one per value of the index's other
    variables (B per key here, one block slot per sequence), as the
    contiguous K[b, h / G, e, m]; the sum over its distinct reads. None if
    some read is not tied to R's steps (`POOL[IDX[b, j]]` summed over j at
    every step: held whole) or t is not an input (made on chip, kept)."""
    if t.role != "input":
        return None
    reads = {str(a): a for e in c.einsums for a in e.reads() if a.tensor == t.name}
    total = sympy.Integer(0)
    for a in reads.values():
        n = _read_slice(c, fam, t, a)
        if n is None:
            return None
        total += n
    return total


def _as_late_as_possible(c, pr, order, parts, part_vars, fam) -> dict[int, int]:
    """Pass of each Einsum, moving those that read only cascade inputs (views
    such as BV[.., m1, m0] = V[.., m1*M0 + m0], masks such as D[h, m, p] from
    LAM) into the pass of their readers, so the input is read where it is
    used instead of held."""
    placed = {i: pr.einsum_pass.get(c.einsums[i].name, 0) for i in order}
    inputs = {t.name for t in c.inputs}
    for i in reversed(order):
        e = c.einsums[i]
        # a tensor with a position of R made from no data of R (a decay mask
        # D[h, m, p] from LAM) runs outside the passes, yet is cheaper made per step
        free = placed[i] == 0 and has_position(c, fam, e.name)
        if (placed[i] == 0 and not free) or any(a.tensor not in inputs for a in e.reads()):
            continue
        readers = [j for j in order if any(a.tensor == e.name for a in c.einsums[j].reads())]
        if readers and all(placed[j] > 0 and set(c.einsums[j].iteration_vars) & part_vars
                           and all(_streaming_read(c, a, parts) for a in c.einsums[j].reads()
                                   if a.tensor == e.name) for j in readers):
            placed[i] = max(placed[i], min(placed[j] for j in readers))

    return placed


def stored_elements(c: Cascade, t, dense: sympy.Expr) -> sympy.Expr:
    """Elements a tensor holds: only the points its writer's predicate keeps
    (a causal score tensor holds about half of M x P, a windowed one W x P).
    Dense when the predicate also ranges over reduced variables."""
    writers = [e for e in c.einsums if e.name == t.name and not e.is_initial]
    if len(writers) != 1 or writers[0].predicate is None or t.iterative:
        return dense
    e = writers[0]
    if not set(index_vars(e.predicate)) <= set(e.output_vars):
        return dense
    return points(c, dataclasses.replace(e, expr=Num(0), reduced=()))


def footprint(c: Cascade, rank: str) -> Footprint:
    pr = passes(c, rank)
    if pr.passes is None:
        raise EinError(f"{c.name}: no schedule traverses {rank} a finite number of times, so it has no "
                       f"minimum footprint: {pr.unstreamable}")
    fam = pr.family or rank_family(c, rank)
    parts = set(fam.kind)
    part_vars = fam.vars

    # schedule points: (phase, order); phase 2k-1 = pass k, phase 2k = between passes
    order = [i for s in schedule(c) for i in s.einsums]
    placed = _as_late_as_possible(c, pr, order, parts, part_vars, fam)
    point = {}
    for pos, i in enumerate(order):
        e = c.einsums[i]
        p = placed[i]
        if p > 0:
            phase = 2 * p - 1
        else:
            phase = 2 * pr.states[e.name].pass_
        point[i] = (phase, pos)
    points = sorted(set(point.values()))
    phase_span = {}
    for pt in points:
        lo, hi = phase_span.get(pt[0], (pt, pt))
        phase_span[pt[0]] = (min(lo, pt), max(hi, pt))

    def span_of_phase(ph):
        return phase_span.get(ph)

    live: dict[str, tuple] = {}
    size: dict[str, sympy.Expr] = {}
    for t in c.tensors:
        writers = [i for i in order if c.einsums[i].name == t.name]
        readers = [(i, a) for i in order for a in c.einsums[i].reads() if a.tensor == t.name]
        pts = [point[i] for i in writers] + [point[i] for i, _ in readers]
        if not pts:
            continue
        lo, hi = min(pts), max(pts)
        has_r = any(fam.kind.get(r) in (POS, ROOT) for r in t.ranks)
        at = _input_positions(c, fam, t) if t.role == "input" else None
        gathered = _gathered_slice(c, t, fam) if _gathered_by(c, fam, t.name) else None
        if t.role == "input":
            has_r = at is not None      # read at R's positions only (an alias slot too), or held whole
        full = prod((shape_symbol(r) + (1 if r in t.iterative else 0) for r in t.ranks), start=sympy.Integer(1))
        stored = stored_elements(c, t, full)
        if gathered is not None:
            elems = gathered      # read one step at a time through its gathers, like a streamed input
        elif has_r:
            produced = min((point[i][0] for i in writers), default=0)
            later = t.role != "input" and any(
                _streaming_read(c, a, parts) and point[i][0] > produced and point[i][0] % 2 == 1
                for i, a in readers)
            state = pr.states.get(t.name)
            held = state is not None and t.role != "input" and state.bound and not state.streams
            if later or held or (t.role != "input" and produced % 2 == 0):
                elems = stored
            else:
                elems, iterative = _step_slice(t, fam, full, *(at or ()))
                if iterative:  # a running state lives throughout its pass
                    for ph in {p[0] for p in pts if p[0] % 2 == 1}:
                        s = span_of_phase(ph)
                        lo, hi = min(lo, s[0]), max(hi, s[1])
        else:
            elems = stored
            # used inside a pass: needed at every step of that pass
            for ph in {p[0] for p in pts if p[0] % 2 == 1}:
                s = span_of_phase(ph)
                lo, hi = min(lo, s[0]), max(hi, s[1])
        live[t.name] = (lo, hi)
        size[t.name] = elems * DTYPE_BYTES[t.dtype]

    candidates = []
    for pt in points:
        names = tuple(n for n, (lo, hi) in live.items() if lo <= pt <= hi)
        total = sympy.expand(sum((size[n] for n in names), sympy.Integer(0)))
        candidates.append((total, names))
    # drop points dominated by another with a superset of live tensors
    kept = [c_ for c_ in candidates
            if not any(set(c_[1]) < set(o[1]) for o in candidates)]
    unique = []
    for k in kept:
        if k not in unique:
            unique.append(k)
    return Footprint(rank, tuple(unique), sizes=size)

"""The key walk of a recurrence-free cascade: which Einsums are tiles over the
key rank, which reduce it (max/min statistics, sums), which are row
Einsums after the reductions, and which normalisers the sums' terms carry.

This is the recognition both the online and the split-KV rewrites rest on:
a max (or min) over the keys of a term that reads no other statistic can be
kept as a running value; a row Einsum computed only from such maxima is a
*normaliser* G; a sum whose term is exp(A - G)^d times G-free factors
(`algebra.exp_degree`) stays exact when its running value is rescaled by
exp(G_old - G_new)^d. Anything else is refused with the Einsum and the
condition that failed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import EinError
from ..ir import Access, Cascade, Einsum, Expr, Idx, Sym, accesses, index_vars, rank_of
from .algebra import exp_degree


class RewriteError(EinError):
    """A rewrite does not apply: which Einsum, which condition failed."""


def refuse(c: Cascade, e: Einsum | None, why: str, form: str) -> RewriteError:
    where = f"{e.name}: " if e is not None else ""
    return RewriteError(f"cannot rewrite {c.name} to the {form} form: {where}{why}",
                        e.loc if e is not None else None, c.source)


@dataclass
class Walk:
    """The roles of a cascade's Einsums in a walk over the key variable `k`."""
    c: Cascade
    k: str
    tiles: dict[str, Einsum] = field(default_factory=dict)
    reductions: dict[str, Einsum] = field(default_factory=dict)
    rows: dict[str, Einsum] = field(default_factory=dict)
    hoisted: dict[str, Einsum] = field(default_factory=dict)
    normalisers: set[str] = field(default_factory=set)          # max/min statistics and rows made of them
    degrees: dict[str, dict[str, int]] = field(default_factory=dict)   # sum -> {normaliser G: degree}

    @property
    def K(self) -> str:
        return rank_of(self.k)

    def expand(self, a: Access) -> Expr | None:
        t = self.tiles.get(a.tensor)
        return None if t is None else t.expr

    def stats_read(self, x: Expr | None) -> set[str]:
        """Statistics (reductions, rows) `x` reads, directly or through tiles."""
        out: set[str] = set()
        if x is None:
            return out
        for a in accesses(x):
            if a.tensor in self.reductions or a.tensor in self.rows:
                out.add(a.tensor)
            t = self.tiles.get(a.tensor)
            if t is not None:
                out |= self.stats_read(t.expr) | self.stats_read(t.predicate)
        return out

    def has_predicate(self) -> bool:
        return any(e.predicate is not None for e in (*self.tiles.values(), *self.reductions.values()))


def key_rank(c: Cascade, form: str, rank: str | None = None) -> tuple[str, int | None]:
    """The rank to walk (the given one, else, of the ranks some Einsum
    reduces, the one with the most passes) and its pass count (None: the
    pass analysis finds the rank not streamable)."""
    from ..analysis import passes, root_ranks, sequence_rank
    roots = root_ranks(c)
    if rank is not None:
        if rank not in roots:
            raise RewriteError(f"cannot rewrite {c.name} to the {form} form: it has no unpartitioned rank "
                               f"{rank}; its ranks are {', '.join(roots)}")
        return rank, passes(c, rank).passes
    results = {r: passes(c, r) for r in roots}
    seq = sequence_rank(c, results)
    reduced = [r for r in roots if any(p.lower() in e.reduced for p in c.parts(r) for e in c.einsums)] or roots
    r = max(reduced, key=lambda r: (float("inf") if results[r].passes is None else results[r].passes,
                                    r == seq, r == "M"))
    return r, results[r].passes


def recognise(c: Cascade, K: str, form: str) -> Walk:
    """The key walk of `c` over rank K, or a RewriteError naming the Einsum
    that does not fit and why."""
    for t in c.tensors:
        if t.iterative:
            raise refuse(c, c.writers(t.name)[0], f"an explicit recurrence over {', '.join(sorted(t.iterative))}; "
                         "the rewrite derives the recurrence itself from the recurrence-free form "
                         "(the 3-pass or deferred cascade)", form)
    if any(r.parent == K for r in c.ranks):
        raise refuse(c, None, f"the key rank {K} is already partitioned (tiles written by hand); give the "
                              "unpartitioned design", form)
    for r in c.ranks:
        if r.definition == Sym(K) and any(r.name.lower() in e.iteration_vars for e in c.einsums):
            raise refuse(c, None, f"rank {r.name} = {K} pairs two key positions in one Einsum; the {form} "
                                  f"form walks one key at a time", form)
    w = Walk(c, K.lower())
    _classify(w, form)
    _check_reads(w, form)
    _normalisers(w, form)
    for t in c.outputs:
        if t.name in w.tiles:
            raise refuse(c, c.writers(t.name)[0], f"an output over the key rank {K}; a walk over the keys "
                         "never holds it whole", form)
    return w


def _classify(w: Walk, form: str) -> None:
    c, k = w.c, w.k
    keyed: set[str] = set()
    for e in c.einsums:
        if k in e.iteration_vars or any(a.tensor in keyed for a in e.reads()):
            keyed.add(e.name)
    for e in c.einsums:
        if k in e.reduced:
            if e.reduce not in ("max", "min", "sum"):
                raise refuse(c, e, f"a {e.reduce} reduction over {k}", form)
            w.reductions[e.name] = e
        elif k in e.iteration_vars:
            w.tiles[e.name] = e
        elif e.name in keyed:
            w.rows[e.name] = e
        else:
            w.hoisted[e.name] = e
    if not w.reductions:
        raise refuse(c, None, f"no Einsum reduces over {k}", form)


def _check_reads(w: Walk, form: str) -> None:
    """Tiles and statistics are read only where the walk holds them: a tile
    at the key the reader visits, a statistic at its own row."""
    c, k = w.c, w.k
    for e in c.einsums:
        for a in accesses(e.expr) + (accesses(e.predicate) if e.predicate is not None else []):
            if a.tensor in w.tiles:
                written = w.tiles[a.tensor].output
                if k not in e.iteration_vars:
                    raise refuse(c, e, f"reads the tile tensor {a.tensor} outside the walk over {k}", form)
                if a.indices != written.indices:
                    raise refuse(c, e, f"reads {a} where {a.tensor} is written as {written}; the walk holds "
                                 "a tile only at the indices it is written at", form)
            elif (a.tensor in w.reductions or a.tensor in w.rows) and k in e.iteration_vars:
                written = c.writers(a.tensor)[0].output
                if a.indices != written.indices:
                    raise refuse(c, e, f"reads the statistic {a} inside the walk, not at the indices it is "
                                 f"written at ({written})", form)
            if (a.tensor in w.reductions or a.tensor in w.rows) and any(k in index_vars(i) for i in a.indices):
                raise refuse(c, e, f"reads the statistic {a} at a key-dependent index", form)


def _normalisers(w: Walk, form: str) -> None:
    c, k = w.c, w.k
    for e in c.einsums:
        if e.name in w.reductions:
            stats = w.stats_read(e.expr) | w.stats_read(e.predicate)
            if e.reduce in ("max", "min"):
                if stats:
                    raise refuse(c, e, f"a {e.reduce} over {k} of a term that reads {', '.join(sorted(stats))}, "
                                 f"itself a statistic over the keys; a running {e.reduce} needs a term "
                                 "fixed while the keys stream", form)
                w.normalisers.add(e.name)
                continue
            w.degrees[e.name] = _sum_degrees(w, e, stats, form)
        elif e.name in w.rows:
            stats = {a.tensor for a in e.reads() if a.tensor in w.reductions or a.tensor in w.rows}
            if stats and stats <= w.normalisers:
                w.normalisers.add(e.name)
        elif e.name in w.tiles and w.stats_read(e.predicate):
            raise refuse(c, e, f"its where clause reads {', '.join(sorted(w.stats_read(e.predicate)))}, a "
                         "statistic over the keys", form)


def _sum_degrees(w: Walk, e: Einsum, stats: set[str], form: str) -> dict[str, int]:
    c, k = w.c, w.k
    if w.stats_read(e.predicate):
        raise refuse(c, e, f"its where clause reads {', '.join(sorted(w.stats_read(e.predicate)))}, a "
                     "statistic over the keys", form)
    out = {}
    for g in sorted(stats, key=lambda s: (s in w.normalisers, s)):     # a non-normaliser is the first reason
        if g not in w.normalisers:
            kind = w.reductions[g].reduce if g in w.reductions else "row value"
            raise refuse(c, e, f"its term reads {g} ({kind} over {k}, or made from one) inside the walk; only "
                         f"a normaliser made of maxima over {k} can be corrected while the keys stream, a sum "
                         "is complete only after the whole walk (defer a division by it first)", form)
        d = exp_degree(e.expr, g, w.expand)
        if d is None or d < 1:
            raise refuse(c, e, f"its term depends on the normaliser {g} other than through factors "
                         f"exp(A - {g}) times {g}-free terms (its degree in exp(-{g}) is not defined), so a "
                         f"change of {g} cannot be undone by rescaling", form)
        out[g] = d
    return out


def plain_vars(a: Access) -> list[str]:
    """The index variables of an output access (an Einsum's output is written
    at plain variables)."""
    return [i.name for i in a.indices if isinstance(i, Idx)]


__all__ = ["RewriteError", "Walk", "key_rank", "plain_vars", "recognise", "refuse"]

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
from .derive import Rescale, rescaling, row_normaliser, running_normaliser


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
    rescales: dict[str, Rescale] = field(default_factory=dict)         # sum -> its rescaling (derive.py)

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

    def predicate_stats(self, e: Einsum) -> set[str]:
        """Statistics read by e's where clause. A tile Einsum whose where
        clause reads one is refused before its readers are looked at
        (`_normalisers` visits the cascade in order), so the tiles e reads
        add none."""
        return self.stats_read(e.predicate)


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
    w = Walk(c, K.lower())
    aliases = {r.name.lower(): r.name for r in c.ranks if r.definition == Sym(K)}
    before = _before_walk(c, w.k, set(aliases))
    for e in c.einsums:
        pair = sorted(set(e.iteration_vars) & set(aliases))
        if pair and e.name not in before:
            raise refuse(c, e, f"rank {aliases[pair[0]]} = {K} pairs two key positions in one Einsum; the "
                                  f"{form} form walks one key at a time", form)
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
    aliases = {r.name.lower() for r in c.ranks if r.definition == Sym(w.K)}
    before = _before_walk(c, k, aliases)
    for e in c.einsums:
        if e.name in before:
            w.hoisted[e.name] = e       # a scan of inputs (forgetting attention's gates): computed before the walk
        elif e.scan is not None and e.name in keyed:
            raise refuse(c, e, f"a scan ({e.scan}) of values computed in the walk over {k}; the rewrites do not "
                         "carry a scan from tile to tile (the fused generator does)", form)
        elif k in e.reduced:
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


def _before_walk(c: Cascade, k: str, aliases: set[str]) -> set[str]:
    """Einsums computed before the walk, as the fused kernel hoists them: a
    scan, or a sum over an alias of the keys (a prefix sum written as
    `where j <= m`), over the keys' own variables only (those an input read
    at key k carries: forgetting attention's gates F[b, h, m]) and reducing
    nothing over k, with the Einsums it reads and those reading only such
    values. A scan over the keys and the queries (stick-breaking's stick)
    is a tile the walk would have to carry from tile to tile."""
    inputs = {t.name for t in c.inputs}
    own = {k} | aliases
    for e in c.einsums:
        for x in (e.expr, e.predicate):
            for a in accesses(x) if x is not None else ():
                if a.tensor in inputs and k in {v for i in a.indices for v in index_vars(i)}:
                    own |= {v for i in a.indices for v in index_vars(i)}
    fits: set[str] = set()             # over own variables, from inputs and such values only
    for e in c.einsums:
        if k not in e.reduced and set(e.iteration_vars) <= own and all(
                a.tensor in inputs or a.tensor in fits for a in e.reads()):
            fits.add(e.name)
    seeds = {e.name for e in c.einsums if e.name in fits and (e.scan is not None or set(e.iteration_vars) & aliases)}
    writers = {e.name: e for e in c.einsums}
    out: set[str] = set()
    todo = list(seeds)
    while todo:                         # the seeds and what they read
        n = todo.pop()
        if n not in out:
            out.add(n)
            todo += [a.tensor for a in writers[n].reads() if a.tensor in writers]
    for e in c.einsums:                 # and what reads only them and inputs
        reads = e.reads()
        if e.name in fits and any(a.tensor in out for a in reads) and all(
                a.tensor in inputs or a.tensor in out for a in reads):
            out.add(e.name)
    return out


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


def _normalisers(w: Walk, form: str) -> None:
    """Normalisers and rescalings by the shared derivation (derive.py),
    which the fused kernel generator calls too."""
    c, k = w.c, w.k
    for e in c.einsums:
        if e.name in w.reductions:
            stats = w.stats_read(e.expr) | w.stats_read(e.predicate)
            if e.reduce in ("max", "min"):
                why = running_normaliser(e, k, stats)
                if why is not None:
                    raise refuse(c, e, why, form)
                w.normalisers.add(e.name)
                continue
            got = rescaling(e, k, e.expr, stats, w.predicate_stats(e), w.normalisers, w.expand,
                            lambda g: w.reductions[g].reduce if g in w.reductions else "row value")
            if isinstance(got, str):
                raise refuse(c, e, got, form)
            w.rescales[e.name] = got
            w.degrees[e.name] = dict(got.degrees)
        elif e.name in w.rows:
            stats = {a.tensor for a in e.reads() if a.tensor in w.reductions or a.tensor in w.rows}
            if row_normaliser(stats, w.normalisers):
                w.normalisers.add(e.name)
        elif e.name in w.tiles and w.stats_read(e.predicate):
            raise refuse(c, e, f"its where clause reads {', '.join(sorted(w.stats_read(e.predicate)))}, a "
                         "statistic over the keys", form)


def plain_vars(a: Access) -> list[str]:
    """The index variables of an output access (an Einsum's output is written
    at plain variables)."""
    return [i.name for i in a.indices if isinstance(i, Idx)]


__all__ = ["RewriteError", "Walk", "key_rank", "plain_vars", "recognise", "refuse"]

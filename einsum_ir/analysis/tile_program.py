"""The tile program of a fused attention kernel: what runs, in order, derived
once from the IR and immutable.

The Triton generator (codegen.triton) renders it statement by statement, and
the GPU model (simulator.gpu) charges it statement by statement; neither reads
the cascade's roles on its own, so what runs and what is predicted cannot
differ. A program owns one row tile (BLOCK_M queries of one batch coordinate):

    for each pass k:
        rows     Einsums over the rows whose inputs are final before the pass
        init     running statistics at their identities
        walk     for each key tile in the block table:
                     scores   one tensor-core product per score contraction the pass reads
                     early    tile Einsums that read no statistic of this pass
                     maxima   max/min reductions
                     normalise  per online normaliser G: its chain of row Einsums
                              from the running maxima, then the rescale of the sums
                              that carry exp(-G)
                     late     tile Einsums that read this pass's normalisers
                     sums     sum reductions and value products (tensor cores)
    epilogue     the remaining row Einsums, then the stores

`loads` lists the tensors in memory each pass reads (per key tile where they
carry the key, once per program where not).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import Access, Einsum, accesses
from .fused import FusedForm, Reduction, Score


@dataclass(frozen=True)
class Normalise:
    """An online normaliser: recomputed per tile from the running maxima
    (`chain`), and the running values rescaled by exp(G_old - G_new)."""
    name: str
    chain: tuple[Einsum, ...]
    rescaled: tuple[Reduction, ...]


@dataclass(frozen=True)
class PassProgram:
    index: int
    rows: tuple[Einsum, ...]
    init: tuple[Reduction, ...]
    scores: tuple[Score, ...]
    early: tuple[Einsum, ...]
    maxima: tuple[Reduction, ...]
    normalise: tuple[Normalise, ...]
    late: tuple[Einsum, ...]
    sums: tuple[Reduction, ...]
    loads: tuple[Access, ...]

    @property
    def tile_einsums(self) -> tuple[Einsum, ...]:
        return self.early + self.late

    @property
    def values(self) -> tuple[Reduction, ...]:
        return tuple(r for r in self.sums if r.kind == "value")


@dataclass(frozen=True)
class TileProgram:
    form: FusedForm
    passes: tuple[PassProgram, ...]
    epilogue: tuple[Einsum, ...]
    epilogue_loads: tuple[Access, ...]

    @property
    def cascade(self):
        return self.form.cascade


def _rows_before(form: FusedForm, k: int, done: set[str]) -> tuple[Einsum, ...]:
    """Row Einsums (cascade order) whose inputs are final before pass k and
    that are not computed yet."""
    avail = {r.name: r.pass_ + 1 for r in form.reductions}
    rows = {e.name for e in form.rows}
    out = []
    for e in form.rows:
        if e.name in done:
            continue
        deps = [a.tensor for a in e.reads() if a.tensor in avail or a.tensor in rows]
        if all(avail.get(d, 0) <= k for d in deps) and all(d in done for d in deps if d in rows):
            out.append(e)
            done.add(e.name)
    return tuple(out)


def _reads_pass_statistics(form: FusedForm, t: Einsum, names: set[str]) -> bool:
    """Does tile Einsum t read (through other tile Einsums) a statistic of the pass?"""
    for x in [t.expr] + ([t.predicate] if t.predicate is not None else []):
        for a in accesses(x):
            if a.tensor in names:
                return True
            dep = form.tile_einsum(a.tensor)
            if dep is not None and form.score(dep.name) is None and _reads_pass_statistics(form, dep, names):
                return True
    return False


def _pass_program(form: FusedForm, k: int, done: set[str]) -> PassProgram:
    rows = _rows_before(form, k, done)
    reds = tuple(form.in_pass(k))
    names = {r.name for r in reds} | set(form.normalisers.get(k, ()))
    tiles = form.tile_einsums_in_pass(k)
    late = tuple(t for t in tiles if _reads_pass_statistics(form, t, names))
    norms = tuple(Normalise(g, tuple(form.chain_to(g)), tuple(r for r in reds if r.rescaled_by == g))
                  for g in form.normalisers.get(k, ()))
    return PassProgram(k, rows, reds, tuple(form.scores_in_pass(k)), tuple(t for t in tiles if t not in late),
                       tuple(r for r in reds if r.kind in ("max", "min")), norms, late,
                       tuple(r for r in reds if r.kind not in ("max", "min")), tuple(form.pass_loads(k)))


def tile_program(form: FusedForm) -> TileProgram:
    """The fused kernel's program for `form` (see the module docstring)."""
    done: set[str] = set()
    passes = tuple(_pass_program(form, k, done) for k in range(form.passes))
    epilogue = tuple(e for e in form.rows if e.name not in done)
    return TileProgram(form, passes, epilogue, tuple(form.epilogue_loads()))


__all__ = ["Normalise", "PassProgram", "TileProgram", "tile_program"]

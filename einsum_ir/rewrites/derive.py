"""The online derivation, in one place: which statistics of a walk over the
keys are normalisers, and which sums are rescaled by which normaliser and
why that is exact.

Two clients ask these questions and must get the same answers:
- the rewrites' `Walk` (walk.py), which writes the online and split-KV
  cascades and their justification text;
- the fused kernel's pass assignment (analysis/fused.py), which decides
  which sums join the walk of their normaliser's pass and rescale their
  running value there.

Each client reads its own cascade's roles (which Einsums are tiles, which
statistics are running in the walk) and passes them here; the decisions
and their reasons are made only by these functions:

- `running_normaliser`: a max (min) over the keys of a term that reads no
  statistic over the keys is kept exactly as a running value;
- `row_normaliser`: a row Einsum made only of such values is a normaliser;
- `rescaling`: a sum whose term is exp(A - G)^d times G-free factors, for
  normalisers G running in the same walk, and whose where clauses read no
  running statistic, stays exact when its running value is multiplied by
  exp(G_old - G_new)^d each time G changes (softmax's online form).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..ir import Einsum, Expr
from .algebra import Expand, exp_degree


@dataclass(frozen=True)
class Rescale:
    """Sum `sum`'s running value is multiplied by exp(G_old - G_new)^d for
    each (G, d) in `degrees` when G changes; `why` says why that is exact."""
    sum: str
    degrees: tuple[tuple[str, int], ...]

    @property
    def normalisers(self) -> tuple[str, ...]:
        return tuple(g for g, _ in self.degrees)

    def why(self) -> str:
        if not self.degrees:
            return f"{self.sum}'s term reads no normaliser: the running sum adds each tile's sum"
        parts = [f"exp(A - {g})" + (f"^{d}" if d > 1 else "") + f" times {g}-free factors" for g, d in self.degrees]
        return (f"{self.sum}'s term is {' and '.join(parts)}, so the sum of the tiles before, computed with the old "
                "normaliser, times exp(G_old - G_new) per factor, is the same sum computed with the new one")


def running_normaliser(e: Einsum, k: str, reads: set[str]) -> str | None:
    """None when reduction `e` (a max or min over key variable `k`) can be
    carried as a running value; else why not. `reads`: the statistics over
    the keys its term and where clause read (through tile Einsums)."""
    if reads:
        return (f"a {e.reduce} over {k} of a term that reads {', '.join(sorted(reads))}, itself a statistic over "
                f"the keys; a running {e.reduce} needs a term fixed while the keys stream")
    return None


def row_normaliser(reads: set[str], normalisers: set[str]) -> bool:
    """Is a row Einsum reading statistics `reads` a normaliser: made only
    of normalisers (running maxima and rows of them)?"""
    return bool(reads) and reads <= normalisers


def rescaling(e: Einsum, k: str, term: Expr, term_reads: set[str], pred_reads: set[str],
              normalisers: set[str], expand: Expand, kind: Callable[[str], str]) -> Rescale | str:
    """The rescaling that keeps sum `e` exact in a walk over key variable
    `k`, or why there is none. `term_reads`: the statistics running in the
    walk that its term reads; `pred_reads`: those its where clause, or the
    where clause of a tile Einsum it reads, reads (a statistic that changes
    would change which terms were kept); `expand` looks through tiles;
    `kind(g)` names a statistic's reduction for the reason."""
    if pred_reads:
        return f"its where clause reads {', '.join(sorted(pred_reads))}, a statistic over the keys"
    out = []
    for g in sorted(term_reads, key=lambda s: (s in normalisers, s)):     # a non-normaliser is the first reason
        if g not in normalisers:
            return (f"its term reads {g} ({kind(g)} over {k}, or made from one) inside the walk; only a normaliser "
                    f"made of maxima over {k} can be corrected while the keys stream, a sum is complete only "
                    "after the whole walk (defer a division by it first)")
        d = exp_degree(term, g, expand)
        if d is None or d < 1:
            return (f"its term depends on the normaliser {g} other than through factors exp(A - {g}) times "
                    f"{g}-free terms (its degree in exp(-{g}) is not defined), so a change of {g} cannot be "
                    "undone by rescaling")
        out.append((g, d))
    return Rescale(e.name, tuple(out))


__all__ = ["Rescale", "rescaling", "row_normaliser", "running_normaliser"]

"""Which (query tile, key tile) pairs of a fused pass are empty, full or
partial under the cascade's predicates: exact, from evaluating each
predicate at every point once (no sampling), kept as counts per 16 x 16 cell
so that any tile shape that is a multiple of the cell is classified by
summing cells.

A tile is empty when no point is kept by any reduction of the pass (the
kernel skips it), full when every point of it exists and is kept by every
predicate of the pass (no mask work), partial otherwise. A pass with an
Einsum that has no predicate skips nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..execute import _Evaluator, _Space
from ..ir import Access, Idx, walk
from .fused import FusedForm

CELL = 16
EMPTY, PARTIAL, FULL = 0, 1, 2


@dataclass(frozen=True)
class CellCounts:
    """Per 16 x 16 cell: points kept by any predicate, by all, and existing.
    Leading axes are the batch variables the predicates read (else none)."""

    batch: tuple[str, ...]
    any: np.ndarray
    all: np.ndarray
    exist: np.ndarray
    rows: int
    cols: int


_CACHE: dict = {}


def cell_counts(form: FusedForm, pass_: int, env: dict, inputs: dict | None = None) -> CellCounts:
    """Exact counts per cell for the pass's predicates at the shapes `env`
    (every symbol resolved) and, for predicates that read tensors, `inputs`.
    Index-only predicates are cached per cascade and shapes."""
    if inputs:
        return _cell_counts(form, pass_, env, inputs)
    key = (form.cascade, pass_, tuple(sorted(env.items())))
    if key not in _CACHE:
        if len(_CACHE) > 64:
            _CACHE.clear()
        _CACHE[key] = _cell_counts(form, pass_, env, None)
    return _CACHE[key]


def _cell_counts(form: FusedForm, pass_: int, env: dict, inputs: dict | None) -> CellCounts:
    preds = form.predicates(pass_)
    none = any(p is None for p in preds)
    preds = list(dict.fromkeys(p for p in preds if p is not None))
    rows = 1 if form.query is None else int(env[form.query.upper()])
    cols = int(env[form.key.upper()])
    used = {n.name for p in preds for n in walk(p) if isinstance(n, Idx)}
    batch = tuple(v for v in form.batch if v in used)
    bshape = tuple(int(env[v.upper()]) for v in batch)
    rc, cc = -(-rows // CELL), -(-cols // CELL)
    any_ = np.zeros(bshape + (rc, cc), np.int64)
    all_ = np.zeros(bshape + (rc, cc), np.int64)
    arrays = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
              for k, v in (inputs or {}).items()}
    needed = {n.tensor for p in preds for n in walk(p) if isinstance(n, Access)}
    missing = needed - arrays.keys()
    if missing:
        from ..errors import ShapeError
        raise ShapeError(f"the predicate reads {', '.join(sorted(missing))}: give its values to classify tiles")
    ev = _Evaluator(form.cascade, env, arrays, np.dtype("float64"))
    chunk = max(CELL, (1 << 24) // max(cols * max(1, int(np.prod(bshape))), 1) // CELL * CELL)
    qv = form.query or "__q"
    for r0 in range(0, rows, chunk):
        r1 = min(rows, r0 + chunk)
        ranges = {v: (0, int(env[v.upper()])) for v in batch}
        ranges[qv] = (r0, r1)
        ranges[form.key] = (0, cols)
        space = _Space(list(batch) + [qv, form.key], ranges)
        shape = space.shape
        if preds:
            vals = [np.broadcast_to(np.asarray(ev.value(p, space, None, form.scores[0].einsum), bool), shape) for p in preds]
            a_any = np.logical_or.reduce(vals) if not none else np.ones(shape, bool)
            a_all = np.logical_and.reduce(vals)
        else:
            a_any = a_all = np.ones(shape, bool)
        any_[..., r0 // CELL: -(-r1 // CELL), :] = _per_cell(a_any)
        all_[..., r0 // CELL: -(-r1 // CELL), :] = _per_cell(a_all)
    exist = _per_cell(np.ones((rows, cols), bool))
    return CellCounts(batch, any_, all_, exist, rows, cols)


def _per_cell(a: np.ndarray) -> np.ndarray:
    *lead, r, c = a.shape
    pr, pc = -r % CELL, -c % CELL
    a = np.pad(a, [(0, 0)] * len(lead) + [(0, pr), (0, pc)])
    a = a.reshape(*lead, (r + pr) // CELL, CELL, (c + pc) // CELL, CELL)
    return a.sum(axis=(-3, -1))


def classify(counts: CellCounts, block_m: int, block_n: int) -> np.ndarray:
    """EMPTY / PARTIAL / FULL per (query tile, key tile), with the leading
    batch axes of `counts`. Tile sizes must be multiples of 16 (decode's
    single query row: any block_m)."""
    if block_n % CELL or (counts.rows > 1 and block_m % CELL):
        raise ValueError(f"tile sizes must be multiples of {CELL}, got {block_m} x {block_n}")
    fm = max(1, block_m // CELL) if counts.rows > 1 else counts.any.shape[-2]
    fn = block_n // CELL

    def blocks(x):
        *lead, r, c = x.shape
        pr, pc = -r % fm, -c % fn
        x = np.pad(x, [(0, 0)] * len(lead) + [(0, pr), (0, pc)])
        return x.reshape(*lead, (r + pr) // fm, fm, (c + pc) // fn, fn).sum(axis=(-3, -1))

    kept, every, exist = blocks(counts.any), blocks(counts.all), blocks(counts.exist)
    area = (block_m if counts.rows > 1 else counts.rows) * block_n
    out = np.full(np.broadcast_shapes(kept.shape, exist.shape), PARTIAL, np.int8)
    out[np.broadcast_to(kept == 0, out.shape)] = EMPTY
    out[np.broadcast_to((every == area) & (exist == area), out.shape)] = FULL
    return out


__all__ = ["CELL", "CellCounts", "EMPTY", "FULL", "PARTIAL", "cell_counts", "classify"]

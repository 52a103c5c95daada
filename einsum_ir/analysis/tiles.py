"""Which (query tile, key tile) pairs of a fused pass are empty, full or
partial under the cascade's predicates: exact, from evaluating each
predicate at every point once (no sampling), kept as counts per 16 x 16 cell
so that any tile shape that is a multiple of the cell is classified by
summing cells.

A tile is empty when no point is kept by any reduction of the pass (the
kernel skips it), full when every point of it exists and is kept by every
predicate of the pass (no mask work), partial otherwise. A pass with an
Einsum that has no predicate skips nothing.

A predicate that reads tensors (a document mask `DQ[b, p] == DK[b, m]`) is
classified from their values when they are given (cached by a hash of the
values: the kernel's block table and the GPU model take the same classes).
Without them each condition that reads a tensor is unknown, and a point is
counted as possibly kept (it may be) or not surely kept: empty tiles are
those the index-only conditions rule out, every other tile is visited, so a
model over these classes is an upper bound (`CellCounts.unknown` names the
tensors whose values were missing).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..execute import _Evaluator, _Space
from ..ir import Access, Idx, Num, Op, walk
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
    unknown: tuple[str, ...] = ()
    """Tensors the predicates read whose values were not given: `any` counts
    the points that may be kept, `all` those surely kept (an upper bound)."""


_CACHE: dict = {}


def read_tensors(form: FusedForm, pass_: int) -> set[str]:
    """The tensors the pass's predicates read."""
    return {n.tensor for p in form.predicates(pass_) if p is not None for n in walk(p) if isinstance(n, Access)}


def cell_counts(form: FusedForm, pass_: int, env: dict, inputs: dict | None = None) -> CellCounts:
    """Counts per cell for the pass's predicates at the shapes `env` (every
    symbol resolved): exact, from `inputs` for predicates that read tensors,
    else bounds (see the module's doc). Cached per cascade, shapes and a
    hash of the values read."""
    from .density import digest
    read = read_tensors(form, pass_)
    arrays = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
              for k, v in (inputs or {}).items() if k in read}
    key = (form.cascade, pass_, tuple(sorted(env.items())), digest(arrays) if arrays else None)
    if key not in _CACHE:
        if len(_CACHE) > 64:
            _CACHE.clear()
        _CACHE[key] = _cell_counts(form, pass_, env, arrays)
    return _CACHE[key]


def _bound(x, upper: bool):
    """`x` with each condition that reads a tensor replaced by true or false,
    whichever makes the whole condition largest (`upper`) or smallest, by its
    polarity under `not`: exact three-valued bounds, as and/or are monotone."""
    if isinstance(x, Op) and x.name in ("and", "or"):
        return Op(x.name, tuple(_bound(a, upper) for a in x.args))
    if isinstance(x, Op) and x.name == "not":
        return Op("not", (_bound(x.args[0], not upper),))
    if any(isinstance(n, Access) for n in walk(x)):
        return Op("le" if upper else "lt", (Num(0), Num(0)))
    return x


def _cell_counts(form: FusedForm, pass_: int, env: dict, arrays: dict) -> CellCounts:
    preds = form.predicates(pass_)
    none = any(p is None for p in preds)
    preds = list(dict.fromkeys(p for p in preds if p is not None))
    unknown = tuple(sorted(read_tensors(form, pass_) - arrays.keys()))
    if unknown:
        return _bounded_counts(form, pass_, env, preds, none, unknown)
    return _counts(form, env, arrays, preds, preds, none)


def _bounded_counts(form, pass_, env, preds, none, unknown) -> CellCounts:
    """Counts with the unknown conditions bounded: `any` from the upper
    predicates, `all` from the lower ones."""
    cc = _counts(form, env, {}, [_bound(p, True) for p in preds], [_bound(p, False) for p in preds], none)
    return CellCounts(cc.batch, cc.any, cc.all, cc.exist, cc.rows, cc.cols, unknown)


def _counts(form, env, arrays, any_preds, all_preds, none) -> CellCounts:
    """Per-cell counts of the points kept by any of `any_preds` and by all of `all_preds`."""
    preds = list(dict.fromkeys(any_preds + all_preds))
    rows = 1 if form.query is None else int(env[form.query.upper()])
    cols = int(env[form.key.upper()])
    used = {n.name for p in preds for n in walk(p) if isinstance(n, Idx)}
    batch = tuple(v for v in form.batch if v in used)
    bshape = tuple(int(env[v.upper()]) for v in batch)
    rc, cc = -(-rows // CELL), -(-cols // CELL)
    any_ = np.zeros(bshape + (rc, cc), np.int64)
    all_ = np.zeros(bshape + (rc, cc), np.int64)
    ev = _evaluator(form, env, arrays)
    chunk = max(CELL, (1 << 24) // max(cols * max(1, int(np.prod(bshape))), 1) // CELL * CELL)
    for r0 in range(0, rows, chunk):
        r1 = min(rows, r0 + chunk)
        shape = bshape + (r1 - r0, cols)
        if preds:
            val = {p: _points(form, env, ev, p, batch, r0, r1) for p in preds}
            a_any = np.logical_or.reduce([val[p] for p in any_preds]) if not none else np.ones(shape, bool)
            a_all = np.logical_and.reduce([val[p] for p in all_preds])
        else:
            a_any = a_all = np.ones(shape, bool)
        any_[..., r0 // CELL: -(-r1 // CELL), :] = _per_cell(a_any)
        all_[..., r0 // CELL: -(-r1 // CELL), :] = _per_cell(a_all)
    exist = np.outer(_cell_sizes(rows), _cell_sizes(cols))
    return CellCounts(batch, any_, all_, exist, rows, cols)


def _evaluator(form, env: dict, arrays: dict):
    arrays = {k: v if v.dtype == bool else v.astype(np.float64) for k, v in arrays.items()}
    return _Evaluator(form.cascade, env, arrays, np.dtype("float64"))


def _points(form, env: dict, ev, pred, batch: tuple, r0: int, r1: int) -> np.ndarray:
    """Predicate `pred` at every point of rows r0..r1 and every key:
    bool [..batch.., r1 - r0, keys]."""
    ranges = {v: (0, int(env[v.upper()])) for v in batch}
    ranges[form.query or "__q"] = (r0, r1)
    ranges[form.key] = (0, int(env[form.key.upper()]))
    space = _Space(list(batch) + [form.query or "__q", form.key], ranges)
    return np.broadcast_to(np.asarray(ev.value(pred, space, None, form.scores[0].einsum), bool), space.shape)


def mask_tiles(form: FusedForm, pass_: int, env: dict, cls: np.ndarray, batch: tuple, block_m: int,
               block_n: int, inputs: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The keep masks of the partial tiles of `cls` ([..batch.., row tiles,
    key tiles], the classes of the pass's one predicate), for a kernel that
    reads them rather than evaluates the predicate (TileProgram.
    uses_mask_table): (tiles, int8 [n, block_m, block_n], points past the
    ends 0; base, int32 [..batch.., row tiles], the first tile of each row
    tile's partial list, in the order of that list: key tiles ascending)."""
    (pred,) = dict.fromkeys(p for p in form.predicates(pass_) if p is not None)
    rows = 1 if form.query is None else int(env[form.query.upper()])
    cols = int(env[form.key.upper()])
    ev = _evaluator(form, env, {k: np.asarray(v) for k, v in (inputs or {}).items()})
    nb = int(np.prod(cls.shape[:-2]))
    flat = cls.reshape(nb, cls.shape[-2], cls.shape[-1])
    base = np.zeros(flat.shape[:2], np.int32)
    tiles, n = [], 0
    for r in range(flat.shape[1]):
        r0, r1 = r * block_m, min(rows, (r + 1) * block_m)
        pts = _points(form, env, ev, pred, batch, r0, r1).reshape(nb, r1 - r0, cols)
        pts = np.pad(pts, [(0, 0), (0, block_m - (r1 - r0)), (0, -cols % block_n)])
        for b in range(nb):
            base[b, r] = n
            for kt in np.flatnonzero(flat[b, r] == PARTIAL):
                tiles.append(pts[b, :, kt * block_n:(kt + 1) * block_n])
                n += 1
    out = np.stack(tiles).astype(np.int8) if tiles else np.zeros((1, block_m, block_n), np.int8)
    return out, base.reshape(cls.shape[:-1])


def _cell_sizes(n: int) -> np.ndarray:
    """Points of each cell along an axis of n: 16, ..., 16, the remainder."""
    return np.minimum(CELL, n - CELL * np.arange(-(-n // CELL))).astype(np.int64)


def _per_cell(a: np.ndarray) -> np.ndarray:
    """Kept points per 16 x 16 cell of a boolean [..., rows, cols] array
    (the classification of a 32K x 32K mask spends most of its time here)."""
    *lead, r, c = a.shape
    pr, pc = -r % CELL, -c % CELL
    if pr or pc:
        a = np.pad(a, [(0, 0)] * len(lead) + [(0, pr), (0, pc)])
    # a cell's row of 16 bools is two 8-byte words of 0/1 bytes: their bit count is its kept points
    a = np.ascontiguousarray(a, dtype=bool).view(np.uint64)
    a = np.bitwise_count(a.reshape(*lead, (r + pr) // CELL, CELL, (c + pc) // CELL, CELL // 8))
    return np.add.reduce(a[..., 0] + a[..., 1], axis=-2, dtype=np.int64)      # the cell's 16 rows


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


def launch_order(tiles: np.ndarray) -> np.ndarray:
    """The order the fused kernel launches its programs in, from the key
    tiles each visits (`tiles`: [batch, row tiles]): most tiles first, so
    the short programs fill the last wave (longest processing time first);
    ties keep batch coordinates in order, row tiles last first. Returns flat
    program indices b x rows + m. The kernel reads this permutation from
    its block table (codegen.runtime) and the GPU model schedules in it."""
    nb, rows = tiles.shape
    base = (np.arange(nb)[:, None] * rows + np.arange(rows)[::-1][None, :]).reshape(-1)
    return base[np.argsort(-tiles.reshape(-1)[base], kind="stable")]


def over_batch(a: np.ndarray, read: tuple, every: tuple, extents: dict) -> np.ndarray:
    """A table whose leading axes are the batch variables a predicate reads
    (`read`, in `every`'s order; none: one table for all) spread over every
    batch coordinate: [product of `extents` over `every`, *rest], the last
    variable fastest: the kernel's linear batch index (its `pid_b`)."""
    rest = list(a.shape[len(read):])
    a = a.reshape([int(extents[v]) if v in read else 1 for v in every] + rest)
    return np.broadcast_to(a, [int(extents[v]) for v in every] + rest).reshape([-1] + rest)

"""What a masked Einsum costs on an array that walks tiles: a tile of the
mapping (the extents its array axes hold along the predicate's variables)
with no kept point is skipped (the loop bounds leave it out, as a block
table would), a tile with some kept point is computed whole, its masked
points idling their PEs. So the time charged is for the points of the
visited tiles, not for the kept points alone.

Exact for a predicate that reads no tensor (causal, windows, natten's
canvas, block diffusion), or whose tensors' values are given
(`mask_values`: a document mask, global tokens): it is evaluated once over
its variables' grid (einsum_ir's executor), and the other variables
multiply kept and visited points alike. Otherwise (a mask whose tensors
have no values here, a grid over 2^26 points) `visited_factor` says why
not, and the kept points are charged (skipping at point granularity: a
lower bound), which the report states."""
from __future__ import annotations

import contextlib

import numpy as np

from einsum_ir.errors import EinError
from einsum_ir.execute import _Evaluator, _Space
from einsum_ir.ir import Access, index_vars, walk

LIMIT = 1 << 26
_CACHE: dict = {}
_VISITED: dict = {}       # (id of a kept grid, tile extents) -> (the grid, visited / kept)
_GIVEN: list = [{}, None]  # the values of the tensors masks read (mask_values), and their digest


@contextlib.contextmanager
def mask_values(values: dict | None):
    """Within it, masks that read these tensors (name -> array) are
    classified tile by tile from their values, as the GPU's block table is
    (attnc's --inputs); the entry points of the spatial model set it."""
    from einsum_ir.analysis.density import digest
    old = list(_GIVEN)
    _GIVEN[:] = [dict(values or {}), digest(values) if values else None]
    try:
        yield
    finally:
        _GIVEN[:] = old


def _reads(p) -> set[str]:
    return {n.tensor for n in walk(p) if isinstance(n, Access)}


def _kept(c, e, env: dict) -> tuple[tuple[str, ...], np.ndarray] | str:
    """(the predicate's variables, its kept grid over them), or why not."""
    p = e.predicate
    computed = sorted(_reads(p) - {t.name for t in c.inputs})
    if computed:
        return f"the predicate reads {', '.join(computed)}, computed by the cascade"
    missing = sorted(_reads(p) - set(_GIVEN[0]))
    if missing:
        return f"the predicate reads {', '.join(missing)}, whose values are not given (--inputs)"
    vs = tuple(index_vars(p))
    if not vs:
        return "the predicate has no variable"
    if any(v.upper() not in env for v in vs):
        return "an extent of its variables is not known here"
    sizes = [int(env[v.upper()]) for v in vs]
    if int(np.prod(sizes)) > LIMIT:
        return f"its grid of {int(np.prod(sizes)):,} points is too large to evaluate"
    key = (id(c), str(p), tuple((v, s) for v, s in zip(vs, sizes)), tuple(sorted((k, v) for k, v in env.items())),
           _GIVEN[1] if _reads(p) else None)
    hit = _CACHE.get(key)
    if hit is None or hit[0] is not c:
        space = _Space(list(vs), {v: (0, s) for v, s in zip(vs, sizes)})
        arrays = {t: np.asarray(_GIVEN[0][t]) for t in _reads(p)}
        try:
            value = _Evaluator(c, env, arrays, np.dtype("float64")).value(p, space, None, e)
        except EinError as err:         # e.g. a divisor of 0 at these shapes: the kept count stands
            return f"the predicate cannot be evaluated on its grid ({str(err).splitlines()[0]})"
        grid = np.broadcast_to(np.asarray(value, bool), tuple(sizes))
        if len(_CACHE) > 32:
            _CACHE.clear()
            _VISITED.clear()
        _CACHE[key] = hit = (c, vs, grid)
    return hit[1], hit[2]


def _visited_points(grid: np.ndarray, grains: tuple[int, ...]) -> int:
    """Points of the tiles of `grains` (clipped at the edges) with a kept point."""
    pad = [(0, -n % g) for n, g in zip(grid.shape, grains)]
    a = np.pad(grid, pad)
    shape = [x for n, g in zip(a.shape, grains) for x in (n // g, g)]
    hit = a.reshape(shape).any(axis=tuple(range(1, 2 * len(grains), 2)))
    sizes = [np.minimum(g, n - g * np.arange(-(-n // g))) for n, g in zip(grid.shape, grains)]
    per_tile = sizes[0]
    for more in sizes[1:]:
        per_tile = np.multiply.outer(per_tile, more)
    return int((per_tile * hit).sum())


def visited_factor(c, e, env: dict, grain) -> tuple[float, str | None]:
    """(visited points / kept points, None), or (1, why not exact). `grain`:
    variable -> the tile extent along it that the array holds at once."""
    got = _kept(c, e, env)
    if isinstance(got, str):
        return 1.0, got
    vs, grid = got
    grains = tuple(int(grain.get(v, 1)) for v in vs)
    key = (id(grid), grains)
    if key not in _VISITED or _VISITED[key][0] is not grid:
        kept = int(grid.sum())
        _VISITED[key] = (grid, _visited_points(grid, grains) / kept if kept else 1.0)
    return _VISITED[key][1], None

"""Data-dependent masks: the part of a predicate that reads tensors.

A condition such as `DQ[b, p] == DK[b, m]` (a document mask), `m < PRE[b]`
(a per-sequence prefix) or `abs(p - m) <= W or GQ[p] or GK[m]` (global
tokens) keeps points that only the tensors' values decide. The analyses
count them with a named fraction, a **density**:

    density_X = (points kept by the whole predicate)
                / (points kept by its index-only conditions)

over the box of the variables the data part reads and of the index-only
conditions tied to them (the partition's validity included). With this
definition the count `Kept[index-only conditions] x density_X` is exact by
construction, whatever the correlation between the mask and the other
conditions; `density_values` computes it exactly (a Rational) from given
tensors, so the formulas then give the exact counts.

Names: a bare bool tensor conjunct `where BM[...]` is `density_BM` (its
fraction of true entries when nothing else restricts the points); a data
part that is a named mask's is `density_<mask>`; otherwise the tensors read,
`density_DQ_DK`. The same data part under other index-only conditions is
another quantity and gets a suffix (`density_DOC_2`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np
import sympy

from ..ir import Access, Cascade, Einsum, Op, conjuncts, index_vars, rank_of, walk
from ..sym import predicate_to_sympy, shape_symbol


@dataclass(frozen=True)
class Density:
    """One named density: the data conjuncts, the index-only conjuncts it is
    conditioned on, the variables of its box, and the Einsums that use it."""

    name: str
    data: tuple
    given: tuple
    vars: tuple
    einsums: tuple

    @property
    def symbol(self) -> sympy.Symbol:
        return sympy.Symbol(self.name, positive=True)

    def meaning(self) -> str:
        """One line for reports: what fraction of which points."""
        data = _conjunction_text(self.data)
        among = f" among those with {_conjunction_text(self.given)}" if self.given else ""
        return f"fraction of the existing ({', '.join(self.vars)}) points{among} that `{data}` keeps"


def _conjunction_text(xs) -> str:
    """The conjuncts printed as one `and`, so a conjunct that is an `or`
    keeps its parentheses."""
    from ..printer import format_expr
    out = xs[0]
    for x in xs[1:]:
        out = Op("and", (out, x))
    return format_expr(out)


def reads_tensor(x) -> bool:
    return any(isinstance(n, Access) for n in walk(x))


def _and(xs):
    out = None
    for x in xs:
        out = x if out is None else Op("and", (out, x))
    return out


def _closure(c: Cascade, e: Einsum, data: list, index: list) -> tuple[tuple, tuple]:
    """The index-only conjuncts tied (through shared variables, transitively)
    to the data conjuncts, and the variables of the box they span, in the
    Einsum's order; a partitioned pair (m1, m0) joins as one."""
    from .points import _partition_conditions
    vs = set().union(*[index_vars(x) for x in data])
    pairs = [(vo, vi) for vo, vi, _, _ in _partition_conditions(c, e.iteration_vars)]
    given, rest = [], list(index)
    changed = True
    while changed:
        changed = False
        for vo, vi in pairs:
            if (vo in vs) != (vi in vs):
                vs |= {vo, vi}
                changed = True
        for x in list(rest):
            if set(index_vars(x)) & vs:
                given.append(x)
                rest.remove(x)
                vs |= set(index_vars(x))
                changed = True
    order = [v for v in e.iteration_vars if v in vs]
    return tuple(x for x in index if x in given), tuple(order)


def split(e: Einsum) -> tuple[list, list]:
    """(data conjuncts, index-only conjuncts) of the Einsum's predicate."""
    if e.predicate is None:
        return [], []
    cs = conjuncts(e.predicate)
    return [x for x in cs if reads_tensor(x)], [x for x in cs if not reads_tensor(x)]


_REGISTRY: dict = {}


def data_densities(c: Cascade) -> dict[str, Density]:
    """Every density of the cascade by name (empty for a design whose
    predicates read no tensor); the same for the same cascade object."""
    hit = _REGISTRY.get(id(c))
    if hit is not None and hit[0] is c:
        return hit[1]
    found: dict = {}        # key -> [data, given, vars, einsum names]
    for e in c.einsums:
        data, index = split(e)
        if not data:
            continue
        given, vs = _closure(c, e, data, index)
        key = (frozenset(data), frozenset(given), frozenset(vs))
        found.setdefault(key, [tuple(data), given, vs, []])[3].append(e.name)
    out: dict[str, Density] = {}
    for data, given, vs, names in found.values():
        base = _base_name(c, data)
        name, k = f"density_{base}", 1
        while name in out:
            k += 1
            name = f"density_{base}_{k}"
        out[name] = Density(name, data, given, vs, tuple(names))
    if len(_REGISTRY) > 64:
        _REGISTRY.clear()
    _REGISTRY[id(c)] = (c, out)
    return out


def _base_name(c: Cascade, data: tuple) -> str:
    if len(data) == 1 and isinstance(data[0], Access):
        return data[0].tensor
    for m in c.masks:
        if set(x for x in conjuncts(m.condition) if reads_tensor(x)) == set(data):
            return m.name
    names = dict.fromkeys(n.tensor for x in data for n in walk(x) if isinstance(n, Access))
    return "_".join(names)


def density_of(c: Cascade, e: Einsum) -> Density | None:
    """The density of `e`'s data conjuncts, or None when its predicate reads no tensor."""
    data, index = split(e)
    if not data:
        return None
    given, vs = _closure(c, e, data, index)
    for d in data_densities(c).values():
        if set(d.data) == set(data) and set(d.given) == set(given) and set(d.vars) == set(vs):
            return d
    raise AssertionError(f"no density registered for {e.name}")     # data_densities walks every Einsum


def index_sympy(index: list) -> list:
    return [predicate_to_sympy(x) for x in index]


# ------------------------------------------------------------ exact values from the tensors

def mask_arrays(c: Cascade, inputs: dict) -> dict:
    """The inputs that some predicate reads, as numpy arrays (torch tensors
    converted), by name."""
    read = {n.tensor for e in c.einsums if e.predicate is not None for n in walk(e.predicate)
            if isinstance(n, Access)}
    out = {}
    for k in read & set(inputs):
        v = inputs[k]
        out[k] = np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
    return out


def digest(arrays: dict) -> str:
    """A hash of the tensors' names, types, shapes and values: the cache key of
    anything computed from a mask's values."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


_VALUES: dict = {}
_CHUNK = 1 << 22


def density_values(c: Cascade, env: dict, inputs: dict) -> dict[str, Fraction]:
    """Each density of `c` counted exactly from the tensors in `inputs` at
    the extents `env`: kept points over points the index-only conditions
    keep (0 where those keep none). A mask that reads a computed tensor
    (not an input) is left out: its density stays a symbol to be given.
    Cached by the tensors' hash."""
    dens = data_densities(c)
    if not dens:
        return {}
    arrays = mask_arrays(c, inputs)
    inputs_of = {t.name for t in c.inputs}
    reads = {name: {n.tensor for x in d.data for n in walk(x) if isinstance(n, Access)} for name, d in dens.items()}
    dens = {k: d for k, d in dens.items() if reads[k] <= inputs_of}     # a mask on computed values stays a symbol
    missing = sorted(set().union(set(), *[reads[k] for k in dens]) - arrays.keys())
    if missing:
        from ..errors import ShapeError
        raise ShapeError(f"the masks of {c.name} read {', '.join(missing)}: give "
                         f"{'its' if len(missing) == 1 else 'their'} values to count them exactly")
    key = (id(c), tuple(sorted((k, int(v)) for k, v in env.items() if isinstance(v, (int, np.integer)))),
           digest(arrays))
    hit = _VALUES.get(key)
    if hit is not None and hit[0] is c:
        return dict(hit[1])
    out = {name: _count_density(c, d, env, arrays) for name, d in dens.items()}
    if len(_VALUES) > 64:
        _VALUES.clear()
    _VALUES[key] = (c, out)
    return dict(out)


def _count_density(c: Cascade, d: Density, env: dict, arrays: dict) -> Fraction:
    """kept / base over d's box: the kept points evaluated on the tensors'
    values (vectorised, in chunks of the box's longest variable), the base
    by the same symbolic count (Kept) the formulas multiply the density by,
    so that their product is the kept count exactly."""
    from ..execute import _Evaluator, _Space
    from .evaluate import evaluate
    from .points import _count, _partition_conditions
    e = next(x for x in c.einsums if x.name == d.einsums[0])
    ev = _Evaluator(c, env, {k: v if v.dtype == bool else v.astype(np.float64) for k, v in arrays.items()},
                    np.dtype("float64"))
    ns = {v: int(env[rank_of(v)]) for v in d.vars}
    extent = {v: shape_symbol(rank_of(v)) for v in d.vars}
    base = int(evaluate(_count(list(d.vars), extent, index_sympy(list(d.given)), [],
                               _partition_conditions(c, list(d.vars))), env))
    with_data = replace(e, predicate=_and(list(d.given) + list(d.data)))
    longest = max(d.vars, key=lambda v: ns[v])
    step = max(1, _CHUNK // max(1, int(np.prod([n for v, n in ns.items() if v != longest]))))
    kept = 0
    for lo in range(0, ns[longest], step):
        ranges = {v: (0, n) for v, n in ns.items()}
        ranges[longest] = (lo, min(ns[longest], lo + step))
        space = _Space(list(d.vars), ranges)
        m = ev.mask(with_data, space)
        kept += int(np.prod(space.shape)) if m is None else int(np.count_nonzero(np.broadcast_to(m, space.shape)))
    return Fraction(kept, base) if base else Fraction(0)


__all__ = ["Density", "data_densities", "density_of", "density_values", "digest", "mask_arrays"]

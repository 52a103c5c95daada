"""Pass 1 of the spatial model: the iteration space and its tiling.

`space` applies the mapping's variant for the shapes, resolves every shape,
and checks that each Einsum with work is bound to a unit that can run it
and placed in the nest. `tiling` then gives each factor of the mapping an
extent (a `fit` factor: the largest divisor whose kept tiles fit the global
buffer) and the buffer occupancy. Both results are frozen; later passes
read them and never change them."""
from __future__ import annotations

from dataclasses import dataclass, field
from math import ceil, prod

import sympy

from einsum_ir import Cascade
from einsum_ir.ir import Access, computed_index, walk
from einsum_ir.shapes import resolve
from einsum_ir.sym import shape_symbol
from hw_models.schema import HardwareError
from hw_models.spatial import SpatialArray
from mappers.mapping import IN_PE, STREAMED, Keep, Leaf, Mapping, check_names

from .facts import facts, ops_per_point  # the array's operations: compile-time constants folded

PE_LEVEL, STREAM = IN_PE, STREAMED


def views(c: Cascade) -> dict[str, str]:
    """Einsums that only re-index an input (BK[.., m1, m0] = K[.., m1*M0+m0]):
    the same data, so their reads count as reads of the input."""
    inputs = {t.name for t in c.inputs}
    return {e.name: e.expr.tensor for e in c.einsums
            if isinstance(e.expr, Access) and not e.reduced and e.predicate is None and e.expr.tensor in inputs
            and e.scan is None}


@dataclass(frozen=True)
class Space:
    """The cascade's iteration space under a mapping: the mapping with its
    variant applied, the resolved shapes, and the Einsums and tensors the
    model costs (views folded into the inputs they re-index)."""

    cascade: Cascade
    mapping: Mapping
    env: dict = field(hash=False)
    views: dict = field(hash=False)
    einsums: tuple
    tensors: tuple
    ops: dict = field(hash=False)        # Einsum -> operations per point

    def base(self, tensor: str) -> str:
        return self.views.get(tensor, tensor)


def refuse_gathers(c: Cascade) -> None:
    """The spatial model's buffers hold tiles of ranks walked in order; a
    gather (`KC[h, e, PAGE[b, m / PS] * PS + m % PS]`, `OFF[DOC[p]]`) reads
    elements the data chooses, which no tile of the nest describes: refused,
    naming the read, rather than costed as if it were a plain stream."""
    for e in c.einsums:
        for a in e.reads():
            for i in a.indices:
                g = next((n for n in walk(i) if isinstance(n, Access)), None)
                if g is not None:
                    raise HardwareError(f"{c.name}: the spatial model cannot map {e.name}: it reads {a} through "
                                        f"the gather {g} (an index given by data); gathers are modelled on GPUs "
                                        "only (attnc map --hw h100, docs/gpu.md)", a.loc, c.source)
                if computed_index(i):      # clip, select, floor(...): a position no tile of the nest walks
                    raise HardwareError(f"{c.name}: the spatial model cannot map {e.name}: it reads {a} at the "
                                        f"computed index {i}; computed indices, like gathers, are modelled on "
                                        "GPUs only (attnc map --hw h100, docs/gpu.md)", a.loc, c.source)


def space(c: Cascade, m: Mapping, hw: SpatialArray, shapes: dict) -> Space:
    refuse_gathers(c)
    m = m.for_shapes(shapes)
    shapes = dict(shapes)
    own = {f: e for _, parts in m.factors for f, e in parts if isinstance(e, int) and any(r.name == f for r in c.ranks)}
    for f, e in own.items():
        if f in shapes and shapes[f] != e:
            raise m.node.error(f"the mapping sets {f} = {e}, but the shapes give {f} = {shapes[f]}")
    shapes.update(own)
    env = dict(resolve(c, shapes))
    vs = views(c)
    einsums = tuple(e for e in c.einsums if not e.is_initial and e.name not in vs)
    ops = {e.name: ops_per_point(e) for e in einsums}
    check_names(m, c, hw)
    _check_placement(c, m, hw, einsums, ops)
    keep = dict(m.keep)
    for t in c.tensors:
        if t.role in ("input", "output") and t.name not in keep:
            raise m.node.error(f"`keep` must say where {t.role} {t.name} is kept (a loop variable, or stream)")
    return Space(c, m, env, vs, einsums, tuple(t for t in c.tensors if t.name not in vs), ops)


def _check_placement(c: Cascade, m: Mapping, hw: SpatialArray, einsums, ops) -> None:
    """Every Einsum with work bound to a unit that can run it and run in the nest."""
    for e in einsums:
        if not ops[e.name]:
            continue
        u = m.unit_of(e.name)
        if u is None:
            raise m.node.error(f"Einsum {e.name} ({', '.join(ops[e.name])}) is bound to no unit in `binding`")
        missing = hw.unit(u).missing(ops[e.name])
        if missing:
            raise m.node.error(f"Einsum {e.name} needs {', '.join(missing)}, which unit {u} of {hw.name} "
                               f"cannot perform")
        if m.leaf_of(e.name) is None:
            raise m.node.error(f"Einsum {e.name} is not in the nest (no `run` lists it)")


@dataclass(frozen=True)
class Nest:
    """Loop variables of the mapping resolved against the cascade: the rank
    each one splits and its extent, in the number type `num`."""

    cascade: str
    mapping: str
    root_of: dict = field(hash=False)
    factors: dict = field(hash=False)
    num: object = None

    def extent(self, var: str):
        up = var.upper()
        if up in self.factors:
            return self.factors[up]
        if self.num.knows(up):
            return self.num.shape(up)
        raise HardwareError(f"mapping {self.mapping}: loop variable {var} is neither a rank of "
                            f"{self.cascade} nor a factor in `factors`")

    def ranks_of(self, var: str) -> set[str]:
        """The ranks a loop over `var` moves along: its own and the rank it splits."""
        out = {var.upper()}
        if var in self.root_of:
            out.add(self.root_of[var])
        return out

    def indexes(self, tensor_ranks, var: str) -> bool:
        return bool(self.ranks_of(var) & set(tensor_ranks))

    @staticmethod
    def spatial_vars(leaf: Leaf) -> set[str]:
        return {v for _, axes in leaf.spatial for v in axes}


def nest(c: Cascade, m: Mapping, factors: dict, num) -> Nest:
    root_of = {f.lower(): rank for rank, parts in m.factors for f, _ in parts}
    for r in c.ranks:
        if r.parent is not None:
            root_of.setdefault(r.name.lower(), r.parent)
    return Nest(c.name, m.name, root_of, dict(factors), num)


def symbolic_factors(m: Mapping) -> dict:
    """Each factor as a formula: a number, a symbol for `fit`, and
    ceiling(rank / the others) for `rest`."""
    extent = {}
    for rank, parts in m.factors:
        fixed = sympy.Integer(1)
        for f, e in parts:
            if e != "rest":
                extent[f] = sympy.Integer(e) if isinstance(e, int) else shape_symbol(f)
                fixed *= extent[f]
        for f, e in parts:
            if e == "rest":
                extent[f] = sympy.ceiling(shape_symbol(rank) / fixed)
    return extent


# ------------------------------------------------------------------ kept tiles and the buffer

def tile_elems(s: Space, t, keep: Keep, n: Nest):
    """Elements of t's tile kept under its loop (the largest over the leaves
    that touch t); symbolic for the spatial mapper's occupancy formulas."""
    if not keep.in_buffer:
        return 0
    level = keep.loop
    best = 0
    touches = facts(s.cascade).touches
    for lf in s.mapping.leaves:
        if not any(t.name in touches.get(name, ()) for name in lf.run):
            continue
        if level not in lf.loops:
            raise s.mapping.node.error(f"{t.name} is kept under loop {level}, which does not enclose the Einsums "
                                       f"{', '.join(lf.run)} that use it")
        inside = set(lf.loops[lf.loops.index(level) + 1:]) | n.spatial_vars(lf)
        moves = {v: n.ranks_of(v) for v in inside | set(lf.loops[:lf.loops.index(level) + 1])}
        elems = 1
        for r in t.ranks:
            if r in t.iterative:
                continue            # updated in place: one iterate
            split = [v for v, ranks in moves.items() if r in ranks]
            elems *= n.num.shape(r) if not split else prod(n.extent(v) for v in split if v in inside)
        best = n.num.max(best, elems)        # symbolic shapes: a sympy Max, never a Python comparison
    return best


def kept_bytes(s: Space, n: Nest, word: int) -> dict:
    """Bytes of each tensor's kept tile (0 for tensors not kept in the buffer)."""
    return {t.name: tile_elems(s, t, s.mapping.keep_of(t.name), n) * word for t in s.tensors}


def _fits(s: Space, hw: SpatialArray, factors: dict, explain: bool = False) -> bool:
    from .numbers import Numeric
    kept = kept_bytes(s, nest(s.cascade, s.mapping, factors, Numeric(s.env)), hw.word_bytes)
    used = sum(kept.values())
    if used <= min(hw.buffer.capacity_bytes, s.mapping.fit_budget or hw.buffer.capacity_bytes):
        return True
    if explain:
        parts = ", ".join(f"{t.name} {kept[t.name]:.0f}" for t in s.tensors if s.mapping.keep_of(t.name).in_buffer)
        raise s.mapping.node.error(f"no tile fits the {hw.buffer.capacity_bytes} B global buffer of {hw.name}: "
                                   f"even the smallest needs {used:.0f} B ({parts})")
    return False


def factor_extents(s: Space, m: Mapping, fit) -> dict[str, int]:
    """Numbers for the factors of `m`: `rest` is ceil(rank / the others); a
    `fit` factor the largest divisor of what is left for which `fit` holds."""
    out: dict[str, int] = {}
    pending = []
    for rank, parts in m.factors:
        if rank not in s.env:
            raise HardwareError(f"mapping {m.name} splits rank {rank}, which {s.cascade.name} does not have")
        n = int(s.env[rank])
        fixed = prod(e for _, e in parts if isinstance(e, int))
        out.update({f: e for f, e in parts if isinstance(e, int)})
        fits = [f for f, e in parts if e == "fit"]
        rest = [f for f, e in parts if e == "rest"]
        if fits:
            pending.append((n, fixed, fits[0], rest[0] if rest else None))
        elif rest:
            out[rest[0]] = max(1, ceil(n / fixed))
    for n, fixed, f, rest in pending:
        remaining = max(1, ceil(n / fixed))
        chosen = None
        for d in _divisors_descending(remaining):
            trial = dict(out, **{f: d}, **({rest: remaining // d} if rest else {}))
            if fit(trial):
                chosen = trial
                break
        if chosen is None:
            fit(dict(out, **{f: 1}, **({rest: remaining} if rest else {})), explain=True)
        out = chosen
    return out


@dataclass(frozen=True)
class Tiling:
    """Factor extents, the nest over them, and the global buffer's use."""

    factors: dict = field(hash=False)
    nest: Nest = None
    kept_bytes: dict = field(hash=False, default_factory=dict)   # tensor -> bytes of its kept tile
    buffer_bytes: float = 0.0
    min_buffer_bytes: float = 0.0       # with every `fit` factor at 1: the working set the dataflow needs


def tiling(s: Space, hw: SpatialArray) -> Tiling:
    from .numbers import Numeric
    m = s.mapping
    fit = lambda f, explain=False: _fits(s, hw, f, explain)   # noqa: E731
    factors = factor_extents(s, m, fit)
    no_fit = m.with_changes(factors=tuple((r, tuple((f, 1 if e == "fit" else e) for f, e in parts))
                                          for r, parts in m.factors))
    smallest = factor_extents(s, no_fit, None)
    num = Numeric(s.env)
    n = nest(s.cascade, m, factors, num)
    kept = kept_bytes(s, n, hw.word_bytes)
    used = sum(kept.values())
    if used > hw.buffer.capacity_bytes and not m.spill:
        fit(factors, explain=True)
    least = sum(kept_bytes(s, nest(s.cascade, m, smallest, num), hw.word_bytes).values())
    return Tiling(factors, n, kept, used, least)


def _divisors_descending(n: int) -> list[int]:
    """The divisors of n, largest first, in O(sqrt(n)) (a length of 2**36
    took 16 s by trial division of every candidate)."""
    small = [d for d in range(1, int(n ** 0.5) + 1) if n % d == 0]
    return sorted(set(small) | {n // d for d in small}, reverse=True)

"""The mapping space of a cascade on a spatial array (docs/mapper.md).

A point of the space is a `Candidate`: tile factors (the key rank's tile
`k0`, the row rank's array tile `q0` and temporal count `q1`), the loop
order of the key and row loops, the unit that runs each Einsum (only units
that can perform its operations), the ranks on each unit's array axes per
leaf, and where each tensor is kept (a loop of the nest, `stream`, `dram`,
or PE registers). The nest itself follows from the pass analysis
(`einsum_ir.analysis.passes` over the sequence rank): one leaf per pass,
so a leaf never spans a pass boundary, and one leaf per group of Einsums
outside any pass, after the passes whose results they read. The critical
path follows from the binding and the dependencies (`mappers.stages`),
never written by hand. `to_mapping` writes the candidate as the YAML text
of a mapping file and loads it (`mappers.mapping.parse_mapping`), so every
candidate is a typed Mapping that `simulator.analytical.simulate` accepts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

from einsum_ir import Cascade
from einsum_ir.analysis import passes, sequence_rank
from einsum_ir.ir import Sym, accesses, index_vars, offset_of, walk
from einsum_ir.shapes import resolve
from hw_models.schema import HardwareError
from hw_models.spatial import SpatialArray

from .mapping import Mapping, parse_mapping


class MapperError(HardwareError):
    """A design the mapper cannot place on the hardware, and why."""


PE, STREAM, DRAM = "pe", "stream", "dram"


@dataclass(frozen=True)
class LeafPlan:
    """Einsums that run together: one pass over the key rank, or Einsums
    outside any pass (between two passes, or after the last one)."""

    run: tuple[str, ...]
    in_pass: bool


@dataclass(frozen=True)
class Roles:
    """What the space is built from: the key (sequence) rank and its split,
    the row rank (queries), the batch ranks, the leaves, the units each
    Einsum can run on, and the dependencies between Einsums."""

    cascade: Cascade = field(repr=False)
    hw: SpatialArray = field(repr=False)
    shapes: dict = field(hash=False)
    env: dict = field(hash=False)
    key: str
    key_names: tuple[str, str]       # (outer, inner) factor names of the key rank
    key_declared: bool               # the cascade itself partitions the key rank
    key_split: bool                  # False: the key rank is a recurrence's variable, not split
    row: str | None
    row_names: tuple[str, str, str]  # (outer, temporal, array) factor names of the row rank
    batch: tuple[str, ...]
    leaves: tuple[LeafPlan, ...]
    work: tuple[str, ...]            # Einsums with operations
    units: dict = field(hash=False)  # Einsum -> units that can run it
    deps: dict = field(hash=False)   # Einsum -> {producer: 'same' | 'previous' | 'last'}
    views: dict = field(hash=False)  # view Einsum -> the input it re-indexes
    memo: dict = field(default_factory=dict, hash=False, compare=False, repr=False)  # per-leaf/tensor answers

    def leaf_of(self, einsum: str) -> int:
        return next(i for i, lf in enumerate(self.leaves) if einsum in lf.run)

    @property
    def main(self) -> int:
        """The leaf with the most Einsums with work (the model's epochs)."""
        counts = [sum(1 for e in lf.run if e in self.work) for lf in self.leaves]
        return counts.index(max(counts))


@dataclass(frozen=True)
class Candidate:
    """One point of the mapping space."""

    k0: int
    q0: int
    q1: int
    order: str                                       # 'kq': key loop outside the row loop; 'qk': inside
    binding: tuple[tuple[str, str], ...]
    axes: tuple[tuple[int, str, tuple[str, ...]], ...]   # (leaf, unit, loop variables on its axes)
    keep: tuple[tuple[str, str], ...]                # tensor -> loop variable | stream | dram | pe
    path: str | None = None                          # the derived critical path (epochs)

    def unit_of(self, e: str) -> str:
        return dict(self.binding)[e]


# ------------------------------------------------------------------ roles

def _fresh(c: Cascade, base: str, suffixes) -> tuple[str, ...]:
    taken = {r.name for r in c.ranks} | {r.name.lower() for r in c.ranks}
    for tag in ("", "T", "X", "Y"):
        names = tuple(f"{base}{tag}{s}" for s in suffixes)
        if not any(n in taken or n.lower() in taken for n in names):
            return names
    raise MapperError(f"cannot name the factors of rank {base}: every candidate name is a rank of {c.name}")


def ops_per_point(e):
    """The operations a unit must perform for one point of `e`: the spatial
    model's count, compile-time constants folded (simulator.facts.fold)."""
    from simulator.facts import ops_per_point as array_ops
    return array_ops(e)


def check_units(c: Cascade, hw: SpatialArray) -> dict[str, tuple[str, ...]]:
    """Einsum -> the units that can perform all its operations; an Einsum no
    unit can run is an error naming it and the operations missing."""
    out = {}
    for e in c.einsums:
        ops = ops_per_point(e)
        if e.is_initial or not ops:
            continue
        able = tuple(u for u, unit in hw.units.items() if not unit.missing(ops))
        if not able:
            lacks = "; ".join(f"{u} lacks {', '.join(unit.missing(ops))}" for u, unit in hw.units.items())
            raise MapperError(f"Einsum {e.name} ({', '.join(sorted(ops))}) cannot run on {hw.name}: no unit "
                              f"performs {', '.join(sorted(set.intersection(*(set(u.missing(ops)) for u in hw.units.values()))) or 'all of them together')} "
                              f"({lacks})", e.loc, c.source)
        out[e.name] = able
    return out


def can_pipeline(r: "Roles", einsum: str, unit: str) -> bool:
    """An Einsum issues a point every max(...) cycles instead of the sum
    (`pipelined`) on a unit where its operations are of several kinds, each
    done by a unit of its own in the PE (FLAT's 1D array: a subtraction
    feeding the exp unit); an operation written as others (FuseMax's exp as
    six MACs) occupies them, so it never pipelines."""
    key = ("pipeline", einsum, unit)
    if key not in r.memo:
        e = next(x for x in r.cascade.einsums if x.name == einsum and not x.is_initial)
        kinds = [k for k, n in ops_per_point(e).items() if n]
        u = r.hw.unit(unit)
        r.memo[key] = len(kinds) > 1 and all(k in u.ops and not u.ops[k].composed_of for k in kinds)
    return r.memo[key]


def pipelined(r: "Roles", binding) -> tuple[str, ...]:
    """The Einsums of a binding that pipeline on their units (always at
    least as fast, the same energy: never a choice worth searching)."""
    return tuple(e for e, u in binding if can_pipeline(r, e, u))


def dependencies(c: Cascade, views: dict) -> dict[str, dict[str, str]]:
    """Einsum -> producer -> how it reads the producer's output: 'same'
    (the iterate just written, or a plain tensor), 'previous' (an earlier
    iterate of a recurrence: the next tile reads it) or 'last' (the final
    iterate, after the whole traversal). Einsums without operations are
    looked through."""
    writers = {e.name: e for e in c.einsums if not e.is_initial}
    work = {e.name for e in writers.values() if ops_per_point(e)}
    out: dict[str, dict[str, str]] = {}
    for e in writers.values():
        found: dict[str, str] = {}
        todo = [(a, None) for a in e.reads()]
        seen = set()
        while todo:
            a, how = todo.pop()
            w = writers.get(a.tensor)
            if w is None or a.tensor in views or w.name == e.name and how is None and _previous(w, a):
                continue
            kind = how or _read_kind(c, w, a)
            if w.name in work:
                if w.name != e.name:
                    found[w.name] = kind if found.get(w.name, kind) == kind else "same"
            elif w.name not in seen:
                seen.add(w.name)
                todo.extend((b, kind) for b in w.reads())
        out[e.name] = found
    return out


def _previous(w, a) -> bool:
    v = w.iterative_var
    return bool(v) and v in index_vars(a) and not any(offset_of(i) == (v, 1) for i in a.indices)


def _read_kind(c: Cascade, w, a) -> str:
    v = w.iterative_var
    if not v:
        return "same"
    if _previous(w, a):
        return "previous"
    if v not in index_vars(a) and not any(offset_of(i) == (v, 1) for i in a.indices):
        return "last"
    return "same"


def _leaves(c: Cascade, key_passes: dict, deps: dict, views: dict) -> tuple[LeafPlan, ...]:
    """One leaf per pass; Einsums outside any pass after the last pass they depend on."""
    names = [e.name for e in c.einsums if not e.is_initial and e.name not in views]
    slot: dict[str, tuple[int, bool]] = {}
    for n in names:          # cascade order is a dependency order
        p = key_passes.get(n, 0)
        if p:
            slot[n] = (p, True)
        else:
            after = max([slot[d][0] for d in deps.get(n, {}) if d in slot] + [0])
            slot[n] = (after, False)
    groups: dict[tuple[int, bool], list[str]] = {}
    for n in names:
        groups.setdefault(slot[n], []).append(n)
    order = sorted(groups, key=lambda k: (k[0], not k[1]))
    return tuple(LeafPlan(tuple(groups[k]), k[1]) for k in order)


def roles(c: Cascade, hw: SpatialArray, shapes: dict) -> Roles:
    """The roles of the cascade's ranks and its leaves at `shapes`."""
    units = check_units(c, hw)
    from simulator.tiling import refuse_gathers, views as _views
    refuse_gathers(c)
    views = _views(c)
    key = sequence_rank(c)
    pr = passes(c, key)
    if pr.passes is None:
        raise MapperError(f"{c.name} cannot be mapped: {pr.unstreamable}")
    inner_parts = [x.name for x in c.ranks if x.parent == key and x.part == "inner"]
    env = dict(resolve(c, dict(shapes) | {p: 1 for p in inner_parts if p not in shapes}))
    deps = dependencies(c, views)
    declared = len(c.parts(key)) > 1
    if declared:
        outer = next(x.name for x in c.ranks if x.parent == key and x.part == "outer")
        key_names = (outer, c.inner_of(outer))
    else:
        key_names = _fresh(c, key, ("1", "0"))
    iter_vars = {e.iterative_var for e in c.einsums if e.iterative_var}
    key_split = declared or key.lower() not in iter_vars
    reduced = {c.rank(r).parent or r for e in c.einsums for r in (v.upper() for v in e.reduced) if _has(c, r)}
    reduced |= {c.rank(r).parent or r for e in c.einsums if e.scan for r in [e.scan.var.upper()] if _has(c, r)}  # a scan's rank is no independent row
    in_out = {r for t in c.outputs for r in t.ranks}
    roots = [r.name for r in c.ranks if r.parent is None and r.name != key and not _alias(c, r)]
    its = [{c.rank(v.upper()).parent or v.upper() for v in e.iteration_vars if _has(c, v.upper())}
           for e in c.einsums if e.name in units]
    free = [r for r in roots if r not in reduced and r in in_out and all(r in s for s in its)]
    row = max(free, key=lambda r: (int(env.get(r, 1)), -roots.index(r))) if free else None
    if row is not None and int(env.get(row, 1)) <= 1:
        row = None
    # a batch rank splits the problem into independent copies: it indexes every input
    # along the sequence (Q, K, V have B and H; a slope per head does not count); a
    # free rank such an input lacks (a GEMM's output columns) runs along an axis or in
    # the PEs instead, never as an outer loop re-reading that input. A tensor only a
    # mask reads (document ids DOC[b, p], global-token flags G[p]) is broadcast over
    # the heads: re-reading it per head is cheap, so it does not take H off the batch
    seq = set(c.parts(key)) | {key} | ({row} | set(c.parts(row)) if row else set())
    masks_only = ({a.tensor for e in c.einsums if e.predicate is not None for a in accesses(e.predicate)}
                  - {a.tensor for e in c.einsums for a in accesses(e.expr)})
    inputs = [t for t in c.tensors if t.role == "input" and seq & set(t.ranks) and t.name not in masks_only]
    batch = tuple(r for r in free if r != row and all(r in t.ranks for t in inputs))
    row_names = _fresh(c, row, ("2", "1", "0")) if row else ("", "", "")
    work = tuple(n for n in units)
    return Roles(c, hw, dict(shapes), env, key, key_names, declared, key_split, row, row_names, batch,
                 _leaves(c, pr.einsum_pass, deps, views), work, units, deps, views)


def _alias(c: Cascade, r) -> bool:
    """A rank defined through another rank (`rank M = P`, a repeated rank,
    `KH = H / G`): no independent row. A rank defined by symbols alone
    (`rank P = CH * CW`, a canvas) is a rank of its own and can be one."""
    return r.definition is not None and any(isinstance(n, Sym) and _has(c, n.name) for n in walk(r.definition))


def _has(c: Cascade, r: str) -> bool:
    return any(x.name == r for x in c.ranks)


# ------------------------------------------------------------------ loops and axes

def tile_vars(r: Roles, leaf: int) -> tuple[str, ...]:
    """The tile variables (key tile, row tile) the leaf's Einsums iterate:
    each lies along an array axis or is a temporal loop of the leaf."""
    opts = axis_options(r, leaf)
    out = []
    if r.leaves[leaf].in_pass and r.key_split and r.key_names[1].lower() in opts:
        out.append(r.key_names[1].lower())
    if r.row and r.row_names[2].lower() in opts:
        out.append(r.row_names[2].lower())
    return tuple(out)


def uncovered(r: Roles, cand_axes, leaf: int) -> tuple[str, ...]:
    """Tile variables of the leaf on no array axis: innermost temporal loops."""
    on = {v for i, _, vs in cand_axes if i == leaf for v in vs}
    return tuple(v for v in tile_vars(r, leaf) if v not in on)


def loop_vars(r: Roles, leaf: int, order: str, inner: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The temporal loops of a leaf, outermost first (`inner`: tile
    variables on no array axis, innermost)."""
    return _loops(r, leaf, order) + tuple(inner)


def _loops(r: Roles, leaf: int, order: str) -> tuple[str, ...]:
    outer = tuple(b.lower() for b in r.batch) + ((r.row_names[0].lower(),) if r.row else ())
    q = (r.row_names[1].lower(),) if r.row else ()
    if not r.leaves[leaf].in_pass:
        return outer + q
    k = (r.key_names[0].lower(),) if r.key_split else (r.key.lower(),)
    return outer + (k + q if order == "kq" else q + k)


def _iterated(r: Roles, leaf: int, unit: str, binding: dict) -> set[str]:
    its = set()
    for e in r.leaves[leaf].run:
        if binding.get(e) == unit:
            its |= {v.upper() for v in next(x for x in r.cascade.einsums if x.name == e and not x.is_initial)
                    .iteration_vars}
    return its


def axis_options(r: Roles, leaf: int) -> list[str]:
    """Loop variables that can lie along an array axis in this leaf: the key
    tile (not a recurrence's variable), the row tile, and other ranks the
    leaf's Einsums iterate that are not batch, key or row ranks (E, F)."""
    key = ("axis_options", leaf)
    if key not in r.memo:
        r.memo[key] = _axis_options(r, leaf)
    return list(r.memo[key])


def _axis_options(r: Roles, leaf: int) -> list[str]:
    lf = r.leaves[leaf]
    out = []
    its = set()
    recur = set()
    for e in r.cascade.einsums:
        if e.name in lf.run and not e.is_initial:
            its |= {v.upper() for v in e.iteration_vars}
            if e.iterative_var:
                recur.add(e.iterative_var.upper())
    if lf.in_pass and r.key_split and (r.key_names[1] in its or r.key in its) and r.key_names[1] not in recur:
        out.append(r.key_names[1].lower())
    if r.row and r.row in its:
        out.append(r.row_names[2].lower())
    family = set(r.cascade.parts(r.key)) | set(r.batch) | ({r.row} if r.row else set())
    for x in r.cascade.ranks:
        if x.name in its and x.name not in family and x.name not in recur and x.parent is None \
                and x.name.lower() not in out:
            out.append(x.name.lower())
    return out


def axes_choices(r: Roles, leaf: int, unit: str) -> list[tuple[str, ...]]:
    """Assignments of loop variables to the unit's axes (distinct variables;
    fewer variables than axes leaves an axis on one PE)."""
    opts = axis_options(r, leaf)
    dims = len(r.hw.unit(unit).shape)
    if dims == 1:
        return [(v,) for v in opts] or [()]
    square = len(set(r.hw.unit(unit).shape)) == 1
    pairs = [(a, b) for a in opts for b in opts if a != b and (not square or opts.index(a) < opts.index(b))]
    return pairs or [(v,) for v in opts] or [()]


# ------------------------------------------------------------------ keep levels

def users(r: Roles, tensor: str) -> list[int]:  # noqa: D103
    """Leaves whose Einsums read or write `tensor` (views read their input)."""
    if ("users", tensor) in r.memo:
        return list(r.memo[("users", tensor)])
    out = []
    for i, lf in enumerate(r.leaves):
        for e in r.cascade.einsums:
            if e.name in lf.run and not e.is_initial:
                names = {a.tensor for a in e.reads()} | {e.name}
                names |= {r.views[n] for n in names if n in r.views}
                if tensor in names:
                    out.append(i)
                    break
    r.memo[("users", tensor)] = tuple(out)
    return out


def keep_options(r: Roles, tensor: str, order: str) -> list[str]:
    """Where a tensor may be kept: a loop common to every leaf that uses it
    (outside the key loop for a recurrence's state carried across key
    tiles), `stream` for inputs and outputs, `dram` for an intermediate,
    PE registers for an intermediate used in one leaf and not carried."""
    t = r.cascade.tensor(tensor)
    leaves = users(r, tensor)
    if not leaves:
        return [STREAM] if t.role in ("input", "output") else [PE]
    loops = [loop_vars(r, i, order) for i in leaves]
    common = []
    for vs in zip(*loops):
        if len(set(vs)) > 1:
            break
        common.append(vs[0])
    nb = len(r.batch)
    if len(leaves) > 1:                    # sibling leaves share only the outer loops
        common = common[:nb + (1 if r.row else 0)]
    levels = common[max(0, nb - 1):]
    carried = bool(t.iterative) and r.key_split is not None and len(leaves) == 1
    kvar = r.key_names[0].lower() if r.key_split else r.key.lower()
    if carried and kvar in levels:
        inner = levels[levels.index(kvar) + 1:]
        levels = levels[:levels.index(kvar)]
        if not inner:                      # the key loop is innermost: the state may stay in the PEs
            levels = levels + [PE]
    out = list(levels)
    if t.role in ("input", "output"):
        out.append(STREAM)
    elif len(leaves) > 1:
        out.append(DRAM)
    elif not t.iterative:
        return [PE]                        # used in one leaf only: passed between PEs, nothing kept
    return out or [DRAM]


def keep_tensors(r: Roles) -> list[str]:
    return [t.name for t in r.cascade.tensors if t.name not in r.views]


# ------------------------------------------------------------------ the candidate as a mapping file

def reread(r: Roles, cand: Candidate) -> list[str]:  # noqa: C901
    """Tensors an array reads from the buffer at every use: read in a leaf
    whose loops inside the innermost one that indexes it do not index it
    (holding it across them would need the whole tile in every PE)."""
    from simulator.tiling import nest as _nest
    out = []
    keep = dict(cand.keep)
    for name in keep_tensors(r):
        if keep.get(name) in (PE, DRAM, None) and r.cascade.tensor(name).role not in ("input", "output"):
            continue
        t = r.cascade.tensor(name)
        ranks = set(t.ranks)
        for i in users(r, name):
            vs = loop_vars(r, i, cand.order, uncovered(r, cand.axes, i))
            idx = [k for k, v in enumerate(vs) if _moves(r, v) & ranks]
            inner = idx[-1] if idx else -1
            if any(not (_moves(r, v) & ranks) for v in vs[inner + 1:]):
                out.append(name)
                break
    return out


def _moves(r: Roles, var: str) -> set[str]:
    up = var.upper()
    if r.row and up in r.row_names:
        return {up, r.row}
    if up in r.key_names:
        return {up, r.key}
    return {up}


def cascade_label(c: Cascade, hardware: str) -> str:
    """The mapping file's `cascade`: the design's name, unless a library design
    of that name is another design (the corpus' `sliding-window` is not the
    library's): a mapping naming a library design is checked against it at
    load, so such a design is labelled apart."""
    from .mapping import library_pair
    lib = library_pair(c.name, hardware)
    if lib is None or str(lib[0]) == str(c):
        return c.name
    return f"{c.name} (not the library design)"


def to_yaml(r: Roles, cand: Candidate, name: str = "auto") -> str:
    """The candidate as the text of a mapping file."""
    import json
    q = lambda x: json.dumps(x)    # noqa: E731  (JSON strings are YAML flow scalars)
    lines = [f"# Found by attnc's spatial mapper (mappers/spatial_search.py) for {r.cascade.name} on {r.hw.name}",
             f"# at {' '.join(f'{k}={v}' for k, v in r.shapes.items())}.",
             f"name: {q(name)}", f"doc: {q('automatic mapping of ' + r.cascade.name)}",
             f"cascade: {q(cascade_label(r.cascade, r.hw.name))}", f"hardware: {q(r.hw.name)}", "factors:"]
    if r.key_split:
        lines.append(f"  {r.key}: {{{r.key_names[0]}: rest, {r.key_names[1]}: {cand.k0}}}")
    if r.row:
        lines.append(f"  {r.row}: {{{r.row_names[0]}: rest, {r.row_names[1]}: {cand.q1}, "
                     f"{r.row_names[2]}: {cand.q0}}}")
    if lines[-1] == "factors:":             # no rank split (a recurrence walks its own rank): none
        lines[-1] = "factors: {}"
    lines.append("nest:")
    axes = {(i, u): vs for i, u, vs in cand.axes}
    binding = dict(cand.binding)
    shared = len(r.batch) + (1 if r.row else 0)        # the loops every leaf shares
    lines.append(f"  - for: [{', '.join(_loops(r, 0, cand.order)[:shared])}]")
    lines.append("    body:")
    for i, lf in enumerate(r.leaves):
        run = [e for e in lf.run]
        own = loop_vars(r, i, cand.order, uncovered(r, cand.axes, i))[shared:]
        lines.append(f"      - for: [{', '.join(own)}]")
        used = sorted({binding[e] for e in run if e in binding})
        par = [f"{u}: [{', '.join(axes.get((i, u), ()))}]" for u in used if axes.get((i, u))]
        if par:
            lines.append(f"        parfor: {{{', '.join(par)}}}")
        lines.append(f"        run: [{', '.join(run)}]")
    lines.append("binding: {" + ", ".join(f"{e}: {u}" for e, u in cand.binding) + "}")
    pipe = pipelined(r, cand.binding)
    if pipe:
        lines.append(f"pipelined: [{', '.join(pipe)}]")
    kept = [(t, k) for t, k in cand.keep if k not in (PE, DRAM)]
    kept += [(t, STREAM) for t, k in cand.keep if k == DRAM]
    lines.append("keep: {" + ", ".join(f"{t}: {k}" for t, k in kept) + "}")
    dram = [t for t, k in cand.keep if k == DRAM]
    if dram:
        lines.append(f"dram: [{', '.join(dram)}]")
    rr = reread(r, cand)
    if rr:
        lines.append(f"reread: [{', '.join(rr)}]")
    lines.append("overlap:")
    lines.append("  kind: epochs")
    if cand.path:
        lines.append(f"  critical_path: {q(cand.path)}")
    return "\n".join(lines) + "\n"


def to_mapping(r: Roles, cand: Candidate, name: str = "auto") -> Mapping:
    return parse_mapping(to_yaml(r, cand, name), f"<mapping of {r.cascade.name}>")


# ------------------------------------------------------------------ the discrete choices

def tile_sizes(limit: int, extent: int) -> list[int]:
    """Powers of two up to `limit` and the extent, and the extent itself if smaller."""
    out = [1 << k for k in range(0, 31) if (1 << k) <= min(limit, extent)]
    if extent < limit and extent not in out:
        out.append(extent)
    return out


def factor_grid(r: Roles) -> list[tuple[int, int, int]]:
    """(k0, q0, q1) points: tiles up to the largest array side, q1 up to the row's tiles."""
    side = max(max(u.shape) for u in r.hw.units.values())
    ks = tile_sizes(side, int(r.env[r.key])) if r.key_split else [1]
    ks = [k for k in ks if k >= min(16, ks[-1])]
    if not r.row:
        return [(k, 1, 1) for k in ks]
    n = int(r.env[r.row])
    qs = tile_sizes(side, n)
    qs = [q for q in qs if q >= min(16, qs[-1])]
    out = []
    for k, q in product(ks, qs):
        left = -(-n // q)
        q1s = sorted({1 << j for j in range(0, 31) if (1 << j) <= left} | {left})
        out += [(k, q, x) for x in q1s]
    return out


def bindings(r: Roles) -> list[tuple[tuple[str, str], ...]]:
    return [tuple(zip(r.work, us)) for us in product(*(r.units[e] for e in r.work))]

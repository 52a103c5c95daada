"""Vectorised evaluation of many candidate mappings at once.

The simulator's own passes (simulator.compute, traffic, tiling, energy) are
run once over sympy (`simulator.numbers.Symbolic`) per piece of a mapping
that varies independently: the busy cycles of an Einsum on a unit with
given array axes, the DRAM bytes, buffer occupancy and traffic energy of a
tensor kept at a given level, the operation energy of an Einsum on a unit.
Each piece is a formula in the shapes and the tile factors (k0, q0, q1);
all are compiled together with `sympy.lambdify` and evaluated over the
whole factor grid as numpy arrays. A structure (order, binding, axes,
keep levels) then costs a few array sums, the epochs times its derived
critical path (mappers.stages) and the DRAM time, for every factor point
at once.

The formulas assume full tiles (the passes' `Symbolic` rule: no padding of
partial tiles); the searches re-simulate their best candidates exactly
(`simulator.analytical.simulate`, invariants checked), and what they
report is always the exact simulation.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from math import ceil

import numpy as np
import sympy

from einsum_ir.sym import shape_symbol
from simulator import compute as _compute
from simulator import energy as _energy
from simulator import tiling as _tiling
from simulator import traffic as _traffic
from simulator.facts import facts
from simulator.numbers import Symbolic

from . import spatial_space as sp
from .mapping import Add, Max, Name, Num, Scale, parse_critical_path
from .stages import derive


@dataclass(frozen=True)
class _Counting(Symbolic):
    """Symbolic, with each point count a placeholder symbol: counts with
    predicates are not polynomials; they are evaluated exactly per key tile."""

    counts: dict = field(default_factory=dict, hash=False)

    def count(self, expr):
        key = id(expr)
        if key not in self.counts:
            self.counts[key] = (sympy.Symbol(f"_N{len(self.counts)}"), expr)
        return self.counts[key][0]

    def visited(self, c, e, grain: dict):
        """A placeholder for a masked Einsum's visited / kept points, evaluated
        exactly per tile shape of the grid (simulator.skipping)."""
        key = ("visited", e.name, tuple((v, str(g)) for v, g in grain.items()))
        if key not in self.counts:
            self.counts[key] = (sympy.Symbol(f"_V{len(self.counts)}"), (c, e, dict(grain)))
        return self.counts[key][0], None


def _leaf_with(m, i: int, spatial):
    leaves = list(m.leaves)
    leaves[i] = dataclasses.replace(leaves[i], spatial=spatial)
    return tuple(leaves)


class Evaluator:
    """Pieces of the cost compiled for one cascade, hardware and shapes."""

    def __init__(self, r: sp.Roles, accounting: str | None = None):
        self.r, self.hw = r, r.hw
        self.acct = _energy.accounting(accounting or r.hw.accounting)
        self.grid = np.array(sp.factor_grid(r), dtype=np.int64).reshape(-1, 3)
        self.num = _Counting()
        self.exprs: dict[tuple, sympy.Expr] = {}
        self.paths: dict = {}
        self.evaluations = 0
        self.pruned = 0                  # evaluations settled by the lower bound alone
        self._user_cache, self._cov_cache = {}, {}
        self._build()
        self._compile()

    # ---------------------------------------------------------- building the pieces
    def _base(self, order: str):
        r = self.r
        binding = tuple((e, r.units[e][0]) for e in r.work)
        keep = tuple((t, sp.keep_options(r, t, order)[0]) for t in sp.keep_tensors(r))
        cand = sp.Candidate(1, 1, 1, order, binding, (), keep)
        text = sp.to_yaml(r, cand)
        text = text.replace(f"{r.key_names[1]}: 1}}", f"{r.key_names[1]}: fit}}")
        text = text.replace(f"{r.row_names[1]}: 1, {r.row_names[2]}: 1}}",
                            f"{r.row_names[1]}: fit, {r.row_names[2]}: fit}}")
        from .mapping import parse_mapping
        return parse_mapping(text, "<probe>")

    def _space(self, m):
        c = self.r.cascade
        vs = _tiling.views(c)
        einsums = tuple(e for e in c.einsums if not e.is_initial and e.name not in vs)
        from simulator.facts import ops_per_point
        s = _tiling.Space(c, m, {}, vs, einsums, tuple(t for t in c.tensors if t.name not in vs),
                          {e.name: ops_per_point(e) for e in einsums})
        return s, _tiling.nest(c, m, _tiling.symbolic_factors(m), self.num)

    def _build(self) -> None:
        r = self.r
        self.orders = ("kq", "qk") if r.row and any(lf.in_pass for lf in r.leaves) else ("kq",)
        self.bases = {o: self._base(o) for o in self.orders}
        base = self.bases[self.orders[0]]
        s, n = self._space(base)
        self.exprs[("epochs",)] = sympy.Mul(*[n.extent(v) for v in base.leaves[r.main].loops])
        self.axes = {}
        for i, lf in enumerate(r.leaves):
            for u in self.hw.units:
                if any(e in r.work and u in r.units[e] for e in lf.run):
                    self.axes[(i, u)] = sp.axes_choices(r, i, u)
        self.keeps = {o: {t: sp.keep_options(r, t, o) for t in sp.keep_tensors(r)} for o in self.orders}

    def _busy(self, e: str, u: str, a: tuple) -> None:
        r = self.r
        base = self.bases[self.orders[0]]
        i = r.leaf_of(e)
        binding = tuple((x, u if u in r.units[x] else r.units[x][0]) for x in r.work)
        m = base.with_changes(binding=binding, leaves=_leaf_with(base, i, ((u, a),)),
                              pipelined=frozenset([e] if sp.can_pipeline(r, e, u) else []))
        s, n = self._space(m)
        ec = _compute.einsum_cost(s, n, self.hw, next(x for x in s.einsums if x.name == e))
        self.exprs[("busy", e, u, a)] = ec.busy_cycles
        self.exprs[("energy", e, u)] = sum(_energy.einsum_energy(ec, self.hw, self.acct, m.uncharged).values())

    def _traffic(self, order: str, t: str, k: str, cov: tuple) -> None:
        """DRAM bytes, occupancy and energy of tensor t kept at k, with the
        leaves' tile variables on no axis (`cov`: leaf -> variables) as loops."""
        from collections import Counter
        r, base = self.r, self.bases[order]
        extra = dict(cov)
        leaves = tuple(dataclasses.replace(lf, loops=sp.loop_vars(r, i, order, extra.get(i, ())),
                                           spatial=((next(iter(self.hw.units)),
                                                     tuple(v for v in sp.tile_vars(r, i) if v not in extra.get(i, ()))),))
                       for i, lf in enumerate(base.leaves))
        cand = sp.Candidate(1, 1, 1, order, base.binding,
                            tuple((i, "", tuple(v for v in sp.tile_vars(r, i) if v not in extra.get(i, ())))
                                  for i in range(len(r.leaves))), ((t, k),))
        rr = frozenset(sp.reread(r, cand))
        keep = ((t, sp.STREAM if k == sp.DRAM else k),) if k != sp.PE else ()
        m = base.with_changes(keep=keep, dram=frozenset([t] if k == sp.DRAM else []), reread=rr, leaves=leaves)
        s, n = self._space(m)
        decl = next(x for x in s.tensors if x.name == t)
        occ = _tiling.tile_elems(s, decl, m.keep_of(t), n) * self.hw.word_bytes
        tc = _traffic.tensor_traffic(s, n, decl, self.hw.word_bytes, occ, Counter())
        key = (order, t, k, cov)
        self.exprs[("dram",) + key] = sympy.sympify(tc.dram_read_bytes + tc.dram_write_bytes)
        self.exprs[("occ",) + key] = sympy.sympify(occ)
        self.exprs[("tenergy",) + key] = sympy.sympify(sum(_energy.tensor_energy(tc, self.hw).values()))

    # ---------------------------------------------------------- compiling and evaluating
    def value(self, key: tuple):
        """The array of a piece over the factor grid, built and compiled on first use."""
        if key not in self.values:
            if key not in self.exprs:
                if key[0] in ("busy", "energy"):
                    self._busy(key[1], key[2], key[3] if key[0] == "busy" else self._any_axes(key[1], key[2]))
                else:
                    self._traffic(*key[1:])
            group = [key]                  # pieces built together are compiled together (one lambdify)
            if key[0] in ("dram", "occ", "tenergy"):
                group = [(k,) + key[1:] for k in ("dram", "occ", "tenergy")]
            elif key[0] == "busy" and ("energy",) + key[1:3] not in self.values:
                group.append(("energy",) + key[1:3])
            group = [k for k in group if k not in self.values]
            exprs = [sympy.sympify(self.exprs[k]) for k in group]
            syms = sorted(set().union(*(x.free_symbols for x in exprs)), key=lambda x: x.name)
            outs = sympy.lambdify(syms, exprs, "numpy")(*[self._values(x) for x in syms])
            for k, out in zip(group, outs):
                self.values[k] = np.broadcast_to(np.asarray(out, dtype=float), (len(self.grid),))
        return self.values[key]

    def _users(self, t: str) -> list[int]:
        if t not in self._user_cache:
            self._user_cache[t] = sp.users(self.r, t)
        return self._user_cache[t]

    def _coverage(self, axes: tuple) -> tuple:
        if axes not in self._cov_cache:
            self._cov_cache[axes] = Structure("", (), axes, ()).coverage(self.r)
        return self._cov_cache[axes]

    def _any_axes(self, e: str, u: str) -> tuple:
        return self.axes[(self.r.leaf_of(e), u)][0]

    def _compile(self) -> None:
        n = len(self.grid)
        self.values = {}
        k0, q0 = self.grid[:, 0], self.grid[:, 1]
        self.fits_axes = {}
        for (i, u), choices in self.axes.items():
            for a in choices:
                ok = np.ones(n, dtype=bool)
                for size, v in zip(self.hw.unit(u).shape, a):
                    ok &= self._extent(v, k0, q0) <= size
                self.fits_axes[(i, u, a)] = ok

    def _extent(self, var: str, k0, q0):
        r = self.r
        if var == r.key_names[1].lower():
            return k0
        if r.row and var == r.row_names[2].lower():
            return q0
        return np.full(len(k0), int(r.env[var.upper()]))

    def _values(self, s: sympy.Symbol):
        r = self.r
        k0, q0, q1 = self.grid[:, 0], self.grid[:, 1], self.grid[:, 2]
        name = s.name
        if name.startswith("_N"):
            expr = next(e for sym, e in self.num.counts.values() if sym == s)
            out = {}
            for k in np.unique(k0):
                env = dict(r.env)
                if r.key_split:
                    env[r.key_names[1]] = int(k)
                    env[r.key_names[0]] = ceil(int(r.env[r.key]) / int(k))
                out[int(k)] = float(expr(env) if callable(expr) else expr)
            return np.array([out[int(k)] for k in k0])
        if name.startswith("_V"):
            return self._visited(next(x for sym, x in self.num.counts.values() if sym == s))
        if r.key_split and name == r.key_names[1]:
            return k0.astype(float)
        if r.key_split and name == r.key_names[0]:
            return np.ceil(int(r.env[r.key]) / k0)
        if r.row and name == r.row_names[2]:
            return q0.astype(float)
        if r.row and name == r.row_names[1]:
            return q1.astype(float)
        if r.row and name == r.row_names[0]:
            return np.ceil(int(r.env[r.row]) / (q0 * q1))
        if name in r.env:
            return float(r.env[name])
        raise sp.MapperError(f"internal: no value for symbol {name} in the mapper's formulas")

    def _visited(self, what) -> np.ndarray:
        """Visited / kept points of a masked Einsum at each grid point's tiles."""
        from simulator.skipping import visited_factor
        c, e, grain = what
        per = {}
        for v, g in grain.items():
            g = sympy.sympify(g)
            syms = sorted(g.free_symbols, key=lambda x: x.name)
            val = sympy.lambdify(syms, g, "numpy")(*[self._values(x) for x in syms]) if syms else float(g)
            per[v] = np.broadcast_to(np.asarray(val), (len(self.grid),))
        memo, out = {}, np.empty(len(self.grid))
        for i in range(len(self.grid)):
            key = tuple(int(per[v][i]) for v in grain)
            if key not in memo:
                memo[key] = visited_factor(c, e, dict(self.r.env), dict(zip(grain, key)))[0]
            out[i] = memo[key]
        return out

    def path(self, binding: tuple, axes: dict, at: int | None = None):
        """The derived critical path for a binding, with the Einsums' times
        at factor point `at` (default: a reference point), cached by the
        binding and the times (axes that give the same times share it)."""
        ref = self.reference_index() if at is None else at
        b = dict(binding)
        epochs = self.value(("epochs",))[ref]
        times = {e: float(self.value(("busy", e, b[e], axes[(self.r.leaf_of(e), b[e])]))[ref] / epochs)
                 for e in self.r.work}
        key = (binding, tuple(float(f"{times[e]:.12g}") for e in self.r.work))
        if key not in self.paths:
            sched = derive(self.r, b, times)
            self.paths[key] = parse_critical_path(sched.text()) if sched.stages else None
        return self.paths[key]

    def reference_index(self) -> int:
        """The factor point with the largest tiles (the usual choice), where stage schedules are derived."""
        g = self.grid
        return int(np.lexsort((g[:, 2], g[:, 1], g[:, 0]))[-1])

    def evaluate(self, st: "Structure", objective: str = "latency", threshold: float | None = None) -> dict:
        """Latency (cycles), energy (pJ) and buffer bytes at every factor
        point of the grid; infeasible points (buffer over capacity, a tile
        larger than its array axis) have latency inf. With a `threshold`,
        the structure is first costed with a lower bound of its latency (no
        critical path: the busiest unit's time, the DRAM time); when even
        that bound scores above the threshold at every point, the bound is
        returned (`pruned`) without deriving the path."""
        v, r = self.value, self.r
        b = dict(st.binding)
        axes = dict(st.axes)
        epochs = v(("epochs",))
        per = {e: v(("busy", e, b[e], axes[(r.leaf_of(e), b[e])])) / epochs for e in r.work}
        cov = self._coverage(st.axes)
        keys = [(st.order, t, k, tuple((i, c) for i, c in cov if i in self._users(t))) for t, k in st.keep]
        dram = sum(v(("dram",) + key) for key in keys) / self.hw.dram_bytes_per_cycle
        occ = sum(v(("occ",) + key) for key in keys)
        energy = sum(v(("energy", e, b[e])) for e in r.work) + sum(v(("tenergy",) + key) for key in keys)
        ok = occ <= self.hw.buffer.capacity_bytes
        for (i, u), a in st.axes:
            ok = ok & self.fits_axes[(i, u, a)]
        self.evaluations += len(self.grid)
        energy = np.where(ok, energy, np.inf)
        if threshold is not None and np.isfinite(threshold):
            busiest = np.zeros(len(self.grid))
            for u in {b[e] for e in r.work}:
                busiest = np.maximum(busiest, sum(per[e] for e in r.work if b[e] == u))
            low = np.where(ok, np.maximum(epochs * busiest, dram), np.inf)
            if np.min(_score(low, energy, objective)) > threshold:
                self.pruned += len(self.grid)
                return {"latency": low, "energy": energy, "buffer": occ, "ok": ok, "pruned": True}
        cp = self.path(st.binding, axes)
        compute = epochs * (_value(cp.expr, per) if cp is not None else 0.0)
        lat = np.maximum(compute, dram)
        return {"latency": np.where(ok, lat, np.inf), "energy": energy, "buffer": occ, "ok": ok}


def _score(lat, energy, objective: str):
    """The objective's score (lower is better) of latency and energy arrays."""
    if objective == "energy":
        return energy
    if objective == "edp":
        return lat * energy
    return lat


def _value(node, env):
    if isinstance(node, Name):
        return env.get(node.name, 0.0)
    if isinstance(node, Num):
        return node.number
    if isinstance(node, Scale):
        return node.factor * _value(node.arg, env)
    if isinstance(node, Add):
        return sum(_value(t, env) for t in node.terms)
    if isinstance(node, Max):
        out = _value(node.args[0], env)
        for a in node.args[1:]:
            out = np.maximum(out, _value(a, env))
        return out
    raise TypeError(node)


@dataclass(frozen=True)
class Structure:
    """The discrete part of a candidate: everything but the tile factors."""

    order: str
    binding: tuple[tuple[str, str], ...]
    axes: tuple[tuple[tuple[int, str], tuple[str, ...]], ...]
    keep: tuple[tuple[str, str], ...]

    def coverage(self, r: sp.Roles) -> tuple:
        """Leaf -> its tile variables on no array axis (temporal loops), for leaves with any."""
        flat = tuple((i, u, a) for (i, u), a in self.axes)
        out = tuple((i, sp.uncovered(r, flat, i)) for i in range(len(r.leaves)))
        return tuple((i, c) for i, c in out if c)

    def candidate(self, k0: int, q0: int, q1: int, path: str | None) -> sp.Candidate:
        return sp.Candidate(k0, q0, q1, self.order, self.binding,
                            tuple((i, u, a) for (i, u), a in self.axes), self.keep, path)


def used_axes(ev: Evaluator, binding: tuple) -> list[tuple[int, str]]:
    """(leaf, unit) pairs whose axes matter for a binding."""
    b = dict(binding)
    return sorted({(ev.r.leaf_of(e), u) for e, u in b.items()})

"""Symbolic analyses of a cascade: what a design costs before any hardware is
chosen. Every result is a sympy expression in the shape symbols; `Analysis.at`
evaluates them at concrete shapes. See docs/analysis.md."""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from ..ir import Cascade, Sym
from ..shapes import resolve
from .counts import KINDS, einsum_ops, flops, flops_of, macs, op_counts, ops_per_point, total_ops
from .evaluate import evaluate
from .footprint import Footprint, footprint
from .passes import Family, PassResult, PassStep, passes, rank_family
from .points import Kept, count_points, points
from .traversal import TraversalResult, check_pass_count, simulate_passes
from .sizes import compulsory_traffic, elements, intensity, size_bytes, tensor_sizes


def root_ranks(c: Cascade) -> list[str]:
    return [r.name for r in c.ranks if r.parent is None]


def sequence_rank(c: Cascade, pass_results: dict[str, PassResult] | None = None) -> str:
    """The rank the design traverses most often: most passes, then a rank the
    design tiles or steps through (partitioned or iterative), then M (the
    keys, by convention), then most Einsums reducing over it, then most
    tensors carrying it. A rank's family (parts and the aliases that walk it,
    `passes.rank_family`) counts as the rank. A rank no number of passes can
    traverse (`passes` None) is chosen only if every rank is such.
    A second index over a tile (`rank J = M0`) is not a candidate."""
    pass_results = pass_results or {r: passes(c, r) for r in root_ranks(c)}
    tiles = {r.name for r in c.ranks if r.parent is not None}
    candidates = [r for r in root_ranks(c)
                  if not (isinstance(c.rank(r).definition, Sym) and c.rank(r).definition.name in tiles)]
    fams = {r: rank_family(c, r) for r in candidates or root_ranks(c)}

    def reductions(r):
        vs = fams[r].vars
        return sum(1 for e in c.einsums if set(e.reduced) & vs)

    def stepped(r):
        return len(c.parts(r)) > 1 or any(set(t.iterative) & set(fams[r].kind) for t in c.tensors)

    def carried(r):
        return sum(1 for t in c.tensors if set(t.ranks) & set(fams[r].kind))

    def count(r):
        n = pass_results[r].passes
        return -1 if n is None else n
    return max(fams, key=lambda r: (count(r), stepped(r), r == "M", reductions(r), carried(r)))


@dataclass(frozen=True)
class Analysis:
    cascade: Cascade = field(repr=False)
    ops: dict[str, sympy.Expr]
    einsum_ops: dict[str, dict[str, sympy.Expr]]
    points: dict[str, sympy.Expr]
    flops: sympy.Expr
    sizes: dict[str, sympy.Expr]
    traffic: dict[str, sympy.Expr]
    intensity: sympy.Expr
    passes: dict[str, PassResult]
    rank: str
    footprint: Footprint
    densities: dict[str, str] = field(default_factory=dict)
    """Each density symbol of a mask that reads tensors, with its meaning (density.py)."""
    measured: dict = field(default_factory=dict)
    """Given tensors: the exact density values counted from them, and the
    extents they were counted at (`analyze(c, inputs=...)`); else empty."""

    def at(self, shapes: dict | None = None) -> dict:
        """Every figure as numbers at `shapes` (derived ranks computed); with
        `measured` densities, at the inputs' extents (other extents refused)."""
        shapes = dict(shapes or {})
        given = {k: v for k, v in shapes.items() if not k.startswith("density_")}
        env = dict(resolve(self.cascade, {**self.measured.get("shapes", {}), **given}))
        env.update({k: v for k, v in shapes.items() if k.startswith("density_")})
        _check_measured(self.measured, env, shapes)
        env.update(self.measured.get("densities", {}))
        ev = lambda x: evaluate(x, env)  # noqa: E731
        fp_bytes, fp_live = self.footprint.at(env)
        traffic = {k: ev(v) for k, v in self.traffic.items()}
        fl = ev(self.flops)
        return {
            "shapes": env,
            "ops": {k: ev(v) for k, v in self.ops.items()},
            "einsum_ops": {n: {k: ev(v) for k, v in d.items()} for n, d in self.einsum_ops.items()},
            "points": {n: ev(v) for n, v in self.points.items()},
            "flops": fl,
            "sizes": {k: ev(v) for k, v in self.sizes.items()},
            "traffic": traffic,
            "intensity": fl / traffic["total_bytes"] if traffic["total_bytes"] else float("inf"),
            "passes": {r: p.passes for r, p in self.passes.items()},
            "footprint_bytes": fp_bytes,
            "footprint_live": list(fp_live),
        }


def _check_measured(measured: dict, env: dict, shapes: dict) -> None:
    """Densities counted from tensors hold at the tensors' extents only, and
    are not given twice."""
    from ..errors import ShapeError
    for k, v in measured.get("shapes", {}).items():
        if env.get(k) != v:
            raise ShapeError(f"{k} = {env.get(k)}, but the densities were counted from the inputs at {k} = {v}")
    twice = sorted(set(shapes) & set(measured.get("densities", {})))
    if twice:
        raise ShapeError(f"{twice[0]} is counted from the inputs; do not give it as well")


def analyze(c: Cascade, rank: str | None = None, inputs: dict | None = None,
            shapes: dict | None = None) -> Analysis:
    """The symbolic analysis; with `inputs` (arrays by name: at least the
    tensors the masks read) also the exact density of each mask that reads
    tensors, at the extents the inputs and `shapes` give."""
    pass_results = {r: passes(c, r) for r in root_ranks(c)}
    rank = rank or sequence_rank(c, pass_results)
    if rank not in pass_results:
        from ..errors import EinError
        raise EinError(f"{c.name} has no rank {rank}; its ranks are {', '.join(pass_results)}")
    per_einsum: dict[str, dict] = {}
    pts: dict[str, sympy.Expr] = {}
    for e in c.einsums:
        key = e.name if e.name not in pts else f"{e.name} (initial)" if e.is_initial else e.name
        if e.is_initial:
            key = f"{e.name}[0]"
        pts[key] = points(c, e)
        per_einsum[key] = einsum_ops(c, e, pts[key])
    ops = total_ops(per_einsum.values())
    fl = flops_of(ops)
    traffic = compulsory_traffic(c)
    from .density import data_densities
    dens = {name: d.meaning() for name, d in data_densities(c).items()}
    a = Analysis(c, ops, per_einsum, pts, fl, tensor_sizes(c), traffic, fl / traffic["total_bytes"],
                 pass_results, rank, footprint(c, rank), dens, _measure(c, inputs, shapes))
    return _with_literal_extents(a)


def _with_literal_extents(a: Analysis) -> Analysis:
    """Every formula with the literal extents' values (`4*H*NI*2`, not
    `4*H*NI*_2`: `_2` is rank INTV[NI, 2]'s literal, not a shape to give)."""
    from dataclasses import replace
    from ..shapes import literal_extents
    from ..sym import shape_symbol
    lit = {shape_symbol(k): sympy.Integer(v) for k, v in literal_extents(a.cascade).items()}
    if not lit:
        return a
    sub = lambda x: sympy.sympify(x).xreplace(lit)  # noqa: E731
    fp = replace(a.footprint, candidates=tuple((sub(b), n) for b, n in a.footprint.candidates),
                 elements=tuple(sub(x) for x in a.footprint.elements))
    return replace(a, ops={k: sub(v) for k, v in a.ops.items()},
                   einsum_ops={n: {k: sub(v) for k, v in d.items()} for n, d in a.einsum_ops.items()},
                   points={k: sub(v) for k, v in a.points.items()}, flops=sub(a.flops),
                   sizes={k: sub(v) for k, v in a.sizes.items()},
                   traffic={k: sub(v) for k, v in a.traffic.items()}, intensity=sub(a.intensity), footprint=fp)


def _measure(c: Cascade, inputs: dict | None, shapes: dict | None) -> dict:
    """{"shapes": extents the inputs give, "densities": exact values}, or {} without inputs."""
    if inputs is None:
        return {}
    from .density import density_values, mask_arrays
    arrays = mask_arrays(c, inputs)
    env = resolve(c, dict(shapes or {}), inputs)
    from ..shapes import symbols_used
    bound = {r.name for r in c.ranks if r.definition is not None or r.part == "outer"}    # derived: follow
    return {"shapes": {k: env[k] for k in symbols_used(c) if k in env and k not in bound},
            "densities": density_values(c, env, arrays)}


__all__ = [
    "Analysis", "Family", "Footprint", "TraversalResult", "check_pass_count", "simulate_passes", "KINDS", "Kept", "PassResult", "PassStep", "analyze", "compulsory_traffic",
    "count_points", "einsum_ops", "elements", "evaluate", "flops", "footprint", "intensity", "macs",
    "op_counts", "ops_per_point", "passes", "points", "rank_family", "root_ranks", "sequence_rank", "size_bytes",
    "tensor_sizes",
]

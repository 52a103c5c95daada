"""Operation counts with loop-invariant operations hoisted (docs/analysis.md,
"Operation counts"): each operator counts once per distinct value of the
variables it depends on over the Einsum's existing points.

The reference is a brute-force counter written here: it enumerates the kept
points of every Einsum at tiny shapes (predicate evaluated in plain Python,
mask tensors drawn at random) and counts each operator as the number of
distinct tuples of its variables among them (Python sets)."""
import itertools
import math
import operator
import random
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest

import einsum_ir as ei
from attnc.compare import free_symbols
from einsum_ir.analysis import evaluate
from einsum_ir.analysis.counts import count_einsum, einsum_key, hoisted, op_counts
from einsum_ir.analysis.points import points, projected_points
from einsum_ir.ir import Access, Einsum, Idx, Num, Op, Sym, TensorDecl, index_vars, rank_of
from einsum_ir.ops import REDUCE_RULES, RULES
from einsum_ir.shapes import resolve

SHAPES = [
    dict(B=1, H=2, P=4, M=4, E=2, F=2, W=2, ST=1, DL=1, M0=3, G=2, NS=1, HS=1, TQ=2, TK=2, R=2, D=3, N=3,
         TOPK=2, PY=3, PX=2, WY=3, WX=1, STY=1, STX=1, DLY=1, DLX=1, NP=3, BS=2),
    dict(B=2, H=2, P=6, M=4, E=1, F=3, W=1, ST=2, DL=2, M0=2, G=1, NS=2, HS=1, TQ=3, TK=2, R=1, D=2, N=4,
         TOPK=3, PY=2, PX=3, WY=1, WX=3, STY=1, STX=2, DLY=1, DLX=1, NP=4, BS=3),
]

# ------------------------------------------------------------ brute force

_PY = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": lambda a, b: Fraction(a) / b,
    "floordiv": lambda a, b: math.floor(Fraction(a) / b), "mod": operator.mod, "neg": operator.neg,
    "lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge, "eq": operator.eq,
    "ne": operator.ne, "and": lambda a, b: a and b, "or": lambda a, b: a or b, "not": operator.not_,
    "exp2": lambda a: 2 ** a, "log2": math.log2, "floor": math.floor, "abs": abs, "max": max, "min": min,
}


def value(x, pt, env, masks, index=False):
    """A predicate or index expression at one point, in plain Python
    (`/` is integer division inside an access index)."""
    if isinstance(x, Num):
        return x.value
    if isinstance(x, Sym):
        return env[x.name]
    if isinstance(x, Idx):
        return pt[x.name]
    if isinstance(x, Access):      # a bool mask's cell, or an integer table's entry (lengths, a block table)
        return masks[x.tensor][tuple(value(i, pt, env, masks, True) for i in x.indices)]
    args = [value(a, pt, env, masks, index) for a in x.args]
    if index and x.name == "div":
        return args[0] // args[1]
    return _PY[x.name](*args)


def kept_points(c, e, env, masks):
    """Every existing point of e as a dict variable -> coordinate."""
    vs = e.iteration_vars
    pairs = [(r.name.lower(), c.inner_of(r.name), r.parent) for r in c.ranks if r.part == "outer"]
    pairs = [(o, i.lower(), env[i], env[par]) for o, i, par in pairs if o in vs and i.lower() in vs]
    out = []
    for coords in itertools.product(*[range(env[rank_of(v)]) for v in vs]):
        pt = dict(zip(vs, coords))
        if any(pt[o] * tile + pt[i] >= whole for o, i, tile, whole in pairs):
            continue
        if e.predicate is None or value(e.predicate, pt, env, masks):
            out.append(pt)
    return out


def brute_ops(e, kept) -> Counter:
    """The counting rule, independently: distinct tuples of each operator's
    variables; a product's factors multiplied smallest-union first."""
    ops = Counter()

    def proj(vs):
        return len({tuple(pt[v] for v in sorted(vs)) for pt in kept}) if vs else 1

    def walk(x):
        if isinstance(x, Access):
            return set(index_vars(x))
        if isinstance(x, Idx):
            return {x.name}
        if not isinstance(x, Op):
            return set()
        if x.name == "mul":
            return product(x)
        vs = set().union(*[walk(a) for a in x.args])
        if RULES[x.name].kind is not None:
            ops[RULES[x.name].kind] += proj(vs)
        return vs

    def product(x):
        stack, factors = [x], []
        while stack:
            f = stack.pop()
            if isinstance(f, Op) and f.name == "mul":
                stack += list(f.args)
            else:
                factors.append(walk(f))
        while len(factors) > 1:
            factors.sort(key=lambda vs: (len(vs), sorted(vs)))
            pairs = [(len(factors[i] | factors[j]), i, j) for i in range(len(factors))
                     for j in range(i + 1, len(factors))]
            _, i, j = min(pairs)
            merged = factors[i] | factors[j]
            ops["mul"] += proj(merged)
            factors = [f for k, f in enumerate(factors) if k not in (i, j)] + [merged]
        return factors[0]

    vs = walk(e.expr)
    if e.reduced:
        is_product = isinstance(e.expr, Op) and e.expr.name == "mul"
        if e.reduce == "sum" and is_product and vs == set(e.iteration_vars):
            ops["mul"] -= len(kept)
            ops["mac"] += len(kept)
        else:
            ops[REDUCE_RULES[e.reduce].kind] += len(kept)
    if e.scan is not None:      # a scan: one add (or multiply) per output element that has a point
        ops["add" if e.scan.op == "cumsum" else "mul"] += proj(set(e.output_vars))
    return Counter({k: v for k, v in ops.items() if v})


def env_for(c, shapes, seed=0):
    env = dict(resolve(c, {k: shapes[k] for k in free_symbols(c)}))
    rng = random.Random(seed)
    masks = {}
    for t in c.inputs:
        if t.dtype == "bool":
            dims = [env[r] for r in t.ranks]
            cells = {ix: rng.random() < 0.5 for ix in itertools.product(*[range(n) for n in dims])}
            masks[t.name] = cells
            env[f"density_{t.name}"] = Fraction(sum(cells.values()), len(cells))
    ints = [t for t in c.inputs if t.dtype in ("i32", "i8")]
    if ints:    # integer tables, drawn as attnc draws them; their masks' densities measured from them
        from einsum_ir.analysis import analyze
        x = ei.random_inputs(c, {k: shapes[k] for k in free_symbols(c)}, seed=seed)
        masks.update({t.name: {ix: int(v) for ix, v in np.ndenumerate(x[t.name])} for t in ints})
        env.update(analyze(c, inputs=x, shapes={k: shapes[k] for k in free_symbols(c)}).measured["densities"])
    return env, masks


def analysed(c, e, env):
    return Counter({k: evaluate(v, env) for k, v in count_einsum(c, e).ops.items() if evaluate(v, env)})


# ------------------------------------------------------------ the reported cases

def parse(text):
    return ei.parse(text)


def test_invariant_exp_is_counted_once_per_query_not_per_f():
    c = parse("rank B, H, P, F\ninput GM[B, H, P]\ninput X[B, H, F, P]\n"
              "Y[b, h, f, p] = exp(-GM[b, h, p]) * X[b, h, f, p]")
    r = count_einsum(c, c.einsums[0])
    env = dict(B=2, H=3, P=5, F=7)
    assert evaluate(r.ops["exp"], env) == 2 * 3 * 5
    assert evaluate(r.ops["mul"], env) == 2 * 3 * 5 * 7
    assert r.notes == ("exp(-GM[b, h, p]) hoisted out of f: counted B*H*P, not B*F*H*P",)


def test_value_contraction_scales_once_per_key_and_query():
    c = parse("rank B, H, M, P, F\ninput R[B, H, M, P]\ninput V[B, H, F, M]\n"
              "O[b, h, f, p] = R[b, h, m, p] * R[b, h, m, p] / M * V[b, h, f, m]")
    ops = count_einsum(c, c.einsums[0]).ops
    env = dict(B=2, H=3, M=11, P=5, F=7)
    assert evaluate(ops["divide"], env) == 2 * 3 * 11 * 5          # once per (m, p), not M*P*F
    assert evaluate(ops["mul"], env) == 2 * 3 * 11 * 5             # R * R
    assert evaluate(ops["mac"], env) == 2 * 3 * 11 * 5 * 7         # one MAC per point


def test_a_sub_product_invariant_in_f_is_hoisted_and_the_rest_is_one_mac_per_point():
    c = parse("rank M, P, F\ninput A[M, P]\ninput Bv[P]\ninput V[F, M]\nO[f, p] = A[m, p] * Bv[p] * V[f, m]")
    ops = count_einsum(c, c.einsums[0]).ops
    env = dict(M=6, P=5, F=4)
    assert (evaluate(ops["mul"], env), evaluate(ops["mac"], env)) == (6 * 5, 6 * 5 * 4)
    assert set(ops) == {"mul", "mac"}


# ------------------------------------------------------------ every library design

@pytest.mark.parametrize("name", ei.library.names())
def test_library_counts_equal_brute_force(name):
    c = ei.library.load(name)
    for seed, shapes in enumerate(SHAPES):
        env, masks = env_for(c, shapes, seed)
        for e in c.einsums:
            expected = brute_ops(e, kept_points(c, e, env, masks))
            assert analysed(c, e, env) == expected, (name, e.name, shapes)


def test_the_library_has_hoisted_operations_and_no_unproved_ones():
    notes = {n: hoisted(ei.library.load(n)) for n in ei.library.names()}
    assert notes["attention-2pass"]["SNV"] == (
        "PRM[b, h, m1, p] * SLN[b, h, m1, m0, p] hoisted out of f: counted B*H*M*P, not B*F*H*M*P",)
    assert not any(line.startswith("not hoisted") for d in notes.values() for v in d.values() for line in v)


# ------------------------------------------------------------ predicates

CASES = {
    # a projected-away variable whose range is empty for some kept tuples (m >= p, M < P)
    "m-ge-p": ("rank M, P, F\ninput G[P]\ninput X[M, P]\ninput V[F, M]\n"
               "Y[f, p] = exp(-G[p]) * X[m, p] * V[f, m] where m >= p", [dict(M=3, P=7, F=2), dict(M=7, P=3, F=2)]),
    "causal": ("rank M, P, F\ninput G[P]\ninput X[M, P]\ninput V[F, M]\n"
               "Y[f, p] = exp(-G[p]) * X[m, p] * V[f, m] where m <= p", [dict(M=3, P=7, F=2), dict(M=7, P=3, F=2)]),
    "window": ("rank M, P, F\ninput G[P]\ninput X[M, P]\n"
               "Y[f, p] = exp(-G[p]) * X[m, p] where abs(p - m) <= W and m < p - 2",
               [dict(M=9, P=6, F=2, W=1), dict(M=4, P=12, F=3, W=2)]),
    "dilated": ("rank M, P, F\ninput G[M]\ninput X[M, P]\n"
                "Y[f, p] = sigmoid(G[m]) * X[m, p] where abs(p - m) <= W and (p - m) % 3 == 0 and p >= 4",
                [dict(M=11, P=7, F=2, W=4), dict(M=5, P=13, F=1, W=6)]),
    "sinks-or-window": ("rank M, P\ninput G[P]\ninput X[M, P]\n"
                        "Y[p] = max[m] exp(G[p]) + X[m, p] where m <= p and (m < NS or p - m < W) and p >= 2",
                        [dict(M=9, P=6, NS=1, W=1), dict(M=4, P=12, NS=2, W=2)]),
    "tile-only": ("partition M -> M1, M0\nrank P\ninput X[M1, M0, P]\ninput G[M1]\ninput H0[M0]\n"
                  "Y[m1, p] = tanh(G[m1]) * log(H0[m0]) * X[m1, m0, p]",
                  [dict(M=7, M0=3, P=2), dict(M=2, M0=5, P=3)]),
    "tile-and-causal": ("partition M -> M1, M0\nrank P\ninput X[M1, M0, P]\ninput G[M1]\ninput H0[M0]\n"
                        "Y[m1, p] = tanh(G[m1]) * log(H0[m0]) * X[m1, m0, p] where m1 * M0 + m0 <= p",
                        [dict(M=7, M0=3, P=5), dict(M=9, M0=2, P=12)]),
    "disjoint-and-empty": ("rank M, P, F\ninput G[F]\ninput X[M, P]\n"
                           "Y[f] = exp(G[f]) + X[m, p] where m >= p + 3",
                           [dict(M=2, P=4, F=3), dict(M=8, P=4, F=3)]),
    "constant": ("rank M, P\ninput X[M, P]\ninput Z[]\nY[p] = X[m, p] * exp(Z[] * 2) where m <= p",
                 [dict(M=3, P=4)]),
    # v != x removes one value (soundness seed 7196: log(sigmoid(G[p])) under m != p was counted per point)
    "not-equal": ("rank M, P, F\ninput G[P]\ninput X[M, P]\ninput V[F, M]\n"
                  "Y[f, p] = log(sigmoid(G[p])) * X[m, p] * V[f, m] where m != p",
                  [dict(M=1, P=3, F=2), dict(M=2, P=3, F=2), dict(M=5, P=4, F=1)]),
    "not-equal-in-window": ("rank M, P\ninput G[P]\ninput H0[M]\ninput X[M, P]\n"
                            "Y[p] = exp(G[p]) * erf(H0[m]) + X[m, p] where m <= p and m != p - 1 and p - m < W",
                            [dict(M=6, P=6, W=1), dict(M=6, P=6, W=2), dict(M=3, P=8, W=3)]),
    "not-equal-shifted": ("rank M, P\ninput G[P]\ninput X[M, P]\n"
                          "Y[p] = max[m] exp(G[p]) + X[m, p] where M - 1 - m != p and m >= p",
                          [dict(M=4, P=6), dict(M=1, P=2), dict(M=7, P=3)]),
}


@pytest.mark.parametrize("name", CASES)
def test_projections_under_predicates_equal_brute_force(name):
    text, shape_list = CASES[name]
    c = parse(text)
    for shapes in shape_list:
        env, masks = env_for(c, shapes)
        for e in c.einsums:
            r = count_einsum(c, e)
            assert not any(n.startswith("not hoisted") for n in r.notes), r.notes
            assert analysed(c, e, env) == brute_ops(e, kept_points(c, e, env, masks)), (name, shapes)


def test_m_ge_p_with_fewer_keys_than_queries_keeps_only_queries_below_m():
    c = parse(CASES["m-ge-p"][0])
    e = c.einsums[0]
    count, why = projected_points(c, e, {"p"})
    assert why is None
    assert evaluate(count, dict(M=3, P=7, F=2)) == 3      # p >= M has no m >= p
    assert evaluate(count, dict(M=7, P=3, F=2)) == 3


@pytest.mark.parametrize("pred, why", [
    ("Mask[m, p]", "mask Mask"),
    ("m <= p and (m == p or exp2(floor(log2(max(p - m, 1)))) == p - m)", "cannot eliminate m"),
])
def test_unproved_projections_count_per_point_and_say_why(pred, why):
    mask = "input Mask[M, P]: bool\n" if "Mask" in pred else ""
    c = parse(f"rank M, P, F\ninput G[P]\ninput X[M, P]\ninput V[F, M]\n{mask}"
              f"Y[f, p] = exp(-G[p]) * X[m, p] * V[f, m] where {pred}")
    e = c.einsums[0]
    r = count_einsum(c, e)
    assert r.ops["exp"] == points(c, e)                      # the per-point upper bound
    unproved = [n for n in r.notes if n.startswith("not hoisted")]
    assert len(unproved) == 1 and "exp(-G[p]) (invariant in f, m)" in unproved[0] and why in unproved[0]
    env, masks = env_for(c, dict(M=5, P=6, F=2))
    exact = brute_ops(e, kept_points(c, e, env, masks))
    assert evaluate(r.ops["exp"], env) >= exact["exp"]      # never an undercount


# ------------------------------------------------------------ properties

def totals(c, env):
    return {k: evaluate(v, env) for k, v in op_counts(c).items()}


def factors_of(x):
    if isinstance(x, Op) and x.name == "mul":
        return factors_of(x.args[0]) + factors_of(x.args[1])
    return [x]


def with_expr(c, e, expr):
    """The cascade with Einsum e's map replaced, reparsed (so it is valid)."""
    new = [Einsum(x.output, expr, x.reduce, x.reduced, x.predicate) if x is e else x for x in c.einsums]
    return ei.parse(str(c.replace(einsums=tuple(new))))


@pytest.mark.parametrize("name", ["attention-2pass", "lightning-attention", "transnormer-decay", "gla-chunkwise"])
def test_reordering_a_product_keeps_every_count(name):
    c = ei.library.load(name)
    env, _ = env_for(c, SHAPES[0])
    base = totals(c, env)
    tried = 0
    for e in c.einsums:
        fs = factors_of(e.expr)
        if len(fs) < 3:
            continue
        for perm in itertools.permutations(fs):
            expr = perm[0]
            for f in perm[1:]:
                expr = Op("mul", (expr, f))
            assert totals(with_expr(c, e, expr), env) == base
            right = perm[-1]
            for f in reversed(perm[:-1]):      # right-nested: a * (b * c)
                right = Op("mul", (f, right))
            assert totals(with_expr(c, e, right), env) == base
            tried += 1
    assert tried or name != "attention-2pass"


def move_out(c, e, node, k):
    """Cascade with `node` (a sub-expression of e's map) computed by its own
    Einsum T{k}[its variables] placed before e, and e reading it; the
    predicate goes along when it involves only the node's variables."""
    vs = [v for v in e.iteration_vars if v in index_vars(node)]
    name = f"T{k}"
    access = Access(name, tuple(Idx(v) for v in vs))
    pred = e.predicate if e.predicate is not None and set(index_vars(e.predicate)) <= set(vs) else None
    mover = Einsum(access, node, predicate=pred)
    replaced = _replace(e.expr, node, access)
    einsums = []
    for x in c.einsums:
        if x is e:
            einsums.append(mover)
            x = Einsum(x.output, replaced, x.reduce, x.reduced, x.predicate)
        einsums.append(x)
    decl = TensorDecl(name, tuple(rank_of(v) for v in vs), "f32")
    text = str(c.replace(einsums=tuple(einsums), tensors=c.tensors + (decl,)))
    return ei.parse(text), pred is not None or e.predicate is None


def _replace(x, node, by):
    if x == node:
        return by
    if isinstance(x, Op):
        return Op(x.name, tuple(_replace(a, node, by) for a in x.args))
    return x


def test_moving_an_invariant_factor_into_its_own_einsum_never_lowers_the_count():
    """Hoisting in place is as good as writing the factor as its own Einsum:
    equal when the predicate moves with it, never worse when it cannot."""
    checked = 0
    for name in ei.library.names() + ["case:" + n for n in CASES]:
        c = ei.library.load(name) if not name.startswith("case:") else parse(CASES[name[5:]][0])
        shapes = SHAPES[0] if not name.startswith("case:") else CASES[name[5:]][1][0]
        env, _ = env_for(c, shapes)
        base = totals(c, env)
        for e in c.einsums:
            for k, f in enumerate(factors_of(e.expr) if isinstance(e.expr, Op) and e.expr.name == "mul" else []):
                vs = set(index_vars(f))
                if not isinstance(f, Op) or not vs or vs == set(e.iteration_vars):
                    continue
                try:
                    moved, exact = move_out(c, e, f, k)
                except ei.EinError:     # a factor inside a recurrence cannot leave it
                    continue
                after = totals(moved, env)
                for kind in set(base) | set(after):
                    if exact:
                        assert after.get(kind, 0) == base.get(kind, 0), (name, e.name, str(f), kind)
                    else:
                        assert after.get(kind, 0) >= base.get(kind, 0), (name, e.name, str(f), kind)
                checked += 1
    assert checked >= 8


def test_hoisted_notes_are_filed_under_the_analysis_keys():
    c = ei.library.load("attention-1pass")
    keys = {einsum_key(e) for e in c.einsums}
    assert "RM[0]" in keys and set(hoisted(c)) <= keys

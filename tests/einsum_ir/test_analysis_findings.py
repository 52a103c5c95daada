"""Four analysis findings, each now right or refused.

1. Point counts of every library design and every FlexAttention corpus design
   against a plain loop (the oracle's scalar evaluation of each predicate) at
   two small shapes: the tiny shapes of `small_shapes` (every extent 3) and a
   fixed-seed draw of distinct extents. The first alone missed natten-2d: at a
   3 x 3 canvas the clip of its neighbourhood pins every centre, and its
   miscount (a floor inside a clip compared in floats) needs a canvas larger
   than the window.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

import einsum_ir as ei
from einsum_ir.analysis import points
from einsum_ir.analysis.density import density_values, mask_arrays
from einsum_ir.analysis.evaluate import evaluate
from einsum_ir.errors import EinError
from einsum_ir.oracle import _Oracle, _variables
from einsum_ir.ir import Idx, Sym, rank_of, walk
from einsum_ir.rewrites import small_shapes

CORPUS = Path(__file__).parents[1] / "flex" / "corpus"
DESIGNS = [f"library/{n}" for n in ei.library.names()] + [f"flex/{p.stem}" for p in sorted(CORPUS.glob("*.ein"))]


def load(key):
    kind, name = key.split("/")
    return ei.library.load(name) if kind == "library" else ei.load(str(CORPUS / f"{name}.ein"))


def runs(c, s) -> bool:
    try:
        env = ei.resolve(c, s)
        ei.execute(c, ei.random_inputs(c, env, seed=0), env)
    except EinError:
        return False
    return True


def sequence_roots(c) -> set[str]:
    """The free symbols that the ranks a predicate ties are made of (P =
    CH * CW gives CH and CW; MY = PY gives PY): the sequences a mask walks."""
    names = {r.name for r in c.ranks}
    todo = [rank_of(n.name) for e in c.einsums if e.predicate is not None
            for n in walk(e.predicate) if isinstance(n, Idx)]
    roots, seen = set(), set()
    while todo:
        r = c.rank(todo.pop())
        if r.name in seen:
            continue
        seen.add(r.name)
        if r.definition is None:
            roots.add(r.name)
            continue
        syms = [n.name for n in walk(r.definition) if isinstance(n, Sym)]
        roots |= set(syms)
        todo += [x for x in syms if x in names]
    return roots


def drawn_shapes(c, seed):
    """Distinct small extents: the sequences a mask ties long (4 .. 7 for
    each symbol they are made of, 4 .. 6 for each of several), every other free symbol (a window, a canvas' kernel, a
    head count) short (2 .. 4), so windows and clips are active and partial;
    partitioned ranks as in the tiny shapes, a little longer. The first draw
    (of a fixed sequence) that resolves and executes."""
    base, seq = small_shapes(c), sequence_roots(c)
    rng, top = np.random.default_rng(seed), 8 if len(seq) < 2 else 7    # a canvas CH * CW: at most 36
    for _ in range(40):
        s = {k: (int(rng.integers(4, top)) if k in seq else int(rng.integers(2, 5))) if v == 3
             else v + int(rng.integers(0, 3)) for k, v in base.items()}
        if runs(c, s):
            return s
    raise AssertionError(f"no drawn shapes resolve and execute for {c.name}")


def two_shapes(c, key):
    """The tiny shapes (or, where they do not run, e.g. a divisor NBK // 4
    that is 0 at 3, a second draw) and a draw."""
    seed = sum(map(ord, key))
    tiny = small_shapes(c)
    return (tiny if runs(c, tiny) else drawn_shapes(c, seed + 1)), drawn_shapes(c, seed)


def loop_count(c, e, env, oracle, cache):
    """Existing points of `e` by a plain loop over the variables that its
    predicate and partitions mention (the others multiply); Einsums with
    the same predicate over the same variables share one loop."""
    tied = {n.name for n in walk(e.predicate) if isinstance(n, Idx)} if e.predicate is not None else set()
    for parent, outer, inner in oracle.partitions:
        if outer.lower() in _variables(e) and inner.lower() in _variables(e):
            tied |= {outer.lower(), inner.lower()}
    loop = tuple(v for v in _variables(e) if v in tied)
    free = int(np.prod([env[v.upper()] for v in _variables(e) if v not in tied]))
    if (e.predicate, loop) not in cache:
        kept = 0
        for values in itertools.product(*[range(env[v.upper()]) for v in loop]):
            p = dict(zip(loop, values))
            if oracle.inside(p) and (e.predicate is None or oracle.value(e.predicate, p, e)):
                kept += 1
        cache[e.predicate, loop] = kept
    return cache[e.predicate, loop] * free


def counts(c, shapes):
    """[(einsum, analysis count, loop count)] of every Einsum whose count
    the analysis gives as a number (a mask over a computed tensor keeps a
    density symbol: left out)."""
    env = dict(ei.resolve(c, shapes))
    inputs = ei.random_inputs(c, env, seed=0)
    arrays = ei.execute(c, inputs, env, keep="all")
    oracle = _Oracle(c, env, {k: np.asarray(a, dtype=bool if a.dtype == bool else np.float64)
                              for k, a in arrays.items()})
    for done in oracle.done.values():
        done[...] = 2
    values = {**env, **density_values(c, env, mask_arrays(c, inputs))}
    out, cache = [], {}
    for e in c.einsums:
        expr = points(c, e)
        if any(s.name.startswith("density_") and s.name not in values for s in expr.free_symbols):
            continue
        out.append((e, evaluate(expr, values), loop_count(c, e, env, oracle, cache)))
    return out


@pytest.mark.parametrize("key", DESIGNS)
def test_point_counts_equal_a_plain_loop_at_two_small_shapes(key):
    c = load(key)
    for shapes in two_shapes(c, key):
        got = counts(c, shapes)
        assert got, (key, "no Einsum counted")
        for e, analysed, looped in got:
            assert analysed == looped, (key, e.name, shapes)


def test_natten_2d_counts_its_clipped_neighbourhood():
    """The reported case: a 6 x 6 canvas, a 3 x 5 window (540 kept pairs:
    every query sees exactly 3 * 5 keys)."""
    c = load("flex/natten-2d")
    shapes = dict(B=1, H=1, E=2, F=2, CH=6, CW=6, KH=3, KW=5)
    qk = next(x for x in counts(c, shapes) if x[0].name == "SN")
    assert qk[1] == qk[2] == 36 * 15


# 2. A fractional shape symbol where arithmetic is on whole numbers ---------------------------

FRACTIONAL = """rank M, P
input S[M, P]: f32
input T[M]: f32
Y[p] = S[m, p] where {pred}
Z[p] = T[{index}] * S[m, p]
"""


@pytest.mark.parametrize("pred, index, where", [
    ("m % W == 0", "m", "m % W"),                     # a predicate's modulo
    ("m // W <= p", "m", "m // W"),                   # a predicate's floor division
    ("(m & W) == 0", "m", "m & W"),                   # a bitwise operator
    ("m <= p", "m // W", "index 1 of T"),             # an access index
    ("m <= p", "m % (W + 1)", "index 1 of T"),        # anywhere inside one
])
def test_a_fractional_symbol_in_integer_arithmetic_is_refused_at_resolve(pred, index, where):
    c = ei.parse(FRACTIONAL.format(pred=pred, index=index))
    with pytest.raises(ei.ShapeError) as err:
        ei.resolve(c, dict(M=6, P=3, W=2.5))
    msg = str(err.value)
    assert "W = 2.5" in msg and "whole" in msg and where in msg, msg
    line = 4 if "index" not in where else 5
    assert err.value.loc is not None and err.value.loc.line == line, msg
    with pytest.raises(ei.ShapeError, match="W = 2.5"):        # every stage resolves first
        ei.execute(c, ei.random_inputs(c, dict(M=6, P=3, W=2)), dict(W=2.5))


@pytest.mark.parametrize("w", [2, 2.0, -2, 3])
def test_whole_values_of_the_same_symbol_run(w):
    c = ei.parse(FRACTIONAL.format(pred="m % W == 0", index="m // 2"))
    env = ei.resolve(c, dict(M=6, P=3, W=w))
    a = ei.random_inputs(c, env, seed=1)
    out = ei.execute(c, a, env)
    m = np.arange(6)
    assert np.allclose(out["Y"], (a["S"] * (m % int(w) == 0)[:, None]).sum(0))


def test_a_fractional_symbol_in_a_value_or_a_comparison_is_not_integer_arithmetic():
    """`%` in a map is a float operation and `m < W` a comparison of
    numbers: both take W = 2.5 (as numpy does)."""
    c = ei.parse("rank M, P\ninput S[M, P]: f32\nY[p] = S[m, p] * (m % W) where m < W\n")
    env = ei.resolve(c, dict(M=6, P=3, W=2.5))
    a = ei.random_inputs(c, env, seed=2)
    m = np.arange(6)[:, None]
    assert np.allclose(ei.execute(c, a, env)["Y"], (a["S"] * (m % 2.5) * (m < 2.5)).sum(0))



@pytest.mark.parametrize("command", ["analyze", "map"])
def test_the_commands_refuse_a_fractional_divisor_by_name(command, tmp_path, capsys):
    """attnc map would otherwise hand W = 2.5 to the kernel's integer `_mod`."""
    from attnc.cli import main
    path = tmp_path / "q_divisor.ein"
    path.write_text(SPAN.replace("or m < SPAN[b, 1]", "and m % W == 0"))
    code = main([command, str(path), "--shape", "B=1", "H=2", "M=256", "P=256", "E=64", "F=64", "W=2.5",
                 "density_SPAN=0.5"])
    err = capsys.readouterr().err
    assert code != 0 and "W = 2.5 is not a whole number" in err and "q_divisor.ein:7:" in err, err

# 3. The pass analysis names what ties two positions ---------------------------------------

def talking_heads():
    text = (Path(__file__).parents[2] / "docs" / "notation.md").read_text()
    block = text[text.index("Talking-heads attention"):]
    return ei.parse(block[block.index("```ein") + 6:block.index("```", block.index("```ein") + 6)])


@pytest.mark.parametrize("rank", ["H"])      # over H2, H is a rank of its own (Q, K, V): 1 pass
def test_one_read_tying_two_positions_is_named_once(rank):    # (tests/einsum_ir/test_alias_inputs.py)
    from einsum_ir.analysis import passes
    why = passes(talking_heads(), rank).unstreamable
    assert why.count("PRE[h, h2]") == 1 and "PRE[h, h2] and PRE[h, h2]" not in why, why
    assert f"two different positions of {rank} at once" in why and ("(h and h2)" in why or "(h2 and h)" in why)


def test_two_distinct_reads_are_both_named():
    from einsum_ir.analysis import passes
    c = ei.parse("rank M\nrank J = M\ninput S[M]: f32\nX[m, j] = S[m] * S[j]\n")
    why = passes(c, "M").unstreamable
    assert "X reads S[m] and S[j] at once" in why or "X reads S[j] and S[m] at once" in why, why


# 4. Literal extents are numbers in formulas and headers ------------------------------------

INTERVALS = """rank NI, P, H
input INTV[NI, 2]: i32
input S[H, P]: f32
Y[h, ni] = S[h, p] where p >= INTV[ni, 0] and p < INTV[ni, 1]
"""

SPAN = """rank B, H, M, P, E, F
input Q[B, H, E, P]: f16
input K[B, H, E, M]: f16
input V[B, H, F, M]: f16
input SPAN[B, 2]: i32 in [0, 64]
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]
GM[b, h, p] = max[m] QK[b, h, m, p] where m >= SPAN[b, 0] or m < SPAN[b, 1]
SN[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p]) where m >= SPAN[b, 0] or m < SPAN[b, 1]
SD[b, h, p] = SN[b, h, m, p]
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m]
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]
"""


def formulas(a):
    yield from a.ops.values()
    yield from (v for d in a.einsum_ops.values() for v in d.values())
    yield from [*a.points.values(), a.flops, *a.sizes.values(), *a.traffic.values(), a.intensity]
    yield from (b for b, _ in a.footprint.candidates)


def test_literal_extents_are_numbers_in_every_formula():
    import sympy
    from einsum_ir.analysis import analyze
    from einsum_ir.analysis.evaluate import evaluate as at
    c = ei.parse(INTERVALS)
    a = analyze(c)
    assert all("_2" not in {s.name for s in sympy.sympify(f).free_symbols} for f in formulas(a))
    ni = sympy.Symbol("NI", positive=True, integer=True)
    assert sympy.simplify(a.sizes["INTV"] - 4 * 2 * ni) == 0             # i32: 4 bytes x NI x 2
    shapes = dict(NI=4, P=16, H=2, density_INTV=0.5)
    inputs = {"INTV": np.zeros((4, 2)), "S": np.zeros((2, 16))}
    assert at(a.traffic["read_bytes"], shapes) == sum(4 * x.size for x in inputs.values())


@pytest.mark.parametrize("argv, text", [
    (["analyze", "INTV", "--shape", "NI=4", "P=16", "H=2", "density_INTV=0.5"], INTERVALS),
    (["map", "SPAN", "--shape", "B=1", "H=2", "M=256", "P=256", "E=64", "F=64", "density_SPAN=0.5"], SPAN),
])
def test_headers_and_formulas_show_no_literal_rank(argv, text, tmp_path, capsys):
    from attnc.cli import main
    path = tmp_path / f"q_{argv[1].lower()}.ein"
    path.write_text(text)
    argv = [argv[0], str(path)] + argv[2:]
    assert main(argv) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "H=2" in line)
    assert "_2=" not in header and ("NI=4" in header or "B=1" in header), header
    shown = [line for line in out.splitlines() if "_2" in line]
    assert all("not streamable over _2" in line or line.startswith("_2 ") for line in shown), shown
    if argv[0] == "analyze":
        assert "[NI, 2]" in out and "8*NI" in out

"""Behaviour that mutation testing (scripts/mutation.sh einsum_ir, see
docs/benchmarks.md) found unchecked by tests/einsum_ir, each now checked
against an independent reference: numpy, the text form, a hand count."""
import numpy as np
import pytest
import sympy

from einsum_ir import execute, library, oracle, parse
from einsum_ir.analysis import analyze, macs
from einsum_ir.builder import CascadeBuilder, eq, indices, ne, select
from einsum_ir.ir import Op
from einsum_ir.unroll import unroll


def test_the_oracle_takes_logarithms_of_values_below_one():
    """log and log2 of values in (0, 1) are finite negatives (not NaN), as numpy's."""
    c = parse("""rank I
input X[I]: f32
L[i] = log(X[i])
L2[i] = log2(X[i])
""")
    x = np.array([0.25, 0.5, 0.999, 1.0, 3.0, 0.0, -0.5, np.nan])
    got = oracle.evaluate(c, {"X": x}, dict(I=len(x)))
    with np.errstate(all="ignore"):
        want = {"L": np.log(x), "L2": np.log2(x)}
    for name, w in want.items():
        np.testing.assert_array_equal(np.isnan(got[name]), np.isnan(w))
        np.testing.assert_allclose(got[name][~np.isnan(w)], w[~np.isnan(w)], rtol=1e-12)


def test_intensity_at_shapes_is_flops_per_compulsory_byte():
    a = analyze(library.load("attention-1pass"))
    at = a.at(dict(B=2, H=4, M=512, P=512, E=64, F=64, M0=64))
    assert at["traffic"]["total_bytes"] > 0
    assert at["intensity"] == pytest.approx(at["flops"] / at["traffic"]["total_bytes"], rel=1e-12)


def test_builder_comparisons_are_the_texts():
    """eq / ne built in Python are the same IR as `==` / `!=` parsed, and run as numpy's."""
    text = """rank I
input X[I]: f32
input Y[I]: f32
E[i] = select(X[i] == Y[i], 1, 0)
N[i] = select(X[i] != Y[i], 1, 0)
"""
    cb = CascadeBuilder("cmp")
    (i,) = indices("i")
    cb.ranks("I")
    x, y = cb.input("X", "I", "f32"), cb.input("Y", "I", "f32")
    e, n = cb.output("E", "I"), cb.output("N", "I")
    cb.einsum(e[i], select(eq(x[i], y[i]), 1, 0))
    cb.einsum(n[i], select(ne(x[i], y[i]), 1, 0))
    built = cb.build()
    assert [(t.name, t.expr) for t in built.einsums] == [(t.name, t.expr) for t in parse(text).einsums]
    xs, ys = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 0.0, 3.0, 5.0])
    out = execute(built, {"X": xs, "Y": ys}, dict(I=4))
    np.testing.assert_array_equal(out["E"], (xs == ys).astype(float))
    np.testing.assert_array_equal(out["N"], (xs != ys).astype(float))


def test_macs_counted_by_hand():
    """One MAC per point of a summed product; none in a cascade without one."""
    qk = parse("""rank B, M, P, E
input Q[B, E, P]: f32
input K[B, E, M]: f32
QK[b, m, p] = Q[b, e, p] * K[b, e, m]
""")
    b, m, p, e = sympy.symbols("B M P E", positive=True, integer=True)
    assert sympy.simplify(macs(qk).subs(dict(zip(sympy.symbols("B M P E"), (b, m, p, e)))) - b * m * p * e) == 0
    scale = parse("""rank P
input X[P]: f32
Y[p] = 2 * X[p]
""")
    assert macs(scale) == 0


def _ops(x):
    if isinstance(x, Op):
        yield x
        for a in x.args:
            yield from _ops(a)


def test_unrolling_keeps_the_source_locations():
    """Each operation of an unrolled Einsum still points at its place in the
    text (so a later error names file:line:col); IR equality ignores
    locations, so only this test sees them."""
    c = parse("""rank C, M, P
input X[C, M, P]: f32
Y[c, p] = max[m] exp(X[c, m, p]) * 2 where m <= p + c
W[p] = Y[0, p] - Y[C - 1, p] * 3
""", file="unroll.ein")
    assert all(o.loc is not None for e in c.einsums for o in _ops(e.expr))     # the premise
    lines = {o.loc.line for e in c.einsums for o in _ops(e.expr)}
    u = unroll(c, "C", dict(C=2, M=3, P=4))
    found = [o for e in u.einsums for o in _ops(e.expr)]
    assert found and all(o.loc is not None and o.loc.line in lines for o in found)


# Traits that hold exactly when a design claims them (checked over 300 designs); the others
# (decode, alias, explicit-reduce, online, two-pass) are claimed by some families only.
TIGHT = ("gqa", "self", "cross", "partition", "ragged-tile", "even-tile", "iterative", "last-iterate",
         "const-index", "mask-tensor", "let", "two-branches", "three-branches", "min-reduce", "lse", "decl",
         "chunked", "relative")


def test_generated_designs_claim_every_trait_they_have():
    """The reverse of test_random_designs' check that claimed features hold:
    a generated design whose cascade has a trait also claims it (the
    soundness benchmark picks designs by their claims)."""
    from einsum_ir.random_designs import random_designs
    from tests.einsum_ir.test_random_designs import CLAIMS

    missing, seen = [], set()
    for d in random_designs(40, 21):
        c = parse(d.text)
        for f in TIGHT:
            try:
                has = CLAIMS[f](d, c)
            except (KeyError, AttributeError):      # the trait's rank or shape is absent
                has = False
            seen |= {f} if has else set()
            if has and f not in d.features:
                missing.append(f"{d.name}: has {f}, does not claim it")
    assert len(seen) >= 15, f"the sample shows only {sorted(seen)}"     # the premise: most traits occur
    assert not missing, "\n".join(missing[:10])


# ------------------------------------------------------------------ found by the fresh run (fourth session)

def test_a_built_cascade_keeps_its_doc():
    """CascadeBuilder(name, doc) gives a cascade whose doc is that text, as
    parsing the same design with the doc as its leading comment does."""
    cb = CascadeBuilder("documented", doc="Squares X.\nSecond line.")
    (i,) = indices("i")
    cb.ranks("I")
    x, y = cb.input("X", "I", "f32"), cb.output("Y", "I")
    cb.einsum(y[i], x[i] * x[i])
    built = cb.build()
    assert built.doc == "Squares X.\nSecond line."
    parsed = parse("# Squares X.\n# Second line.\nrank I\ninput X[I]: f32\nY[i] = X[i] * X[i]\n")
    assert built.doc == parsed.doc and str(built).startswith("# Squares X.\n# Second line.\n")


MASKED = """rank B, H, P, M, E, F
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m] where m <= p + 20 and (m + 2 * p) % 5 != 0
GM[b, h, p] = max[m] QK[b, h, m, p] where m <= p + 20 and (m + 2 * p) % 5 != 0
SN[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p]) where m <= p + 20 and (m + 2 * p) % 5 != 0
SD[b, h, p] = SN[b, h, m, p] where m <= p + 20 and (m + 2 * p) % 5 != 0
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m] where m <= p + 20 and (m + 2 * p) % 5 != 0
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]
"""


@pytest.mark.parametrize("bm,bn,p,m", [(16, 32, 72, 40), (32, 16, 40, 72), (16, 16, 40, 24)])
def test_mask_tiles_hold_each_partial_tiles_mask_when_row_and_key_tiles_differ(bm, bn, p, m):
    """analysis.tiles.mask_tiles, for more row tiles than key tiles and
    fewer: each partial tile (by the classification) holds the predicate's
    mask by plain loops over (query, key), zero past the ends, and `base`
    is each row tile's first tile in that list."""
    from einsum_ir.analysis.fused import recognise
    from einsum_ir.analysis.tiles import PARTIAL, cell_counts, classify, mask_tiles
    from einsum_ir.shapes import resolve
    c = parse(MASKED)
    form = recognise(c)
    env = resolve(c, dict(B=1, H=1, P=p, M=m, E=4, F=4))
    cls = classify(cell_counts(form, 0, env), bm, bn)
    assert cls.shape == (-(-p // bm), -(-m // bn))
    tiles, base = mask_tiles(form, 0, env, cls, (), bm, bn)
    dense = np.zeros((-(-p // bm) * bm, -(-m // bn) * bn), bool)
    for q in range(p):
        for k in range(m):
            dense[q, k] = k <= q + 20 and (k + 2 * q) % 5 != 0
    n = 0
    for r in range(cls.shape[0]):
        assert base[r] == n
        for kt in np.flatnonzero(cls[r] == PARTIAL):
            np.testing.assert_array_equal(tiles[n], dense[r * bm:(r + 1) * bm, kt * bn:(kt + 1) * bn])
            n += 1
    assert n == len(tiles) == (cls == PARTIAL).sum() > 0


def test_a_scan_in_the_walk_is_explained_with_where_it_is_charged():
    """stick-breaking's exclusive reverse cumsum over the keys: its note names
    the scan, the walk's order, the Triton op, and where its cost is
    charged (ScanCarry.ops, the class the GPU model reads)."""
    from einsum_ir.analysis.fused import recognise
    from einsum_ir.analysis.tile_program import ScanCarry, tile_program, walk_notes
    (note,) = walk_notes(tile_program(recognise(library.load("stick-breaking"))))
    assert note.startswith("a scan carried in the walk: Z = cumsum[m, reverse, exclusive] along the keys")
    assert "from the last down" in note and "tl.cumsum" in note and "exclusive: the scan at the previous key" in note
    assert note.endswith(f"charged per tile: {ScanCarry.__name__}.{ScanCarry.ops.__name__})")


def test_the_verify_shapes_of_a_split_recurrence_cross_chunks_and_a_partial_tile():
    """rewrites.small_shapes, the shapes a rewrite is checked at: for
    attention-1pass split into chunks of MT key tiles (split-kv), at least
    two chunks (so the combine across chunks runs), every chunk of two or
    more tiles (so each chunk's own recurrence runs) and a partial last tile."""
    from einsum_ir.rewrites import rewrite, small_shapes
    d = rewrite(library.load("attention-1pass"), "split-kv", verify=False).cascade
    s = small_shapes(d)
    tiles = -(-s["M"] // s["M0"])
    chunks = [min(s["MT"], tiles - k * s["MT"]) for k in range(-(-tiles // s["MT"]))]
    assert len(chunks) >= 2 and min(chunks) >= 2 and s["M"] % s["M0"] != 0, s


@pytest.mark.parametrize("w", [0, 1, 3, 8])
def test_a_window_of_any_width_down_to_zero_is_counted_by_the_symbolic_counts(w):
    """sliding-window's kept points (m <= p and p - m < W) at W = 0 (no key:
    nothing kept), 1, 3 and 8, as counted by loops over (query, key); the
    symbolic counts take shape symbols to be integers >= 0, 0 included."""
    shapes = dict(B=1, H=2, M=8, P=8, E=4, F=4, W=w)
    got = analyze(library.load("sliding-window")).at(shapes)["points"]
    kept = sum(1 for p in range(8) for m in range(8) if m <= p and p - m < w)
    assert got["GM"] == 2 * kept and got["QK"] == 2 * kept * 4


# ---- survivors of the seed-22 sample (docs/benchmarks.md)

def test_a_rank_no_einsum_uses_takes_no_pass():
    """An unused rank: 0 passes, said in the plural."""
    from einsum_ir.analysis import passes
    c = parse("""rank M, P
input X[P]: f32
Y[p] = X[p] * 2
""")
    r = passes(c, "M")
    assert r.passes == 0
    assert r.explain() == ["no Einsum traverses M: 0 passes"]


def test_the_builder_reads_an_iterative_rank_of_a_two_letter_name():
    """`M1+1` declares rank M1 with one more element (the iterates of a
    recurrence), as the text `X[B, M1+1]` does."""
    cb = CascadeBuilder()
    cb.ranks("B")
    cb.partition("M", "M1", "M0")
    cb.tensor("RM", "B, M1+1")
    decl = cb.statements[-1]
    assert decl.ranks == ("B", "M1")
    assert decl.iterative == frozenset({"M1"})
    text = parse("rank B\npartition M -> M1, M0\ninput X[B, M]: f32\n"
                 "RM[b, 0] = 0\nRM[b, m1 + 1] = RM[b, m1] + X[b, m1 * M0 + m0]\nY[b] = RM[b, M1] * 2\n")
    assert text.tensor("RM").ranks == decl.ranks and text.tensor("RM").iterative == decl.iterative


def test_online_refusal_says_no_max_only_when_there_is_none():
    """attention-1pass carries a max over the key tiles (LM over m0): its
    refusal must not say it has none; linear attention has none."""
    from einsum_ir.rewrites import RewriteError, rewrite
    with pytest.raises(RewriteError) as one:
        rewrite(library.load("attention-1pass"), "online")
    assert "already makes 1 pass over M" in str(one.value)
    assert "no max normaliser" not in str(one.value)
    with pytest.raises(RewriteError, match=r"already makes 1 pass over M \(it has no max normaliser to carry\)"):
        rewrite(library.load("linear-attention"), "online")


def test_online_refusal_of_two_passes_with_no_max_to_carry():
    """Forgetting attention without its max: its gates' prefix sum, written
    as a sum over an alias, costs a pass of its own, and the sums over the
    keys have no normaliser the online form could carry: refused as such,
    not rewritten into a form that still takes two passes."""
    from einsum_ir.analysis.passes import passes
    from einsum_ir.rewrites import RewriteError, rewrite

    from .test_online_agreement import FOX
    src = FOX.replace("GATES\n", "rank J = M\nLF[b, h, m] = log(FG[b, h, m])\nCF[b, h, m] = LF[b, h, j] where j <= m\n")
    c = parse(src.replace("GM[b, h, p] = max[m] S[b, h, m, p] where m <= p\n", "").replace(" - GM[b, h, p]", ""))
    assert passes(c, "M").passes == 2
    with pytest.raises(RewriteError, match=r"to the online form: no max \(or min\) over m to carry as a running "
                                           r"value; its sums over the keys need no second pass"):
        rewrite(c, "online", verify=False)


def test_a_split_kv_refusal_points_at_the_einsum_it_names():
    """The refusal is located at KV's line, column 1, in the design's file."""
    from einsum_ir.rewrites import RewriteError, rewrite
    c = library.load("lightning-attention")
    with pytest.raises(RewriteError) as err:
        rewrite(c, "split-kv")
    loc = err.value.loc
    kv = next(e for e in c.einsums if e.name == "KV" and not e.is_initial)
    assert loc is not None and (loc.line, loc.column) == (kv.loc.line, 1)
    assert c.source.splitlines()[loc.line - 1].startswith("KV[b, h, e, f, m1 + 1] =")
    assert f":{loc.line}:1: error: cannot rewrite lightning-attention to the split-kv form: KV:" in str(err.value)


def test_a_chunk_programs_loads_name_their_tensors_and_tiles():
    """Linear attention's chunked program at 16-token chunks: the key walk
    loads K and V tiles, the query walk Q tiles, each 16 x 16 (by hand: a
    chunk of tokens times the padded feature extent 16)."""
    from einsum_ir.analysis.chunk_program import chunk_program
    from einsum_ir.analysis.chunked import recognise
    from einsum_ir.shapes import resolve
    c = library.load("linear-attention")
    env = resolve(c, dict(B=1, H=2, M=40, P=40, E=4, F=4))
    p = chunk_program(recognise(c), env, block_n=16)
    walks = [{ld.access.tensor for s in lp.steps for ld in s.loads} for lp in p.loops]
    assert walks == [{"K", "V"}, {"Q"}]
    for lp in p.loops:
        for s in lp.steps:
            for ld in s.loads:
                assert ld.elements == 16 * 16 and ld.per_chunk
                assert c.tensor(ld.access.tensor).role == "input"


# ---- survivors of the seed-23 sample (docs/benchmarks.md)

def test_a_chunked_refusal_names_the_einsum_it_is_about():
    from einsum_ir.analysis.chunked import ChunkedFormError, recognise
    with pytest.raises(ChunkedFormError, match="linear-attention-causal does not fit a chunked linear kernel: "
                                               "KV: a recurrence over m, one token at a time"):
        recognise(library.load("linear-attention-causal"))


def test_two_sequence_walks_that_need_each_others_results_are_refused():
    """The key walk needs QS (a sum over the queries) and the query walk
    needs KV (a sum over the keys): neither can run first."""
    from einsum_ir.analysis.chunked import ChunkedFormError, recognise
    c = parse("""rank B, H, M, P, E, F
input Q[B, H, E, P]: f16
input K[B, H, E, M]: f16
input V[B, H, F, M]: f16
QS[b, h, e] = Q[b, h, e, p]
KV[b, h, e, f] = K[b, h, e, m] * V[b, h, f, m] * QS[b, h, e]
O[b, h, f, p] = Q[b, h, e, p] * KV[b, h, e, f]
""", name="crossed")
    with pytest.raises(ChunkedFormError, match="crossed does not fit a chunked linear kernel: the loops over m, p "
                                               "each need the other's result first"):
        recognise(c)


def test_shifts_of_coordinates_by_the_executor_and_numpy():
    c = parse("""rank M
input X[M]: f32
Y[m] = X[m] * ((m << 2) - (m >> 1)) where (m << 1) < 9
""")
    x = np.arange(1.0, 7.0)
    m = np.arange(6)
    want = np.where((m << 1) < 9, x * ((m << 2) - (m >> 1)), 0.0)
    np.testing.assert_array_equal(execute(c, {"X": x}, dict(M=6))["Y"], want)


def test_the_printed_masks_stand_apart_from_the_einsums():
    c = parse("rank M, P\ninput X[M, P]: f32\nmask causal = m <= p\nY[m, p] = X[m, p] where causal\n")
    lines = str(c).splitlines()
    k = lines.index("mask causal = m <= p")
    assert lines[k + 1] == "" and lines[k + 2] == "Y[m, p] = X[m, p] where causal"
    assert parse(str(c)) == c


def test_exp_of_the_normaliser_minus_itself_has_no_degree():
    """exp(G - G) is not exp(A - G) with A free of G."""
    from einsum_ir.ir import Access, Idx
    from einsum_ir.rewrites.algebra import exp_degree
    g = Access("G", (Idx("p"),))
    assert exp_degree(Op("exp", (Op("sub", (g, g)),)), "G", lambda a: None) is None


def test_a_running_sum_rescaled_by_two_factors_is_refused_for_split_kv():
    from einsum_ir.rewrites import RewriteError, rewrite
    one = str(library.load("attention-1pass"))
    old = "SPD[b, h, m1, p] = RD[b, h, m1, p] * PRM[b, h, m1, p]"
    assert one.count(old) == 1
    c = parse(one.replace(old, "SPD[b, h, m1, p] = RD[b, h, m1, p] * (PRM[b, h, m1, p] * "
                                "exp(LM[b, h, m1, p] - RM[b, h, m1 + 1, p]))"), name="two-factors")
    with pytest.raises(RewriteError, match="two-factors to the split-kv form: RD: RD is rescaled by two different "
                                           "factors") as err:
        rewrite(c, "split-kv")
    assert err.value.loc is not None


def test_a_statistic_read_at_other_indices_inside_the_walk_is_refused_for_online():
    from einsum_ir.rewrites import RewriteError, rewrite
    three = str(library.load("attention-3pass"))
    c = parse(three.replace("exp(QK[b, h, m, p] - GM[b, h, p])", "exp(QK[b, h, m, p] - GM[b, h, 0])"), name="odd")
    with pytest.raises(RewriteError, match=r"odd to the online form: SN: reads the statistic GM\[b, h, 0\] inside "
                                           r"the walk, not at the indices it is written at \(GM\[b, h, p\]\)"):
        rewrite(c, "online")


@pytest.mark.parametrize("index, k", [("max(0, 1)", 1), ("abs(0 - 2)", 2), ("1 << 1", 2), ("xor(1, 3)", 2),
                                      ("7 % 3", 1), ("-7 // 3 + 3", 0), ("C - 1", 2)])
def test_any_constant_index_is_read_where_the_executor_reads_it(index, k):
    """A constant index of any operator: the bounds check and the unrolled
    cascade read component k, as the executor does."""
    from einsum_ir.shapes import resolve
    from einsum_ir.unroll import unroll_constant_indices
    c = parse(f"""rank B, C, M
input X[B, C, M]: f32
S[b, c] = X[b, c, m]
Y[b] = S[b, {index}] * 2
""")
    shapes = dict(B=2, C=3, M=4)
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    u = unroll_constant_indices(c, resolve(c, shapes))
    want = 2 * x[:, k, :].sum(axis=1)
    np.testing.assert_allclose(execute(c, {"X": x}, shapes)["Y"], want, rtol=1e-12)
    np.testing.assert_allclose(execute(u, {"X": x}, shapes)["Y"], want, rtol=1e-12)


def test_constant_indices_out_of_range_or_gathered():
    """Out of range: refused naming the index and the extent. A gather at a
    constant position is no constant: an input read so is left to the
    run-time check every gather has; an intermediate cannot be unrolled at it."""
    from einsum_ir.shapes import resolve
    from einsum_ir.unroll import UnrollError, unroll_constant_indices
    head = "rank B, C, M, N\ninput X[B, C, M]: f32\ninput IDX[N]: i32\nS[b, c] = X[b, c, m]\n"
    shapes = dict(B=2, C=3, M=4, N=2)
    c = parse(head + "Y[b] = S[b, max(0, 5)] + IDX[0]\n")
    with pytest.raises(UnrollError, match=r"reads index 5 of S's rank 2 \(C\), which has 3 elements"):
        unroll_constant_indices(c, resolve(c, shapes))
    c = parse(head + "Y[b] = X[b, IDX[0], 0] + S[b, 0]\n")
    u = unroll_constant_indices(c, resolve(c, shapes))
    x, idx = np.random.default_rng(1).standard_normal((2, 3, 4)), np.array([2, 0])
    np.testing.assert_allclose(execute(u, {"X": x, "IDX": idx}, shapes)["Y"], x[:, 2, 0] + x[:, 0, :].sum(axis=1))
    c = parse(head + "Y[b] = S[b, IDX[0]] + S[b, 1]\n")
    with pytest.raises(UnrollError, match=r"Y: S's rank C is indexed by IDX\[0\], which is not a constant whole "
                                          r"number once the rank is unrolled"):
        unroll_constant_indices(c, resolve(c, shapes))


def test_a_pass_with_an_unmasked_einsum_computes_every_point():
    """attention-3pass with the causal mask on SN alone: each pass holds
    Einsums without a predicate, so some Einsum computes every point (any =
    every point), while all are kept only at m <= p (P (P + 1) / 2, by hand)."""
    from einsum_ir.analysis.fused import recognise
    from einsum_ir.analysis.tiles import cell_counts
    from einsum_ir.shapes import resolve
    text = str(library.load("attention-3pass"))
    old = "SN[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p])"
    c = parse(text.replace(old, old + " where m <= p"), name="masked-sn")
    form = recognise(c)
    env = resolve(c, dict(B=1, H=1, M=40, P=40, E=2, F=2))
    for k in range(form.passes):
        assert None in form.predicates(k)
        cc = cell_counts(form, k, env)
        assert int(cc.any.sum()) == int(cc.exist.sum()) == 40 * 40
        assert int(cc.all.sum()) == 40 * 41 // 2


def test_a_condition_as_a_value_is_refused_saying_how_to_use_it():
    from einsum_ir.errors import ValidationError
    with pytest.raises(ValidationError, match=r"the value of Y is a condition; use select\(cond, a, b\), a number "
                                              r"times it \(a condition is 1 or 0 as a number\), or put it in a "
                                              r"`where` clause"):
        parse("rank M\ninput X[M]: f32\nY[m] = X[m] > 0\n")


def test_a_rewritten_reduction_over_an_output_variable_is_refused():
    """Rewrites build cascades without the parser and validate them: a
    reduction over a variable of the output is refused there too."""
    import dataclasses

    from einsum_ir.errors import ValidationError
    from einsum_ir.validate import validate
    c = parse("rank M, N\ninput X[M, N]: f32\nY[m] = X[m, n]\n")
    e = c.einsums[0]
    bad = dataclasses.replace(c, einsums=(dataclasses.replace(e, reduced=("n", "m")),))
    with pytest.raises(ValidationError, match="Y reduces over m, which is in its output"):
        validate(bad)


# ---- survivors of the seed-25 sample (docs/benchmarks.md)

def test_a_chunked_walk_reading_a_state_at_a_fixed_iterate_is_refused_at_its_einsum():
    from einsum_ir.analysis.chunked import ChunkedFormError, recognise
    text = str(library.load("lightning-attention"))
    old = "* DQ[h, m0] * KV[b, h, e, f, m1]"
    assert text.count(old) == 1
    c = parse(text.replace(old, "* DQ[h, m0] * KV[b, h, e, f, 0]"), name="fixed")
    with pytest.raises(ChunkedFormError, match=r"fixed does not fit a chunked linear kernel: OX: reads "
                                               r"KV\[b, h, e, f, 0\] at a fixed index") as err:
        recognise(c)
    assert err.value.loc is not None and c.source.splitlines()[err.value.loc.line - 1].startswith("OX[")


def test_statement_ops_count_each_operator_once_by_kind():
    """attention-3pass's SN = exp(QK - GM): one subtraction (an add) and one
    exp, at every point of the tile; a select counts its condition's compare
    and one select."""
    from collections import Counter

    from einsum_ir.analysis.fused import recognise
    from einsum_ir.analysis.tile_program import POINT, statement_ops
    from einsum_ir.ir import Access, Idx, Num
    form = recognise(library.load("attention-3pass"))
    sn = next(e for e in form.cascade.einsums if e.name == "SN")
    assert statement_ops(form, sn.expr) == Counter({("add", POINT): 1, ("exp", POINT): 1})
    qk = Access("QK", (Idx("b"), Idx("h"), Idx("m"), Idx("p")))
    sel = Op("select", (Op("gt", (qk, Num(0.0))), qk, Op("mul", (qk, Num(0.5)))))
    got = statement_ops(form, sel)
    assert got[("select", POINT)] == 1 and got[("mul", POINT)] == 1 and sum(got.values()) == 3


STICKS = """rank B, H, P, E, F
rank M = P
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
S[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m] where m <= p
Z[b, h, m, p] = cumsum[m, exclusive] -softplus(S[b, h, m, p]) where m <= p
A[b, h, m, p] = exp(logsigmoid(S[b, h, m, p]) + Z[b, h, m, p]) where m <= p
AV[b, h, f, p] = A[b, h, m, p] * V[b, h, f, m] where m <= p
"""


def test_a_scan_in_the_walk_is_charged_its_carry_work():
    """An exclusive prefix sum along the keys, by the ScanCarry rule's own
    list: the local scan and the carry added at every point (2), the
    total's row sum (1), the previous key's value and the first key's
    identity (2 selects), the previous key's column (2 integer ops per key),
    the carry's update per row (1); and the ordered walk's merge of the
    block table (WALK_MERGE_INT)."""
    from collections import Counter

    from einsum_ir.analysis.fused import recognise
    from einsum_ir.analysis.tile_program import KEY, POINT, ROW, UNIFORM, WALK_MERGE_INT, scan_work, tile_program
    (pp,) = tile_program(recognise(parse(STICKS))).passes
    assert pp.walk == "forward" and len(pp.scans) == 1
    assert scan_work(pp) == Counter({("add", POINT): 3, ("select", POINT): 2, ("int", KEY): 2, ("add", ROW): 1,
                                     ("int", UNIFORM): WALK_MERGE_INT})


@pytest.mark.parametrize("where", ["where DQ[p] == DK[m] and m <= p", "where not (DQ[p] != DK[m]) and m <= p"])
def test_counts_without_a_masks_values_bound_the_counts_with_them(where):
    """Documents read from DQ and DK, and causal: without their values the
    counts are bounds (any: the causal points, 40 x 41 / 2; all: none); with
    four documents of ten tokens, the exact 4 x (10 x 11 / 2) lies between.
    Written under a `not`, the unknown condition's bounds swap polarity and
    the counts are the same."""
    from einsum_ir.analysis.fused import recognise
    from einsum_ir.analysis.tiles import cell_counts
    from einsum_ir.shapes import resolve
    c = parse(f"""rank B, H, M, P, E, F
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
input DQ[P]: i32
input DK[M]: i32
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m] {where}
GM[b, h, p] = max[m] QK[b, h, m, p] {where}
SN[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p]) {where}
SD[b, h, p] = SN[b, h, m, p] {where}
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m] {where}
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]
""", name="docs")
    form = recognise(c)
    env = resolve(c, dict(B=1, H=1, M=40, P=40, E=2, F=2))
    docs = np.repeat(np.arange(4), 10)
    for k in range(form.passes):
        bound = cell_counts(form, k, env)
        exact = cell_counts(form, k, env, {"DQ": docs, "DK": docs})
        assert bound.unknown == ("DK", "DQ") and exact.unknown == ()
        assert int(bound.any.sum()) == 40 * 41 // 2 and int(bound.all.sum()) == 0
        assert int(exact.any.sum()) == int(exact.all.sum()) == 4 * 55
        assert (bound.all <= exact.all).all() and (exact.any <= bound.any).all()


def test_unrolled_components_keep_their_declarations_place():
    """Each component tensor is declared where the tensor it comes from was,
    so an error about it points at the user's line; a name clash says so
    with the source line."""
    from einsum_ir.unroll import UnrollError, unroll
    c = parse("""rank C, M, P
input X[C, M, P]: f32
tensor Y[C, P]: f32
Y[c, p] = max[m] X[c, m, p]
W[p] = Y[0, p] - Y[1, p]
""")
    u = unroll(c, "C", dict(C=2, M=3, P=4))
    y = c.tensor("Y")
    assert [u.tensor(n).loc for n in ("Y_C0", "Y_C1")] == [y.loc, y.loc] and y.loc is not None
    clash = parse(str(c).replace("input X[C, M, P]: f32", "input X[C, M, P]: f32\ninput Y_C1[P]: f32")
                  .replace("W[p] = Y[0, p] - Y[1, p]", "W[p] = Y[0, p] - Y[1, p] + Y_C1[p]"))
    with pytest.raises(UnrollError, match="cannot unroll C: the name Y_C1 is taken") as err:
        unroll(clash, "C", dict(C=2, M=3, P=4))
    assert "tensor Y[C, P]: f32" in str(err.value)          # the declaration's line, quoted from the source


def test_the_online_rewrite_explains_its_rescaling_and_the_empty_rows():
    from einsum_ir.rewrites import rewrite
    from einsum_ir.rewrites.derive import Rescale
    r = rewrite(library.load("attention-3pass"), "online", verify=False)
    text = "\n".join(r.explanation) + r.text
    assert "A normaliser that is still -inf (no finite score yet) is used as 0, so masked scores add 0." in text
    one = Rescale("SD", (("GM", 1),)).why()
    assert "exp(A - GM) times GM-free factors" in one and "^" not in one
    assert "exp(A - GM)^2 times GM-free factors" in Rescale("S2", (("GM", 2),)).why()


def test_a_scan_across_the_query_rows_is_refused_saying_why():
    from einsum_ir.analysis.fused import FusedFormError, recognise
    c = parse(STICKS.replace("cumsum[m, exclusive] -softplus(S[b, h, m, p])", "cumsum[p] S[b, h, m, p]"))
    with pytest.raises(FusedFormError, match=r"Z: cumsum\[p\] along the query rank of \(b, h, m, p\): a program "
                                             r"holds one tile of rows, so a scan across rows or batch coordinates "
                                             r"would need the other programs' values; it is not generated \(a scan "
                                             r"along the key rank of the tile is\)"):
        recognise(c)


def test_a_read_of_the_previous_position_streams_in_one_pass():
    """X[m] = S[m - 1]: when position m is visited, S[m - 1] was computed at
    the visit before, so X[m] is final then and Y reads it in the same
    traversal (one pass), as a streaming loop over m would run it."""
    from einsum_ir.analysis import passes
    c = parse("rank M\ninput A[M]: f32\nS[m] = A[m] * 2\nX[m] = S[m - 1] where m >= 1\nY[m] = X[m] * A[m]\n")
    r = passes(c, "M")
    assert r.passes == 1 and r.einsum_pass == {"S": 1, "X": 1, "Y": 1}
    a = np.arange(1.0, 6.0)
    y = execute(c, {"A": a}, dict(M=5))["Y"]
    prev = np.concatenate([[0.0], 2 * a[:-1]])            # a streaming loop: S of the previous visit
    np.testing.assert_array_equal(y, prev * a)


def test_an_expression_too_large_is_refused_at_its_place():
    from einsum_ir.errors import ParseError
    from einsum_ir.parser import MAX_NODES
    terms = " + ".join(["X[m]"] * (MAX_NODES // 2 + 1))
    with pytest.raises(ParseError, match=f"expression too large \\(more than {MAX_NODES} nodes\\)") as err:
        parse(f"rank M\ninput X[M]: f32\nY[m] = {terms}\n")
    assert err.value.loc is not None and err.value.loc.line == 3


def test_an_integer_literal_with_leading_zeros_is_its_value():
    c = parse("rank M\ninput X[M]: f32\nY[m] = X[m] * " + "0" * 400 + "7\n")
    assert c.einsums[0].expr.args[1].value == 7.0


def test_a_derived_rank_of_no_elements_is_refused():
    from einsum_ir.shapes import ShapeError, resolve
    c = parse("rank M\nrank R = M - 4\ninput X[M]: f32\ninput W[R]: f32\nY[m] = X[m] * W[0]\n")
    assert resolve(c, dict(M=5))["R"] == 1
    with pytest.raises(ShapeError, match=r"rank R = M - 4 gives 0, not a positive integer, at M=4"):
        resolve(c, dict(M=4))


@pytest.mark.parametrize("lo, hi", [(float("nan"), 1.0), (0.0, float("nan"))])
def test_a_domain_with_a_nan_end_is_refused(lo, hi):
    """The text cannot write NaN; a built cascade can."""
    from einsum_ir.errors import ValidationError
    from einsum_ir.ir import Domain
    cb = CascadeBuilder("nan-domain")
    cb.ranks("M")
    x = cb.input("X", "M", domain=Domain(lo, hi))
    m, = indices("m")
    cb.einsum(cb.tensors("Y")[0][m], x[m])
    with pytest.raises(ValidationError, match="the domain of X has a closed infinite or NaN end"):
        cb.build()


# ---- refusals no test reached (coverage of tests/einsum_ir, 2026-11-30), each with its Einsum and line

LIN = str(library.load("linear-attention"))
LIGHT = str(library.load("lightning-attention"))
OX = "OX[b, h, f, m1, m0] = sum[e] Q[b, h, e, m1 * M0 + m0] * DQ[h, m0] * KV[b, h, e, f, m1]"


def _chunked_refusal(text, name, match, einsum=None):
    from einsum_ir.analysis.chunked import ChunkedFormError, recognise
    c = parse(text, name=name)
    with pytest.raises(ChunkedFormError, match=f"{name} does not fit a chunked linear kernel: " + match) as err:
        recognise(c)
    if einsum is not None:
        assert c.source.splitlines()[err.value.loc.line - 1].startswith(einsum + "[")
    return err.value


def test_chunked_refusals_of_the_design_as_a_whole():
    _chunked_refusal(LIN + "output KS2[B, H, E]: f32\nKS2[b, h, e] = KS[b, h, e] * 2\n", "two-outputs",
                     "2 outputs; a chunked kernel writes one")
    _chunked_refusal("rank M, P, E, F\ninput Q[E, P]: f16\ninput K[E, M]: f16\ninput V[F, M]: f16\n"
                     "KV[e, f] = K[e, m] * V[f, m]\nAV[f, p] = Q[e, p] * KV[e, f]\n", "no-batch",
                     r"no batch rank \(one that indexes every sequence input and the output, never reduced\)")


def test_chunked_refusals_name_the_einsum_that_breaks_the_chunks():
    assert OX in LIGHT
    _chunked_refusal(LIGHT.replace(OX, OX.replace("* KV[b, h, e, f, m1]", "* KV[b, h, e, f, m1] * K[b, h, e, m]")
                                   .replace("sum[e]", "sum[e, m]")), "both", "OX: iterates over both m and m0; "
                     "read m as M1-chunks", "OX")
    text = LIGHT.replace("DC[h] = exp(M0 * log(LAM[h]))", "DC[h] = exp(M0 * log(LAM[h]))\n"
                         "KT[b, h, e] = sum[m] K[b, h, e, m]").replace(OX, OX + " * KT[b, h, e]")
    _chunked_refusal(text, "whole", r"KT: reduces over m, the partitioned rank: write the reduction over m1 and "
                     r"m0 \(sum\[m1, m0\] ..\)", "KT")


def test_fused_refusals_name_the_einsum_that_leaves_the_tile():
    from einsum_ir.analysis.fused import FusedFormError, recognise
    a3 = str(library.load("attention-3pass"))
    sn = "SN[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p])"
    av = "AV[b, h, f, p] = A[b, h, m, p] * V[b, h, f, m]"
    extra = (a3.replace("rank B, H, M, P, E, F", "rank B, H, M, P, E, F, R")
             .replace("input V[B, H, F, M]: f16", "input V[B, H, F, M]: f16\ninput W[R]: f32")
             .replace(sn, sn + "\nX[b, h, r, m, p] = SN[b, h, m, p] * W[r]")
             .replace(av, av.replace("V[b, h, f, m]", "V[b, h, f, m] * X[b, h, 0, m, p]")))
    cases = [(extra, r"X: element-wise over the key rank but also over r; a tile holds only the query and key "
                     r"positions", "X"),
             (a3.replace("GM[b, h, p] = max[m] QK[b, h, m, p]", "GM[b, h, p] = max[m, e] QK[b, h, m, p] * Q[b, h, e, p]"),
              r"GM: reduces over e together with the key rank m; a fused kernel reduces only over keys", "GM")]
    for text, match, einsum in cases:
        c = parse(text, name="leaves")
        with pytest.raises(FusedFormError, match="leaves does not fit a fused attention kernel: " + match) as err:
            recognise(c)
        assert c.source.splitlines()[err.value.loc.line - 1].startswith(einsum + "[")


def test_a_rewrite_over_a_rank_the_design_lacks_names_its_ranks():
    from einsum_ir.rewrites import RewriteError, rewrite
    with pytest.raises(RewriteError, match="cannot rewrite attention-3pass to the online form: it has no "
                                           "unpartitioned rank Z; its ranks are B, H, M, P, E, F"):
        rewrite(library.load("attention-3pass"), "online", rank="Z")


@pytest.mark.parametrize("old, new, einsum, match", [
    ("RM[b, h, 0, p] = -inf", "RM[b, h, 0, p] = 0", "RM",
     r"RM: a max recurrence that is not RM\[t\+1\] = max\(RM\[t\], L\) from -inf"),
    ("PRM[b, h, m1, p] = exp(RM[b, h, m1, p] - RM[b, h, m1 + 1, p])",
     "PRM[b, h, m1, p] = exp(RM[b, h, m1, p] - LM[b, h, m1, p])", "RD",
     r"RD: the rescaling exp\(RM\[b, h, m1, p\] - LM\[b, h, m1, p\]\) of RD is not exp\(G\(t\) - G\(t\+1\)\) of "
     r"one value G"),
    ("SLN[b, h, m1, m0, p] = exp(BQK[b, h, m1, m0, p] - RM[b, h, m1 + 1, p])",
     "SLN[b, h, m1, m0, p] = BQK[b, h, m1, m0, p] * RM[b, h, m1 + 1, p]", "RD",
     r"RD: the new terms of RD are not exp\(A - G\)\^1 times G-free factors for its normaliser G = "
     r"RM\[b, h, m1 \+ 1, p\], so a chunk's sum cannot be moved to another normaliser"),
    ("AV[b, h, f, p] = RNV[b, h, f, M1, p] / RD[b, h, M1, p]",
     "AV[b, h, f, p] = RNV[b, h, f, M1, p] / RD[b, h, M1, p] + LM[b, h, 0, p]", "AV",
     r"AV: reads LM, a per-tile value, after the walk"),
])
def test_split_kv_refusals_name_the_recurrence_and_why(old, new, einsum, match):
    """attention-1pass changed in one line so that its tiles cannot be split
    into chunks combined afterwards: each refusal names the Einsum, at its line."""
    from einsum_ir.rewrites import RewriteError, rewrite
    one = str(library.load("attention-1pass"))
    assert one.count(old) == 1
    c = parse(one.replace(old, new), name="changed")
    with pytest.raises(RewriteError, match="cannot rewrite changed to the split-kv form: " + match) as err:
        rewrite(c, "split-kv", verify=False)
    assert c.source.splitlines()[err.value.loc.line - 1].startswith(einsum + "[")


# ---- survivors of the seed-26 sample (docs/benchmarks.md)

def test_the_step_after_a_chunk_walk_that_writes_the_output_is_the_output():
    """attention-1pass as a chunked program: AV, after the walk over the key
    tiles, is the cascade's output; no other step is."""
    from einsum_ir.analysis.chunk_program import chunk_program
    from einsum_ir.analysis.chunked import recognise
    from einsum_ir.shapes import resolve
    c = library.load("attention-1pass")
    env = resolve(c, dict(B=1, H=2, M=64, P=64, E=4, F=4, M0=16))
    p = chunk_program(recognise(c, env), env, block_n=16)
    roles = {s.einsum.name: s.role for lp in p.loops for s in lp.steps + lp.states + lp.after}
    assert roles["AV"] == "output" and c.outputs[0].name == "AV"
    assert [n for n, r in roles.items() if r == "output"] == ["AV"]


def test_the_degree_of_a_negated_term_is_the_terms():
    from einsum_ir.ir import Access, Idx
    from einsum_ir.rewrites.algebra import exp_degree
    s, g = Access("S", (Idx("m"), Idx("p"))), Access("G", (Idx("p"),))
    term = Op("exp", (Op("sub", (s, g)),))
    assert exp_degree(Op("neg", (term,)), "G", lambda a: None) == 1
    assert exp_degree(Op("neg", (s,)), "G", lambda a: None) == 0


def test_an_integer_power_of_a_coordinate_is_an_integer_index():
    """m ^ 2 with a whole exponent is an integer: a valid index and
    bitwise operand, as numpy computes it."""
    c = parse("rank M, N\ninput X[N]: f32\nY[m] = X[m ^ (2 ^ 1)] + xor(m ^ 2, 1)\n")   # a power as exponent too
    x = np.arange(10.0) * 3
    m = np.arange(3)
    np.testing.assert_array_equal(execute(c, {"X": x}, dict(M=3, N=10))["Y"], x[m ** 2] + ((m ** 2) ^ 1))


def test_a_fractional_symbol_in_integer_arithmetic_is_refused_at_its_use():
    from einsum_ir.shapes import ShapeError, check_whole
    c = parse("rank M, P\ninput X[M, P]: f32\nY[m, p] = X[m, p] where (m - p) % W == 0\n")
    check_whole(c, dict(M=4, P=4, W=2))
    with pytest.raises(ShapeError, match=r"shape symbol W = 2.5 is not a whole number, but Y uses it in the integer "
                                         r"operation \(m - p\) % W in the predicate") as err:
        check_whole(c, dict(M=4, P=4, W=2.5))
    assert (err.value.loc.line, err.value.loc.column) == (3, 25)       # the `%`, not the Einsum's start


def test_the_simulated_traversal_names_the_rank_it_walked():
    from einsum_ir.analysis.traversal import simulate_passes
    r = simulate_passes(library.load("attention-3pass"), "M", dict(B=1, H=1, M=4, P=3, E=2, F=2))
    assert (r.rank, r.passes) == ("M", 3)


def test_a_prefix_product_is_explained_as_a_running_product():
    from einsum_ir.analysis import passes
    text = STICKS.replace("cumsum[m, exclusive] -softplus(S[b, h, m, p])", "cumprod[m] (1 - sigmoid(S[b, h, m, p]))")
    notes = passes(parse(text), "M").explain()
    assert ("Z: cumprod[m] is a prefix scan along M: a running product carried from position to position, its "
            "element m final when m is visited: no extra pass") in notes


def test_sequence_ranks_not_longer_than_the_registers_are_refused_saying_so():
    from einsum_ir.analysis.chunked import ChunkedFormError, recognise
    from einsum_ir.shapes import resolve
    c = parse("rank B, H, M, P, E, F\ninput Q[B, H, E, P]: f16\ninput K[B, H, E, M]: f16\ninput V[B, H, F, M]: f16\n"
              "KV[b, h, e, f] = K[b, h, e, m] * V[b, h, f, m]\nS[b, h, p] = Q[b, h, e, p] * K[b, h, e, m]\n"
              "O[b, h, f, p] = Q[b, h, e, p] * KV[b, h, e, f] * S[b, h, p]\n", name="two")
    with pytest.raises(ChunkedFormError, match="no Einsum may iterate over two, and they must be longer than the "
                                               "ranks held in registers"):
        recognise(c, resolve(c, dict(B=1, H=1, M=8, P=8, E=4, F=4)))


def test_the_oracle_refuses_an_input_of_the_wrong_rank_naming_its_declaration():
    from einsum_ir.shapes import ShapeError
    c = parse("rank M, N\ninput X[M, N]: f32\nY[m] = X[m, n]\n")
    with pytest.raises(ShapeError, match=r"input X has 3 dimensions, its declaration \[M, N\] 2"):
        oracle.evaluate(c, {"X": np.zeros((2, 3, 4))}, dict(M=2, N=3))


def test_the_split_kv_text_says_how_each_chunks_sum_moves_to_the_global_normaliser():
    from einsum_ir.rewrites import rewrite
    text = rewrite(library.load("attention-3pass"), "split-kv", verify=False).text
    assert ("# SD = sum over the chunks of LSD times exp(SGM - GM): each chunk's terms move from the chunk's "
            "normaliser to the global one") in text.splitlines()


def test_a_predicates_integer_compares_are_each_counted():
    """sliding-window's `m <= p and p - m < W`: two integer compares and one
    subtraction (3 integer operations per point), one `and`."""
    from collections import Counter

    from einsum_ir.analysis.fused import recognise
    from einsum_ir.analysis.tile_program import POINT, statement_ops
    form = recognise(library.load("sliding-window"))
    pred = next(e.predicate for e in form.cascade.einsums if e.predicate is not None)
    assert str(pred) == "m <= p and p - m < W"
    assert statement_ops(form, pred, cond=True) == Counter({("int", POINT): 3, ("logic", POINT): 1})


def test_a_floor_in_an_address_is_counted_once_per_key():
    """K[b, h, e, floor(m / 2.5)]: the reciprocal of 2.5 once (uniform), then
    per key one multiply and one floor (the floor's kind from the operator
    table)."""
    from collections import Counter

    from einsum_ir.analysis.fused import recognise
    from einsum_ir.analysis.tile_program import KEY, UNIFORM, statement_ops
    from einsum_ir.ir import Access, Idx, Num
    from einsum_ir.ops import RULES
    form = recognise(library.load("attention-3pass"))
    a = Access("K", (Idx("b"), Idx("h"), Idx("e"), Op("floor", (Op("div", (Idx("m"), Num(2.5))),))))
    assert statement_ops(form, a) == Counter({("divide", UNIFORM): 1, ("mul", KEY): 1, (RULES["floor"].kind, KEY): 1})


# ---- fresh run, seed 27 (2026-11-30): the sampled mutants no test detected

@pytest.mark.parametrize("design, einsum, ops", [
    # p - m + M - 1: three integer operations per point (the address), the bias add a float one
    ("relative-bias", "S", {("int", frozenset("pm")): 3, ("add", frozenset("pm")): 1}),
    # the distance m - p is integer work even as a value (times the head's slope): one op, then a mul and an add
    ("alibi", "S", {("int", frozenset("pm")): 1, ("mul", frozenset("pm")): 1, ("add", frozenset("pm")): 1}),
    # h / G: one integer division per program (no tile axis), the score a multiply per point
    ("gqa", "QK", {("int", frozenset()): 1, ("mul", frozenset("pm")): 1}),
    # BT[b, m // BS] (the gather's own address) and m % BS per key, h / G per program; one query row
    ("paged-attention", "QK", {("int", frozenset()): 1, ("int", frozenset("m")): 2, ("mul", frozenset("m")): 1}),
])
def test_address_arithmetic_is_integer_work(design, einsum, ops):
    """A computed index is integer work on the axes it varies over, never a
    float add or multiply (the GPU model charges them on different units)."""
    from einsum_ir.analysis.fused import recognise
    from einsum_ir.analysis.tile_program import statement_ops
    c = library.load(design)
    assert dict(statement_ops(recognise(c), c.writers(einsum)[0].expr)) == ops


def test_why_a_sum_is_not_online_names_a_row_values_kind():
    """AV's term reads R = 1 / SD, a row value made from the pass's sum: the
    kernel cannot rescale it while the keys stream, so AV runs in a second
    pass, and the reason says what R is."""
    from einsum_ir.analysis.fused import recognise

    from ..designs import SELF_ATTENTION_HEADER
    f = recognise(parse(SELF_ATTENTION_HEADER + """QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]
GM[b, h, p] = max[m] QK[b, h, m, p]
SD[b, h, p] = exp(QK[b, h, m, p] - GM[b, h, p])
R[b, h, p] = 1 / SD[b, h, p]
AV[b, h, f, p] = exp(QK[b, h, m, p] - GM[b, h, p]) * V[b, h, f, m] * R[b, h, p]
"""))
    assert f.passes == 2
    assert f.not_online == {"AV": "its term reads R (row value over m, or made from one) inside the walk; only a "
                                  "normaliser made of maxima over m can be corrected while the keys stream, a sum "
                                  "is complete only after the whole walk (defer a division by it first)"}


def test_a_divisor_that_is_zero_only_where_the_predicate_removes_the_point():
    """m - 2 is 0 at m = 2, a point the where clause removes: no error, and
    the kept points divide."""
    out = execute(parse("rank M\ninput X[M]: f32\nY[m] = X[m] / (m - 2) where m != 2\n"), {"X": np.arange(5.0)})["Y"]
    assert np.array_equal(out, [0.0, -1.0, 0.0, 3.0, 2.0])


@pytest.mark.parametrize("index, says", [("-1", "the constant -1 is below 0"), ("7", "the constant 7 is past the end")])
def test_a_constant_index_out_of_range_is_named_once(index, says):
    from einsum_ir.errors import ExecutionError
    with pytest.raises(ExecutionError) as err:
        execute(parse(f"rank M\ninput X[M]: f32\nY[m] = X[{index}] * X[m]\n"), {"X": np.arange(4.0)})
    assert err.value.message == (f"index out of range: X[{index}] at rank 1 (M) of X, which takes values in [0, 3]: "
                                 f"{says}, at m=0")
    assert (err.value.line, err.value.column) == (3, 8)


def test_a_rank_defined_by_itself_is_refused_at_its_name():
    from einsum_ir.errors import ValidationError
    with pytest.raises(ValidationError) as err:
        parse("rank M\nrank H = H * 2\ninput X[M]: f32\nY[m] = X[m]\n")
    assert err.value.message == "the extent of rank H is defined in terms of itself"
    assert (err.value.line, err.value.column) == (2, 6)


def test_a_cascade_whose_every_tensor_is_read_again_has_no_output():
    from einsum_ir.errors import ValidationError
    with pytest.raises(ValidationError) as err:
        parse("rank M\ninput X[M]: f32\nS[0] = 0\nS[m + 1] = S[m] + X[m]\n")
    assert err.value.message == ("the cascade has no output: every tensor it computes is read again (declare one "
                                 "with `output NAME[...]`)")
    assert (err.value.line, err.value.column) == (4, 1)


@pytest.mark.parametrize("where, keep", [
    ("m // 4 == p // 4", lambda m, p: m // 4 == p // 4),
    ("m // 4 <= p // 3 and (m * p) % 5 == 0", lambda m, p: m // 4 <= p // 3 and (m * p) % 5 == 0),
])
def test_a_count_kept_symbolic_with_floors_evaluates_to_the_points(where, keep):
    """A predicate with floors that has no closed form stays a Kept term
    (its floors written one way, `_canonical_kept`), and evaluates at any
    shapes to the points a loop counts (a seed-26 survivor)."""
    from einsum_ir.analysis import evaluate
    from einsum_ir.analysis.points import Kept, points
    c = parse(f"rank M, P\ninput X[M, P]: f32\nY[p] = X[m, p] where {where}\n")
    n = points(c, c.einsums[0])
    assert n.has(Kept)
    for mm, pp in ((10, 10), (13, 7)):
        assert evaluate(n, dict(M=mm, P=pp)) == sum(keep(m, p) for m in range(mm) for p in range(pp))


def test_a_sum_of_an_alias_input_read_at_the_keys_is_ready_only_after_its_pass():
    """CNT[b] counts DOC[b, m] over the keys (DOC over P, M = P: a read at
    each key's position): final after a whole pass, so the scores that read
    it need a second; the traversal simulator agrees (the seed-26
    `_position_vars` 12 survivor counted 1)."""
    from einsum_ir.analysis.passes import passes
    from einsum_ir.analysis.traversal import simulate_passes
    c = parse("""rank B, H, P, E, F
rank M = P
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
input DOC[B, P]: i32
CNT[b] = select(DOC[b, m] == 0, 1, 0)
S[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m] * CNT[b]
AV[b, h, f, p] = S[b, h, m, p] * V[b, h, f, m]
""")
    assert passes(c, "M").passes == 2
    assert simulate_passes(c, "M", dict(B=1, H=1, E=2, F=2, P=4)).passes == 2


def test_an_analysis_over_a_rank_the_design_lacks_names_its_ranks():
    from einsum_ir.errors import EinError
    with pytest.raises(EinError) as err:
        analyze(library.load("gqa"), rank="Z")
    assert err.value.message == "gqa has no rank Z; its ranks are B, H, M, P, E, F, KH"


@pytest.mark.parametrize("where", ["p >= 2 and m <= p and m >= 3", "m <= p and m >= 3 and p >= 2",
                                   "m >= 3 and p >= 2 and m <= p and p != 7"])
def test_a_projection_keeps_every_condition_of_the_rows(where):
    """Rows p that keep some m: every conjunct counts, those free of m
    (p >= 2, p != 7) as they are, whatever their place (a seed-28 survivor
    dropped the ones after the first free of m)."""
    from einsum_ir.analysis import evaluate
    from einsum_ir.analysis.points import projected_points
    c = parse(f"rank M, P\ninput X[M, P]: f32\nY[p] = X[m, p] where {where}\n")
    n, _ = projected_points(c, c.einsums[0], frozenset(["p"]))
    keep = eval("lambda m, p: " + where.replace("!=", "!= "))
    for mm, pp in ((10, 12), (5, 9), (3, 6)):
        assert evaluate(n, dict(M=mm, P=pp)) == sum(any(keep(m, p) for m in range(mm)) for p in range(pp))

"""Masks that read tensors (document masks, prefix-LM with per-sequence
prefix lengths, global tokens, shared prefixes): the analyses count their
kept points symbolically with a named density (einsum_ir/analysis/density.py),
and exactly when the tensors are given. The references are plain numpy
broadcasts of each mask written here, independently of the executor."""
from fractions import Fraction

import numpy as np
import pytest
import sympy

import einsum_ir as ei
from einsum_ir.analysis import analyze, evaluate
from einsum_ir.analysis.density import data_densities, density_values
from einsum_ir.analysis.fused import recognise
from einsum_ir.analysis.points import points
from einsum_ir.analysis.tiles import EMPTY, FULL, cell_counts, classify
from tests.designs import masked_softmax

HEAD = """empty rows = 0
rank B, H, P, E, F
rank M = P
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
"""
# name -> (declarations and mask, numpy reference of the mask over [b, p, m] from the arrays and W)
MASKS = {
    "document": ("input DOC[B, P]: i32\nmask vis = DOC[b, p] == DOC[b, m] and m <= p\n",
                 lambda a, p, m, w: (a["DOC"][:, :, None] == a["DOC"][:, None, :]) & (m <= p)),
    "prefix-lm": ("input PRE[B]: i32\nmask vis = m <= p or m < PRE[b]\n",
                  lambda a, p, m, w: (m <= p) | (m < a["PRE"][:, None, None])),
    "global-tokens": ("input G[P]: bool\nmask vis = abs(p - m) <= W or G[p] or G[m]\n",
                      lambda a, p, m, w: (np.abs(p - m) <= w) | a["G"][None, :, None] | a["G"][None, None, :]),
    "shared-prefix": ("input DOC[B, P]: i32\ninput PL[B]: i32\n"
                      "mask vis = m <= p and (m < PL[b] or DOC[b, p] == DOC[b, m])\n",
                      lambda a, p, m, w: (m <= p) & ((m < a["PL"][:, None, None])
                                                     | (a["DOC"][:, :, None] == a["DOC"][:, None, :]))),
}


def design(name):
    return ei.parse(masked_softmax(HEAD + MASKS[name][0]))


def values(name, b, n, seed):
    """Random mask tensors of the kind each mask reads: sorted document ids,
    prefix lengths in 0..n, a few global tokens."""
    rng = np.random.default_rng(seed)
    doc = np.sort(rng.integers(0, 4, (b, n)), axis=1).astype(np.int32)
    return {"DOC": doc, "PRE": rng.integers(0, n + 1, b).astype(np.int32),
            "PL": rng.integers(0, n // 2, b).astype(np.int32), "G": rng.random(n) < 0.1}


def kept(name, arrays, b, n, w):
    """The mask as a numpy [b, p, m] boolean array (broadcast to full shape)."""
    p, m = np.arange(n)[None, :, None], np.arange(n)[None, None, :]
    return np.broadcast_to(MASKS[name][1](arrays, p, m, w), (b, n, n))


def needed(c, arrays):
    return {t.name: arrays[t.name] for t in c.inputs if t.name in arrays}


@pytest.mark.parametrize("name", sorted(MASKS))
def test_symbolic_counts_carry_a_named_density(name):
    c = design(name)
    dens = data_densities(c)
    assert len(dens) == 1                      # one mask, one quantity, on every Einsum that uses it
    (sym_name, d), = dens.items()
    a = analyze(c)
    assert a.densities == {sym_name: d.meaning()} and "fraction of the" in d.meaning()
    sym = d.symbol
    for e in ("QK", "GM", "SN", "SD", "SNV"):
        assert sym in a.points[e].free_symbols, e
    assert sym in a.ops["exp"].free_symbols and sym in a.flops.free_symbols
    assert sym in a.footprint.bytes.free_symbols            # QK held whole: its kept points
    if name in ("document", "shared-prefix"):              # the index-only part is counted, not folded in
        assert "m <= p" in str(a.points["QK"])


@pytest.mark.parametrize("name", sorted(MASKS))
@pytest.mark.parametrize("seed", [0, 1])
def test_counts_from_values_equal_a_brute_force_count(name, seed):
    c = design(name)
    b, n, h, e, f, w = 2, 29 + 8 * seed, 3, 4, 5, 3
    arrays = values(name, b, n, seed)
    shapes = dict(B=b, P=n, H=h, E=e, F=f) | ({"W": w} if name == "global-tokens" else {})
    a = analyze(c, inputs=needed(c, arrays), shapes=shapes)
    got = a.at()
    mask = kept(name, arrays, b, n, w)
    k = int(mask.sum())                                           # (b, p, m) points kept
    assert got["points"]["QK"] == h * e * k
    assert got["points"]["GM"] == got["points"]["SD"] == got["points"]["SN"] == h * k
    assert got["points"]["SNV"] == h * f * k
    assert got["ops"]["exp"] == h * k and got["ops"]["max"] == h * k
    assert got["ops"]["mac"] == h * (e + f) * k
    sym_name, = a.densities
    # the density: kept points over those the index-only conjuncts keep, in the box of the variables it reads
    if name in ("document", "shared-prefix"):        # conditioned on the conjunct m <= p
        want = Fraction(k, b * n * (n + 1) // 2)
    elif name == "prefix-lm":                        # one conjunct (an `or` reading PRE): the (b, m, p) box
        want = Fraction(k, b * n * n)
    else:                                            # global tokens read no b: the (m, p) box
        want = Fraction(int(mask[0].sum()), n * n)
    assert a.measured["densities"][sym_name] == want


def test_density_values_are_exact_fractions_and_given_densities_agree():
    c = design("document")
    arrays = values("document", 2, 40, 3)
    env = ei.resolve(c, dict(H=1, E=2, F=2), needed(c, arrays))
    dv = density_values(c, env, needed(c, arrays))
    (name, frac), = dv.items()
    assert isinstance(frac, Fraction)
    expr = points(c, c.einsums[0])
    exact = evaluate(expr, {**env, name: frac})
    assert exact == int(kept("document", arrays, 2, 40, 0).sum()) * 2
    # the same figure with the density given by hand (as --shape density_vis=...)
    approx = evaluate(expr, {**env, name: float(frac)})
    assert approx == pytest.approx(exact)


def test_the_same_data_part_under_other_conditions_is_another_quantity():
    c = ei.parse("""rank B, P
rank M = P
input S[B, M, P]: f32
input DOC[B, P]: i32
A[b, p] = S[b, m, p] where DOC[b, p] == DOC[b, m]
C[b, p] = S[b, m, p] where DOC[b, p] == DOC[b, m] and m <= p
D[b, p] = S[b, m, p] where m <= p and DOC[b, p] == DOC[b, m]
X[b, p] = A[b, p] + C[b, p] + D[b, p]
""")
    dens = data_densities(c)
    assert sorted(dens) == ["density_DOC", "density_DOC_2"]
    assert dens["density_DOC_2"].einsums == ("C", "D") and dens["density_DOC"].einsums == ("A",)
    doc = np.array([[0, 0, 1, 1, 1, 2]], np.int32)
    a = analyze(c, inputs={"DOC": doc}).at()
    same = doc[:, :, None] == doc[:, None, :]
    p, m = np.arange(6)[:, None], np.arange(6)[None, :]
    assert a["points"]["A"] == same.sum() and a["points"]["C"] == a["points"]["D"] == (same & (m <= p)).sum()


def test_a_bare_bool_mask_keeps_its_density_name():
    c = ei.library.load("block-sparse")
    assert list(data_densities(c)) == ["density_BM"]


def test_measured_densities_hold_at_the_inputs_extents_only():
    c = design("document")
    arrays = needed(c, values("document", 2, 16, 0))
    a = analyze(c, inputs=arrays, shapes=dict(H=1, E=2, F=2))
    with pytest.raises(ei.ShapeError, match="counted from the inputs at P = 16"):
        a.at(dict(P=32))
    with pytest.raises(ei.ShapeError, match="counted from the inputs"):
        a.at({"density_vis": 0.5})


def test_given_densities_are_checked_by_name_and_range():
    c = design("prefix-lm")
    assert ei.resolve(c, dict(B=1, H=1, P=4, E=1, F=1, density_vis=0.25))["density_vis"] == 0.25
    with pytest.raises(ei.ShapeError, match=r"density_vis is fraction of the .* must lie in \[0, 1\]"):
        ei.resolve(c, dict(B=1, H=1, P=4, E=1, F=1, density_vis=1.5))
    with pytest.raises(ei.ShapeError, match="its masks: density_vis"):
        ei.resolve(c, dict(B=1, H=1, P=4, E=1, F=1, density_PRE=0.5))
    with pytest.raises(ei.ShapeError, match="no value for density_vis"):
        analyze(c).at(dict(B=1, H=1, P=4, E=1, F=1))


def test_missing_mask_values_are_named():
    c = design("shared-prefix")
    arrays = values("shared-prefix", 1, 8, 0)
    with pytest.raises(ei.ShapeError, match="read PL: give its values"):
        analyze(c, inputs={"DOC": arrays["DOC"]}, shapes=dict(B=1, H=1, E=1, F=1))


# ------------------------------------------------------------ tile classes with and without the values

def tile_classes(mask, bm, bn):
    """EMPTY / PARTIAL / FULL per (b, query tile, key tile) from a [b, p, m] mask, by hand."""
    b, n, _ = mask.shape
    rt, kt = -(-n // bm), -(-n // bn)
    out = np.zeros((b, rt, kt), np.int8)
    for i in range(rt):
        for j in range(kt):
            blk = mask[:, i * bm:(i + 1) * bm, j * bn:(j + 1) * bn]
            full_size = blk.shape[1] == bm and blk.shape[2] == bn
            out[:, i, j] = np.where(~blk.any((1, 2)), EMPTY, np.where(blk.all((1, 2)) & full_size, FULL, 1))
    return out


@pytest.mark.parametrize("name", sorted(MASKS))
def test_tiles_from_values_are_exact_and_without_them_a_bound(name):
    c = design(name)
    b, n, w = 2, 70, 5
    shapes = dict(B=b, H=1, P=n, E=4, F=4) | ({"W": w} if name == "global-tokens" else {})
    env = ei.resolve(c, shapes)
    form = recognise(c, env)
    bounded = cell_counts(form, 0, env)
    assert bounded.unknown                             # the tensors it lacked are named
    hi = classify(bounded, 16, 32)
    for seed in range(3):
        arrays = needed(c, values(name, b, n, seed))
        exact = cell_counts(form, 0, env, arrays)
        assert not exact.unknown
        cls = classify(exact, 16, 32)
        ref = tile_classes(kept(name, arrays, b, n, w), 16, 32)
        assert np.array_equal(np.broadcast_to(cls.reshape((-1,) + cls.shape[-2:]), ref.shape), ref)
        hib = np.broadcast_to(hi.reshape((-1,) + hi.shape[-2:]), ref.shape)
        assert not np.any((hib == EMPTY) & (ref != EMPTY))      # a tile skipped without values is empty
        assert not np.any((hib == FULL) & (ref != FULL))        # a tile full without values is full
    if name in ("document", "shared-prefix"):               # the causal part is known: tiles above it skipped
        assert (hi == EMPTY).any()


def test_tile_counts_are_cached_by_the_values():
    c = design("document")
    env = ei.resolve(c, dict(B=1, H=1, P=48, E=2, F=2))
    form = recognise(c, env)
    one = values("document", 1, 48, 0)["DOC"]
    a = cell_counts(form, 0, env, {"DOC": one})
    assert cell_counts(form, 0, env, {"DOC": one.copy()}) is a          # same values: the same counts
    other = one.copy()
    other[0, 0] = 9
    assert cell_counts(form, 0, env, {"DOC": other}) is not a


def test_symbols_are_sympy_positive_so_they_cancel_with_legacy_densities():
    c = design("document")
    (name, d), = data_densities(c).items()
    assert d.symbol == sympy.Symbol(name, positive=True)


def test_a_mask_on_computed_values_keeps_its_symbol_when_inputs_are_given():
    c = ei.parse("""rank M, P
input S[M, P]: f32
input DQ[P]: i32
input DK[M]: i32
T[m, p] = S[m, p] * 2
Y[p] = S[m, p] where T[m, p] > 0 and DQ[p] == DK[m]
Z[p] = S[m, p] where DQ[p] == DK[m]
""")
    dq, dk = np.array([0, 0, 1, 1], np.int32), np.array([0, 1, 1], np.int32)
    a = analyze(c, inputs={"DQ": dq, "DK": dk})
    assert set(a.densities) == {"density_T_DQ_DK", "density_DQ_DK"}
    assert a.measured["densities"] == {"density_DQ_DK": Fraction(int((dq[:, None] == dk[None, :]).sum()), 12)}
    with pytest.raises(ei.ShapeError, match="density_T_DQ_DK"):
        a.at()
    assert a.at({"density_T_DQ_DK": 0.5})["points"]["Y"] == 6


def test_a_density_meaning_keeps_the_parentheses_of_an_or():
    """`A and (B or C)` must not read as `A and B or C` in the report."""
    import attnc
    src = ("rank B, H, M, P, E, ND\ninput Q[B, H, E, P]: f32\ninput K[B, H, E, M]: f32\n"
           "input DQ[P]: i32\ninput DK[M]: i32\ninput OFF[ND]: i32\n"
           "S[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m] where DQ[p] == DK[m] and m <= p and "
           "(m - OFF[DK[m]] < 4 or p - m < 8)\n")
    (meaning,) = attnc.analyze(ei.parse(src)).densities.values()
    assert "DQ[p] == DK[m] and (m - OFF[DK[m]] < 4 or p - m < 8)" in meaning
    assert "among those with m <= p" in meaning

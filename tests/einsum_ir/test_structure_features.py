"""Structural features of the notation (docs/notation.md): named masks,
repeated ranks in a declaration, input domains, literal extents, and `let`
bodies over the caller's coordinates. Each is parsed, printed back
(parse(print(c)) == c, and the printed text keeps the user's spelling), run
by the executor against a plain numpy loop or einsum written from the
mathematics, and misused to check the located error."""
from __future__ import annotations

import math

import numpy as np
import pytest

import einsum_ir as ei
from einsum_ir.execute import check_domains
from einsum_ir.ir import Domain
from einsum_ir.shapes import symbols_used


def roundtrip(c):
    """parse(print(c)) == c, and printing is a fixed point."""
    text = str(c)
    again = ei.parse(text)
    assert again == c, text
    assert str(again) == text
    return text


def error_at(text, kind=ei.EinError):
    with pytest.raises(kind) as err:
        ei.parse(text, file="f.ein")
    return err.value


def rng_arrays(seed, **shapes):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s) for k, s in shapes.items()}


# ------------------------------------------------------------------ named masks

MASKED = """\
rank M, P
input S[M, P]: f32
mask causal = m <= p
mask window = p - m < W
GM[p] = max[m] S[m, p] where causal and window
SN[m, p] = exp(S[m, p] - GM[p]) where causal and m >= p - W + 1
SD[p] = SN[m, p] where causal
Y[m, p] = SN[m, p] / SD[p] where window and causal
"""

INLINE = """\
rank M, P
input S[M, P]: f32
GM[p] = max[m] S[m, p] where m <= p and p - m < W
SN[m, p] = exp(S[m, p] - GM[p]) where m <= p and m >= p - W + 1
SD[p] = SN[m, p] where m <= p
Y[m, p] = SN[m, p] / SD[p] where p - m < W and m <= p
"""


def test_masks_expand_to_the_written_predicates_and_print_by_name():
    c = ei.parse(MASKED)
    assert c == ei.parse(INLINE)                   # every analysis sees plain predicates
    assert [m.name for m in c.masks] == ["causal", "window"]
    text = roundtrip(c)
    assert "where causal and window" in text and "where window and causal" in text
    assert "mask causal = m <= p" in text
    assert ei.parse(text).masks == c.masks


def test_masked_softmax_matches_a_numpy_loop():
    c = ei.parse(MASKED)
    M, P, W = 6, 7, 3
    S = rng_arrays(1, S=(M, P))["S"]
    got = ei.execute(c, {"S": S}, {"W": W})["Y"]
    want = np.zeros((M, P))
    for p in range(P):
        keys = [m for m in range(M) if m <= p and p - m < W]
        if keys:
            w = np.exp(S[keys, p] - S[keys, p].max())
            want[keys, p] = w / w.sum()
    assert np.allclose(got, want, rtol=1e-12, atol=0)


def test_a_mask_may_use_earlier_masks_and_tensors():
    text = ("rank P\nrank M = P\ninput S[M, P]: f32\ninput DOC[P]: i32\nmask causal = m <= p\n"
            "mask same = causal and DOC[m] == DOC[p]\nY[m, p] = S[m, p] where same\n")
    c = ei.parse(text)
    printed = roundtrip(c)
    assert "mask same = causal and DOC[m] == DOC[p]" in printed
    S = rng_arrays(2, S=(5, 5))["S"]
    doc = np.array([0, 0, 1, 1, 1])
    got = ei.execute(c, {"S": S, "DOC": doc})["Y"]
    m, p = np.indices((5, 5))
    assert np.array_equal(got, np.where((m <= p) & (doc[m] == doc[p]), S, 0))


@pytest.mark.parametrize("text, kind, line, col, words", [
    # m is not an index of AV: the error is at the use
    ("mask causal = m <= p\nY[m, p] = S[m, p] where causal\nZ[p] = S[0, p] where causal\n",
     ei.ParseError, 5, 22, ["mask 'causal' uses m", "not an index of Z"]),
    ("mask causal = m <= p\nY[m, p] = S[m, p]\n", ei.ValidationError, 3, 6, ["never used"]),
    ("mask causal = m <= p\nmask causal = m < p\nY[m, p] = S[m, p] where causal\n", ei.ParseError, 4, 6,
     ["already defined"]),
    ("mask m = p < 3\nY[p] = S[0, p] where m\n", ei.ValidationError, 3, 6, ["index variable of rank M"]),
    ("mask causal = m <= p\nY[m, p] = S[m, p] where causal(m, p)\n", ei.ParseError, 4, 25, ["is a mask"]),
    ("mask near = p - m\nY[m, p] = S[m, p] where near\n", ei.ValidationError, 3, 13, ["must be a condition"]),
    ("mask causal = m <= p\nlet f(m) = causal and m > 0\nY[m, p] = S[m, p] where f(m)\n", ei.ParseError, 4, 5,
     ["parameter 'm' of 'f'", "mask 'causal'"]),
    ("mask exp = m <= p\nY[m, p] = S[m, p] where exp\n", ei.ParseError, 3, 6, ["built-in"]),
])
def test_mask_misuse_is_a_located_error(text, kind, line, col, words):
    err = error_at("rank M, P\ninput S[M, P]: f32\n" + text, kind)
    assert (err.loc.line, err.loc.column) == (line, col), str(err)
    for w in words:
        assert w in err.message, str(err)


# ------------------------------------------------------------------ repeated ranks

TALKING = """\
# Talking-heads attention: logits and weights mixed across heads
rank B, H, M, P, E, F
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
input PRE[H, H]: f32
input POST[H, H]: f32
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]
L[b, h2, m, p] = PRE[h, h2] * QK[b, h, m, p]
GM[b, h2, p] = max[m] L[b, h2, m, p]
SN[b, h2, m, p] = exp(L[b, h2, m, p] - GM[b, h2, p])
SD[b, h2, p] = SN[b, h2, m, p]
A[b, h2, m, p] = SN[b, h2, m, p] / SD[b, h2, p]
WM[b, h, m, p] = POST[h2, h] * A[b, h2, m, p]
AV[b, h, f, p] = WM[b, h, m, p] * V[b, h, f, m]
"""


def test_a_repeated_rank_is_an_alias_the_language_makes():
    c = ei.parse(TALKING)
    assert c.tensor("PRE").ranks == ("H", "H2")
    h2 = c.rank("H2")
    assert h2.implicit and h2.definition == ei.parse("rank H\nrank X = H\ninput S[X]: f32\nY[x] = S[x]\n"
                                                      ).rank("X").definition
    text = roundtrip(c)
    assert "input PRE[H, H]: f32" in text and "rank H2" not in text
    # writing the alias out is the same design
    explicit = TALKING.replace("rank B, H, M, P, E, F", "rank B, H, M, P, E, F\nrank H2 = H").replace(
        "PRE[H, H]", "PRE[H, H2]").replace("POST[H, H]", "POST[H, H2]")
    assert ei.parse(explicit) == c


def test_talking_heads_matches_numpy():
    c = ei.parse(TALKING)
    B, H, M, P, E, F = 2, 3, 5, 4, 3, 2
    x = rng_arrays(3, Q=(B, H, E, P), K=(B, H, E, M), V=(B, H, F, M), PRE=(H, H), POST=(H, H))
    got = ei.execute(c, x)["AV"]
    logits = np.einsum("bhep,bhem->bhmp", x["Q"], x["K"])
    mixed = np.einsum("hg,bhmp->bgmp", x["PRE"], logits)           # PRE[h, h2]: from head h to head h2
    w = np.exp(mixed - mixed.max(axis=2, keepdims=True))
    w /= w.sum(axis=2, keepdims=True)
    post = np.einsum("gh,bgmp->bhmp", x["POST"], w)                 # POST[h2, h]
    assert np.allclose(got, np.einsum("bhmp,bhfm->bhfp", post, x["V"]), rtol=1e-10, atol=1e-12)


def test_third_occurrence_and_digit_ending_ranks():
    c = ei.parse("rank M1\ninput S[M1, M1, M1]: f32\nY[m1] = S[m1, m1_2, m1_3]\n")
    assert c.tensor("S").ranks == ("M1", "M1_2", "M1_3")
    assert "input S[M1, M1, M1]: f32" in roundtrip(c)
    S = rng_arrays(4, S=(3, 3, 3))["S"]
    assert np.allclose(ei.execute(c, {"S": S})["Y"], S.sum(axis=(1, 2)))


@pytest.mark.parametrize("text, line, words", [
    ("rank M, M2\ninput S[M, M]: f32\nY[m] = S[m, m2]\n", 2, ["repeated M", "rank M2 is already declared"]),
    ("rank M\nrank M2 = M + 1\ninput S[M, M]: f32\nY[m] = S[m, m2]\n", 3, ["already declared", "M + 1"]),
    ("rank M\ntensor S[M+1, M+1]: f32\nS[0, m] = 0\nS[m + 1, m2] = S[m, m2]\n", 2, ["iterative"]),
    ("rank M\ninput S[M, M]: f32\nrank M2\nY[m] = S[m, m2]\n", 3, ["already made by the language"]),
])
def test_repeated_rank_conflicts_are_located(text, line, words):
    err = error_at(text)
    assert err.loc.line == line, str(err)
    for w in words:
        assert w in err.message, str(err)


# ------------------------------------------------------------------ input domains

@pytest.mark.parametrize("written, domain, printed", [
    ("in (0, 1)", Domain(0, 1, False, False), "in (0, 1)"),
    ("in [0, 1)", Domain(0, 1, True, False), "in [0, 1)"),
    ("in (-1, 1]", Domain(-1, 1, False, True), "in (-1, 1]"),
    ("in [-2.5, 0.5]", Domain(-2.5, 0.5, True, True), "in [-2.5, 0.5]"),
    ("> 0", Domain(0, math.inf, False, False), "> 0"),
    ("in (0, inf)", Domain(0, math.inf, False, False), "> 0"),
    (">= 1", Domain(1, math.inf, True, False), ">= 1"),
    ("< 1e-3", Domain(-math.inf, 1e-3, False, False), "< 0.001"),
    ("<= -1", Domain(-math.inf, -1, False, True), "<= -1"),
    ("in [3, 3]", Domain(3, 3, True, True), "in [3, 3]"),
])
def test_domains_parse_print_and_draw_inside(written, domain, printed):
    c = ei.parse(f"rank M\ninput G[M]: f16 {written}\nY[m] = G[m]\n")
    assert c.tensor("G").domain == domain
    assert f"input G[M]: f16 {printed}" in roundtrip(c)
    x = ei.random_inputs(c, {"M": 4000}, seed=5)["G"]
    assert np.all(domain.contains(x))
    assert np.all(domain.contains(x.astype(np.float16)))     # still inside once rounded to the declared f16
    if domain.lo < domain.hi:
        assert len(np.unique(x)) > 100                       # spread over the domain, not one value


def test_a_domain_leaves_the_other_inputs_unchanged():
    base = "rank M\ninput A[M]: f32\ninput G[M]: f32{}\ninput Z[M]: f32\nY[m] = A[m] * G[m] * Z[m]\n"
    plain = ei.random_inputs(ei.parse(base.format("")), {"M": 50}, seed=3)
    gated = ei.random_inputs(ei.parse(base.format(" in (0, 1)")), {"M": 50}, seed=3)
    assert np.array_equal(plain["A"], gated["A"]) and np.array_equal(plain["Z"], gated["Z"])
    assert np.all((gated["G"] > 0) & (gated["G"] < 1)) and not np.all((plain["G"] > 0) & (plain["G"] < 1))


def test_integer_domains_draw_whole_numbers_of_the_domain():
    c = ei.parse("rank M\ninput LEN[M]: i32 in [2, 5]\ninput N[M]: i32 > 0\ninput X[M]: i32 in (0, 3)\n"
                 "Y[m] = LEN[m] + N[m] + X[m]\n")
    x = ei.random_inputs(c, {"M": 2000}, seed=1)
    assert set(np.unique(x["LEN"])) == {2, 3, 4, 5}
    assert set(np.unique(x["X"])) == {1, 2}
    assert np.all(x["N"] >= 1) and np.all(x["N"] == np.round(x["N"]))


def test_execute_checks_inputs_against_their_domains_on_request():
    c = ei.parse("rank B, M\ninput G[B, M]: f32 in (0, 1)\nY[b, m] = log(G[b, m])\n")
    g = np.full((2, 3), 0.5)
    ei.execute(c, {"G": g}, check_domains=True)
    g[1, 2] = 1.0
    ei.execute(c, {"G": g})                                     # not checked unless asked
    with pytest.raises(ei.ShapeError) as err:
        ei.execute(c, {"G": g}, check_domains=True)
    assert "G" in err.value.message and "b=1, m=2" in err.value.message and "in (0, 1)" in err.value.message
    assert str(err.value).splitlines() == [
        "<string>:2:7: error: input G has 1.0 at [b=1, m=2], outside its declared domain in (0, 1) "
        "(1 of 6 elements are outside)", "  input G[B, M]: f32 in (0, 1)", "        ^"]
    g[0, 0] = np.nan
    with pytest.raises(ei.ShapeError, match="nan"):
        check_domains(c, {"G": g})


@pytest.mark.parametrize("decl, col, words", [
    ("input G[M]: f32 in [0, inf]", 24, ["closed end", "finite"]),
    ("input G[M]: f32 in (1, 0)", 21, ["empty domain"]),
    ("input G[M]: f32 in (1, 1]", 21, ["empty domain"]),
    ("input G[M]: f32 == 0", 17, ["not `==`"]),
    ("input G[M]: i32 in (0, 1)", 7, ["holds no i32 value"]),
    ("input G[M]: bool in (0, 1)", 7, ["bool"]),
    ("tensor G[M]: f32 in (0, 1)", 8, ["not an input"]),
])
def test_bad_domains_are_located(decl, col, words):
    read = "G[m]" if "input" in decl else "X[m]"
    extra = "" if "input" in decl else "input X[M]: f32\nG[m] = X[m]\n"
    err = error_at(f"rank M\n{decl}\n{extra}Y[m] = {read} + G[m]\n".replace("G[m] + G[m]", "G[m]"))
    assert (err.loc.line, err.loc.column) == (2, col), str(err)
    for w in words:
        assert w in err.message, str(err)


# every shape symbol a library design needs, small; an unknown one gets 2
SMALL = dict(B=2, H=4, M=8, P=8, E=4, F=3, M0=4, N=3, TK=4, TQ=4, R=2, D=2, DL=1, ST=1, W=3, PY=3, PX=3,
             DLY=1, STY=1, WY=3, DLX=1, STX=1, WX=3, G=2, TOPK=2, NS=2, HS=2)


@pytest.mark.parametrize("name", ei.library.names())
def test_every_library_design_is_finite_on_random_inputs(name):
    c = ei.library.load(name)
    derived = {r.name for r in c.ranks if r.definition is not None or r.part == "outer"}
    shapes = {s: SMALL.get(s, 2) for s in symbols_used(c) if s not in derived}
    for seed in range(3):
        x = ei.random_inputs(c, shapes, seed=seed)
        check_domains(c, x)
        for k, v in ei.execute(c, x, shapes).items():
            assert np.all(np.isfinite(v)), f"{name}: {k} not finite at seed {seed}"


# ------------------------------------------------------------------ literal extents

INTERVALS = """\
rank NI, P
input INTV[NI, 2]: i32
input S[P]: f32
Y[ni] = S[p] where p >= INTV[ni, 0] and p < INTV[ni, 1]
LEN[ni] = INTV[ni, 1] - INTV[ni, 0]
"""


def test_literal_extents_parse_print_and_run():
    c = ei.parse(INTERVALS)
    assert c.tensor("INTV").ranks[1] == "_2" and c.rank("_2").implicit
    assert "input INTV[NI, 2]: i32" in roundtrip(c)
    intv = np.array([[0, 3], [2, 2], [1, 5]])
    S = rng_arrays(6, S=(5,))["S"]
    out = ei.execute(c, {"INTV": intv, "S": S})
    assert np.allclose(out["Y"], [S[a:b].sum() for a, b in intv])
    assert np.array_equal(out["LEN"], intv[:, 1] - intv[:, 0])
    assert ei.random_inputs(c, {"NI": 4, "P": 3})["INTV"].shape == (4, 2)


def test_literal_extent_misuse_is_located():
    err = error_at(INTERVALS.replace("INTV[ni, 1] - INTV[ni, 0]", "INTV[ni, 2]"))
    assert (err.loc.line, err.loc.column) == (5, 20) and "literal extent 2" in err.message, str(err)
    err = error_at("rank M\ninput S[M, 0]: f32\nY[m] = S[m, 0]\n")
    assert (err.loc.line, err.loc.column) == (2, 12) and "from 1" in err.message, str(err)
    with pytest.raises(ei.ShapeError, match="must have 2 elements at rank 2"):
        ei.execute(ei.parse(INTERVALS), {"INTV": np.zeros((3, 3)), "S": np.zeros(4)})


# ------------------------------------------------------------------ let over coordinates

def test_let_body_may_use_the_callers_coordinates():
    text = ("rank B, M, P\ninput S[B, M, P]: f32\ninput OFF[B]: i32\n"
            "let visible(k, q) = k <= q + OFF[b]\n"     # b: the batch coordinate of the caller
            "let scaled(x) = x * (b + 1)\n"
            "Y[b, p] = scaled(S[b, m, p]) where visible(m, p)\n")
    c = ei.parse(text)
    roundtrip(c)
    B, M, P = 3, 5, 4
    S, off = rng_arrays(7, S=(B, M, P))["S"], np.array([0, 2, -1])
    want = np.array([[sum(S[b, m, p] * (b + 1) for m in range(M) if m <= p + off[b]) for p in range(P)]
                     for b in range(B)])
    assert np.allclose(ei.execute(c, {"S": S, "OFF": off})["Y"], want)


@pytest.mark.parametrize("text, line, col, words", [
    # b is no index of Z: the error is at the call
    ("let g(x) = x + b\nZ[p] = S[0, 0, p] + g(p)\n", 4, 21, ["'g' uses b", "not an index of Z"]),
    # through a nested let: still at the outer call
    ("let g(x) = x + b\nlet h(y) = g(y) * 2\nZ[p] = h(S[0, 0, p])\n", 5, 8, ["'h' uses b"]),
    # h's parameter b would take the place of g's coordinate b
    ("let g(x) = x + b\nlet h(b) = g(b)\nZ[b, p] = h(S[b, 0, p])\n", 4, 5, ["parameter 'b' of 'h'"]),
])
def test_let_coordinate_misuse_is_located(text, line, col, words):
    err = error_at("rank B, M, P\ninput S[B, M, P]: f32\n" + text, ei.ParseError)
    assert (err.loc.line, err.loc.column) == (line, col), str(err)
    for w in words:
        assert w in err.message, str(err)


def test_features_together_agree_with_the_oracle():
    """The independent point-by-point evaluator agrees with the executor on a
    design that uses every feature at once."""
    from einsum_ir import oracle
    text = ("rank B, H, M, P, NI\ninput S[B, H, M, P]: f32\ninput MIX[H, H]: f32\n"
            "input G[B, H]: f32 in (0, 1)\ninput R[NI, 2]: f32\nmask causal = m <= p\n"
            "let gate(x) = x * G[b, h2]\n"
            "T[b, h2, m, p] = gate(MIX[h, h2] * S[b, h, m, p] * R[0, 1]) where causal\n")
    c = ei.parse(text)
    roundtrip(c)
    shapes = dict(B=2, H=3, M=3, P=4, NI=2)
    x = ei.random_inputs(c, shapes, seed=9)
    got = ei.execute(c, x, shapes)["T"]
    assert np.allclose(got, oracle.evaluate(c, x, shapes)["T"], rtol=1e-12, atol=1e-14)
    m, p = np.indices((3, 4))
    want = np.einsum("hg,bhmp->bgmp", x["MIX"], x["S"]) * x["R"][0, 1] * x["G"][:, :, None, None]
    assert np.allclose(got, np.where(m <= p, want, 0))


def test_the_builder_says_the_same():
    from einsum_ir.builder import CascadeBuilder, indices
    cb = CascadeBuilder("spans")
    cb.ranks("NI P H")
    ni, p, h, h2 = indices("ni p h h2")
    intv, s = cb.input("INTV", "NI 2", "i32"), cb.input("S", "P", "f32", domain=Domain(0, 1))
    mix = cb.input("MIX", "H H", "f32")
    causal = cb.mask("inside", (p >= intv[ni, 0]) & (p < intv[ni, 1]))
    Y, Z = cb.tensors("Y Z")
    cb.einsum(Y[ni], s[p], where=causal)
    cb.einsum(Z[h2], mix[h, h2])
    text = ("rank NI, P, H\ninput INTV[NI, 2]: i32\ninput S[P]: f32 in (0, 1)\ninput MIX[H, H]: f32\n"
            "mask inside = p >= INTV[ni, 0] and p < INTV[ni, 1]\nY[ni] = S[p] where inside\nZ[h2] = MIX[h, h2]\n")
    built, parsed = cb.build(), ei.parse(text)
    assert built == parsed and built.masks == parsed.masks
    assert str(built) == str(parsed)


def _random_condition(rng, depth=0):
    """A random condition of the coordinates m, p and the symbol W."""
    if depth > 1 or rng.random() < 0.4:
        lhs = rng.choice(["m", "p", "p - m", "m + W", "(p - m) % 3", "abs(p - m)"])
        rhs = rng.choice(["p", "m", "W", "1", "p - W", "2"])
        return f"{lhs} {rng.choice(['<', '<=', '>', '>=', '==', '!='])} {rhs}"
    op = rng.choice(["and", "or", "not"])
    if op == "not":
        return f"not ({_random_condition(rng, depth + 1)})"
    return f"({_random_condition(rng, depth + 1)}) {op} ({_random_condition(rng, depth + 1)})"


@pytest.mark.parametrize("seed", range(12))
def test_random_masks_round_trip_and_mean_their_conditions(seed):
    """Masks over random conditions, used alone, combined and inside other
    masks: the printed text parses back equal and prints the same, and the
    executor gives what the conditions written out give."""
    import random
    rng = random.Random(seed)
    conds = [_random_condition(rng) for _ in range(rng.randint(1, 3))]
    lines = ["rank M, P", "input S[M, P]: f32"]
    lines += [f"mask k{i} = {c}" for i, c in enumerate(conds)]
    lines.append(f"mask both = k0 and ({_random_condition(rng)})")
    inline = {f"k{i}": f"({c})" for i, c in enumerate(conds)}
    inline["both"] = f"({inline['k0']} and ({lines[-1].split(' and (', 1)[1]})"
    uses = [rng.sample(sorted(inline), rng.randint(1, 2)) for _ in range(3)] + [["both"]]
    uses += [[f"k{i}"] for i in range(len(conds))]
    body = [f"Y{j}[m, p] = S[m, p] * {j + 1} where {' or '.join(u)}" for j, u in enumerate(uses)]
    text = "\n".join(lines + body) + "\n"
    written = "\n".join(lines[:2] + [b.split(" where ")[0] + " where " + " or ".join(inline[n] for n in u)
                                     for b, u in zip(body, uses)]) + "\n"
    c = ei.parse(text)
    printed = roundtrip(c)
    assert "mask both = k0 and " in printed and "where both" in printed
    assert c == ei.parse(written)
    S = rng_arrays(seed, S=(6, 7))["S"]
    shapes = {"W": 2} if "W" in symbols_used(c) else {}
    got, want = ei.execute(c, {"S": S}, shapes), ei.execute(ei.parse(written), {"S": S}, shapes)
    assert all(np.array_equal(got[k], want[k]) for k in want)


def _to_bf16(x):
    """float32 -> bfloat16 (round to nearest even) -> float64, by the bits."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32).astype(np.float64)


@pytest.mark.parametrize("dtype", ["f16", "bf16", "f32"])
def test_open_ends_survive_rounding_to_the_declared_type(dtype):
    c = ei.parse(f"rank M\ninput G[M]: {dtype} in (0, 1)\ninput U[M]: {dtype} in (-3, 250)\nY[m] = G[m] + U[m]\n")
    x = ei.random_inputs(c, {"M": 20000}, seed=2, dtype="float32")
    to = {"f16": lambda v: v.astype(np.float16), "bf16": _to_bf16, "f32": lambda v: v}[dtype]
    for name in ("G", "U"):
        rounded = to(x[name]).astype(np.float64)
        assert np.all(c.tensor(name).domain.contains(rounded)), name
        assert rounded.min() < c.tensor(name).domain.lo + 0.1 * (c.tensor(name).domain.hi - c.tensor(name).domain.lo)


def test_narrow_domains_draw_the_numbers_of_the_type_inside_them():
    c = ei.parse("rank M\ninput G[M]: f16 in (0.999, 1)\ninput T[M]: f16 in [0.5, 0.5]\n"
                 "input Z[M]: f16 > 0\ninput C[M]: f16 in [0.1, 0.2]\nY[m] = G[m] + T[m] + Z[m] + C[m]\n")
    x = ei.random_inputs(c, {"M": 3000}, seed=0)
    # the f16 numbers strictly between 0.999 and 1: 1 - 2**-11 and 1 - 2**-10
    assert set(np.unique(x["G"]).tolist()) == {1 - 2.0 ** -11, 1 - 2.0 ** -10}
    assert np.all(x["T"] == 0.5)
    assert np.all(x["Z"].astype(np.float16) > 0)
    c16 = x["C"].astype(np.float16)
    assert np.all(c16 == x["C"]) and np.all((c16 >= 0.1) & (c16 <= 0.2))   # 0.1 itself is no f16 number
    for narrow in ("in (1, 1.0001)", "in [0.1, 0.1]"):
        with pytest.raises(ei.ShapeError, match="holds no f16 number"):
            ei.random_inputs(ei.parse(f"rank M\ninput G[M]: f16 {narrow}\nY[m] = G[m]\n"), {"M": 3})


@pytest.mark.parametrize("seed", range(10))
def test_random_repeated_and_literal_extents(seed):
    """Declarations mixing repeated ranks and literal extents: printed as
    written, read with the k-th occurrence's alias variable (a, a2, a3) and
    literal indices, summed by the executor as numpy sums the same axes."""
    import random
    rng = random.Random(seed)
    dims = [rng.choice(["A", "A", "B", "2", "3"]) for _ in range(rng.randint(2, 4))]
    if "A" not in dims:
        dims[0] = "A"
    count: dict[str, int] = {}
    idx, lits = [], {}
    for k, d in enumerate(dims):
        if d.isdigit():
            lits[k] = rng.randrange(int(d))
            idx.append(str(lits[k]))
        else:
            count[d] = count.get(d, 0) + 1
            idx.append(d.lower() + (str(count[d]) if count[d] > 1 else ""))
    text = f"rank A, B\ninput X[{', '.join(dims)}]: f32\nY[a] = X[{', '.join(idx)}]\n"
    c = ei.parse(text)
    assert f"input X[{', '.join(dims)}]: f32" in roundtrip(c)
    extents = {"A": 3, "B": 2}
    shape = tuple(int(d) if d.isdigit() else extents[d] for d in dims)
    x = rng_arrays(seed, X=shape)["X"]
    got = ei.execute(c, {"X": x}, extents)["Y"]
    first_a = dims.index("A")
    picked = x[tuple(lits.get(k, slice(None)) for k in range(len(dims)))]
    kept = [k for k in range(len(dims)) if k not in lits]               # axes left after the literal picks
    want = picked.sum(axis=tuple(i for i, k in enumerate(kept) if k != first_a))
    assert np.allclose(got, want), text

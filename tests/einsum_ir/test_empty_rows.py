"""`empty rows = 0 | nan` in the notation: parsed, carried in the IR,
printed back (parse(print(c)) == c), refused with its place when malformed;
and its definition (under 0, a quotient 0 / 0 is 0 and a difference
(-inf) - (-inf) is -inf; nothing else changes) in the executor and the
oracle, on maps, a three-pass and a one-pass (recurrence) cascade, against
numpy written here."""
import numpy as np
import pytest

from einsum_ir import EinError, ParseError, ValidationError, execute, parse, random_inputs
from einsum_ir.builder import CascadeBuilder, indices
from einsum_ir.oracle import evaluate

MAP = """
empty rows = {conv}
rank P
input X[P]: f32
input Y[P]: f32
Z[p] = X[p] / Y[p]
"""


def test_default_is_nan_and_the_statement_round_trips():
    plain = parse(MAP.replace("empty rows = {conv}\n", ""))
    assert plain.empty_rows == "nan" and "empty rows" not in str(plain)
    for conv, value in (("0", "0"), ("0.0", "0"), ("nan", "nan")):
        c = parse(MAP.format(conv=conv))
        assert c.empty_rows == value
        again = parse(str(c))
        assert again == c and again.empty_rows == value
    assert parse(MAP.format(conv="0")) != plain          # the convention is part of the design's meaning
    assert parse(MAP.format(conv="nan")) == plain


@pytest.mark.parametrize("text, where, what", [
    ("empty rows = 1", "2:14", "not 1"),
    ("empty rows = inf", "2:14", "not inf"),
    ("empty rows = none", "2:14", "not none"),
    ("empty rows = 0\nempty rows = nan", "3:1", "set twice"),
    ("empty rows 0", "2:12", "expected '='")])
def test_malformed_statements_are_refused_at_their_place(text, where, what):
    with pytest.raises((ParseError, ValidationError)) as err:
        parse(MAP.replace("empty rows = {conv}", text), "A_rows.ein")
    assert f"A_rows.ein:{where}:" in str(err.value) and what in str(err.value)


def test_builder_sets_the_convention():
    cb = CascadeBuilder("A_map")
    cb.ranks("P")
    (p,) = indices("p")
    X, Y = cb.input("X", "P", "f32"), cb.input("Y", "P", "f32")
    (Z,) = cb.tensors("Z")
    cb.empty_rows("0")
    cb.einsum(Z[p], X[p] / Y[p])
    assert cb.build() == parse(MAP.format(conv="0"), name="A_map")
    with pytest.raises(EinError, match="0 or nan"):
        cb.empty_rows("zero")


@pytest.mark.parametrize("conv", ["nan", "0"])
def test_only_minus_inf_minus_minus_inf_changes(conv):
    """inf - inf and -inf - inf keep IEEE's values; (-inf) - (-inf) is -inf or NaN."""
    c = parse(MAP.format(conv=conv).replace("X[p] / Y[p]", "X[p] - Y[p]"))
    x = np.array([-np.inf, -np.inf, np.inf, np.inf, -np.inf, 1.0, np.nan], np.float32)
    y = np.array([-np.inf, np.inf, np.inf, -np.inf, 2.0, -np.inf, -np.inf], np.float32)
    with np.errstate(all="ignore"):
        expect = x.astype(np.float64) - y
    if conv == "0":
        expect[0] = -np.inf
    for got in (execute(c, dict(X=x, Y=y))["Z"], evaluate(c, dict(X=x, Y=y))["Z"]):
        assert np.array_equal(np.isnan(got), np.isnan(expect)) and np.all((got == expect) | np.isnan(expect))


@pytest.mark.parametrize("conv", ["nan", "0"])
def test_only_zero_over_zero_changes(conv):
    """x / 0 stays +-inf and NaN stays NaN; 0 / 0 is 0 or NaN."""
    c = parse(MAP.format(conv=conv))
    x = np.array([0.0, 0.0, 1.0, -2.0, 0.0, np.nan, 3.0, 0.0], np.float32)
    y = np.array([0.0, -0.0, 0.0, 0.0, 5.0, 0.0, 4.0, np.nan], np.float32)
    with np.errstate(all="ignore"):
        expect = x.astype(np.float64) / y
    if conv == "0":
        expect[:2] = 0.0
    for got in (execute(c, dict(X=x, Y=y))["Z"], evaluate(c, dict(X=x, Y=y))["Z"]):
        assert np.array_equal(np.isnan(got), np.isnan(expect)) and np.all((got == expect) | np.isnan(expect))


# three passes, and one pass with its running statistics as a recurrence (the
# form the fused kernel's online softmax takes); keys m > p + M - P are masked
THREE_PASS = """
empty rows = {conv}
rank B, M, P, E, F
input Q[B, E, P]: f32
input K[B, E, M]: f32
input V[B, F, M]: f32
QK[b, m, p] = Q[b, e, p] * K[b, e, m] where m <= p + M - P
GM[b, p] = max[m] QK[b, m, p] where m <= p + M - P
SN[b, m, p] = exp(QK[b, m, p] - GM[b, p]) where m <= p + M - P
SD[b, p] = SN[b, m, p]
A[b, m, p] = SN[b, m, p] / SD[b, p]
AV[b, f, p] = A[b, m, p] * V[b, f, m]
"""
ONE_PASS = """
empty rows = {conv}
rank B, P, E, F
partition M -> M1, M0
input Q[B, E, P]: f32
input K[B, E, M]: f32
input V[B, F, M]: f32
RM[b, 0, p] = -inf
RD[b, 0, p] = 0
RNV[b, f, 0, p] = 0
BQK[b, m1, m0, p] = Q[b, e, p] * K[b, e, m1 * M0 + m0] where m1 * M0 + m0 <= p + M - P
LM[b, m1, p] = max[m0] BQK[b, m1, m0, p] where m1 * M0 + m0 <= p + M - P
RM[b, m1 + 1, p] = max(RM[b, m1, p], LM[b, m1, p])
SLN[b, m1, m0, p] = exp(BQK[b, m1, m0, p] - RM[b, m1 + 1, p]) where m1 * M0 + m0 <= p + M - P
SLD[b, m1, p] = SLN[b, m1, m0, p]
SLNV[b, f, m1, p] = SLN[b, m1, m0, p] * V[b, f, m1 * M0 + m0]
PRM[b, m1, p] = exp(RM[b, m1, p] - RM[b, m1 + 1, p])
SPD[b, m1, p] = RD[b, m1, p] * PRM[b, m1, p]
RD[b, m1 + 1, p] = SLD[b, m1, p] + SPD[b, m1, p]
SPNV[b, f, m1, p] = RNV[b, f, m1, p] * PRM[b, m1, p]
RNV[b, f, m1 + 1, p] = SLNV[b, f, m1, p] + SPNV[b, f, m1, p]
AV[b, f, p] = RNV[b, f, M1, p] / RD[b, M1, p]
"""


def _numpy_rows(inp, M, P, conv):
    q, k, v = (inp[n].astype(np.float64) for n in "QKV")
    keep = np.arange(M)[:, None] <= np.arange(P)[None, :] + M - P
    s = np.where(keep, np.einsum("bep,bem->bmp", q, k), -np.inf)
    w = np.exp(s - np.max(s, axis=1, keepdims=True, initial=-1e300))
    out = np.einsum("bmp,bfm->bfp", w, v) / np.maximum(w.sum(axis=1), 1e-300)[:, None, :]
    return np.where(keep.any(axis=0), out, 0.0 if conv == "0" else np.nan)


@pytest.mark.parametrize("conv", ["nan", "0"])
@pytest.mark.parametrize("design", [THREE_PASS, ONE_PASS], ids=["three-pass", "one-pass"])
def test_executor_and_oracle_agree_on_empty_rows(conv, design):
    """Rows with no key. Three passes (SD unrestricted): 0 / 0. One pass: RM
    stays -inf, so the correction PRM = exp(RM[m1] - RM[m1 + 1]) is
    exp(-inf - -inf): NaN under nan, exp(-inf) = 0 under 0, and then 0 / 0.
    Either way the convention decides, in both evaluators alike."""
    c = parse(design.format(conv=conv), "A_rows.ein")
    shapes = dict(B=2, M=5, P=8, E=3, F=2, **({"M0": 2} if design is ONE_PASS else {}))
    inp = random_inputs(c, shapes, seed=9)
    ref, orc = execute(c, inp, shapes)["AV"], evaluate(c, inp, shapes)["AV"]
    assert np.array_equal(np.isnan(ref), np.isnan(orc))
    ok = ~np.isnan(ref)
    assert np.abs(ref[ok] - orc[ok]).max() <= 1e-12
    expect = _numpy_rows(inp, 5, 8, conv)
    assert np.array_equal(np.isnan(ref), np.isnan(expect))
    assert np.abs(ref[ok] - expect[ok]).max() <= 1e-12

"""The rewrites' algebra (einsum_ir.rewrites.algebra) on expressions whose
answers are worked out by hand: the degree of a term in exp(-G), the weight
of a factor, numerator and denominator factors, fresh names."""
import pytest

from einsum_ir import parse
from einsum_ir.ir import Access, Idx, Num, Op
from einsum_ir.rewrites.algebra import conj, exp_degree, fresh, map_expr, quotient, rename_vars, split_factor

DESIGN = """rank M
input S[M]: f32
input V[M]: f32
input G[M]: f32
input C[M]: bool
T[m] = exp(S[m] - G[m])
U[m] = select(C[m], V[m], T[m])
Y[m] = {}
"""


def _expr(text: str):
    return parse(DESIGN.format(text)).writers("Y")[0].expr


def _through_t(a: Access):
    """Look through T (an element-wise tile tensor), as the walk does."""
    return _expr("exp(S[m] - G[m])") if a.tensor == "T" else None


@pytest.mark.parametrize("text, degree", [
    ("exp(S[m] - G[m])", 1),
    ("exp(S[m] - G[m]) * V[m]", 1),
    ("exp(S[m] - G[m]) * exp(S[m] - G[m])", 2),
    ("T[m] * T[m] * V[m]", 2),                      # through the tile tensor
    ("-exp(S[m] - G[m])", 1),
    ("exp(S[m] - G[m]) / V[m]", 1),
    ("V[m] / exp(S[m] - G[m])", None),             # exp(+G): no degree
    ("exp(S[m] - G[m]) + V[m]", None),             # mixed degrees
    ("exp(S[m] - G[m]) + 0", 1),                    # a literal zero is no term
    ("exp(S[m] - G[m]) - exp(V[m] - G[m])", 1),
    ("select(C[m], exp(S[m] - G[m]), 0)", 1),
    ("select(C[m], exp(S[m] - G[m]), V[m])", None),    # degree 1 or 0 by the condition: none
    ("select(C[m], exp(S[m] - G[m]), 0.5)", None),
    ("select(G[m] > 0, exp(S[m] - G[m]), 0)", None),   # the choice depends on G
    ("select(C[m], 0, 0)", 0),
    ("exp(S[m] - G[m] - G[m])", None),
    ("exp(G[m] - G[m])", None),
    ("G[m]", None),
    ("S[m] * V[m]", 0),
    ("sqrt(exp(S[m] - G[m]))", None),
    ("abs(S[m])", 0),
])
def test_exp_degree(text, degree):
    assert exp_degree(_expr(text), "G", _through_t) == degree


def test_split_factor_through_products_quotients_and_negation():
    v = Access("V", (Idx("m"),))
    assert split_factor(v, v) == Num(1.0)
    assert str(split_factor(_expr("S[m] * V[m]"), v)) == "S[m]"
    assert str(split_factor(_expr("V[m] * S[m]"), v)) == "S[m]"
    assert str(split_factor(_expr("-(S[m] * V[m])"), v)) == "-S[m]"
    assert str(split_factor(_expr("V[m] / S[m]"), v)) == "1.0 / S[m]"
    assert str(split_factor(_expr("S[m] * V[m] / G[m]"), v)) == "S[m] / G[m]"
    assert split_factor(_expr("S[m] / V[m]"), v) is None          # a denominator factor
    assert split_factor(_expr("V[m] * V[m]"), v) is None          # twice
    assert split_factor(_expr("S[m] + V[m]"), v) is None
    assert split_factor(_expr("exp(V[m])"), v) is None


def test_quotient_flattens_nested_products_and_quotients():
    num, den = quotient(_expr("S[m] * V[m] / (G[m] / T[m])"))
    assert [str(f) for f in num] == ["S[m]", "V[m]", "T[m]"]
    assert [str(f) for f in den] == ["G[m]"]
    num, den = quotient(_expr("S[m] / (V[m] * G[m])"))
    assert [str(f) for f in num] == ["S[m]"] and [str(f) for f in den] == ["V[m]", "G[m]"]


def test_conj_keeps_one_of_equal_conditions():
    a, b = (Op("gt", (Access(n, (Idx("m"),)), Num(0.0))) for n in "SV")
    assert conj(None, b) is b and conj(a, None) is a and conj(a, a) is a
    assert conj(None, None) is None
    assert conj(a, b) == Op("and", (a, b))


def test_renaming_reaches_access_indices():
    x = _expr("S[m] * V[m + 1]")
    y = rename_vars(x, {"m": Idx("p")})
    assert str(y) == "S[p] * V[p + 1]"
    assert str(map_expr(x, lambda n: Num(2.0) if isinstance(n, Access) and n.tensor == "S" else None)) == \
        "2.0 * V[m + 1]"


def test_fresh_names_count_up_from_two():
    taken = {"M1", "M0"}
    assert fresh(taken, "M1", "MB") == "MB"
    assert fresh(taken, "M1", "MB") == "M12"
    assert fresh(taken, "M1") == "M13"
    assert {"MB", "M12", "M13"} <= taken

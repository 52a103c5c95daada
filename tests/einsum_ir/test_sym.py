"""The symbolic form of coordinate expressions (einsum_ir.sym.to_sympy),
checked against sympy expressions written by hand."""
import math

import pytest
import sympy

from einsum_ir.ir import Access, Idx, Num, Op, Sym
from einsum_ir.sym import index_symbol, shape_symbol, to_sympy

m, p = index_symbol("m"), index_symbol("p")
M = shape_symbol("M")


def test_literals_symbols_and_coordinates():
    assert to_sympy(Num(math.inf)) == sympy.oo and to_sympy(Num(-math.inf)) == -sympy.oo
    assert to_sympy(Num(3.0)) == sympy.Integer(3) and isinstance(to_sympy(Num(3.0)), sympy.Integer)
    assert to_sympy(Num(2.5)) == sympy.Float(2.5)
    assert to_sympy(Sym("M")) == M and M.is_positive and M.is_integer
    assert to_sympy(Idx("m")) == m and m.is_nonnegative and m.is_integer


def test_a_condition_used_as_a_number_is_one_or_zero():
    x = to_sympy(Op("add", (Idx("m"), Op("lt", (Idx("m"), Idx("p"))))))
    assert x == m + sympy.Piecewise((1, m < p), (0, True))
    assert x.subs({m: 2, p: 5}) == 3 and x.subs({m: 5, p: 2}) == 5


def test_select_keeps_its_condition_a_condition():
    x = to_sympy(Op("select", (Op("lt", (Idx("m"), Idx("p"))), Idx("m"), Num(0.0))))
    assert x.subs({m: 2, p: 5}) == 2 and x.subs({m: 5, p: 2}) == 0


def test_logic_takes_conditions_as_they_are():
    x = to_sympy(Op("and", (Op("le", (Idx("m"), Idx("p"))), Op("lt", (Idx("p"), Sym("M"))))))
    assert x == sympy.And(m <= p, p < M)


def test_a_tensor_read_needs_its_own_symbolic_value():
    a = Access("X", (Idx("m"),))
    with pytest.raises(ValueError, match=r"tensor access X\[m\] has no symbolic value"):
        to_sympy(Op("add", (a, Num(1.0))))
    assert to_sympy(Op("add", (a, Num(1.0))), access=lambda n: sympy.Symbol("x")) == sympy.Symbol("x") + 1


def test_anything_else_is_a_type_error():
    with pytest.raises(TypeError):
        to_sympy("m")


def test_not_takes_its_condition_as_it_is():
    x = to_sympy(Op("not", (Op("lt", (Idx("m"), Idx("p"))),)))
    assert x == (m >= p)

"""Refusals of the text no other test reaches, each with its message and
where it points (line, column), and the one domain end only the text can
write open at -inf."""
import math

import pytest

from einsum_ir import parse, print_cascade
from einsum_ir.errors import ParseError
from einsum_ir.parser import parse_file


def _refused(text: str, message: str, line: int, column: int):
    with pytest.raises(ParseError) as err:
        parse(text)
    assert err.value.message == message
    assert (err.value.line, err.value.column) == (line, column)


def test_a_let_named_as_a_mask():
    _refused("rank M, P\nmask causal = m <= p\nlet causal(x) = x * 2\ninput X[M, P]: f32\n"
             "Y[m, p] = X[m, p] where causal\n", "'causal' is already a mask", 3, 5)


def test_a_mask_named_as_a_let():
    _refused("rank M, P\nlet causal(x) = x * 2\nmask causal = m <= p\ninput X[M, P]: f32\nY[m, p] = X[m, p]\n",
             "'causal' is already defined by a let", 3, 6)


def test_a_closed_infinite_domain_end():
    _refused("rank M\ninput X[M]: f32 in [-inf, 0)\nY[m] = X[m]\n",
             "a closed end of a domain must be finite, got -inf: write that end open, with (", 2, 21)


def test_an_open_end_at_minus_infinity_is_kept_and_printed():
    c = parse("rank M\ninput X[M]: f32 in (-inf, 0]\nY[m] = X[m]\n")
    d = c.tensor("X").domain
    assert (d.lo, d.hi, d.lo_closed, d.hi_closed) == (-math.inf, 0.0, False, True)
    assert parse(print_cascade(c)).tensor("X").domain == d


@pytest.mark.parametrize("text, expected, line, column", [
    ("rank M\ninput X[M", "',', ']' (or an operator continuing the expression)", 2, 10),
    ("rank M\ninput X[M]: f32\nY[m] = (X[m]", "')'", 3, 13),
])
def test_a_design_that_stops_mid_statement(text, expected, line, column):
    _refused(text, f"unexpected end of line; expected {expected}", line, column)


def test_a_file_that_cannot_be_read(tmp_path):
    with pytest.raises(ParseError) as err:
        parse_file(tmp_path)
    assert err.value.message == f"cannot read {tmp_path}: it is a directory"
    with pytest.raises(ParseError) as err:
        parse_file(tmp_path / "nope.ein")
    assert err.value.message == f"cannot read {tmp_path / 'nope.ein'}: No such file or directory"


@pytest.mark.parametrize("text, message, line, column", [
    ("rank M\ninput X[M]: f32\nY[m = X[m]\n",
     "unexpected '='; expected ',', ')', ']', end of line (or an operator continuing the expression)", 3, 5),
    ("rank M\ninput X[M]: f32\nY[m] = (X[m] ]\n", "unexpected ']'; expected ')'", 3, 14),
    ("rank M\ninput X[M]: f32 in (0 1)\nY[m] = X[m]\n", "unexpected '1'; expected ',', ')', ']', end of line", 2, 23),
])
def test_the_expected_tokens_name_structure_first_and_operators_as_one(text, message, line, column):
    """Operators that could continue the expression (+, >>, //, where, ...)
    are summed up in one phrase, not listed among the tokens the statement
    needs."""
    _refused(text, message, line, column)


@pytest.mark.parametrize("name", ["inf", "in", "where", "sum", "exp"])
def test_a_mask_named_as_a_built_in_name(name):
    _refused(f"rank M, P\nmask {name} = m <= p\ninput X[M, P]: f32\nY[m, p] = X[m, p]\n",
             f"'{name}' is a built-in name; choose another name for the mask", 2, 6)


def test_an_unknown_scan_is_refused_with_the_closest_name():
    _refused("rank M\ninput X[M]: f32\nY[m] = cumsun[m] X[m]\n",
             "unknown reduction or scan 'cumsun' (did you mean cumsum?); a reduction is sum, max or min, a scan "
             "cumsum or cumprod", 3, 8)


def test_an_output_index_that_is_an_expression():
    """Refused by the assembler for an undeclared tensor and by validation
    for a declared one, each at the index."""
    _refused_any("rank M\ninput X[M]: f32\nY[m * 2] = X[m]\n",
                 "output index m * 2 of Y must be an index variable, `v + 1` (iterative) or 0 (initial value)", 3, 3)
    _refused_any("rank M\ninput X[M]: f32\noutput Y[M]: f32\nY[m * 2] = X[m]\n",
                 "output index m * 2 of Y must be an index variable, `v + 1` or 0", 4, 3)


def _refused_any(text: str, message: str, line: int, column: int):
    from einsum_ir.errors import EinError
    with pytest.raises(EinError) as err:
        parse(text)
    assert err.value.message == message
    assert (err.value.line, err.value.column) == (line, column)

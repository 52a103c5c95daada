"""Python's operators on builder expressions build the node the text's
operator does: each built expression equals the parsed one (equality
ignores source locations), the reflected forms (2 - x) included."""
import pytest

from einsum_ir import parse
from einsum_ir.ir import Access, Idx

X, Y = Access("X", (Idx("m"),)), Access("Y", (Idx("m"),))


def _parsed(expr: str, where: str | None = None):
    text = (f"rank M\ninput X[M]: i32\ninput Y[M]: i32\nZ[m] = {expr}" + (f" where {where}" if where else "")
            + "\nU[m] = X[m] + Y[m]\n")
    e = parse(text).writers("Z")[0]
    return e.predicate if where else e.expr


@pytest.mark.parametrize("built, text", [
    (X + Y, "X[m] + Y[m]"), (2 + X, "2 + X[m]"),
    (X - Y, "X[m] - Y[m]"), (2 - X, "2 - X[m]"),
    (X * Y, "X[m] * Y[m]"), (2 * X, "2 * X[m]"),
    (X / Y, "X[m] / Y[m]"), (2 / X, "2 / X[m]"),
    (X // Y, "X[m] // Y[m]"), (X % Y, "X[m] % Y[m]"),
    (X ** Y, "X[m] ^ Y[m]"), (2 ** X, "2 ^ X[m]"),
    (X << 2, "X[m] << 2"), (X >> 2, "X[m] >> 2"),
    (-X, "-X[m]"),
])
def test_arithmetic(built, text):
    assert built == _parsed(text)


@pytest.mark.parametrize("built, text", [
    (X < Y, "X[m] < Y[m]"), (X <= Y, "X[m] <= Y[m]"), (X > Y, "X[m] > Y[m]"), (X >= Y, "X[m] >= Y[m]"),
    ((X < Y) & (Y < 3), "X[m] < Y[m] and Y[m] < 3"), ((X < Y) | (Y < 3), "X[m] < Y[m] or Y[m] < 3"),
    (~(X < Y), "not X[m] < Y[m]"),
])
def test_conditions(built, text):
    assert built == _parsed("X[m]", text)

"""The fixed-point operations against numpy: the error bounds docs/rtl.md states."""
from __future__ import annotations

import math

import numpy as np
import pytest

from codegen.rtl import fixed as fx
from codegen.rtl.fixed import Fmt, RTLError


@pytest.mark.parametrize("fmt", [Fmt(16, 8), Fmt(24, 12), Fmt(32, 16)], ids=lambda f: f.name)
def test_exp_within_bound(fmt):
    """Relative error below 3.2e-4 plus one ulp over exp's whole useful range."""
    xs = np.linspace(-(fmt.width - fmt.frac - 1) * 0.69, (fmt.width - fmt.frac - 2) * 0.69, 4001)
    for x in xs:
        q = fmt.from_float(float(x))
        want = math.exp(fmt.to_float(q))
        got = fmt.to_float(fx.exp(fmt, q))
        if want > fmt.to_float(fmt.max):
            assert got == fmt.to_float(fmt.max)
            continue
        assert abs(got - want) <= 3.2e-4 * want + fmt.ulp, (x, got, want)


def test_exp_of_minus_infinity_is_zero_and_of_zero_is_one():
    f = Fmt(32, 16)
    assert fx.exp(f, f.min) == 0
    assert fx.exp(f, 0) == f.one


@pytest.mark.parametrize("fmt", [Fmt(16, 8), Fmt(32, 16)], ids=lambda f: f.name)
def test_divide_within_one_ulp(fmt):
    rng = np.random.default_rng(0)
    for _ in range(3000):
        a, b = (int(v) for v in rng.integers(fmt.min, fmt.max, 2))
        if b == 0:
            continue
        exact = a * fmt.one / b
        got = fx.div(fmt, a, b)
        if fmt.min <= exact <= fmt.max:
            assert abs(got - exact) <= 1, (a, b)
        else:
            assert got == (fmt.max if exact > 0 else fmt.min)
    assert fx.div(fmt, 5, 0) == fmt.max and fx.div(fmt, -5, 0) == fmt.min and fx.div(fmt, 0, 0) == 0


def test_tanh_and_sigmoid_close_to_numpy():
    f = Fmt(32, 16)
    for x in np.linspace(-12, 12, 961):
        q = f.from_float(float(x))
        assert abs(f.to_float(fx.tanh(f, q)) - math.tanh(f.to_float(q))) < 1e-3
        assert abs(f.to_float(fx.sigmoid(f, q)) - 1 / (1 + math.exp(-f.to_float(q)))) < 1e-3


def test_saturation_never_wraps():
    f = Fmt(16, 8)
    assert fx.add(f, f.max, 1) == f.max and fx.sub(f, f.min, 1) == f.min
    assert fx.mul(f, f.max, f.max) == f.max and fx.neg(f, f.min) == f.max
    assert f.from_float(float("inf")) == f.max and f.from_float(float("-inf")) == f.min


def test_bad_formats_refused():
    with pytest.raises(RTLError, match="frac"):
        Fmt(16, 15)
    with pytest.raises(RTLError, match="width"):
        Fmt(2, 1)

"""Fixed-point number formats and the bit-exact Python model of every
arithmetic operation the generated RTL performs.

One format per design: signed two's complement, `width` bits, `frac` of
them fractional (Q(width-frac).frac). Every operation saturates to the
format (never wraps): `-inf` is the most negative word and `inf` the most
positive one, so the running maximum's initial value and an underflowed
exp behave as the float reference's do. Rounding is to nearest, ties up
(add half an ulp, arithmetic shift right: floor), the same in Python and in
Verilog (`>>>` on signed values is floor).

The Verilog functions in `verilog_functions` implement exactly these
integers; the cocotb benches compare the two bit for bit.

Non-linear operations (error bounds in docs/rtl.md, checked in
tests/codegen/rtl/test_fixed.py against numpy):

- exp: FuseMax's 6 MACs. exp(x) = 2^k * 2^f with x*log2(e) = k + f: one MAC
  for x*log2(e) (k its integer part, f in [0, 1) with PF = frac + 6 bits),
  five Horner MACs of the 5th-order Taylor series of 2^f, and a shift by k.
  Relative error below 3.2e-4 (the series' remainder (ln 2)^6 / 720 * 2)
  plus one ulp of rounding.
- divide: reciprocal and multiply: r = floor(2^(2F+G) / |b|) with G = width
  guard bits, q = round(|a| * r / 2^(F+G)); at most one ulp from the exact
  quotient; b = 0 gives the saturated value of a's sign (0 for 0 / 0).
- tanh(x) = sign(x) (1 - e) / (1 + e), e = exp(-2|x|); sigmoid(x) =
  1 / (1 + exp(-x)): compositions of the above.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


from einsum_ir.errors import EinError


class RTLError(EinError):
    """A design, mapping or parameter the RTL generator cannot serve, with the reason."""


@dataclass(frozen=True)
class Fmt:
    """A signed fixed-point format: `width` bits, `frac` fractional."""
    width: int = 32
    frac: int = 16

    def __post_init__(self):
        if not (4 <= self.width <= 64):
            raise RTLError(f"fixed-point width {self.width}: must be 4 to 64 bits")
        if not (1 <= self.frac <= self.width - 3):
            raise RTLError(f"fixed-point format Q{self.width - self.frac}.{self.frac}: frac must be 1 to width - 3 "
                           "(1.0 and 2.0 must be representable: exp and divide need them)")

    @property
    def name(self) -> str:
        return f"Q{self.width - self.frac}.{self.frac}"

    @property
    def max(self) -> int:
        return (1 << (self.width - 1)) - 1

    @property
    def min(self) -> int:
        return -(1 << (self.width - 1))

    @property
    def one(self) -> int:
        return 1 << self.frac

    @property
    def pf(self) -> int:
        """Fraction bits inside exp (the polynomial's precision)."""
        return self.frac + 6

    @property
    def guard(self) -> int:
        """Guard bits of the reciprocal."""
        return self.width

    @property
    def wide(self) -> int:
        """Width of every intermediate in the Verilog functions: enough for
        |a| * r of the divide, the widest product."""
        return max(4 * self.width + 8, 40)       # 40: a 32-bit coordinate shifted by frac still fits

    # ---------------------------------------------------------------- conversion
    def sat(self, v: int) -> int:
        return self.max if v > self.max else self.min if v < self.min else v

    def from_float(self, x: float) -> int:
        if math.isnan(x):
            raise RTLError("NaN has no fixed-point form")
        if math.isinf(x):
            return self.max if x > 0 else self.min
        return self.sat(math.floor(x * self.one + 0.5))

    def to_float(self, v: int) -> float:
        return v / self.one

    def from_int(self, i: int) -> int:
        return self.sat(i << self.frac)

    @property
    def ulp(self) -> float:
        return 1.0 / self.one


# ---------------------------------------------------------------- the operations (integers in, integers out)

def rshift_round(v: int, n: int) -> int:
    """v / 2^n rounded to nearest, ties up (n >= 1)."""
    return (v + (1 << (n - 1))) >> n


def add(f: Fmt, a: int, b: int) -> int:
    return f.sat(a + b)


def sub(f: Fmt, a: int, b: int) -> int:
    return f.sat(a - b)


def neg(f: Fmt, a: int) -> int:
    return f.sat(-a)


def mul(f: Fmt, a: int, b: int) -> int:
    return f.sat(rshift_round(a * b, f.frac))


def mac(f: Fmt, acc: int, a: int, b: int) -> int:
    """acc + a * b: the product rounded, then the sum saturated."""
    return add(f, acc, mul(f, a, b))


def absolute(f: Fmt, a: int) -> int:
    return f.sat(abs(a))


def floor(f: Fmt, a: int) -> int:
    return a & ~((1 << f.frac) - 1)


def exp_constants(f: Fmt) -> tuple[int, list[int]]:
    """log2(e) and the Taylor coefficients of 2^x = sum (x ln 2)^i / i!, in PF bits."""
    pf = f.pf
    log2e = math.floor(math.log2(math.e) * (1 << pf) + 0.5)
    coeffs = [math.floor(math.log(2) ** i / math.factorial(i) * (1 << pf) + 0.5) for i in range(6)]
    return log2e, coeffs


def exp_reduce(f: Fmt, x: int) -> int:
    """MAC 1: t = x * log2(e) with PF fraction bits (floor); k = t >> PF, frac = t mod 2^PF."""
    log2e, _ = exp_constants(f)
    return (x * log2e) >> f.frac


def exp_horner(f: Fmt, p: int, t: int, c: int) -> int:
    """One Horner MAC: p * frac(t) + c, PF fraction bits (floor)."""
    frac_t = t & ((1 << f.pf) - 1)
    return ((p * frac_t) >> f.pf) + c


def exp_scale(f: Fmt, p: int, t: int) -> int:
    """p * 2^k (k = floor(t)) from PF to the format's bits, rounded and saturated."""
    k = t >> f.pf
    sh = k + f.frac - f.pf
    if sh >= 0:
        return f.sat(p << min(sh, f.width))
    n = min(-sh, f.pf + 2)             # p < 2^(PF+1): shifting PF+2 or more gives 0
    return f.sat(rshift_round(p, n))


def exp(f: Fmt, x: int) -> int:
    """exp as six MACs: exp_reduce, five exp_horner steps, exp_scale."""
    _, c = exp_constants(f)
    t = exp_reduce(f, x)
    p = c[5]
    for i in range(4, -1, -1):
        p = exp_horner(f, p, t, c[i])
    return exp_scale(f, p, t)


def exp2(f: Fmt, x: int) -> int:
    """2^x = exp(x ln 2), the same unit after one rounded product by ln 2."""
    return exp(f, mul(f, x, f.from_float(math.log(2))))


def div(f: Fmt, a: int, b: int) -> int:
    """a / b as a reciprocal and a multiply (module docstring)."""
    if b == 0:
        return f.max if a > 0 else f.min if a < 0 else 0
    g = f.guard
    r = (1 << (2 * f.frac + g)) // abs(b)
    q = rshift_round(abs(a) * r, f.frac + g)
    return f.sat(-q if (a < 0) != (b < 0) else q)


def tanh(f: Fmt, x: int) -> int:
    ax = absolute(f, x)
    e = exp(f, neg(f, add(f, ax, ax)))
    q = div(f, sub(f, f.one, e), add(f, f.one, e))
    return neg(f, q) if x < 0 else q


def sigmoid(f: Fmt, x: int) -> int:
    return div(f, f.one, add(f, f.one, exp(f, neg(f, x))))


def fmax(f: Fmt, a: int, b: int) -> int:
    return a if a >= b else b


def fmin(f: Fmt, a: int, b: int) -> int:
    return a if a <= b else b


def clip(f: Fmt, x: int, lo: int, hi: int) -> int:
    return fmin(f, fmax(f, x, lo), hi)


# ---------------------------------------------------------------- the same in Verilog

def lit(v: int, width: int) -> str:
    """A signed Verilog literal of `width` bits."""
    return f"-{width}'sd{-v}" if v < 0 else f"{width}'sd{v}"


def verilog_functions(f: Fmt) -> list[str]:
    """Verilog-2005 functions for the operations above, for inclusion in a
    module (all intermediates `wide` bits, signed)."""
    W, XW, F, PF = f.width, f.wide, f.frac, f.pf
    log2e, c = exp_constants(f)
    X = lambda v: lit(v, XW)  # noqa: E731
    return [
        f"localparam integer XW = {XW};",
        f"function signed [{W-1}:0] fx_sat(input signed [{XW-1}:0] v);",
        f"  fx_sat = (v > {X(f.max)}) ? {lit(f.max, W)} : (v < {X(f.min)}) ? {lit(f.min, W)} : v[{W-1}:0];",
        "endfunction",
        f"function signed [{XW-1}:0] fx_x(input signed [{W-1}:0] a);  // sign-extend to XW",
        f"  fx_x = {{{{(XW - {W}){{a[{W-1}]}}}}, a}};",
        "endfunction",
        f"function signed [{XW-1}:0] fx_rnd(input signed [{XW-1}:0] v, input integer n);",
        f"  fx_rnd = (v + ({X(1)} <<< (n - 1))) >>> n;",
        "endfunction",
        f"function signed [{W-1}:0] fx_add(input signed [{W-1}:0] a, input signed [{W-1}:0] b);",
        "  fx_add = fx_sat(fx_x(a) + fx_x(b));",
        "endfunction",
        f"function signed [{W-1}:0] fx_sub(input signed [{W-1}:0] a, input signed [{W-1}:0] b);",
        "  fx_sub = fx_sat(fx_x(a) - fx_x(b));",
        "endfunction",
        f"function signed [{W-1}:0] fx_neg(input signed [{W-1}:0] a);",
        "  fx_neg = fx_sat(-fx_x(a));",
        "endfunction",
        f"function signed [{W-1}:0] fx_mul(input signed [{W-1}:0] a, input signed [{W-1}:0] b);",
        f"  fx_mul = fx_sat(fx_rnd(fx_x(a) * fx_x(b), {F}));",
        "endfunction",
        f"function signed [{W-1}:0] fx_abs(input signed [{W-1}:0] a);",
        "  fx_abs = (a < 0) ? fx_neg(a) : a;",
        "endfunction",
        f"function signed [{W-1}:0] fx_floor(input signed [{W-1}:0] a);",
        f"  fx_floor = a & ~{lit((1 << F) - 1, W)};",
        "endfunction",
        f"function signed [{W-1}:0] fx_max(input signed [{W-1}:0] a, input signed [{W-1}:0] b);",
        "  fx_max = (a >= b) ? a : b;",
        "endfunction",
        f"function signed [{W-1}:0] fx_min(input signed [{W-1}:0] a, input signed [{W-1}:0] b);",
        "  fx_min = (a <= b) ? a : b;",
        "endfunction",
        f"function signed [{W-1}:0] fx_int(input signed [31:0] i);  // an integer coordinate as a value",
        f"  fx_int = fx_sat({{{{(XW - 32){{i[31]}}}}, i}} <<< {F});",
        "endfunction",
        f"function signed [{XW-1}:0] fx_exp_reduce(input signed [{W-1}:0] x);  // MAC 1: x * log2(e)",
        f"  fx_exp_reduce = (fx_x(x) * {X(log2e)}) >>> {F};",
        "endfunction",
        f"function signed [{XW-1}:0] fx_exp_horner(input signed [{XW-1}:0] p, input signed [{XW-1}:0] t,"
        f" input signed [{XW-1}:0] c);",
        f"  fx_exp_horner = ((p * (t & {X((1 << PF) - 1)})) >>> {PF}) + c;  // MACs 2..6",
        "endfunction",
        f"function signed [{W-1}:0] fx_exp_scale(input signed [{XW-1}:0] p, input signed [{XW-1}:0] t);",
        f"  reg signed [{XW-1}:0] sh, nsh;",
        "  begin",
        f"    sh = (t >>> {PF}) + {X(F - PF)};",
        "    nsh = -sh;",
        f"    if (sh >= 0) fx_exp_scale = fx_sat(p <<< ((sh > {W}) ? {W} : sh));",
        f"    else fx_exp_scale = fx_sat(fx_rnd(p, (nsh > {PF + 2}) ? {PF + 2} : nsh[31:0]));",
        "  end",
        "endfunction",
        f"function signed [{W-1}:0] fx_exp(input signed [{W-1}:0] x);  // the six MACs in one expression",
        f"  reg signed [{XW-1}:0] t, p;",
        "  begin",
        "    t = fx_exp_reduce(x);",
        f"    p = {X(c[5])};",
        *[f"    p = fx_exp_horner(p, t, {X(c[i])});" for i in range(4, -1, -1)],
        "    fx_exp = fx_exp_scale(p, t);",
        "  end",
        "endfunction",
        f"function signed [{W-1}:0] fx_exp2(input signed [{W-1}:0] x);",
        f"  fx_exp2 = fx_exp(fx_mul(x, {lit(f.from_float(math.log(2)), W)}));",
        "endfunction",
        f"function signed [{W-1}:0] fx_div(input signed [{W-1}:0] a, input signed [{W-1}:0] b);"
        "  // reciprocal, multiply",
        f"  reg signed [{XW-1}:0] r, q;",
        "  begin",
        f"    if (b == 0) fx_div = (a > 0) ? {lit(f.max, W)} : (a < 0) ? {lit(f.min, W)} : {lit(0, W)};",
        "    else begin",
        f"      r = ({X(1)} <<< {2 * F + f.guard}) / fx_x_abs(b);",
        f"      q = fx_rnd(fx_x_abs(a) * r, {F + f.guard});",
        "      fx_div = fx_sat(((a < 0) != (b < 0)) ? -q : q);",
        "    end",
        "  end",
        "endfunction",
        f"function signed [{XW-1}:0] fx_x_abs(input signed [{W-1}:0] a);",
        "  fx_x_abs = (a < 0) ? -fx_x(a) : fx_x(a);",
        "endfunction",
        f"function signed [{W-1}:0] fx_tanh(input signed [{W-1}:0] x);",
        f"  reg signed [{W-1}:0] ax, e, q;",
        "  begin",
        "    ax = fx_abs(x);",
        "    e = fx_exp(fx_neg(fx_add(ax, ax)));",
        f"    q = fx_div(fx_sub({lit(f.one, W)}, e), fx_add({lit(f.one, W)}, e));",
        "    fx_tanh = (x < 0) ? fx_neg(q) : q;",
        "  end",
        "endfunction",
        f"function signed [{W-1}:0] fx_sigmoid(input signed [{W-1}:0] x);",
        f"  fx_sigmoid = fx_div({lit(f.one, W)}, fx_add({lit(f.one, W)}, fx_exp(fx_neg(x))));",
        "endfunction",
        f"function signed [{W-1}:0] fx_clip(input signed [{W-1}:0] x, input signed [{W-1}:0] lo,"
        f" input signed [{W-1}:0] hi);",
        "  fx_clip = fx_min(fx_max(x, lo), hi);",
        "endfunction",
    ]

"""The operators added for issues 18 and 22: sin, cos, tan, erf, softplus,
logsigmoid, log1p, expm1, the power `x ^ y`, the bitwise `&`, `|`, `xor`,
`<<`, `>>` on integers, and conditions used as 0/1 numbers. Checked against
independent references: torch's float64 functions, Python's own integer
operators (whose precedence the notation follows), brute-force point counts,
and the oracle evaluator."""
import itertools
import math
import random

import numpy as np
import pytest
import sympy
import torch

import einsum_ir as ei
from einsum_ir import oracle
from einsum_ir.analysis import op_counts
from einsum_ir.analysis.points import points
from einsum_ir.ir import Idx, Num, Op
from einsum_ir.ops import KIND_UNITS, REDUCE_RULES, RULES
from einsum_ir.printer import format_cascade, format_expr
from einsum_ir.sym import shape_symbol

HEAD = "rank M, P\ninput S[M, P]: f64\noutput Y[M, P]: f64\n"
X = np.concatenate([np.linspace(-30, 30, 61), [-100.0, 100.0, -1e-12, 1e-12, 0.0, -0.5, 0.75]])

TORCH = {
    "sin": torch.sin, "cos": torch.cos, "tan": torch.tan, "erf": torch.erf,
    "softplus": lambda t: torch.nn.functional.softplus(t, threshold=1000.0),
    "logsigmoid": torch.nn.functional.logsigmoid,
    "log1p": lambda t: torch.log1p(t.abs()), "expm1": torch.expm1,
}


def _map(expr: str, x: np.ndarray) -> np.ndarray:
    """Executor and oracle values of `Y = expr` (over S = x, one row)."""
    c = ei.parse(HEAD + f"Y[m, p] = {expr}\n")
    s = {"S": x.reshape(-1, 1)}
    got = ei.execute(c, s)["Y"][:, 0]
    want = oracle.evaluate(c, s)["Y"][:, 0]
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=0, equal_nan=True)
    return got


@pytest.mark.parametrize("fn", sorted(TORCH))
def test_functions_match_torch_in_float64(fn):
    arg = "abs(S[m, p])" if fn == "log1p" else "S[m, p]"
    got = _map(f"{fn}({arg})", X)
    want = TORCH[fn](torch.tensor(X, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)


def test_softplus_and_logsigmoid_are_exact_at_large_magnitudes():
    """The naive log(1 + exp(x)) overflows at 1000 and is 0 at -100, where
    the answer is e^-100; log(sigmoid(x)) is -inf at -1000."""
    x = np.array([-1000.0, -100.0, 100.0, 1000.0])
    sp, ls = _map("softplus(S[m, p])", x), _map("logsigmoid(S[m, p])", x)
    assert np.all(np.isfinite(sp)) and np.all(np.isfinite(ls))
    assert sp[1] == pytest.approx(math.exp(-100), rel=1e-14) and sp[2] == 100.0 and sp[3] == 1000.0
    assert ls[0] == -1000.0 and ls[1] == -100.0 and ls[2] == pytest.approx(-math.exp(-100), rel=1e-14)
    small = np.array([1e-20, -1e-20])
    np.testing.assert_array_equal(_map("log1p(S[m, p])", small), small)
    np.testing.assert_array_equal(_map("expm1(S[m, p])", small), small)


def test_power_follows_numpy_for_every_sign_and_special_value():
    """A negative base to a finite fraction is NaN (as numpy and C's pow;
    -inf included, where numpy's sqrt fast path and C disagree), 0 ^ 0 is
    1, 0 ^ -1 is inf; whole exponents keep the sign of a negative base."""
    base = np.array([-8.0, -2.0, -0.5, 0.0, 0.5, 2.0, 3.0, np.inf, -np.inf, np.nan, 1.0])
    for y in (-3.0, -2.0, -1.0, -0.5, 0.0, 1 / 3, 0.5, 1.0, 2.0, 3.0, 2.5, np.inf, np.nan):
        with np.errstate(all="ignore"):
            want = np.power(base, y)
        if math.isfinite(y) and not float(y).is_integer():
            want[base < 0] = np.nan
        np.testing.assert_array_equal(_map(f"S[m, p] ^ {float(y)!r}".replace("nan", "(inf - inf)"), base), want)


# ---------------------------------------------------------------- syntax

@pytest.mark.parametrize("text, tree", [
    ("-x ^ 2", Op("neg", (Op("pow", (Idx("x"), Num(2))),))),
    ("x ^ 2 ^ 3", Op("pow", (Idx("x"), Op("pow", (Num(2), Num(3)))))),
    ("x ^ -1", Op("pow", (Idx("x"), Num(-1)))),
    ("2 * x ^ 2", Op("mul", (Num(2), Op("pow", (Idx("x"), Num(2)))))),
    ("x & 3 == 0", Op("eq", (Op("band", (Idx("x"), Num(3))), Num(0)))),
    ("x << 1 + 1", Op("shl", (Idx("x"), Op("add", (Num(1), Num(1)))))),
    ("x | 1 & 2", Op("bor", (Idx("x"), Op("band", (Num(1), Num(2)))))),
    ("(x < 3) == (x > 5)", Op("eq", (Op("lt", (Idx("x"), Num(3))), Op("gt", (Idx("x"), Num(5)))))),
])
def test_precedence_is_pythons(text, tree):
    """`^` binds above unary minus and `*`, right to left; bitwise operators
    sit between comparisons and `+`, as in Python (`x & 3 == 0` is
    `(x & 3) == 0`, unlike C)."""
    c = ei.parse("rank X\ninput S[X]: f64\noutput Y[X]: f64\nY[x] = S[x] where " + text
                 if tree.name in ("eq", "lt") else
                 "rank X\ninput S[X]: f64\noutput Y[X]: f64\nY[x] = S[x] * (" + text + ")")
    e = c.einsums[0]
    got = e.predicate if e.predicate is not None else e.expr.args[1]
    assert got == tree


def _random_int_expr(rng: random.Random, depth: int) -> str:
    if depth == 0 or rng.random() < 0.25:
        return rng.choice(["m", "p", str(rng.randint(0, 9))])
    op = rng.choice(["+", "-", "*", "&", "|", "<<", ">>", "xor", "^", "neg"])
    a, b = _random_int_expr(rng, depth - 1), _random_int_expr(rng, depth - 1)
    if op == "xor":
        return f"xor({a}, {b})"
    if op == "neg":
        return f"-{a}"
    if op in ("<<", ">>"):
        b = str(rng.randint(0, 3))
    if op == "^":
        b = str(rng.randint(0, 2))
    return f"{a} {op} {b}" if rng.random() < 0.5 else f"({a} {op} {b})"


def _python(text: str) -> str:
    """The same expression in Python: `^` is `**`, xor(a, b) is `(a ^ b)`."""
    out = text.replace("^", "**")
    while "xor(" in out:
        i = out.index("xor(")
        depth, j = 0, i + 4
        while True:
            depth += out[j] == "("
            if out[j] == ")":
                if depth == 0:
                    break
                depth -= 1
            if out[j] == "," and depth == 0:
                comma = j
            j += 1
        out = out[:i] + f"(({out[i + 4:comma]}) ^ ({out[comma + 1:j]}))" + out[j + 1:]
    return out


def test_integer_expressions_print_parse_and_evaluate_as_python_does():
    """60 random integer expressions: parse(print(c)) == c, and the
    executor's value at every point equals Python's integer arithmetic (or
    both refuse a negative shift count)."""
    rng = random.Random(7)
    refused = 0
    for _ in range(60):
        text = _random_int_expr(rng, 3)
        c = ei.parse(f"rank M, P\ninput S[M, P]: f64\noutput Y[M, P]: f64\nY[m, p] = S[m, p] * 0 + ({text})\n")
        assert ei.parse(format_cascade(c)) == c, text
        try:
            want = np.array([[eval(_python(text), {"m": m, "p": p}) for p in range(4)]  # noqa: S307
                             for m in range(3)])
        except ValueError:                       # Python: negative shift count
            refused += 1
            with pytest.raises(ei.ExecutionError, match="shift count"):
                ei.execute(c, {"S": np.zeros((3, 4))})
            continue
        got = ei.execute(c, {"S": np.zeros((3, 4))})["Y"]
        np.testing.assert_array_equal(got, want.astype(float), err_msg=text)
    assert refused < 15


def test_printer_parenthesises_what_it_must():
    for text in ["(-2) ^ 2", "(x ^ 2) ^ 3", "-(x ^ 2)", "(-x) ^ 2", "(x & 1) << 2", "x & (1 << 2)",
                 "(x | 1) & 2", "x ^ (-1)", "(x + 1) ^ 0.5", "xor(x, 3) >> 1"]:
        c = ei.parse(f"rank X\ninput S[X]: f64\noutput Y[X]: f64\nY[x] = S[x] * ({text})\n")
        printed = format_expr(c.einsums[0].expr)
        again = ei.parse(f"rank X\ninput S[X]: f64\noutput Y[X]: f64\nY[x] = {printed}\n")
        assert again == c, (text, printed)


# ---------------------------------------------------------------- bitwise and conditions

def test_bitwise_on_integer_tensors_and_in_indices():
    c = ei.parse("rank M\nrank J = M\ninput I[M]: i32\ninput S[M]: f64\noutput Y[M]: f64\n"
                 "Y[m] = S[m & 6] + (I[m] >> 1) + xor(I[m], m) - (I[m] | 8)\n")
    i = np.array([3, -5, 12, 7, 0, 9, -1, 2])
    s = np.arange(8) * 10.0
    m = np.arange(8)
    want = s[m & 6] + (i >> 1) + (i ^ m) - (i | 8)
    np.testing.assert_array_equal(ei.execute(c, {"I": i, "S": s})["Y"], want)
    np.testing.assert_array_equal(oracle.evaluate(c, {"I": i, "S": s})["Y"], want)


@pytest.mark.parametrize("text, operand", [
    ("Y[m, p] = S[m, p] & 1", "S[m, p]"),
    ("Y[m, p] = xor(m, p / 2)", "p / 2"),
    ("Y[m, p] = S[m, p] where (m | sqrt(p)) > 2", "sqrt(p)"),
    ("Y[m, p] = 1 << S[m, p]", "S[m, p]"),
])
def test_bitwise_of_a_float_is_refused_at_load_naming_einsum_and_operand(text, operand):
    with pytest.raises(ei.ValidationError) as err:
        ei.parse(HEAD + text + "\n", "b.ein")
    msg = str(err.value)
    assert "in Y takes integers" in msg and operand in msg and msg.startswith("b.ein:4:")


def test_bitwise_errors_at_run_time_say_where():
    c = ei.parse("rank M\ninput I[M]: i32\noutput Y[M]: f64\nY[m] = m << I[m]\n")
    with pytest.raises(ei.ExecutionError, match="shift count must lie in 0..62, got -1"):
        ei.execute(c, {"I": np.array([1, -1, 2])})
    with pytest.raises(ei.ExecutionError, match="not an integer: 0.5"):
        ei.execute(c, {"I": np.array([1, 0.5, 2])})
    with pytest.raises(oracle.OracleError, match="shift count"):
        oracle.evaluate(c, {"I": np.array([1, 63, 2])})


def test_conditions_are_zero_or_one_as_numbers():
    """`S * (p >= m)`, a difference of conditions (-1, 0, 1: not bool
    arithmetic, where True - True fails and True + True is True)."""
    c = ei.parse(HEAD + "Y[m, p] = S[m, p] * (p >= m) + ((p < 2) - (m < 2)) + ((p < 3) + (m < 3)) * 10\n")
    s = np.random.default_rng(0).standard_normal((5, 4))
    m, p = np.meshgrid(np.arange(5), np.arange(4), indexing="ij")
    want = s * (p >= m) + ((p < 2).astype(int) - (m < 2)) + ((p < 3).astype(int) + (m < 3)) * 10
    np.testing.assert_allclose(ei.execute(c, {"S": s})["Y"], want, rtol=1e-15)
    np.testing.assert_allclose(oracle.evaluate(c, {"S": s})["Y"], want, rtol=1e-15)


def test_a_predicate_comparing_conditions_is_counted_exactly():
    """`(p < N) == (m < N)`: the executor keeps those points, and the
    symbolic point count equals a brute-force count at several shapes."""
    c = ei.parse("rank M, P\ninput S[M, P]: f64\noutput Y[P]: f64\n"
                 "Y[p] = sum[m] S[m, p] where (p < N) == (m < N) and (m & 3) != 1\n")
    n = points(c, c.einsums[0])
    for mm, pp, nn in [(20, 20, 8), (7, 13, 3), (16, 5, 9)]:
        brute = sum(((p < nn) == (m < nn)) and (m & 3) != 1 for m in range(mm) for p in range(pp))
        value = sympy.sympify(n).subs({shape_symbol("M"): mm, shape_symbol("P"): pp, shape_symbol("N"): nn})
        assert int(value) == brute
        y = ei.execute(c, {"S": np.ones((mm, pp))}, {"N": nn})["Y"]
        assert y.sum() == brute


# ---------------------------------------------------------------- kinds and costs

def test_every_operator_kind_has_a_cost_row_and_counts_use_it():
    kinds = {r.kind for r in RULES.values() if r.kind} | {r.kind for r in REDUCE_RULES.values()}
    assert kinds <= set(KIND_UNITS)
    assert all(set(u) <= {"sfu", "fp32", "int"} and all(v > 0 for v in u.values()) for u in KIND_UNITS.values())
    c = ei.parse(HEAD + "Y[m, p] = sin(S[m, p]) + softplus(S[m, p]) ^ 2 + (m & 3) + erf(S[m, p]) + S[m, p] ^ 1.5"
                        " + S[m, p] ^ -1 + S[m, p] ^ 1\n")
    ops = op_counts(c)
    M, P = shape_symbol("M"), shape_symbol("P")
    # x ^ 2 is the kernels' x * x, x ^ -1 their 1 / x, x ^ 1 free; x ^ 1.5 a power
    assert {k: sympy.simplify(v / (M * P)) for k, v in ops.items() if k != "int"} == {
        "add": 6, "trig": 1, "softplus": 1, "mul": 1, "pow": 1, "divide": 1, "erf": 1}
    assert sympy.simplify(ops["int"] - M) == 0          # m & 3: once per m, hoisted out of p


def test_gpu_model_and_spatial_tables_know_every_kind_and_refuse_others():
    from hw_models.spatial import OP_KINDS
    from simulator.gpu import kind_units
    assert set(KIND_UNITS) <= set(OP_KINDS)
    assert kind_units("softplus")["sfu"] == 3 and kind_units("int") == {"int": 1}
    with pytest.raises(ValueError, match="no cost for operation kind 'frobnicate'"):
        kind_units("frobnicate")


@pytest.mark.parametrize("fn", ["sin(S[m, p])", "S[m, p] ^ 2", "erf(S[m, p])", "S[m, p] * (m & 1)",
                                "softplus(S[m, p])"])
def test_rtl_refuses_the_new_operators_by_name(fn):
    from codegen.rtl.fixed import Fmt, RTLError
    from codegen.rtl.unit import build_unit
    c = ei.parse(HEAD + f"Y[m, p] = {fn}\n")
    with pytest.raises(RTLError, match="no hardware form"):
        build_unit(c, c.einsums[0], Fmt())


def test_oracle_and_executor_agree_on_every_new_operator_at_special_values():
    specials = [0.0, -0.0, 1.0, -1.0, -2.5, 3.0, math.inf, -math.inf, math.nan, 800.0, -800.0, 1e-300]
    for fn in ["sin", "cos", "tan", "erf", "softplus", "logsigmoid", "log1p", "expm1"]:
        with np.errstate(all="ignore"):
            _map(f"{fn}(S[m, p])", np.array(specials))
    for a, b in itertools.product([-2.0, 0.0, 2.0, math.inf, math.nan], repeat=2):
        with np.errstate(all="ignore"):
            got = RULES["pow"].numpy(np.float64(a), np.float64(b))
        want = oracle.VALUE_OPS["pow"](a, b)
        assert (math.isnan(got) and math.isnan(want)) or got == want, (a, b, got, want)


def test_the_python_builder_says_the_same():
    """`**` is `^`, `<<` `>>` are shifts, bitand/bitor/xor the text's & | xor
    (`&` and `|` on builder expressions stay the logic and/or)."""
    from einsum_ir.builder import TensorRef, bitand, bitor, erf, indices, softplus, xor
    m, p = indices("m p")
    S = TensorRef("S")
    expr = (-S[m, p] ** 2 * (p >= m) + (bitand(m, 3) << 1) + xor(m, p) + softplus(S[m, p]) + erf(S[m, p]) ** -1
            + (bitor(m, p) >> 1))
    text = ei.parse(HEAD + "Y[m, p] = -S[m, p] ^ 2 * (p >= m) + ((m & 3) << 1) + xor(m, p) + softplus(S[m, p])"
                           " + erf(S[m, p]) ^ -1 + ((m | p) >> 1)\n").einsums[0].expr
    assert expr == text


def test_pass_traversal_evaluates_conditions_as_numbers_and_bitwise_predicates():
    """The point-by-point pass simulator reads predicates with Python numbers:
    a difference of conditions must be -1/0/1 there too (numpy refuses bool - bool)."""
    from einsum_ir.analysis.traversal import simulate_passes
    c = ei.parse("rank M, P\ninput S[M, P]: f32\noutput Y[P]: f32\n"
                 "GM[p] = max[m] S[m, p] where (p < 2) - (m < 2) >= 0 and (m & 1) == 0\n"
                 "Y[p] = sum[m] exp(S[m, p] - GM[p]) where (p < 2) - (m < 2) >= 0 and (m & 1) == 0\n")
    assert simulate_passes(c, "M", {"M": 6, "P": 5}).passes == 2

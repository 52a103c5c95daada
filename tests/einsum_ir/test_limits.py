"""Hostile and broken input to the parser, the shapes and the executor
(issue 17, items 3, 4, 6 and 7): every limit is an EinError that says what is
too big and where, found in bounded time; numbers are checked where they
enter; a row with no key gets 0 in the guarded library designs."""
from __future__ import annotations

import sys
import time

import numpy as np
import pytest

import einsum_ir as ei
from einsum_ir import parser
from einsum_ir.errors import EinError, ExecutionError, ParseError, ShapeError, ValidationError
from einsum_ir.execute import MAX_ELEMENTS
from einsum_ir.shapes import MAX_EXTENT

HEAD = "rank M, P\ninput S[M, P]: f32\n"


def nested_lets(depth: int) -> str:
    lines = ["rank M", "input S[M]: f32", "let a0(x) = x + 1"]
    lines += [f"let a{i}(x) = a{i - 1}(a{i - 1}(x)) + a{i - 1}(x)" for i in range(1, depth)]
    return "\n".join(lines + [f"Y[m] = S[m] * a{depth - 1}(m)"]) + "\n"


# ------------------------------------------------------------ item 3: limits

def test_nested_lets_are_refused_quickly_at_the_call_that_grows_too_big():
    text = nested_lets(12)                 # 12 lines: each multiplies the expansion (was > 300 s)
    t0 = time.perf_counter()
    with pytest.raises(ParseError, match="expands to more than") as e:
        ei.parse(text, file="lets.ein")
    assert time.perf_counter() - t0 < 5
    line = e.value.loc.line
    assert text.split("\n")[line - 1].startswith("let a") and e.value.loc.file == "lets.ein"


def test_a_let_that_stays_small_is_expanded_as_before():
    c = ei.parse(nested_lets(3))
    # a2(m) = a1(a1(m)) + a1(m), a1(x) = a0(a0(x)) + a0(x), a0(x) = x + 1: evaluate by hand
    a0 = lambda x: x + 1                     # noqa: E731
    a1 = lambda x: a0(a0(x)) + a0(x)         # noqa: E731
    a2 = lambda x: a1(a1(x)) + a1(x)         # noqa: E731
    s = np.arange(1.0, 6.0)
    out = ei.execute(c, {"S": s})["Y"]
    assert np.allclose(out, s * a2(np.arange(5.0)))


def test_node_count_stops_at_the_limit():
    e = ei.parse(HEAD + "Y[m, p] = S[m, p] + 1\n").einsums[0].expr
    assert parser.count_nodes(e) == 5          # add, S[m, p], m, p, 1
    assert parser.count_nodes(e, limit=1) == 2      # stops once past the limit


def test_an_integer_literal_past_the_float64_range_is_located():
    literal = "9" * 310                     # overflowed the validator and executor before
    text = HEAD + f"Y[m, p] = S[m, p] * {literal}\n"
    with pytest.raises(ParseError, match="too large: it has no float64 value") as e:
        ei.parse(text, file="lit.ein")
    assert (e.value.loc.line, e.value.loc.column) == (3, text.split("\n")[2].index(literal) + 1)


@pytest.mark.parametrize("literal, fits", [
    ("1" + "0" * 308, True),                               # 1e308: 309 digits, below the largest float64
    ("00" + "1" + "0" * 308, True),                        # leading zeros count for nothing
    (str(int(sys.float_info.max)), True),                  # the largest float64 itself
    (str(int(sys.float_info.max) + 1), False),             # past it
    ("2" + "0" * 308, False),
    ("1" + "0" * 309, False),                              # 310 digits
    ("9" * 5000, False),                                   # past Python's own digit limit for int()
])
def test_an_integer_literal_has_a_float64_value_up_to_the_largest(literal, fits):
    """The largest float64 is 1.797e308, a 309-digit integer: a literal of
    309 digits below it keeps its value (one was refused for its length)."""
    text = HEAD + f"Y[m, p] = S[m, p] * {literal}\n"
    if fits:
        assert ei.parse(text).einsums[0].expr.args[1].value == int(literal)
    else:
        with pytest.raises(ParseError, match="too large: it has no float64 value"):
            ei.parse(text)


def test_large_numbers_in_a_map_keep_their_float64_value():
    c = ei.parse("rank M\ninput S[M]: f64\nY[m] = S[m] * 100000000000000000000000 + 1e999\n")
    out = ei.execute(c, {"S": np.array([1.0, -1.0])})["Y"]
    assert np.all(out == np.inf)            # 1e999 is inf, as IEEE rounds it
    c = ei.parse("rank M\ninput S[M]: f64\nY[m] = S[m] * 100000000000000000000000\n")
    assert ei.execute(c, {"S": np.array([2.0])})["Y"][0] == 2e23


def test_an_index_literal_past_2_53_is_refused():
    with pytest.raises(ValidationError, match="too large for an index") as e:
        ei.parse(HEAD + "Y[m, p] = S[m + 9007199254740993, p]\n", file="i.ein")
    assert e.value.loc.line == 3
    with pytest.raises(ValidationError, match="extents use integers up to 2"):
        ei.parse("rank M, N = 99999999999999999999\ninput S[M]: f32\nY[m] = S[m]\n")


def test_input_files_are_read_with_a_size_limit(tmp_path):
    with pytest.raises(ParseError, match="larger than") as e:
        ei.parse_file("/dev/zero")
    assert e.value.loc.file == "/dev/zero"
    big = tmp_path / "big.ein"
    big.write_text("# " + "x" * parser.MAX_SOURCE_CHARS + "\n" + HEAD + "Y[m, p] = S[m, p]\n")
    with pytest.raises(ParseError, match="larger than"):
        ei.parse_file(big)
    with pytest.raises(ParseError, match="characters long"):
        ei.parse("#" * (parser.MAX_SOURCE_CHARS + 1))


def test_non_utf8_bytes_are_located(tmp_path):
    f = tmp_path / "latin1.ein"
    f.write_bytes(HEAD.encode() + "Y[m, p] = S[m, p] # café\n".encode("latin-1"))
    with pytest.raises(ParseError, match="0xe9 is not valid UTF-8") as e:
        ei.parse_file(f)
    assert (e.value.loc.line, e.value.loc.column) == (3, len("Y[m, p] = S[m, p] # caf") + 1)


def test_a_directory_is_not_a_design(tmp_path):
    with pytest.raises(ParseError, match="is a directory"):
        ei.parse_file(tmp_path)


def test_arrays_too_big_for_the_executor_are_refused_before_allocation():
    c = ei.library.load("attention-3pass")
    shapes = dict(B=1, H=1, M=20000, P=20000, E=2, F=2)     # QK: 4e8 elements > 2**28
    assert 20000 * 20000 > MAX_ELEMENTS
    with pytest.raises(ShapeError, match=r"tensor QK would hold 400,000,000 elements") as e:
        ei.execute(c, {"Q": np.zeros((1, 1, 2, 20000)), "K": np.zeros((1, 1, 2, 20000)),
                       "V": np.zeros((1, 1, 2, 20000))}, shapes)
    assert e.value.loc is not None
    with pytest.raises(ShapeError, match="would hold"):
        ei.random_inputs(ei.parse("rank M, P\ninput S[M, P]: f32\nY[p] = S[m, p]\n"), dict(M=2 ** 15, P=2 ** 14))


def test_the_iteration_space_of_a_max_reduction_is_bounded():
    c = ei.parse("rank M, P\ninput A[M]: f32\ninput B[P]: f32\nY[p] = max[m] A[m] * B[p]\n")
    with pytest.raises(ShapeError, match="iteration space of Y"):
        ei.execute(c, {"A": np.zeros(2 ** 15), "B": np.zeros(2 ** 14)})


def test_extents_beyond_the_model_limit_are_refused():
    c = ei.library.load("attention-1pass")
    with pytest.raises(ShapeError, match=r"2\*\*32"):
        ei.resolve(c, dict(B=1, H=1, M=10 ** 18, P=10 ** 18, E=64, F=64, M0=64))
    with pytest.raises(ShapeError, match=r"rank M = 4294967297 is larger"):
        ei.resolve(c, dict(B=1, H=1, M=MAX_EXTENT + 1, P=8, E=64, F=64, M0=64))
    env = ei.resolve(c, dict(B=1, H=1, M=MAX_EXTENT, P=8, E=64, F=64, M0=64))
    assert env["M1"] == MAX_EXTENT // 64


# ------------------------------------------------------------ item 4: numbers

@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), "4", True, None])
def test_shape_values_must_be_finite_numbers(value):
    c = ei.parse(HEAD + "Y[m, p] = S[m, p] where p - m < W\n")
    with pytest.raises(ShapeError, match="W must be a"):
        ei.resolve(c, dict(M=4, P=4, W=value))


def test_densities_name_a_mask_and_lie_in_0_1():
    c = ei.parse(HEAD + "input X[M, P]: bool\nY[m, p] = S[m, p] where X[m, p]\n")
    assert ei.resolve(c, dict(M=2, P=2, density_X=0.25))["density_X"] == 0.25
    for bad in (-0.1, 2, 1.0000001):
        with pytest.raises(ShapeError, match=r"must lie in \[0, 1\]"):
            ei.resolve(c, dict(M=2, P=2, density_X=bad))
    with pytest.raises(ShapeError, match="no bool tensor ZZ; its masks: density_X"):
        ei.resolve(c, dict(M=2, P=2, density_ZZ=0.5))
    with pytest.raises(ShapeError, match="no bool tensor S"):
        ei.resolve(c, dict(M=2, P=2, density_S=0.5))      # S is a tensor, but not a mask


def test_unknown_shape_symbols_are_errors():
    c = ei.parse(HEAD + "Y[m, p] = S[m, p]\n")
    with pytest.raises(ShapeError, match="ZZ is not used"):
        ei.resolve(c, dict(M=2, P=2, ZZ=1))


def test_a_derived_rank_that_divides_by_zero_is_located():
    c = ei.library.load("gqa")
    with pytest.raises(ShapeError, match=r"rank KH = H / G has no value .*G=0") as e:
        ei.resolve(c, dict(B=1, H=2, G=0, M=4, P=4, E=2, F=2))
    assert e.value.loc is not None and "rank KH" in c.source.split("\n")[e.value.loc.line - 1]


@pytest.mark.parametrize("body, sign", [
    ("Y[m, p] = S[m, p] where m % 0 == 0", "%"),
    ("Y[m, p] = S[m, p] / (2 - 2)", "/"),
    ("Y[m, p] = S[m % 0, p]", "%"),
    ("Y[m, p] = S[m, p] * (m // (3 - 3))", "//"),
])
def test_a_divisor_that_is_always_zero_is_a_validation_error(body, sign):
    text = HEAD + body + "\n"
    with pytest.raises(ValidationError, match=f"divisor of `{sign}` is always 0") as e:
        ei.parse(text, file="z.ein")
    assert e.value.loc.line == 3


@pytest.mark.parametrize("body, division", [
    ("Y[m, p] = S[m, p] where m % W == 0", "m % W"),
    ("Y[m, p] = S[(m + p) % W, p]", "(m + p) % W"),
    ("Y[m, p] = S[m, p] * (p // W)", "p // W"),
])
def test_a_shape_divisor_equal_to_zero_is_located_in_every_stage(body, division):
    from einsum_ir.analysis import analyze
    c = ei.parse(HEAD + body + "\n", file="w.ein")
    shapes = dict(M=3, P=3, W=0)
    col = body.index(division) + 1
    for stage in (lambda: ei.resolve(c, shapes),
                  lambda: ei.execute(c, {"S": np.ones((3, 3))}, {"W": 0}),
                  lambda: analyze(c).at(shapes)):
        with pytest.raises(ShapeError, match="division by zero") as e:
            stage()
        assert isinstance(e.value, ExecutionError)         # also what execute() promises
        assert (e.value.loc.line, e.value.loc.column) == (3, col)


def test_a_coordinate_divisor_in_a_predicate_of_coordinates_is_refused():
    with pytest.raises(ValidationError, match="a divisor there must be a number or shape symbols") as e:
        ei.parse(HEAD + "Y[m, p] = S[m, p] where m % (p - m + 1) == 0\n", file="d.ein")
    assert (e.value.loc.line, e.value.loc.column) == (3, len("Y[m, p] = S[m, p] where m % (") + 1)
    # in an index, the executor locates the point where it is 0
    c = ei.parse(HEAD + "Y[m, p] = S[m // (p + 1 - m), p] where m <= p\n")
    s = np.arange(9.0).reshape(3, 3)
    want = np.array([[s[m // (p + 1 - m), p] if m <= p else 0 for p in range(3)] for m in range(3)])
    assert np.array_equal(ei.execute(c, {"S": s})["Y"], want)
    c = ei.parse(HEAD + "Y[m, p] = S[m // (p - m), p]\n")
    with pytest.raises(ExecutionError, match="division by zero in the index"):
        ei.execute(c, {"S": s})
    # a divisor that reads a tensor is data: IEEE division, as in a map
    c = ei.parse(HEAD + "input T[P]: f32\nY[m, p] = S[m, p] where S[m, p] / T[p] > 0.5\n")
    s, t = np.array([[1.0, 3.0], [2.0, 0.0]]), np.array([4.0, 0.0])
    want = np.where(s / np.where(t == 0, np.nan, t) > 0.5, s, 0)      # 3/0 = inf > 0.5; 0/0 = NaN is not
    want[0, 1] = 3.0
    assert np.array_equal(ei.execute(c, {"S": s, "T": t})["Y"], want)


def test_a_coordinate_divisor_in_a_map_is_checked_where_it_is_evaluated():
    c = ei.parse(HEAD + "Y[m, p] = S[m, p] * (m % (p - m + 1))\n", file="map.ein")
    with pytest.raises(ExecutionError, match=r"divisor p - m \+ 1 .* is 0 at m=1, p=0") as e:
        ei.execute(c, {"S": np.ones((3, 3))})
    assert (e.value.loc.line, e.value.loc.column) == (3, len("Y[m, p] = S[m, p] * (") + 1)
    # where the predicate removes those points, the map is defined: compare with plain loops
    c = ei.parse(HEAD + "Y[m, p] = S[m, p] * (m % (p - m + 1)) where m <= p\n")
    s = np.arange(9.0).reshape(3, 3)
    want = np.array([[s[m, p] * (m % (p - m + 1)) if m <= p else 0 for p in range(3)] for m in range(3)])
    assert np.array_equal(ei.execute(c, {"S": s})["Y"], want)


def test_a_tensor_divided_by_zero_follows_ieee():
    c = ei.parse("rank M\ninput A[M]: f32\ninput B[M]: f32\nY[m] = A[m] / B[m]\n")
    out = ei.execute(c, {"A": np.array([0.0, 1.0, 0.0]), "B": np.array([0.0, 0.0, 2.0])})["Y"]
    assert np.isnan(out[0]) and out[1] == np.inf and out[2] == 0


# ------------------------------------------------------------ item 6: empty rows and underflow

WINDOWED = {"sliding-window": dict(W=0), "sink-tokens": dict(W=0, NS=0),
            "streaming-heads": dict(W=0, NS=0, HS=2), "gna-1d": dict(W=0, ST=1, DL=1)}


def windowed_reference(q, k, v, visible):
    """Softmax attention by loops over one (b, h) slice; a row with no visible key gives 0."""
    out = np.zeros((v.shape[0], q.shape[1]))
    for p in range(q.shape[1]):
        keys = [m for m in range(k.shape[1]) if visible(m, p)]
        if not keys:
            continue
        s = np.array([q[:, p] @ k[:, m] for m in keys])
        w = np.exp(s - s.max())
        out[:, p] = sum(wi * v[:, m] for wi, m in zip(w, keys)) / w.sum()
    return out


@pytest.mark.parametrize("name", sorted(WINDOWED))
def test_a_query_with_no_visible_key_gets_zero(name):
    c = ei.library.load(name)
    shapes = dict(B=1, H=2, P=6, E=3, F=2, **WINDOWED[name])
    out = ei.execute(c, ei.random_inputs(c, shapes, seed=1), shapes)["AV"]
    assert np.all(np.isfinite(out))
    assert np.all(out == 0)            # W = 0 (and no sinks): no query sees any key


def test_the_guard_leaves_non_empty_rows_as_the_reference_gives():
    c = ei.library.load("sliding-window")
    shapes = dict(B=1, H=1, P=7, E=3, F=2, W=3)
    x = ei.random_inputs(c, shapes, seed=2)
    out = ei.execute(c, x, shapes)["AV"][0, 0]
    want = windowed_reference(x["Q"][0, 0], x["K"][0, 0], x["V"][0, 0], lambda m, p: m <= p and p - m < 3)
    assert np.allclose(out, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["linear-attention", "linear-attention-causal"])
def test_linear_attention_whose_features_underflow_gives_zero_not_nan(name):
    c = ei.library.load(name)
    shapes = dict(B=1, H=1, P=4, M=4, E=2, F=2)
    shapes = {k: v for k, v in shapes.items() if k in ei.shapes.symbols_used(c)}
    x = ei.random_inputs(c, shapes, seed=3)
    x["Q"][..., 0] = -1000.0                     # exp(-1000) underflows to 0 in every feature of query 0
    x["Q"][..., 0, :] = np.where(x["Q"][..., 0, :] > 0, -1000.0, -1000.0)
    x["Q"][..., :, 0] = -1000.0
    out = ei.execute(c, x, shapes)["AV"][0, 0]
    assert np.all(out[:, 0] == 0) and np.all(np.isfinite(out))
    # other queries: the ratio of sums, by loops
    phi = lambda t: np.where(t > 0, t + 1, np.exp(t))       # noqa: E731
    q, k, v = phi(x["Q"][0, 0]), phi(x["K"][0, 0]), x["V"][0, 0]
    for p in range(1, 4):
        keys = range(p + 1) if name.endswith("causal") else range(4)
        w = np.array([q[:, p] @ k[:, m] for m in keys])
        assert np.allclose(out[:, p], sum(wi * v[:, m] for wi, m in zip(w, keys)) / w.sum())


# ------------------------------------------------------------ item 7: no state kept

def test_a_broken_parser_cache_is_rebuilt_not_kept():
    """Simulate lark state corrupted by an earlier failure (issue 17: KeyError
    122 after a kernel failed in Triton's interpreter): the next parse rebuilds."""
    lexer = parser._lark().parser.lexer
    lexer.lexers.clear()                            # every contextual lexer state gone
    c = ei.library.load("attention-3pass")
    assert c.name == "attention-3pass" and parser._lark().parser.lexer is not lexer


def test_a_failed_parse_leaves_nothing_behind():
    with pytest.raises(ParseError):
        ei.parse("rank M\ninput S[M]: f32\nlet f(x) = x\nY[m] = S[m] $\n")
    # the same let name, defined again in a new text, is not "already defined"
    c = ei.parse("rank M\ninput S[M]: f32\nlet f(x) = x + 1\nY[m] = S[m] * f(m)\n")
    assert np.array_equal(ei.execute(c, {"S": np.ones(3)})["Y"], np.arange(1.0, 4.0))


def test_every_limit_is_an_ein_error():
    for text in (nested_lets(14), HEAD + "Y[m, p] = " + "exp(" * 150 + "S[m, p]" + ")" * 150 + "\n",
                 HEAD + "Y[m, p] = " + " + ".join(["S[m, p]"] * 12000) + "\n"):
        with pytest.raises(EinError):
            ei.parse(text)


def test_cascade_size_limits_are_located():
    from einsum_ir.validate import MAX_EINSUMS, MAX_RANKS, MAX_VARS
    text = "rank " + ", ".join(f"R{i}" for i in range(300)) + "\ninput S[R0]: f32\nY[r0] = S[r0]\n"
    with pytest.raises(ValidationError, match=f"300 ranks; at most {MAX_RANKS}") as e:
        ei.parse(text, file="r.ein")
    assert e.value.loc.column == text.index(f"R{MAX_RANKS},") + 1
    rs = [f"R{i}" for i in range(MAX_VARS + 1)]
    half = len(rs) // 2
    text = (f"input S[{', '.join(rs[:half])}]: f32\ninput T[{', '.join(rs[half:])}]: f32\n"
            f"Y[] = S[{', '.join(r.lower() for r in rs[:half])}] * T[{', '.join(r.lower() for r in rs[half:])}]\n")
    with pytest.raises(ValidationError, match=f"iterates over {MAX_VARS + 1} index variables"):
        ei.parse(text)
    many = "rank M\ninput S[M]: f32\n" + "".join(f"T{i}[m] = S[m] + {i}\n" for i in range(MAX_EINSUMS + 1))
    with pytest.raises(ValidationError, match=f"at most {MAX_EINSUMS}"):
        ei.parse(many)


def test_a_long_line_is_shown_around_the_error():
    text = "rank M\ninput S[M]: f32\nY[m] = S[m]" + " + 1" * 500 + " $\n"
    with pytest.raises(ParseError) as e:
        ei.parse(text)
    shown = str(e.value).split("\n")
    assert len(shown) == 3 and len(shown[1]) < 140 and shown[1].rstrip().endswith("$")
    assert shown[2].index("^") == shown[1].index("$")


def test_a_rank_extent_is_an_integer_expression():
    # found by the fuzzer: `rank RL = M != P - 1` reached sympy as a boolean
    for definition, op in (("M != P - 1", "ne"), ("exp(M)", "exp"), ("max(M, P)", "max")):
        with pytest.raises(ValidationError, match=f"the extent of rank RL uses {op}") as e:
            ei.parse(f"rank M, P\nrank RL = {definition}\ninput S[M, RL]: f32\nY[m] = S[m, rl]\n", file="r.ein")
        assert e.value.loc.line == 2

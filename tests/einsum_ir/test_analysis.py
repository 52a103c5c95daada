"""The analyses against hand-derived formulas and brute-force counts."""
import itertools

import numpy as np
import pytest
import sympy

import einsum_ir as ei
from einsum_ir.analysis import analyze, count_points, evaluate, footprint, op_counts, passes, points
from einsum_ir.sym import index_symbol

S = {n: sympy.Symbol(n, positive=True, integer=True) for n in "B H M P E F M0 M1 W".split()}
B, H, M, P, E, F, M0, M1, W = (S[n] for n in "B H M P E F M0 M1 W".split())


def same(a, b):
    return sympy.simplify(sympy.expand(a - b)) == 0


# --------------------------------------------------------------------- passes

@pytest.mark.parametrize("name, expected", [
    ("attention-naive", 2), ("attention-3pass", 3), ("attention-3pass-deferred", 2),
    ("attention-2pass", 2), ("attention-1pass", 1),
])
def test_pass_counts_over_m(name, expected):
    assert passes(ei.library.load(name), "M").passes == expected


@pytest.mark.parametrize("name", [n for n in ei.library.names() if n.startswith("attention-")])
def test_one_pass_over_ranks_that_are_never_reduced_and_read_again(name):
    c = ei.library.load(name)
    for r in ("B", "H", "P", "E", "F"):
        assert passes(c, r).passes == 1


def test_pass_chain_names_the_dependency():
    lines = passes(ei.library.load("attention-3pass"), "M").explain()
    assert lines == ["pass 2: GM <- max over m of QK; SN re-reads QK over m",
                     "pass 3: SD <- sum over m of SN; A re-reads SN over m"]
    two = passes(ei.library.load("attention-2pass"), "M")
    assert [s.reducer for s in two.chain] == ["GM"] and two.chain[0].rereads == ("LM",)
    assert passes(ei.library.load("attention-1pass"), "M").chain == ()


def test_deferral_merges_passes_two_and_three():
    three = passes(ei.library.load("attention-3pass"), "M").einsum_pass
    deferred = passes(ei.library.load("attention-3pass-deferred"), "M").einsum_pass
    assert three["A"] == 3 and three["AV"] == 3
    assert deferred["SNV"] == 2 and deferred["AV"] == 0  # AV no longer iterates M: it runs after pass 2


def test_a_chain_of_k_full_reductions_makes_k_plus_one_passes():
    # x -> max -> subtract -> max -> subtract ...: each re-read after a full reduction adds a pass
    for k in range(1, 5):
        lines = ["rank M, P", "input X[M, P]", "Y0[m, p] = X[m, p]"]
        for i in range(k):
            lines.append(f"G{i}[p] = max[m] Y{i}[m, p]")
            lines.append(f"Y{i + 1}[m, p] = Y{i}[m, p] - G{i}[p]")
        c = ei.parse("\n".join(lines))
        assert passes(c, "M").passes == k + 1
        assert len(passes(c, "M").chain) == k


# ------------------------------------------------------------------ op counts

def test_one_pass_op_counts_by_hand():
    ops = op_counts(ei.library.load("attention-1pass"))
    assert same(ops["exp"], B * H * P * (M + M1))            # SLN per key, PRM per tile
    assert same(ops["mac"], B * H * M * P * (E + F))          # BQK and SLNV
    assert same(ops["max"], B * H * P * (M + M1))             # LM per key, RM per tile
    assert same(ops["mul"], B * H * P * M1 * (1 + F))         # SPD, SPNV
    assert same(ops["add"], B * H * P * (2 * M + 2 * M1 + F * M1))  # SLN, SLD subtract/sum; PRM; RD; RNV
    assert same(ops["divide"], B * H * F * P)


def test_three_pass_op_counts_by_hand():
    ops = op_counts(ei.library.load("attention-3pass"))
    assert same(ops["mac"], B * H * M * P * (E + F))
    assert same(ops["max"], B * H * M * P)
    assert same(ops["exp"], B * H * M * P)
    assert same(ops["add"], 2 * B * H * M * P)
    assert same(ops["divide"], B * H * M * P)
    deferred = op_counts(ei.library.load("attention-3pass-deferred"))
    assert same(deferred["divide"], B * H * F * P)  # deferral divides F*P times instead of M*P


def test_causal_predicate_halves_the_count():
    c = ei.parse("rank M, P, E\ninput Q[E, P]\ninput K[E, M]\n"
                 "S[m, p] = Q[e, p] * K[e, m] where m <= p")
    macs = op_counts(c)["mac"]
    for n in (7, 64, 1000, 65536):
        assert evaluate(macs, dict(M=n, P=n, E=3)) == 3 * n * (n + 1) // 2
    big = evaluate(macs, dict(M=65536, P=65536, E=1))
    assert abs(big / 65536 ** 2 - 0.5) < 1e-4


def test_window_keeps_about_2w_plus_1_per_query():
    c = ei.parse("rank M, P\ninput X[M, P]\nY[m, p] = exp(X[m, p]) where abs(p - m) <= W")
    exps = op_counts(c)["exp"]
    for n, w in ((100, 5), (4096, 64), (65536, 128)):
        by_hand = sum(min(p + w, n - 1) - max(p - w, 0) + 1 for p in range(n))
        assert evaluate(exps, dict(M=n, P=n, W=w)) == by_hand


def test_mask_tensor_counts_with_its_density():
    c = ei.parse("rank M, P\ninput X[M, P]\ninput Mask[M, P]: bool\nY[p] = X[m, p] where Mask[m, p]")
    n = op_counts(c)["add"]
    assert evaluate(n, dict(M=10, P=20, density_Mask=0.25)) == pytest.approx(50)
    with pytest.raises(ei.ShapeError, match="density_Mask"):
        evaluate(n, dict(M=10, P=20))


def test_partial_last_tile_points_are_exact():
    c = ei.library.load("attention-1pass")
    a = analyze(c)
    v = a.at(dict(B=1, H=1, M=1000, P=3, E=2, F=2, M0=64))
    assert v["shapes"]["M1"] == 16
    assert v["ops"]["exp"] == 3 * (1000 + 16)


@pytest.mark.parametrize("pred", [
    "m <= p", "m < p", "abs(p - m) <= W", "m >= p - W and m <= p", "(p - m) % 3 == 0",
    "m * 2 <= p or m == 0", "not m < p", "m1 * M0 + m0 <= p",
])
def test_point_counts_match_brute_force(pred):
    c = ei.parse(f"partition M -> M1, M0\nrank P\ninput X[M1, M0, P]\nY[m1, m0, p] = X[m1, m0, p] where {pred}"
                 if "m1" in pred else f"rank M, P\ninput X[M, P]\nY[m, p] = X[m, p] where {pred}")
    e = c.einsums[0]
    for shapes in ({"M": 13, "P": 17, "W": 3, "M0": 4}, {"M": 40, "P": 9, "W": 5, "M0": 8}):
        shapes = {k: v for k, v in shapes.items() if k in ei.shapes.symbols_used(c)}
        env = ei.resolve(c, shapes)
        got = evaluate(points(c, e), env)
        vars_ = e.iteration_vars
        ranges = [range(env[v.upper()]) for v in vars_]
        expr = pred.replace("abs", "abs").replace("not ", "not ").replace("M0", str(env.get("M0", 0)))
        expr = expr.replace("W", str(env.get("W", 0)))
        count = 0
        for point in itertools.product(*ranges):
            scope = dict(zip(vars_, point))
            inside = "m1" not in scope or scope["m1"] * env["M0"] + scope["m0"] < env["M"]
            count += inside and bool(eval(expr, {"abs": abs}, scope))
        assert got == count


def test_interval_counting_agrees_with_brute_force_on_large_boxes():
    m, p = index_symbol("m"), index_symbol("p")
    pred = sympy.And(sympy.Le(m, p + 7), sympy.Ge(3 * m, p - 100))
    big = count_points(pred, ((m, 3000), (p, 2000)))   # 6e6 points: interval method
    grid_m, grid_p = np.meshgrid(np.arange(3000), np.arange(2000), indexing="ij")
    assert big == int(np.count_nonzero((grid_m <= grid_p + 7) & (3 * grid_m >= grid_p - 100)))


# --------------------------------------------------------- footprint and traffic

def _footprint_bytes(name, **shapes):
    c = ei.library.load(name)
    used = ei.shapes.symbols_used(c)
    env = ei.resolve(c, {k: v for k, v in shapes.items() if k in used})
    return footprint(c, "M").at(env)[0]


def test_three_pass_footprint_grows_with_m_one_pass_does_not():
    base = dict(B=1, H=1, P=512, E=64, F=64, M0=64)
    three = [_footprint_bytes("attention-3pass", M=n, **base) for n in (1024, 4096, 16384)]
    one = [_footprint_bytes("attention-1pass", M=n, **base) for n in (1024, 4096, 16384)]
    assert three[0] < three[1] < three[2]
    assert one[0] == one[1] == one[2]


def test_three_pass_footprint_by_hand():
    # worst point: while SN is formed in pass 2, QK (still needed) and SN (needed in pass 3)
    # are both held whole, with GM and the SD accumulator; 2 bytes each.
    for m, p in ((1024, 1024), (4096, 256)):
        got = _footprint_bytes("attention-3pass", B=2, H=3, M=m, P=p, E=64, F=64)
        assert got == 2 * 3 * 2 * (2 * m * p + 2 * p)


def test_one_pass_footprint_by_hand():
    # worst point: SLN formed, with Q held, one M0-tile of BV, BQK and SLN per query,
    # and the running state RM, RD (2 iterates) and RNV (2 iterates of F).
    b, h, p, e, f, m0 = 2, 3, 4096, 64, 64, 256
    got = _footprint_bytes("attention-1pass", B=b, H=h, M=8192, P=p, E=e, F=f, M0=m0)
    assert got == 2 * b * h * (e * p + f * m0 + 2 * m0 * p + 2 * p + 2 * p + 2 * f * p)


def test_compulsory_traffic_and_intensity_by_hand():
    a = analyze(ei.library.load("attention-3pass"))
    assert same(a.traffic["total_bytes"], 2 * B * H * (E * P + E * M + F * M + F * P))
    assert same(a.intensity * a.traffic["total_bytes"], a.flops)
    assert same(a.sizes["QK"], 2 * B * H * M * P)


def test_iterative_tensor_holds_extent_plus_one_iterates():
    a = analyze(ei.library.load("attention-1pass"))
    assert same(a.sizes["RM"], 2 * B * H * (M1 + 1) * P)
    v = a.at(dict(B=1, H=1, M=100, P=2, E=2, F=2, M0=10))
    assert v["sizes"]["RM"] == 2 * 11 * 2


def test_analysis_at_needs_every_symbol():
    a = analyze(ei.library.load("attention-1pass"))
    with pytest.raises(ei.ShapeError, match="M0"):
        a.at(dict(B=1, H=1, M=100, P=2, E=2, F=2))

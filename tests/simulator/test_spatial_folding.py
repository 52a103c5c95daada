"""The spatial model charges a design for what it computes: compile-time
constants (`sqrt(E)`, `8 / H`) are folded outside the array, operations that
depend on only some of an Einsum's variables are charged once per distinct
value of them, and an operation no unit performs is still refused. Counts
below are derived by hand (or by a plain loop over the points), never read
back from the model."""
import itertools
import math

import pytest

import einsum_ir as ei
import hw_models as hw
from einsum_ir.analysis import ops_per_point as analysis_ops
from einsum_ir.errors import EinError
from mappers.mapping import parse_mapping
from mappers.spatial_space import check_units
from simulator.analytical import simulate
from simulator.facts import facts, fold, ops_per_point

FUSEMAX = hw.load_spatial("fusemax")
SHAPES = dict(B=1, H=2, E=8, F=8, P=64)

HEAD = """rank B, H, P, E, F
rank M = P
input Q[B, H, E, P]: f32
input K[B, H, E, M]: f32
input V[B, H, F, M]: f32
"""
TAIL = """GM[b, h, p] = max[m] S[b, h, m, p]{w}
SN[b, h, m, p] = exp(S[b, h, m, p] - GM[b, h, p]){w}
SD[b, h, p] = SN[b, h, m, p]{w}
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m]{w}
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]
"""


def design(score: str, mask: str = "", inputs: str = "") -> ei.Cascade:
    w = " where vis" if mask else ""
    text = HEAD + inputs + (f"mask vis = {mask}\n" if mask else "") + f"\nQK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]{w}\n"
    return ei.parse(text + f"S[b, h, m, p] = {score}{w}\n" + TAIL.format(w=w))


def mapping(name: str, s_unit: str) -> object:
    """A hand mapping: 16 x 16 tiles, the scores on pe2d along (m0, p0), S
    on `s_unit` (along p0 on the 1D array), AV on the 1D array."""
    par = "{pe1d: [p0], pe2d: [m0, p0]}" if s_unit == "pe1d" else "{pe2d: [m0, p0]}"
    return parse_mapping(f"""name: hand
cascade: "{name}"
hardware: fusemax
factors:
  M: {{M1: rest, M0: 16}}
  P: {{P2: rest, P1: 1, P0: 16}}
nest:
  - for: [b, h, p2]
    body:
      - for: [p1, m1]
        parfor: {par}
        run: [QK, S, GM]
      - for: [p1, m1]
        parfor: {{pe2d: [m0, p0]}}
        run: [SN, SD, SNV]
      - for: [p1]
        parfor: {{pe1d: [p0]}}
        run: [AV]
binding: {{QK: pe2d, S: {s_unit}, GM: pe2d, SN: pe2d, SD: pe2d, SNV: pe2d, AV: pe1d}}
keep: {{Q: p1, K: h, V: h, S: p2, GM: p2, SD: p2, SNV: p2, AV: stream}}
overlap: {{kind: overlapped}}
""", "<test>")


def cost(report, name):
    return next(ec for ec in report.einsums if ec.name == name)


def test_a_shape_constant_is_folded_and_its_division_becomes_a_multiply():
    """`QK / sqrt(E)`: einsum_ir counts a sqrt and a divide per point; the
    array folds 1 / sqrt(E) at compile time and multiplies, which pe2d can."""
    c = design("QK[b, h, m, p] / sqrt(E)")
    s = next(e for e in c.einsums if e.name == "S")
    assert dict(analysis_ops(s)) == {"divide": 1, "sqrt": 1}
    assert dict(ops_per_point(s)) == {"mul": 1}
    assert fold(s)[1] == ("1 / sqrt(E)",)
    assert "pe2d" in check_units(c, FUSEMAX)["S"]
    r = simulate(c, mapping(c.name, "pe2d"), FUSEMAX, SHAPES)
    # one multiply per point, 16 x 16 PEs busy: B H M P / 256 cycles
    assert cost(r, "S").ops == {"mul": 2 * 64 * 64}
    assert cost(r, "S").busy_cycles == 2 * 64 * 64 / 256


def test_constants_of_a_product_are_multiplied_once():
    """`-(h + 1) * 8 / H` and `0.5 * x / sqrt(E)`: the constant factors of a
    product become one folded number; what depends on h stays."""
    c = design("0.5 * QK[b, h, m, p] / sqrt(E) + exp2(-(h + 1) * 8 / H)")
    s = next(e for e in c.einsums if e.name == "S")
    assert set(fold(s)[1]) == {"0.5 / sqrt(E)", "8 / H"}
    # per point: the scaled score (mul) and the sum (add); per head: h + 1, times 8 / H, exp2
    groups = {tuple(sorted(g.vars)): dict(g.ops) for g in facts(c).groups["S"]}
    assert groups == {("b", "h", "m", "p"): {"mul": 1, "add": 1}, ("h",): {"add": 1, "mul": 1, "exp": 1}}
    notes = simulate(c, mapping(c.name, "pe2d"), FUSEMAX, SHAPES).notes
    assert f"S: {', '.join(fold(s)[1])} computed once at compile time, outside the array" in notes
    assert "S: add, mul, exp depend on (h) only: charged 2 times, not once per point" in notes


def test_a_per_row_index_expression_is_charged_once_per_row():
    """`(p // 4) * 2` depends on the query alone: its divide and multiply run
    once per p (P times), the rest once per point. pe2d cannot divide, so S
    runs on the 1D array along p0 (16 of its PEs):
    busy = (B H M P x 2 + P x 2) / 16, not B H M P x 4 / 16."""
    c = design("QK[b, h, m, p] / sqrt(E) + (p // 4) * 2")
    assert check_units(c, FUSEMAX)["S"] == ("pe1d",)
    r = simulate(c, mapping(c.name, "pe1d"), FUSEMAX, SHAPES)
    b, h, m, p = 1, 2, 64, 64
    s = cost(r, "S")
    assert s.ops == {"mul": b * h * m * p + p, "add": b * h * m * p, "divide": p}
    assert s.busy_cycles == pytest.approx((b * h * m * p * 2 + p * 2) / 16)
    assert s.busy_cycles < b * h * m * p * 4 / 16 / 1.9
    assert s.points == b * h * m * p and s.cycles_per_point == 2


def visited_tiles(keep, n: int, t: int) -> int:
    """Points of the t x t tiles of an n x n (m, p) grid with a kept point: a plain loop."""
    return sum(t * t for i in range(0, n, t) for j in range(0, n, t)
               if any(keep(m, p) for m in range(i, i + t) for p in range(j, j + t)))


def test_a_per_point_predicate_charges_the_tiles_it_visits():
    """A dilated window `abs(p - m) <= 6 and (p - m) % 3 == 0`: operations
    (and energy) are the kept points', counted by a plain loop; time is the
    visited 16 x 16 tiles': the band |i - j| <= 1 of 4 x 4 tiles, 10 tiles,
    each computed whole on 256 PEs."""
    def keep(m, p):
        return abs(p - m) <= 6 and (p - m) % 3 == 0
    c = design("QK[b, h, m, p] / sqrt(E)", "abs(p - m) <= 6 and (p - m) % 3 == 0")
    kept = sum(1 for m, p in itertools.product(range(64), repeat=2) if keep(m, p))
    r = simulate(c, mapping(c.name, "pe2d"), FUSEMAX, SHAPES)
    assert cost(r, "S").points == 2 * kept and cost(r, "S").ops == {"mul": 2 * kept}
    assert cost(r, "QK").ops == {"mac": 2 * kept * 8}
    assert cost(r, "SN").ops == {"exp": 2 * kept, "add": 2 * kept}
    assert visited_tiles(keep, 64, 16) == 10 * 256
    assert cost(r, "SN").busy_cycles == pytest.approx(2 * 10 * 256 * 7 / 256)   # exp = 6 MACs, + 1 add
    assert cost(r, "QK").busy_cycles == pytest.approx(2 * 10 * 256 * 8 / 256)   # E MACs per point
    assert any("16 x" in x and "skipped" in x for x in r.notes)


def test_a_causal_mask_on_the_1d_array_skips_rows_of_keys():
    """S on the 1D array along p0 (16 queries at once), m a temporal loop: a
    step (one key, 16 queries) is skipped when none of them sees the key.
    Causal at 64: each 16-query tile j sees keys m < 16 (j + 1), so
    16 x 16 (1 + 2 + 3 + 4) points are computed, 2 cycles each (a multiply
    by the folded 1 / sqrt(E), an add of the per-row term)."""
    c = design("QK[b, h, m, p] / sqrt(E) + (p // 4) * 2", "m <= p")
    r = simulate(c, mapping(c.name, "pe1d"), FUSEMAX, SHAPES)
    visited = sum(16 * 16 * (j + 1) for j in range(4))
    assert visited == sum(1 for m in range(64) for j in range(4) if any(m <= p for p in range(16 * j, 16 * j + 16))) * 16
    kept_rows = 64                          # (p // 4) * 2: once per query p that sees some key
    assert cost(r, "S").busy_cycles == pytest.approx((2 * visited * 2 + kept_rows * 2) / 16)


def test_an_operation_no_unit_performs_is_refused_naming_it():
    """tanh of a score has no unit on FuseMax (folding never hides it); tanh
    of a shape is a constant and is folded."""
    c = design("tanh(QK[b, h, m, p] / sqrt(E))")
    with pytest.raises(EinError, match=r"Einsum S \(mul, tanh\) cannot run on fusemax: no unit performs tanh"):
        check_units(c, FUSEMAX)
    ok = design("QK[b, h, m, p] * tanh(E / 16)")
    assert dict(ops_per_point(next(e for e in ok.einsums if e.name == "S"))) == {"mul": 1}
    assert set(check_units(ok, FUSEMAX)["S"]) == {"pe2d", "pe1d"}


def test_a_scalar_tensor_is_not_a_constant():
    """A value read from a tensor is data, not a compile-time constant: its
    operations stay on the array."""
    c = ei.parse(HEAD.replace("input V", "input T[B]: f32\ninput V") +
                 "\nQK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]\n"
                 "S[b, h, m, p] = QK[b, h, m, p] / sqrt(T[b])\n" + TAIL.format(w=""))
    s = next(e for e in c.einsums if e.name == "S")
    assert fold(s)[1] == () and dict(ops_per_point(s)) == {"divide": 1, "sqrt": 1}


def test_folding_leaves_the_reproduced_designs_alone():
    """The FuseMax cascades have no constant to fold and nothing hoisted:
    every Einsum's operations are einsum_ir's per point."""
    for name in ("attention-1pass", "attention-3pass"):
        c = ei.library.load(name)
        for e in c.einsums:
            if not e.is_initial:
                assert fold(e)[1] == () and ops_per_point(e) == analysis_ops(e)
                assert len(facts(c).groups[e.name]) == 1


def test_a_canvas_rank_can_be_the_row_rank():
    """`rank P = CH * CW` is a rank of its own (defined by symbols), so the
    mapper tiles its queries on the array; an alias (`M = P`) is not."""
    from mappers.spatial_space import roles
    c = ei.parse(HEAD.replace("rank B, H, P, E, F", "rank B, H, E, F\nrank P = CH * CW") +
                 "\nQK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]\n"
                 "S[b, h, m, p] = QK[b, h, m, p] / sqrt(E)\n" + TAIL.format(w=""))
    r = roles(c, FUSEMAX, dict(B=1, H=2, E=8, F=8, CH=8, CW=32))
    assert r.row == "P" and r.key == "M"
    assert math.prod([8, 32]) == r.env["P"]


def test_a_tensor_only_a_mask_reads_keeps_the_heads_a_batch_loop():
    """A document mask `DOC[b, p] == DOC[b, m]` reads a tensor without H: it
    is broadcast over the heads, so H stays an outer loop (before, H went
    into the PEs and every score went through DRAM); a score term read per
    point without H (a bias over (b, m, p)) still keeps H off the batch."""
    from mappers.spatial_space import roles
    doc = design("QK[b, h, m, p] / sqrt(E)", "DOC[b, p] == DOC[b, m] and m <= p", "input DOC[B, P]: i32\n")
    r = roles(doc, FUSEMAX, dict(SHAPES, density_vis=0.5))
    assert r.row == "P" and set(r.batch) == {"B", "H"}
    bias = design("QK[b, h, m, p] / sqrt(E) + BI[b, m, p]", "", "input BI[B, M, P]: f32\n")
    assert "H" not in roles(bias, FUSEMAX, SHAPES).batch


def test_a_design_named_like_a_library_design_maps():
    """The corpus' `sliding-window` is not the library's (other Einsums): the
    mapper's file labels it apart, so loading it does not check its names
    against the library design (it was refused: `S is not an Einsum`)."""
    from mappers.spatial_space import cascade_label
    c = ei.parse(str(design("QK[b, h, m, p] / sqrt(E)", "m <= p and p - m < 8")), name="sliding-window")
    label = cascade_label(c, "fusemax")
    assert label != "sliding-window" and label.startswith("sliding-window")
    with pytest.raises(EinError, match="S is not an Einsum of sliding-window"):
        mapping(c.name, "pe2d")            # named as the library design: checked against it
    r = simulate(c, mapping(label, "pe2d"), FUSEMAX, dict(SHAPES))
    assert cost(r, "QK").points == 2 * 8 * sum(1 for m_ in range(64) for p in range(64) if m_ <= p and p - m_ < 8)
    lib = ei.library.load("attention-3pass")
    assert cascade_label(lib, "fusemax") == "attention-3pass"

"""Each pass of the spatial model on its own, against counts derived by hand
at small points, and `formulas` as the same passes over sympy."""
import dataclasses
from collections import Counter

import pytest
import sympy

import einsum_ir as ei
import hw_models as hw
from einsum_ir.analysis import evaluate
from mappers.mapping import load_mapping
from simulator import compute, schedule, tiling, traffic
from simulator.analytical import formulas, simulate
from simulator.numbers import Numeric, Symbolic

FUSEMAX = hw.load_spatial("fusemax")
FLAT_HW = hw.load_spatial("flat")
ONE = ei.library.load("attention-1pass")
THREE = ei.library.load("attention-3pass")
SMALL = dict(B=1, H=1, E=64, F=64, M=1024, P=1024)


def _passes(c, name, a, shapes):
    s = tiling.space(c, load_mapping(name), a, shapes)
    return s, tiling.tiling(s, a)


def test_space_folds_views_into_their_inputs():
    s = tiling.space(ONE, load_mapping("fusemax-binding"), FUSEMAX, SMALL)
    assert s.views == {"BK": "K", "BV": "V"}
    assert "BK" not in {e.name for e in s.einsums} and s.base("BK") == "K"
    assert s.env["M1"] == 4 and s.env["M0"] == 256


def test_tiling_fit_is_the_largest_divisor_whose_tiles_fit():
    """FuseMax keeps one K and one V tile (256 x E words each) and per query
    Q, RM, RD, RNV (E + 1 + 1 + F words): with a 1 MiB buffer and P = 64K
    (256 query tiles), P1 is the largest divisor of 256 whose P1 x 256
    queries fit in what the K and V tiles leave."""
    small = FUSEMAX.with_changes(buffer=dataclasses.replace(FUSEMAX.buffer, capacity_bytes=1 << 20))
    shapes = dict(SMALL, M=65536, P=65536)
    s, t = _passes(ONE, "fusemax-binding", small, shapes)
    per_query, kv = (64 + 1 + 1 + 64) * 2, 2 * 256 * 64 * 2
    want = max(d for d in range(1, 257) if 256 % d == 0 and kv + d * 256 * per_query <= 1 << 20)
    assert t.factors["P1"] == want and t.factors["P2"] == 256 // want
    assert t.buffer_bytes == kv + want * 256 * per_query
    assert t.min_buffer_bytes == kv + 256 * per_query


def test_compute_pes_used_and_busy_cycles_by_hand():
    """FLAT's QK puts (m0, e) on the 256 x 256 array: 256 x 64 PEs busy at
    E = 64, so QK's M x P x E MACs take M P E / (256 x 64) cycles."""
    s, t = _passes(THREE, "flat", FLAT_HW, SMALL)
    qk = next(e for e in s.einsums if e.name == "QK")
    ec = compute.einsum_cost(s, t.nest, FLAT_HW, qk)
    assert ec.pes_used == 256 * 64 and ec.points == 1024 * 1024 * 64
    assert ec.busy_cycles == 1024 * 1024 * 64 / (256 * 64)


def test_compute_pads_partial_tiles():
    """M = 1000 keys in tiles of 256: 4 tiles cover 1024, so the array is
    busy 1024/1000 of the points' time."""
    shapes = dict(SMALL, M=1000)
    s, t = _passes(ONE, "fusemax-binding", FUSEMAX, shapes)
    e = next(x for x in s.einsums if x.name == "BQK")
    used, pad = compute.pes_used(s, t.nest, e, FUSEMAX.unit("pe2d"))
    assert used == 256 * 256 and pad == pytest.approx(1024 / 1000)


def test_traffic_restream_and_trips_by_hand():
    """FuseMax at M = P = 64K: P1 = 128, P2 = 2. K kept under m1 is fetched
    once per p2 (2 x |K|); Q kept under p2 once; Q is read into the array
    once per m1 (M1 = 256 times)."""
    shapes = dict(SMALL, M=65536, P=65536)
    s, t = _passes(ONE, "fusemax-binding", FUSEMAX, shapes)
    k = next(x for x in ONE.tensors if x.name == "K")
    q = next(x for x in ONE.tensors if x.name == "Q")
    main = s.mapping.leaf_of("BQK")
    assert traffic.restream(t.nest, k, main, s.mapping.keep_of("K")) == 2
    assert traffic.restream(t.nest, q, main, s.mapping.keep_of("Q")) == 1
    assert traffic.buffer_trips(t.nest, q, main) == 256
    moved = traffic.traffic(s, t.nest, 2, t.kept_bytes)
    assert sum(moved.by_einsum.values()) == moved.dram_bytes == 2 * 65536 * 64 * (1 + 2 + 2 + 1)


def test_schedule_rules_on_made_up_costs():
    """The three overlap rules over costs written by hand."""
    ec = lambda n, u, b: compute.EinsumCost(n, u, 0, 1, 1, b, 0.0, {}, 0, 0)   # noqa: E731
    costs = (ec("X", "pe2d", 10.0), ec("Y", "pe1d", 4.0), ec("Z", "pe1d", 3.0))
    m = load_mapping("unfused")
    by = Counter({"X": 0.0, "Y": 0.0, "Z": 0.0})
    over = schedule.latency(m.with_changes(overlap="overlapped"), costs, None, FLAT_HW, 5.0, by)
    assert over.latency_cycles == 10.0 and over.unit_busy_cycles == {"pe2d": 10.0, "pe1d": 7.0}
    ph = schedule.latency(m.with_changes(phases=(("X",), ("Y", "Z"))), costs, None, FLAT_HW, 0.0, by)
    assert ph.latency_cycles == 10.0 + 7.0


def test_formulas_come_from_the_same_passes(monkeypatch):
    """A change to a pass shows in both simulate and formulas: doubling the
    PEs used halves the busy cycles in each."""
    m = load_mapping("fusemax-binding")
    f0 = formulas(ONE, m, FUSEMAX)["busy_cycles[BQK]"]
    r0 = simulate(ONE, m, FUSEMAX, SMALL)
    real = compute.pes_used
    monkeypatch.setattr(compute, "pes_used", lambda *a: (real(*a)[0] * 2, real(*a)[1]))
    f1 = formulas(ONE, m, FUSEMAX)["busy_cycles[BQK]"]
    b1 = compute.compute(*(lambda s, t: (s, t.nest))(*_passes(ONE, "fusemax-binding", FUSEMAX, SMALL)), FUSEMAX)
    assert sympy.simplify(f0 / f1) == 2
    busy0 = next(e.busy_cycles for e in r0.einsums if e.name == "BQK")
    assert next(e.busy_cycles for e in b1 if e.name == "BQK") == busy0 / 2
    env = {**r0.shapes, **r0.factors}
    assert evaluate(f0, env) == pytest.approx(busy0)


def test_number_types():
    assert Numeric({"M": 1000}).pad(1024, "M") == pytest.approx(1.024) and Numeric({"M": 1024}).pad(1024, "M") == 1
    assert Symbolic().pad(sympy.Symbol("x"), "M") == 1
    assert Symbolic().min(sympy.Symbol("P1"), 256) == sympy.Min(sympy.Symbol("P1"), 256)

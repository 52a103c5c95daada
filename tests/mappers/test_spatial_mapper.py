"""The spatial mapper: every candidate a mapping the simulator accepts, the
critical path derived (and checked by the simulator), designs no unit can
run refused by name, searches that agree, and the FuseMax and FLAT
configurations matched or beaten."""
from __future__ import annotations

import dataclasses
import itertools

import pytest

import einsum_ir as ei
from hw_models import load_spatial
from mappers.mapping import check_critical_path, load_mapping, parse_critical_path
from mappers.spatial_eval import Evaluator
from mappers.spatial_search import exhaustive, finish, fused, random_search, search, space_size
from mappers.spatial_space import MapperError, roles
from mappers.stages import derive
from simulator.analytical import simulate

BERT = dict(B=64, H=12, E=64, F=64)


def _small(name="flat", side=8):
    hw = load_spatial(name)
    units = {u: dataclasses.replace(x, shape=tuple(side for _ in x.shape)) for u, x in hw.units.items()}
    return hw.with_changes(units=units)


def test_found_mapping_is_a_file_the_simulator_reads():
    c, hw = ei.load("attention-1pass"), load_spatial("fusemax")
    shapes = dict(BERT, M=4096, P=4096)
    f = search(c, hw, shapes, budget=50_000)
    from mappers.mapping import parse_mapping
    again = simulate(c, parse_mapping(f.text), hw, shapes)
    assert again.latency_cycles == f.report.latency_cycles
    assert f.mapping.critical_path is not None            # derived, never hand-written


def test_an_einsum_no_unit_can_run_is_named_with_its_operation():
    c = ei.load("softcap")
    with pytest.raises(MapperError) as e:
        roles(c, load_spatial("fusemax"), dict(BERT, M=1024, P=1024))
    assert "Einsum S" in e.value.message and "tanh" in e.value.message


TEST_DESIGN = """
# a score map and a causal mask written only for this test
rank B, H, M, P, E, F
input Q[B, H, E, P]: f16
input K[B, H, E, M]: f16
input V[B, H, F, M]: f16
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m] where m <= p
S[b, h, m, p] = QK[b, h, m, p] * 0.125 + (p - m) * 0.01 where m <= p
GM[b, h, p] = max[m] S[b, h, m, p] where m <= p
SN[b, h, m, p] = exp(S[b, h, m, p] - GM[b, h, p]) where m <= p
SD[b, h, p] = SN[b, h, m, p] where m <= p
SNV[b, h, f, p] = SN[b, h, m, p] * V[b, h, f, m] where m <= p
AV[b, h, f, p] = SNV[b, h, f, p] / SD[b, h, p]
"""


@pytest.mark.parametrize("hw_name", ["fusemax", "flat"])
def test_a_design_written_for_the_test_maps_and_simulates(hw_name):
    c = ei.parse(TEST_DESIGN, "test.ein")
    hw = load_spatial(hw_name)
    f = search(c, hw, dict(B=2, H=4, E=64, F=64, M=2048, P=2048), budget=30_000)
    assert f.report.latency_cycles > 0
    # the causal mask halves the score work: busy cycles follow the exact point count
    qk = next(e for e in f.report.einsums if e.name == "QK")
    assert qk.points == 2 * 4 * 64 * (2048 * 2049 // 2)


def test_derived_stage_path_is_accepted_and_between_the_bounds():
    c, hw = ei.load("attention-1pass"), load_spatial("fusemax")
    r = roles(c, hw, dict(BERT, M=4096, P=4096))
    hand = load_mapping("fusemax-binding")
    binding = dict(hand.binding)
    times = {e: float(i % 5 + 1) * (10 if binding[e] == "pe2d" else 3) for i, e in enumerate(r.work)}
    s = derive(r, binding, times)
    cp = parse_critical_path(s.text())
    check_critical_path(cp, binding, set(hw.units), "a bound Einsum")     # every Einsum once, no unit twice in a max
    per_unit = {u: sum(t for e, t in times.items() if binding[e] == u) for u in hw.units}
    assert max(per_unit.values()) - 1e-9 <= cp.value(times) <= sum(times.values()) + 1e-9
    assert abs(cp.value(times) - s.cost) < 1e-9


def test_derived_path_no_worse_than_the_papers_hand_path():
    """At the hand mapping's own busy times, the derived path is at most the hand-written one."""
    c, hw = ei.load("attention-1pass"), load_spatial("fusemax")
    shapes = dict(BERT, M=16384, P=16384)
    hand = load_mapping("fusemax-binding")
    rep = simulate(c, hand, hw, shapes)
    times = {ec.name: ec.busy_cycles / rep.epochs for ec in rep.einsums}
    r = roles(c, hw, shapes)
    s = derive(r, dict(hand.binding), times)
    assert s.cost <= hand.critical_path.value(times) + 1e-9


def test_exhaustive_and_fused_agree_on_a_small_space():
    c, hw = ei.load("relu-attention"), _small()
    ev = Evaluator(roles(c, hw, dict(B=2, H=2, E=8, F=8, M=64, P=32)))
    assert space_size(ev) * len(ev.grid) < 400_000
    best_ex = exhaustive(ev, "latency").best()[0]
    ev2 = Evaluator(roles(c, hw, dict(B=2, H=2, E=8, F=8, M=64, P=32)))
    best_fu = fused(ev2, "latency", seed=1, restarts=6).best()[0]
    assert best_fu[2][0] == pytest.approx(best_ex[2][0], rel=1e-12)


def test_searches_are_deterministic_for_a_seed():
    c, hw = ei.load("attention-3pass"), load_spatial("flat")
    shapes = dict(B=2, H=2, E=64, F=64, M=1024, P=1024)
    a = search(c, hw, shapes, method="random", seed=3, budget=20_000)
    b = search(c, hw, shapes, method="random", seed=3, budget=20_000)
    assert a.text == b.text and a.report.latency_cycles == b.report.latency_cycles


def test_pareto_front_is_non_dominated():
    c, hw = ei.load("attention-1pass"), load_spatial("fusemax")
    f = search(c, hw, dict(B=2, H=2, E=64, F=64, M=4096, P=4096), objective="pareto", budget=30_000)
    front = f.front
    assert front
    for (l1, b1, *_), (l2, b2, *_) in itertools.combinations(front, 2):
        assert not (l1 <= l2 and b1 <= b2 and (l1, b1) != (l2, b2))
        assert not (l2 <= l1 and b2 <= b1 and (l1, b1) != (l2, b2))


@pytest.mark.parametrize("n, heads, dim", [(1024, 12, 64), (65536, 12, 64), (262144, 16, 128)])
def test_fusemax_within_one_percent_of_the_hand_mapping(n, heads, dim):
    """A fixed sample of benchmarks/spatial_sweep.py (every length and workload, docs/mapper.md)."""
    c, hw = ei.load("attention-1pass"), load_spatial("fusemax")
    shapes = dict(B=64, H=heads, E=dim, F=dim, M=n, P=n)
    hand = simulate(c, load_mapping("fusemax-binding"), hw, shapes).latency_cycles
    assert search(c, hw, shapes).report.latency_cycles <= hand * 1.01


@pytest.mark.parametrize("n", [16384, 1048576])
def test_flat_at_least_as_good_as_flats_configuration(n):
    c, hw = ei.load("attention-3pass"), load_spatial("flat")
    shapes = dict(BERT, M=n, P=n)
    hand = simulate(c, load_mapping("flat"), hw, shapes).latency_cycles
    assert search(c, hw, shapes).report.latency_cycles <= hand * (1 + 1e-9)


def test_pipelining_follows_the_units_of_the_pe():
    """Sub + exp pipelines on FLAT's 1D array (an exp unit of its own: FLAT's
    hand mapping declares it); never where exp is written as MACs (FuseMax);
    an Einsum of one kind has nothing to overlap."""
    from mappers.spatial_space import can_pipeline
    shapes = dict(BERT, M=1024, P=1024)
    flat = roles(ei.load("attention-3pass"), load_spatial("flat"), shapes)
    assert can_pipeline(flat, "SN", "pe1d")
    assert set(load_mapping("flat").pipelined) == {e for e in flat.work if can_pipeline(flat, e, "pe1d")}
    fm = roles(ei.load("attention-1pass"), load_spatial("fusemax"), shapes)
    assert load_spatial("fusemax").unit("pe1d").ops["exp"].composed_of
    assert not any(can_pipeline(fm, e, u) for e in fm.work for u in fm.units[e])
    assert not can_pipeline(flat, "QK", "pe2d")                       # a MAC alone


def test_a_single_gemm_reaches_its_compulsory_traffic():
    """AV[f, p] = A[m, p] * V[f, m]: F is no batch loop (A lacks it), so A is
    read once; memory-bound, the latency is the compulsory bytes over the
    bandwidth, counted here by hand."""
    c = ei.parse("rank M, P, F\ninput A[M, P]: f16\ninput V[F, M]: f16\noutput AV[F, P]: f16\n"
                 "AV[f, p] = A[m, p] * V[f, m]\n", "gemm.ein")
    hw = load_spatial("fusemax")
    M = P = 1024
    F = 64
    r = roles(c, hw, dict(M=M, P=P, F=F))
    assert r.batch == () and r.row == "P"
    f = search(c, hw, dict(M=M, P=P, F=F), budget=20_000)
    compulsory = (M * P + F * M + F * P) * 2 / hw.dram_bytes_per_cycle
    assert M * P * F / hw.unit("pe2d").pes < compulsory                # memory-bound by hand
    assert f.report.latency_cycles == pytest.approx(compulsory, rel=1e-9)


def test_the_lower_bound_never_exceeds_the_exact_cost():
    c, hw = ei.load("relu-attention"), _small()
    ev = Evaluator(roles(c, hw, dict(B=2, H=2, E=8, F=8, M=64, P=32)))
    from mappers.spatial_search import build, dimensions
    import numpy as np
    import random as _r
    rng = _r.Random(5)
    dims = dimensions(ev)
    for _ in range(25):
        st = build(ev, {(k, w): rng.choice(v) for k, w, v in dims})
        if st is None:
            continue
        exact = ev.evaluate(st)
        low = ev.evaluate(st, "latency", threshold=-1.0)            # always settled by the bound
        assert low.get("pruned") and not exact.get("pruned")
        fin = np.isfinite(exact["latency"])
        assert np.all(low["latency"][fin] <= exact["latency"][fin] * (1 + 1e-12))
        assert np.array_equal(np.isfinite(low["latency"]), fin)


def test_a_design_with_no_rank_to_split_maps_with_empty_factors():
    """A linear design whose only walk is a recurrence over its own rank has
    no key or row rank to split: the mapper's candidates have no factors and
    must still be valid mapping files (it once wrote a bare `factors:`,
    which the mapping parser refused with a located error on `<probe>`)."""
    import attnc.soundness as sound
    from einsum_ir.random_designs import random_design
    d = random_design(93011, "linear")
    assert sound.check_spatial_design(d.cascade(), d.shapes, 93011) == ("ok", "mapped on fusemax")

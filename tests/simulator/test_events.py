"""The event simulation against the analytical model: they agree where the
analytical model's assumptions hold (many tiles, memory hidden behind
compute), and the event simulation shows a stall the analytical model
ignores when they do not."""
import pytest

import einsum_ir as ei
import hw_models as hw
from mappers.mapping import load_mapping
from simulator.events import simulate_events

FUSEMAX = hw.load_spatial("fusemax")
BINDING = load_mapping("fusemax-binding")
ONE_PASS = ei.library.load("attention-1pass")


@pytest.mark.parametrize("n", [8192, 16384])
def test_agrees_within_2_percent_when_tiles_pipeline(n):
    r = simulate_events(ONE_PASS, BINDING, FUSEMAX, dict(B=1, H=1, E=64, F=64, M=n, P=n))
    assert abs(r.relative_error) < 0.02
    # the 2D array is the bottleneck in both: it is busy for the same cycles
    assert r.unit_busy_cycles["pe2d"] == pytest.approx(r.analytical.unit_busy_cycles["pe2d"])


def test_the_error_shrinks_as_start_up_is_amortised():
    errs = [abs(simulate_events(ONE_PASS, BINDING, FUSEMAX, dict(B=1, H=1, E=64, F=64, M=n, P=n)).relative_error)
            for n in (1024, 4096, 16384)]
    assert errs[0] > errs[1] > errs[2]


def test_exposed_query_loads_when_the_keys_are_few():
    """Cross attention with 256 keys and 64K queries: each chunk of P1 x 256
    queries must be in the buffer before its first tile, and the buffer (which
    `fit` filled with one chunk) cannot take the next chunk while the current
    one computes, so every Q load is exposed. The analytical model assumes
    memory hides behind compute and misses about the whole Q load time."""
    shapes = dict(B=1, H=1, E=64, F=64, M=256, P=65536)
    r = simulate_events(ONE_PASS, BINDING, FUSEMAX, shapes)
    q_load = 65536 * 64 * 2 / FUSEMAX.dram_bytes_per_cycle
    assert r.latency_cycles - r.analytical.latency_cycles >= 0.9 * q_load
    assert r.relative_error < -0.2


@pytest.mark.parametrize("n", [8192, 16384])
def test_architecture_fill_stall_is_simulated_where_it_occurs(n):
    """+Architecture does not pipeline across tiles: the mapping states the 2D
    array's 256-cycle fill/drain per epoch in its critical path, and RNV in
    the SPNV phase. The event simulation charges the fill before the first 2D
    result of each tile ((n/256)^2 tiles x 256 cycles) but still lets the 1D
    array finish a tile's SPNV and RNV while the 2D array starts the next:
    it comes out below the stated path, by less than a fifth, and about 2.5x
    +Binding's latency."""
    shapes = dict(B=1, H=1, E=64, F=64, M=n, P=n)
    r = simulate_events(ONE_PASS, load_mapping("fusemax-architecture"), FUSEMAX, shapes)
    assert r.fill_cycles == {"pe2d": (n // 256) ** 2 * 256.0}
    assert 0 < r.relative_error < 0.2
    b = simulate_events(ONE_PASS, BINDING, FUSEMAX, shapes)
    assert b.fill_cycles == {}
    assert 2.3 < r.latency_cycles / b.latency_cycles < 3.0


def test_the_epochs_pipeline_of_a_single_einsum_settles():
    """One Einsum (QK) on a 4 x 4 FLAT: the epochs' leaf holds it alone; its
    window opens at its offset and the pipeline settles at once (the loop
    that moves windows must run at least once)."""
    import dataclasses
    from mappers.spatial_search import search
    from simulator.events import epoch_pipeline
    flat = hw.load_spatial("flat")
    small = flat.with_changes(units={u: dataclasses.replace(x, shape=tuple(4 for _ in x.shape))
                                     for u, x in flat.units.items()})
    c = ei.parse("rank B, H, E, M, P\ninput Q[B, H, E, P]: f16\ninput K[B, H, E, M]: f16\n"
                 "QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]\n", name="scores")
    shapes = dict(B=1, H=1, E=4, M=8, P=8)
    m = search(c, small, shapes, method="random", seed=1, budget=200).mapping
    p = epoch_pipeline(c, m, small, shapes)
    assert list(p.stages) == ["QK"] and p.epochs >= 1 and p.period > 0


def test_intermediates_through_dram_are_written_and_read_back_in_the_timeline():
    """FLAT with QK and A sent through DRAM (as its longest variants do),
    at 512 tokens: the simulated DRAM is busy for exactly the analytical
    model's DRAM bytes, QK and A out and back in included, and the latency
    grows over the same mapping that keeps them on chip."""
    m = load_mapping("flat")
    flat = hw.load_spatial(m.hardware)
    c = ei.library.load(m.cascade)
    shapes = dict(B=1, H=1, E=64, F=64, M=512, P=512)
    on_chip, through = (simulate_events(c, m.with_changes(dram=d), flat, shapes)
                        for d in (frozenset(), frozenset({"QK", "A"})))
    for r in (on_chip, through):
        assert r.unit_busy_cycles["dram"] == pytest.approx(r.analytical.dram_bytes / flat.dram_bytes_per_cycle)
    assert through.unit_busy_cycles["dram"] > 4 * on_chip.unit_busy_cycles["dram"]
    assert through.latency_cycles > on_chip.latency_cycles


def test_the_epochs_pipeline_follows_the_mapping_variant_for_the_shapes():
    """FuseMax's binding with a variant for M = 4096 (tiles of 128, not
    256): the pipeline is the variant's (four times the epochs), the same
    as for the mapping resolved at those shapes, not the base mapping's."""
    from mappers.mapping import parse_mapping
    from simulator.events import epoch_pipeline
    text = BINDING.node.source + ("variants:\n  - when: {M: 4096}\n"
                                  "    factors: {M: {M1: rest, M0: 128}, P: {P2: rest, P1: fit, P0: 128}}\n")
    m = parse_mapping(text, "v.yaml")
    shapes = dict(B=1, H=1, E=64, F=64, M=4096, P=4096)
    p, resolved, base = (epoch_pipeline(ONE_PASS, x, FUSEMAX, shapes) for x in (m, m.for_shapes(shapes), BINDING))
    assert (p.epochs, p.period) == (resolved.epochs, resolved.period)
    assert p.epochs == 4 * base.epochs


@pytest.mark.parametrize("shapes,tasks", [(dict(B=1, H=1, E=64, F=64, M=512, P=512), 1 * 2 * 2 * 11 + 1 * 2),
                                          (dict(B=2, H=3, E=64, F=64, M=768, P=256), 6 * 3 * 1 * 11 + 6 * 1)])
def test_the_event_simulation_runs_one_task_per_einsum_per_leaf_iteration(shapes, tasks):
    """FuseMax's binding, tiles of 256 x 256: the first leaf runs its 11
    Einsums with operations (BK and BV only copy) B x H x M1 x P1 times,
    the second AV B x H x P1 times (P2 = 1)."""
    r = simulate_events(ONE_PASS, BINDING, FUSEMAX, shapes)
    assert r.tasks == tasks


def test_the_skew_of_a_tile_that_fills_a_non_square_array():
    """FuseMax's binding on a 2D array of 64 rows x 256 columns, query tiles
    of 64: BQK's 64 queries stream along the rows and its 256 keys along the
    columns, filling the array exactly: its skew is 64 + 256 - 2 = 318
    cycles. The same on the 256 x 64 array, the operands the other way."""
    import dataclasses
    from mappers.mapping import parse_mapping
    from simulator.events import epoch_pipeline
    m = parse_mapping(BINDING.node.source.replace("P: {P2: rest, P1: fit, P0: 256}", "P: {P2: rest, P1: fit, P0: 64}"),
                      "narrow.yaml")
    for shape in ((64, 256), (256, 64)):
        array = FUSEMAX.with_changes(units={u: dataclasses.replace(x, shape=shape if u == "pe2d" else (64,))
                                            for u, x in FUSEMAX.units.items()})
        p = epoch_pipeline(ONE_PASS, m, array, dict(B=1, H=1, E=64, F=64, M=512, P=256))
        assert p.stages["BQK"].fill == 64 + 256 - 2


def test_a_load_that_exactly_fills_the_buffer_starts_at_once():
    """A 100-byte buffer holding 40 resident bytes and a 30-byte input tile
    still in use until cycle 50: a 30-byte load fits exactly (100 bytes)
    and starts now, done at cycle 30 at a byte per cycle; a 31-byte load
    waits for the tile to free (cycle 50) and is done at 81."""
    from collections import Counter
    from types import SimpleNamespace
    from simulator.events import _Run

    def run():
        r = _Run.__new__(_Run)
        r.hw = SimpleNamespace(buffer=SimpleNamespace(capacity_bytes=100), dram_bytes_per_cycle=1.0)
        r.dram_free, r.resident, r.live, r.busy = 0.0, 40, [[30, 50.0]], Counter()
        return r
    assert run().start_load(30) == 30.0
    assert run().start_load(31) == 81.0


def test_a_trailing_stage_hands_off_its_first_result_after_its_first_output():
    """AV, after the epochs in FuseMax's binding, computes one point per
    output: its first result is complete when its first point issues and
    readable at the top's hand-off from that edge (codegen.rtl.top.readable);
    its last at the hand-off from its last issue."""
    from codegen.rtl.top import readable
    from simulator.events import epoch_pipeline
    p = epoch_pipeline(ONE_PASS, BINDING, FUSEMAX, dict(B=1, H=1, E=64, F=64, M=512, P=256))
    av = p.stages["AV"]
    assert av.points_per_output == 1 and av.leaf == 1
    assert av.first_ready == readable(int(av.start), av.ii) > av.start
    assert av.last_ready == readable(int(av.last_issue), av.ii)


def test_a_recurrence_read_too_early_is_named_in_a_caveat():
    """FuseMax's binding shrunk to 4 x 4 arrays, tiles of 4 keys x 4
    queries, E = F = 1: an epoch is so short that SPNV's window opens
    before RNV of the previous key tile (one epoch earlier) is readable.
    The pipeline says which read, how many epochs apart, and both times."""
    import dataclasses
    from mappers.mapping import parse_mapping
    from simulator.events import epoch_pipeline
    m = parse_mapping(BINDING.node.source.replace("M0: 256", "M0: 4").replace("P0: 256", "P0: 4"), "small.yaml")
    small = FUSEMAX.with_changes(units={u: dataclasses.replace(x, shape=tuple(4 for _ in x.shape))
                                        for u, x in FUSEMAX.units.items()})
    p = epoch_pipeline(ONE_PASS, m, small, dict(B=1, H=1, E=1, F=1, M=16, P=4))
    late = [cv for cv in p.caveats if " of the previous " in cv]
    assert late == [f"SPNV reads RNV of the previous m1 1 epoch(s) later: readable at "
                    f"{p.stages['RNV'].first_ready - p.period:g}, after SPNV's window opens at "
                    f"{p.stages['SPNV'].start:g}"]
    assert p.stages["RNV"].first_ready - p.period > p.stages["SPNV"].start


def test_a_phases_mapping_is_simulated_phase_after_phase():
    """The unfused mapping's three phases (QK; the softmax; AV), one head of
    512 x 512 in 256 x 256 tiles: the event simulation runs every task of a
    phase before the next: QK's 2 x 2 tiles; the softmax's GM, SN and SD,
    then A, each per query tile and key (2 x 512); AV's 2 x 2 tiles. Its
    latency is at least every unit's busy time."""
    m = load_mapping("unfused")
    c = ei.library.load(m.cascade)
    r = simulate_events(c, m, hw.load_spatial(m.hardware), dict(B=1, H=1, E=64, F=64, M=512, P=512))
    assert m.phases == (("QK",), ("GM", "SN", "SD", "A"), ("AV",))
    assert r.latency_cycles >= max(r.unit_busy_cycles.values()) > 0
    assert r.tasks == 2 * 2 * 1 + 2 * 512 * 3 + 2 * 512 * 1 + 2 * 2 * 1

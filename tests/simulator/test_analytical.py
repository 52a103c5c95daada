"""The analytical model: a small case derived by hand, and invariants that
must hold for any cascade, mapping and hardware (utilisation never above 1,
DRAM traffic never below compulsory, latency never below the busiest unit's
work, energy never below the compute energy)."""
import dataclasses

import pytest
from hypothesis import given, settings, strategies as st

import einsum_ir as ei
import hw_models as hw
from einsum_ir.analysis import compulsory_traffic, evaluate
from mappers.mapping import load_mapping
from simulator.analytical import simulate

FUSEMAX = hw.load_spatial("fusemax")
BINDING = load_mapping("fusemax-binding")
ONE_PASS = ei.library.load("attention-1pass")


def test_fusemax_binding_by_hand():
    """B=H=1, M=P=512, E=F=64 on FuseMax: tiles of 256 x 256, so M1 = 2 and
    P = 2 x 256 (P1 = 2 fits, P2 = 1): 4 epochs. Per epoch (cycles): BQK 64
    (64 MACs on each PE), LM 1, SLN 7 (exp = 6 MACs, + the subtraction),
    SLD 1, SLNV 64; on the 1D array RM 1, PRM 7, SPD 1, RD 1, SPNV 64, RNV 64,
    and AV's 512*64 divides / 256 PEs = 128 cycles spread over the 4 epochs =
    32. Critical path: max(64+1, 1+64+32) + 1 + max(7+1, 7+1) + max(64, 64)
    = 170; latency 4 * 170 = 680 cycles. DRAM: Q, K, V, AV once (K and V are
    re-read per P2 chunk, and P2 = 1): 4 * 512*64*2 bytes."""
    r = simulate(ONE_PASS, BINDING, FUSEMAX, dict(B=1, H=1, M=512, P=512, E=64, F=64))
    assert r.factors == {"M0": 256, "M1": 2, "P0": 256, "P1": 2, "P2": 1}
    assert r.epochs == 4
    busy = {e.name: e.busy_cycles for e in r.einsums}
    assert busy["BQK"] == 4 * 64 and busy["SLN"] == 4 * 7 and busy["RNV"] == 4 * 64 and busy["AV"] == 128
    assert r.critical_path_cycles == 170
    assert r.latency_cycles == 680
    assert r.dram_bytes == 4 * 512 * 64 * 2
    # 2D useful work: (64 + 1 + 7 + 1 + 64) cycles x 4 epochs on all PEs
    assert r.unit_utilisation["pe2d"] == pytest.approx(4 * 137 / 680)


def test_k_and_v_are_restreamed_once_per_query_chunk():
    """At 64K tokens, P1 = 128 tiles of 256 queries fit in 16 MiB, so the
    queries come in P2 = 2 chunks and K, V are read twice."""
    shapes = dict(B=1, H=1, M=65536, P=65536, E=64, F=64)
    r = simulate(ONE_PASS, BINDING, FUSEMAX, shapes)
    assert r.factors["P1"] == 128 and r.factors["P2"] == 2
    t = {x.name: x for x in r.tensors}
    size = 65536 * 64 * 2
    assert t["K"].dram_read_bytes == 2 * size and t["V"].dram_read_bytes == 2 * size
    assert t["Q"].dram_read_bytes == size and t["AV"].dram_write_bytes == size
    # the buffer rule of the reference: one K and one V tile, and per query E + 1 + 1 + F words
    assert r.buffer_bytes == (256 * 64 * 2 + 128 * 256 * (64 + 1 + 1 + 64)) * 2


def test_operands_held_one_word_per_pe_are_refetched_per_block():
    """FLAT at B=H=1, M=P=512, E=64: Q, K, V and AV bypass the buffer and a
    PE holds one word of each. QK's leaf runs [b, h, p2, p1, m1, p0] with
    (m0, e) on the 2D array: a K tile stays in the PEs while the 256 queries
    of p0 pass, so K comes from DRAM once per query block (P/256 = 2 x |K|);
    Q changes with p0, innermost, and comes again for each m1 (2 x |Q|); the
    output-stationary AV (m1 innermost) is written once."""
    r = simulate(ei.library.load("attention-3pass"), load_mapping("flat"), hw.load_spatial("flat"),
                 dict(B=1, H=1, M=512, P=512, E=64, F=64))
    assert r.factors == {"M0": 256, "M1": 2, "P0": 256, "P1": 1, "P2": 2}
    t = {x.name: x for x in r.tensors}
    size = 512 * 64 * 2
    assert t["K"].dram_read_bytes == 2 * size and t["V"].dram_read_bytes == 2 * size
    assert t["Q"].dram_read_bytes == 2 * size and t["AV"].dram_write_bytes == size
    assert all(t[x].buffer_read_bytes == t[x].buffer_write_bytes == 0 for x in ("Q", "K", "V", "AV"))


def test_fusemax_utilisation_rises_with_length():
    shapes = dict(B=64, H=12, E=64, F=64)
    util = [simulate(ONE_PASS, BINDING, FUSEMAX, dict(shapes, M=n, P=n)).unit_utilisation["pe2d"]
            for n in (1024, 16384, 1 << 20)]
    assert util == sorted(util)
    assert util[0] == pytest.approx(0.89, abs=0.01) and util[-1] == pytest.approx(0.99, abs=0.01)


def test_a_tile_larger_than_the_buffer_is_rejected_with_numbers():
    tiny = FUSEMAX.with_changes(buffer=dataclasses.replace(FUSEMAX.buffer, capacity_bytes=64 * 1024))
    with pytest.raises(hw.HardwareError, match=r"no tile fits the 65536 B global buffer.*K 32768"):
        simulate(ONE_PASS, BINDING, tiny, dict(B=1, H=1, M=1024, P=1024, E=64, F=64))


@pytest.mark.parametrize("p_factors", [
    (("P2", "rest"), ("P1", 4), ("P0", 256)),   # no `fit` factor: the tiling itself is checked
    (("P2", 1), ("P1", "fit"), ("P0", 256)),    # a `fit` factor and no `rest`
])
def test_a_tiling_that_cannot_fit_is_rejected_whatever_its_factors(p_factors):
    """Fixed factors whose tiles overflow a 64 KiB buffer, or a fit factor
    with no rest beside it: refused with the numbers, never simulated."""
    tiny = FUSEMAX.with_changes(buffer=dataclasses.replace(FUSEMAX.buffer, capacity_bytes=64 * 1024))
    m = BINDING.with_changes(factors=(("M", (("M1", "rest"), ("M0", 256))), ("P", p_factors)))
    with pytest.raises(hw.HardwareError, match=r"no tile fits the 65536 B global buffer of fusemax: even the "
                                               r"smallest needs \d+ B \(.*K \d+"):
        simulate(ONE_PASS, m, tiny, dict(B=1, H=1, M=1024, P=1024, E=64, F=64))


def test_an_einsum_on_a_unit_that_cannot_run_it_is_rejected():
    m = BINDING.with_changes(binding=tuple((e, "pe2d" if e == "AV" else u) for e, u in BINDING.binding))
    with pytest.raises(hw.HardwareError, match="AV needs divide, which unit pe2d of fusemax cannot perform"):
        simulate(ONE_PASS, m, FUSEMAX, dict(B=1, H=1, M=512, P=512, E=64, F=64))


@settings(max_examples=40, deadline=None)
@given(side=st.sampled_from([8, 16, 32, 64, 256]), tile=st.sampled_from([16, 64, 256]),
       length=st.sampled_from([256, 1000, 4096]), e=st.sampled_from([16, 64, 128]),
       bh=st.sampled_from([(1, 1), (2, 3)]), overlap=st.sampled_from(["epochs", "overlapped"]),
       buffer_mib=st.sampled_from([1, 16]))
def test_invariants(side, tile, length, e, bh, overlap, buffer_mib):
    a = FUSEMAX.with_changes(
        units={"pe2d": dataclasses.replace(FUSEMAX.unit("pe2d"), shape=(side, side)),
               "pe1d": dataclasses.replace(FUSEMAX.unit("pe1d"), shape=(side,))},
        buffer=dataclasses.replace(FUSEMAX.buffer, capacity_bytes=buffer_mib * 2 ** 20))
    factors = (("M", (("M1", "rest"), ("M0", tile))), ("P", (("P2", "rest"), ("P1", "fit"), ("P0", tile))))
    m = BINDING.with_changes(factors=factors, overlap=overlap)
    shapes = dict(B=bh[0], H=bh[1], M=length, P=length, E=e, F=e)
    try:
        r = simulate(ONE_PASS, m, a, shapes)
    except hw.HardwareError as err:
        assert "no tile fits" in str(err)
        return
    for u, util in r.unit_utilisation.items():
        assert 0 <= util <= 1 + 1e-9, (u, util)
    for u, busy in r.unit_busy_cycles.items():
        assert busy <= r.latency_cycles * (1 + 1e-9)
    env = dict(r.shapes)
    compulsory = evaluate(compulsory_traffic(ONE_PASS)["total_bytes"], env)   # f16 in and out
    assert r.dram_bytes >= compulsory
    assert r.latency_cycles >= r.dram_bytes / a.dram_bytes_per_cycle * (1 - 1e-9)
    assert r.total_energy_pj >= r.energy_pj["mac"] + r.energy_pj["other_ops"] > 0
    assert r.buffer_bytes <= a.buffer.capacity_bytes


@pytest.mark.parametrize("mapping,n", [("fusemax-binding", 4096), ("fusemax-cascade", 4096),
                                       ("fusemax-architecture", 16384), ("unfused", 4096), ("flat", 1024),
                                       ("flat", 262144)])
def test_formulas_evaluate_to_the_simulated_numbers(mapping, n):
    from simulator.analytical import formulas
    shapes = dict(B=2, H=3, E=64, F=64, M=n, P=n)
    m = load_mapping(mapping).for_shapes(shapes)
    c = ei.library.load(m.cascade)
    a = hw.load_spatial(m.hardware)
    r = simulate(c, m, a, shapes)
    f = formulas(c, m, a)
    env = {**r.shapes, **r.factors}
    for e in r.einsums:
        assert evaluate(f[f"busy_cycles[{e.name}]"], env) == pytest.approx(e.busy_cycles), e.name
    assert evaluate(f["dram_bytes"], env) == pytest.approx(r.dram_bytes)
    assert {"B", "H", "P"} <= {str(s) for s in f["dram_bytes"].free_symbols}   # a formula, not a number
    dram = [t for t in r.tensors if t.home == "dram"]
    assert dram and {k for k in f if k.startswith("dram_bytes[")} == {f"dram_bytes[{t.name}]" for t in dram}
    for t in dram:                           # read and written: inputs read, outputs written, spills both
        assert evaluate(f[f"dram_bytes[{t.name}]"], env) == pytest.approx(t.dram_read_bytes + t.dram_write_bytes)


def test_a_binding_of_an_einsum_the_cascade_lacks_is_refused_by_name():
    """A mapping made for another design binds QK, which attention-1pass
    does not have: refused naming both, before anything is simulated."""
    m = BINDING.with_changes(binding=BINDING.binding + (("QK", "pe2d"),))
    with pytest.raises(hw.HardwareError, match=r"binding: QK is not an Einsum of attention-1pass \(did you mean "
                                               r"'BQK'\?\)\n") as err:
        simulate(ONE_PASS, m, FUSEMAX, dict(B=1, H=1, M=512, P=512, E=64, F=64))
    assert err.value.loc is not None and err.value.loc.file.endswith("fusemax-binding.yaml")


def test_the_report_gives_the_dram_time_of_its_bytes():
    """dram_cycles is the DRAM bytes at the hardware's bytes per cycle, and
    the latency is never below it."""
    r = simulate(ONE_PASS, BINDING, FUSEMAX, dict(B=1, H=2, M=4096, P=4096, E=64, F=64))
    assert r.dram_cycles == pytest.approx(r.dram_bytes / FUSEMAX.dram_bytes_per_cycle)
    assert r.latency_cycles >= r.dram_cycles


def test_operations_on_the_array_count_each_operator_once_per_value_of_its_variables():
    """Y[m, n] = X X 2 + W[n] W[n] 3 at M = 4, N = 5: two multiplies and an
    add per point (40 + 20), and W's two multiplies once per n (10), by hand."""
    from simulator.facts import facts, groups
    c = ei.parse("rank M, N\ninput X[M, N]: f32\ninput W[N]: f32\nY[m, n] = X[m, n] * X[m, n] * 2 + W[n] * W[n] * 3\n")
    by_vars = {frozenset(g.vars): dict(g.ops) for g in groups(c, c.einsums[0])}
    assert by_vars == {frozenset("mn"): {"mul": 2, "add": 1}, frozenset("n"): {"mul": 2}}
    assert {k: v({"M": 4, "N": 5}) for k, v in facts(c).ops["Y"].items()} == {"mul": 50, "add": 20}

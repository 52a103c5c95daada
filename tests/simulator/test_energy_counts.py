"""Action counts and energies per design at a small point, derived by hand
from the reference's counting rules (docs/spatial.md, "How the evaluation
counts actions"), against the model, which derives them from each mapping's
loops, `keep`, `stream` and `reread`. Prices are the hardware files'; the
counts are the test's own arithmetic per score element."""
import pytest

import einsum_ir as ei
import hw_models as hw
from mappers.mapping import load_mapping
from simulator.analytical import simulate
from simulator.linear import gemm

B, H, E, F = 1, 1, 64, 64
FM, FL = hw.load_spatial("fusemax"), hw.load_spatial("flat")


def _run(name, n, accounting="evaluation"):
    m = load_mapping(name)
    return simulate(ei.library.load(m.cascade), m, hw.load_spatial(m.hardware),
                    dict(B=B, H=H, E=E, F=F, M=n, P=n), accounting=accounting)


def _word(a, op):
    """pJ per 16-bit word of a buffer read or write (the per-row energy / words per row)."""
    row = a.buffer.read_pj_per_row if op == "read" else a.buffer.write_pj_per_row
    return row / (a.buffer.row_bytes / a.word_bytes)


def _t(r):
    return {t.name: t for t in r.tensors}


def _ops(a, unit, counts):
    """pJ of operations per score element: kind -> count, composed kinds as their parts."""
    u = a.unit(unit)
    return sum(c * u.ops[k].energy_pj for k, c in counts.items())


def test_fusemax_binding_by_the_reference_rules():
    """Rule 7 at M = P = 1024 (P1 = 4 fits, P2 = 1): per score element the
    buffer reads Q, K, V E/256 each (K and V re-read for every query tile),
    RNV F/256 (SPNV) and F/M (AV); writes RNV F/256; fills Q E/M, K and V
    E P2/P; DRAM Q, K, V, AV once; AV straight from the 1D array to DRAM."""
    n = 1024
    r = _run("fusemax-binding", n)
    N = B * H * n * n
    t = _t(r)
    w = FM.word_bytes
    assert t["Q"].buffer_read_bytes == N * E / 256 * w and t["K"].buffer_read_bytes == N * E / 256 * w
    assert t["V"].buffer_read_bytes == N * F / 256 * w
    assert t["RNV"].buffer_read_bytes == (N * F / 256 + N * F / n) * w and t["RNV"].buffer_write_bytes == N * F / 256 * w
    assert t["Q"].buffer_write_bytes == N * E / n * w and t["K"].buffer_write_bytes == N * E / n * w
    assert t["AV"].buffer_read_bytes == t["AV"].buffer_write_bytes == 0 and t["AV"].dram_write_bytes == N * F / n * w
    assert r.dram_bytes == 4 * n * E * w
    # the energy by the reference's rules, per score element
    macs = E + F + 6 + (6 + 1 + F) / 256                # BQK, SLNV, SLN's exp; PRM's exp, SPD, SPNV per key tile
    adds = 2 + (2 + F) / 256                             # SLN, SLD; PRM, RD, RNV
    ops = _ops(FM, "pe2d", {"mac": macs, "add": adds, "max": 1 + 1 / 256}) + F / n * FM.unit("pe1d").ops["divide"].energy_pj
    reads = (2 * E + 2 * F) / 256 + F / n + 2 / 256 + 1 / n
    writes = (F + 2) / 256 + E / n + 2 * E / n
    staging = (F + 2) / 256 * FM.staging.write_pj + (F / 256 * (1 - 256 / n) + 1 / 256) * FM.staging.read_pj
    dram = 4 * E / n * w * 8 * FM.dram.pj_per_bit
    want = ops + reads * _word(FM, "read") + writes * _word(FM, "write") + staging + dram
    assert r.total_energy() / N == pytest.approx(want, rel=0.005)


def test_flat_on_chip_by_the_reference_rules():
    """Rule 4 at 1K (no spill): QK written once and read twice, SN written and
    read once, A written and read once; Q, K, V, AV bypass the buffer: Q from
    DRAM once per 256-key block, K and V once per 256-query block, AV once."""
    n = 1024
    r = _run("flat", n)
    N = B * H * n * n
    t, w = _t(r), FL.word_bytes
    assert t["QK"].buffer_write_bytes == N * w and t["QK"].buffer_read_bytes == 2 * N * w
    assert t["SN"].buffer_write_bytes == t["SN"].buffer_read_bytes == N * w
    assert t["A"].buffer_write_bytes == t["A"].buffer_read_bytes == N * w
    for x in ("Q", "K", "V", "AV"):
        assert t[x].buffer_read_bytes == t[x].buffer_write_bytes == t[x].buffer_bytes == 0
    assert t["Q"].dram_read_bytes == N * E / 256 * w and t["K"].dram_read_bytes == N * E / 256 * w
    assert t["V"].dram_read_bytes == N * F / 256 * w and t["AV"].dram_write_bytes == N * F / n * w
    ops = _ops(FL, "pe2d", {"mac": E + F}) + _ops(FL, "pe1d", {"max": 1, "exp": 1, "add": 2, "divide": 1})
    dram = (2 * E + F) / 256 + F / n
    want = (ops + 4 * _word(FL, "read") + 3 * _word(FL, "write") + (2 / n) * (_word(FL, "read") + _word(FL, "write"))
            + dram * w * 8 * FL.dram.pj_per_bit)
    assert r.total_energy() / N == pytest.approx(want, rel=0.005)


def test_flat_spill_costs_seven_words_per_spilled_score():
    """At 4K FLAT spills s = 0.00775 of QK, SN and A: the QK write, A's read
    by AV, the softmax's 3 reads and 2 writes: 7 s words per score."""
    n, s = 4096, 0.00775
    r = _run("flat", n)
    N = B * H * n * n
    t, w = _t(r), FL.word_bytes
    spilled = sum(t[x].dram_read_bytes + t[x].dram_write_bytes for x in ("QK", "SN", "A"))
    assert spilled == pytest.approx(7 * s * N * w)


def test_flat_off_chip_by_the_reference_rules():
    """Rule 5 at 256K: QK and A written to and read from DRAM once each (4
    words per score); K and V re-streamed once per chunk of P1 x 256 = 1024
    queries; QK filled into the buffer once and read twice; Q read E/256 and
    AV's partial sums F/256 read and written per score."""
    n = 262144
    r = _run("flat", n)
    N = B * H * n * n
    t, w = _t(r), FL.word_bytes
    assert t["QK"].dram_write_bytes == t["QK"].dram_read_bytes == N * w
    assert t["A"].dram_write_bytes == t["A"].dram_read_bytes == N * w
    assert t["K"].dram_read_bytes == n * E * (n // 1024) * w
    assert t["QK"].buffer_write_bytes == N * w and t["QK"].buffer_read_bytes == 2 * N * w
    assert t["SN"].buffer_write_bytes == t["SN"].buffer_read_bytes == N * w
    assert t["A"].buffer_read_bytes == t["A"].buffer_write_bytes == 0
    assert t["Q"].buffer_read_bytes == N * E / 256 * w
    assert t["AV"].buffer_write_bytes == N * F / 256 * w
    assert t["AV"].buffer_read_bytes == pytest.approx(N * F / 256 * w)     # partial sums, then the drain


def test_unfused_by_the_reference_rules():
    """Rule 6 at 1K: Q, K, V read from the buffer E/256, E/256, F/256 per
    score (K and V re-read per query tile); AV's partial sums F/256 read and
    written; the softmax as in rule 5; QK and A through DRAM once each way."""
    n = 1024
    r = _run("unfused", n)
    N = B * H * n * n
    t, w = _t(r), FL.word_bytes
    assert t["Q"].buffer_read_bytes == t["K"].buffer_read_bytes == N * E / 256 * w
    assert t["V"].buffer_read_bytes == N * F / 256 * w
    assert t["AV"].buffer_write_bytes == N * F / 256 * w and t["AV"].buffer_read_bytes == pytest.approx(N * F / 256 * w)
    assert t["QK"].buffer_write_bytes == N * w and t["QK"].buffer_read_bytes == 2 * N * w
    assert t["QK"].dram_read_bytes == t["QK"].dram_write_bytes == t["A"].dram_read_bytes == N * w
    assert t["A"].buffer_read_bytes == t["A"].buffer_write_bytes == 0


def test_cascade_tiling_traffic_and_dropped_exp():
    """+Cascade: P1 is the largest divisor of P/256 whose queries fit 16 MiB
    after one K and V tile, each holding Q, a QK and an SLN row tile, RM, RD
    and RNV; K and V are read from DRAM once per chunk; under the
    evaluation's accounting its exp energy is not charged (the add is)."""
    n = 65536
    r = _run("fusemax-cascade", n)
    budget = 16 * 2 ** 20 // FL.word_bytes - 256 * (E + F)
    p1 = max(d for d in range(1, n // 256 + 1) if (n // 256) % d == 0 and d * 256 * (E + 256 + 1 + 256 + 1 + F) <= budget)
    assert r.factors["P1"] == p1 and r.factors["P2"] == n // 256 // p1
    t = _t(r)
    assert t["K"].dram_read_bytes == n * E * r.factors["P2"] * FL.word_bytes
    phys = _run("fusemax-cascade", n, "physical")
    exp = FL.unit("pe1d").ops["exp"].energy_pj
    N = B * H * n * n
    points = N + N / 256                                 # SLN per score, PRM per key tile
    assert phys.energies["physical"].by_component["other_ops"] - r.energy_pj["other_ops"] == pytest.approx(points * exp)


def test_architecture_latency_from_the_reference_critical_path():
    """+Architecture at M = P = 1024 (16 epochs): per epoch max(BQK + LM,
    RD + AV) + 256 (the stall) + RM + max(SLN + SLD, PRM + SPD) + max(SLNV,
    SPNV + RNV), with BQK = SLNV = 64, LM = SLD = 1, SLN = 7 on the 2D array
    and RM = SPD = RD = 1, PRM = 7, SPNV = RNV = 64 and AV = 1024 x 64 / 256
    / 16 = 16 on the 1D array. Energy as +Binding's."""
    r = _run("fusemax-architecture", 1024)
    per = max(64 + 1, 1 + 16) + 256 + 1 + max(7 + 1, 7 + 1) + max(64, 64 + 64)
    assert r.epochs == 16 and r.critical_path_cycles == per and r.latency_cycles == 16 * per
    assert r.total_energy() == pytest.approx(_run("fusemax-binding", 1024).total_energy())


def test_physical_accounting_charges_every_register_file_access():
    """Physical: every PE's register-file accesses (an operand each, the
    accumulator of a reduction, one write); evaluation: that / the array's PEs."""
    r = _run("fusemax-binding", 1024, "physical")
    N = 1024 * 1024
    bqk = r.energies["physical"].by_einsum["BQK"]["register_files"]
    rf = FM.unit("pe2d").register_file
    assert bqk == pytest.approx(N * E * (3 * rf.read_pj + rf.write_pj))
    assert r.energies["evaluation"].by_einsum["BQK"]["register_files"] == pytest.approx(bqk / 65536)


def test_linear_layer_by_rule_8():
    """A GEMM of 512 x 300 x 1000 on a 256 x 256 array: MACs, operand rows
    re-read once per block of the other operand, outputs written once, DRAM
    compulsory; register files per PE (evaluation) or in full (physical)."""
    g = gemm("x", 512, 300, 1000, FM)
    macs = 512 * 300 * 1000
    reads = 512 * 300 * 4 + 300 * 1000 * 2
    dram = (512 * 300 + 300 * 1000 + 512 * 1000) * 2
    rf = macs * (3 * FM.unit("pe2d").register_file.read_pj + FM.unit("pe2d").register_file.write_pj)
    base = macs * 17.1645 + reads * _word(FM, "read") + 512 * 1000 * _word(FM, "write") + dram * 8 * 3.9
    assert g.energy_pj("evaluation") == pytest.approx(base + rf / 65536)
    assert g.energy_pj("physical") == pytest.approx(base + rf)
    parts = {"mac": macs * 17.1645, "other_ops": 0.0, "buffer_read": reads * _word(FM, "read"),
             "buffer_write": 512 * 1000 * _word(FM, "write"), "dram": dram * 8 * 3.9}
    assert g.energies == {"physical": pytest.approx({**parts, "register_files": rf}),
                          "evaluation": pytest.approx({**parts, "register_files": rf / 65536})}
    assert (g.macs, g.dram_bytes) == (macs, dram)
    assert g.latency_cycles == max(dram / FM.dram_bytes_per_cycle, macs / 65536)


def test_the_hardware_file_chooses_the_default_accounting():
    """`accounting:` in the hardware file sets the report's rules; a flag
    (simulate's `accounting=`) overrides it; both are always in `energies`."""
    m = load_mapping("fusemax-binding")
    c, shapes = ei.library.load(m.cascade), dict(B=1, H=1, E=64, F=64, M=512, P=512)
    r = simulate(c, m, FM.with_changes(accounting="evaluation"), shapes)
    assert r.accounting == "evaluation" and r.total_energy_pj == r.total_energy("evaluation")
    assert simulate(c, m, FM, shapes).accounting == "physical"
    assert simulate(c, m, FM.with_changes(accounting="evaluation"), shapes, accounting="physical").accounting == "physical"
    assert r.total_energy("physical") > r.total_energy("evaluation")

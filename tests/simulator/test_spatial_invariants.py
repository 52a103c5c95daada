"""Invariants of the spatial cost model, checked here from the report by the
test's own arithmetic, over the five shipped mappings at several shapes and
over perturbed ones (other tiles, arrays, buffers, DRAM bandwidths, overlap
rules and valid critical paths); the simulator enforces the same invariants
itself, so a violation raises instead of returning a number. Also: spilled
tensors' re-reads against a hand-derived count."""
import dataclasses
import random

import pytest
from hypothesis import given, settings, strategies as st

import einsum_ir as ei
import hw_models as hw
from einsum_ir.analysis import einsum_ops, evaluate
from mappers.mapping import load_mapping, mapping_names
from simulator import schedule, tiling
from simulator.analytical import InvariantError, simulate

DESIGNS = mapping_names()
SHAPES = [dict(B=1, H=1, E=64, F=64, M=512, P=512), dict(B=2, H=3, E=64, F=64, M=4096, P=4096),
          dict(B=1, H=2, E=128, F=128, M=16384, P=16384), dict(B=1, H=1, E=64, F=64, M=1000, P=3000),
          dict(B=1, H=1, E=64, F=64, M=262144, P=262144)]
# MACs of each contraction, by hand: B*H*M*P times the contracted rank
CONTRACTIONS = {("attention-3pass", "QK"): "E", ("attention-3pass", "AV"): "F",
                ("attention-1pass", "BQK"): "E", ("attention-1pass", "SLNV"): "F"}


def _design(name):
    m = load_mapping(name)
    return ei.library.load(m.cascade), m, hw.load_spatial(m.hardware)


def dram_time(r, a) -> float:
    """DRAM bytes of every tensor over the bandwidth, in cycles."""
    moved = sum(t.dram_read_bytes + t.dram_write_bytes for t in r.tensors)
    return moved / (a.dram.bandwidth_bytes_per_s / a.clock_hz)


def least_busy(c, m, a, r) -> dict:
    """Per Einsum: its operations (einsum_ir's counts) x the unit's cycles per
    operation over all the unit's PEs: no unit can do them faster."""
    env = dict(r.shapes)
    byname = {e.name: e for e in c.einsums if not e.is_initial}
    out = {}
    for ec in r.einsums:
        unit = a.unit(ec.unit)
        cycles = [evaluate(n, env) * unit.ops[k].cycles for k, n in einsum_ops(c, byname[ec.name]).items()]
        out[ec.name] = (max(cycles) if ec.name in m.for_shapes(env).pipelined else sum(cycles)) / unit.pes
    return out


def assert_invariants(c, m, a, r):
    lat = r.latency_cycles
    busy = {}
    for ec in r.einsums:
        busy[ec.unit] = busy.get(ec.unit, 0.0) + ec.busy_cycles
    for u, b in busy.items():
        assert lat >= b * (1 - 1e-12), (u, lat, b)
        assert r.unit_busy_cycles[u] == pytest.approx(b)
    for u, util in r.unit_utilisation.items():
        assert 0 <= util <= 1 + 1e-12, (u, util)
    for n, util in r.einsum_utilisation.items():
        assert 0 <= util <= 1 + 1e-12, (n, util)
    assert lat >= dram_time(r, a) * (1 - 1e-12)
    floor = least_busy(c, m, a, r)
    per_unit = {}
    for ec in r.einsums:
        assert ec.busy_cycles >= floor[ec.name] * (1 - 1e-12), (ec.name, ec.busy_cycles, floor[ec.name])
        per_unit[ec.unit] = per_unit.get(ec.unit, 0.0) + floor[ec.name]
    for u, least in per_unit.items():
        assert busy[u] >= least * (1 - 1e-12)
    env = r.shapes
    for (cascade, name), rank in CONTRACTIONS.items():
        ec = next((e for e in r.einsums if e.name == name), None)
        if cascade == c.name and ec is not None:
            macs = env["B"] * env["H"] * env["M"] * env["P"] * env[rank]
            assert ec.busy_cycles >= macs * a.unit(ec.unit).ops["mac"].cycles / a.unit(ec.unit).pes * (1 - 1e-12)


# ------------------------------------------------------------------ the shipped mappings

@pytest.mark.parametrize("name", DESIGNS)
@pytest.mark.parametrize("shapes", SHAPES, ids=lambda s: f"M{s['M']}P{s['P']}E{s['E']}")
def test_shipped_mappings_keep_the_invariants(name, shapes):
    c, m, a = _design(name)
    assert_invariants(c, m, a, simulate(c, m, a, shapes))


@pytest.mark.parametrize("name", DESIGNS)
@pytest.mark.parametrize("n", [1024, 4096])
def test_memory_bound_latency_is_the_dram_time(name, n):
    """With DRAM 10^5 x slower every design is memory-bound: the latency is
    never below DRAM bytes / bandwidth (the test's own division of the
    tensors' bytes), and is about that time (the compute hides behind it)."""
    c, m, a = _design(name)
    slow = a.with_changes(dram=dataclasses.replace(a.dram, bandwidth_bytes_per_s=a.dram.bandwidth_bytes_per_s / 1e5))
    r = simulate(c, m, slow, dict(B=1, H=2, E=64, F=64, M=n, P=n))
    assert_invariants(c, m, slow, r)
    t = dram_time(r, slow)
    assert t >= 100 * max(r.unit_busy_cycles.values())          # the premise: memory-bound
    assert t * (1 - 1e-12) <= r.latency_cycles <= t * 1.01


@pytest.mark.parametrize("overlap", ["overlapped", "phases", "epochs-default", "epochs-stated"])
def test_memory_bound_under_every_overlap_rule(overlap):
    """The same mapping combined by each overlap rule, memory-bound: no rule
    lets the latency fall below the DRAM time."""
    c, m, a = _design("fusemax-binding")
    m = _with_overlap(m, overlap, random.Random(1))
    slow = a.with_changes(dram=dataclasses.replace(a.dram, bandwidth_bytes_per_s=a.dram.bandwidth_bytes_per_s / 1e3))
    r = simulate(c, m, slow, dict(B=1, H=1, E=64, F=64, M=2048, P=2048))
    assert r.latency_cycles >= dram_time(r, slow) * (1 - 1e-12)
    assert_invariants(c, m, slow, r)


# ------------------------------------------------------------------ perturbed mappings

def _valid_path(units: dict, rng: random.Random) -> str:
    """A critical path valid by construction: groups in sequence, within a
    group one branch per unit (its Einsums in sequence), coefficients >= 1."""
    names = list(units)
    rng.shuffle(names)
    k = rng.randint(1, min(5, len(names)))
    cuts = sorted(rng.sample(range(1, len(names)), k - 1))
    terms = []
    for g in [names[i:j] for i, j in zip([0] + cuts, cuts + [len(names)])]:
        branches = {}
        for e in g:
            branches.setdefault(units[e], []).append(("2 * " if rng.random() < 0.1 else "") + e)
        parts = [" + ".join(b) for b in branches.values()]
        terms.append(parts[0] if len(parts) == 1 else f"max({', '.join(parts)})")
    return " + ".join(terms)


def _valid_phases(names: list, rng: random.Random) -> tuple:
    names = list(names)
    rng.shuffle(names)
    cuts = sorted(rng.sample(range(1, len(names)), rng.randint(0, min(3, len(names) - 1))))
    return tuple(tuple(names[i:j]) for i, j in zip([0] + cuts, cuts + [len(names)]))


def _with_overlap(m, overlap: str, rng: random.Random):
    bound = dict(m.binding)
    if overlap == "overlapped":
        return m.with_changes(overlap="overlapped", critical_path=None)
    if overlap == "phases":
        return m.with_changes(overlap="phases", phases=_valid_phases(list(bound), rng), critical_path=None)
    if overlap == "epochs-default":
        return m.with_changes(overlap="epochs", critical_path=None)
    return m.with_changes(overlap="epochs", critical_path=_valid_path(bound, rng))


def _hardware(a, side: int, buffer_mib: int, bw_scale: float):
    units = {}
    for name, u in a.units.items():
        units[name] = dataclasses.replace(u, shape=(side, side) if len(u.shape) == 2 else (side,))
    return a.with_changes(units=units,
                          buffer=dataclasses.replace(a.buffer, capacity_bytes=buffer_mib * 2 ** 20),
                          dram=dataclasses.replace(a.dram, bandwidth_bytes_per_s=a.dram.bandwidth_bytes_per_s * bw_scale))


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(DESIGNS), tile=st.sampled_from([16, 64, 256]), side=st.sampled_from([16, 64, 256]),
       buffer_mib=st.sampled_from([1, 16, 64]), bw=st.sampled_from([0.01, 1.0, 10.0]),
       overlap=st.sampled_from(["keep", "overlapped", "phases", "epochs-default", "epochs-stated"]),
       m_len=st.sampled_from([256, 1000, 4096]), p_len=st.sampled_from([256, 3000, 4096]),
       e=st.sampled_from([32, 64, 128]), seed=st.integers(0, 10 ** 6))
def test_perturbed_mappings_keep_the_invariants(name, tile, side, buffer_mib, bw, overlap, m_len, p_len, e, seed):
    """Other tiles, array sizes, buffers, bandwidths, overlap rules and valid
    critical paths or phases: the invariants hold, or the mapping is refused
    with a reason (a tile that does not fit)."""
    c, m, a = _design(name)
    rng = random.Random(seed)
    factors = tuple((rank, tuple((f, tile if isinstance(x, int) else x) for f, x in parts)) for rank, parts in m.factors)
    m = m.with_changes(factors=factors)
    if overlap != "keep":
        m = _with_overlap(m, overlap, rng)
    a = _hardware(a, side, buffer_mib, bw)
    shapes = dict(B=1, H=2, E=e, F=e, M=m_len, P=p_len)
    try:
        r = simulate(c, m, a, shapes)
    except hw.HardwareError as err:
        assert "no tile fits" in str(err)
        return
    assert_invariants(c, m, a, r)


# ------------------------------------------------------------------ enforcement

def test_a_broken_latency_is_an_internal_error_not_a_number(monkeypatch):
    """Were the latency rule to go wrong (half the latency, as the reported
    bug gave), simulate raises instead of returning utilisation above 1."""
    c, m, a = _design("fusemax-binding")
    real = schedule.latency

    def halved(*args):
        return dataclasses.replace(real(*args), latency_cycles=real(*args).latency_cycles / 2)
    monkeypatch.setattr(schedule, "latency", halved)
    with pytest.raises(InvariantError, match="below"):
        simulate(c, m, a, dict(B=1, H=1, E=64, F=64, M=2048, P=2048))


def test_latency_below_the_dram_time_is_an_internal_error(monkeypatch):
    """A memory-bound mapping whose latency rule forgot the DRAM time."""
    c, m, a = _design("fusemax-binding")
    slow = a.with_changes(dram=dataclasses.replace(a.dram, bandwidth_bytes_per_s=a.dram.bandwidth_bytes_per_s / 1e3))
    real = schedule.latency
    monkeypatch.setattr(schedule, "latency", lambda m, costs, nest, hw, dram_cycles, by: real(
        m, costs, nest, hw, 0.0, by))
    with pytest.raises(InvariantError, match="below the DRAM time"):
        simulate(c, m, slow, dict(B=1, H=1, E=64, F=64, M=2048, P=2048))


def test_busy_time_below_the_operations_is_an_internal_error(monkeypatch):
    """An Einsum charged fewer cycles than its operations need at the unit's
    peak (SLN's exp dropped), or none at all (BQK's MACs dropped)."""
    c, m, a = _design("fusemax-binding")
    real = tiling.ops_per_point

    def without(name, kind):
        def ops(e):
            out = real(e)
            if e.name == name:
                out = dict(out)
                out.pop(kind)
            return out
        return ops
    shapes = dict(B=1, H=1, E=64, F=64, M=1024, P=1024)
    monkeypatch.setattr(tiling, "ops_per_point", without("SLN", "exp"))
    with pytest.raises(InvariantError, match="SLN is busy .* below its operations"):
        simulate(c, m, a, shapes)
    monkeypatch.setattr(tiling, "ops_per_point", without("BQK", "mac"))
    with pytest.raises(InvariantError, match="BQK performs mac but has no busy time"):
        simulate(c, m, a, shapes)


def test_the_reported_bug_cannot_come_back_through_code():
    """A critical path set in code that leaves out SLNV and SPNV gave half the
    latency and utilisation 1.83; it is refused, naming them."""
    c, m, a = _design("fusemax-binding")
    short = str(m.critical_path).replace(" + max(SLNV, SPNV)", "")
    with pytest.raises(hw.HardwareError, match=r"does not name SLNV \(on pe2d\), SPNV \(on pe1d\)"):
        simulate(c, m.with_changes(critical_path=short), a, dict(B=64, H=12, E=64, F=64, M=16384, P=16384))


# ------------------------------------------------------------------ spilled tensors

def test_spilled_fractions_are_written_once_and_re_read_by_every_reader():
    """FLAT at M = P = 4096 (E = 64) spills 0.00775 of QK and of A (its
    variant). QK is written by QK (first leaf) and read by GM and by SN (the
    second leaf: two passes over the row), A written by A and read by AV (the
    third): by hand, QK moves f*|QK| out and 2*f*|QK| back, A f*|A| each way;
    nothing else of them touches DRAM."""
    c, m, a = _design("flat")
    n, f = 4096, 0.00775
    r = simulate(c, m, a, dict(B=1, H=1, E=64, F=64, M=n, P=n))
    size = n * n * a.word_bytes
    t = {x.name: x for x in r.tensors}
    assert t["QK"].home == "chip" and t["A"].home == "chip"
    assert t["QK"].dram_write_bytes == pytest.approx(f * size)
    assert t["QK"].dram_read_bytes == pytest.approx(2 * f * size)
    assert t["A"].dram_write_bytes == pytest.approx(f * size)
    assert t["A"].dram_read_bytes == pytest.approx(f * size)
    assert_invariants(c, m, a, r)


@pytest.mark.parametrize("frac", [0.25, 1.0])
def test_a_spill_set_in_code_is_charged_and_raises_the_dram_time(frac):
    """FLAT at 1K spills nothing; spilling a fraction of QK adds exactly
    frac*|QK| written and 2*frac*|QK| read (GM and SN), and, memory-bound,
    the latency grows by that traffic's time."""
    c, m, a = _design("flat")
    slow = a.with_changes(dram=dataclasses.replace(a.dram, bandwidth_bytes_per_s=a.dram.bandwidth_bytes_per_s / 1e3))
    shapes = dict(B=1, H=1, E=64, F=64, M=1024, P=1024)
    base = simulate(c, m, slow, shapes)
    r = simulate(c, m.with_changes(spill=(("QK", frac),)), slow, shapes)
    size = 1024 * 1024 * a.word_bytes
    assert r.dram_bytes - base.dram_bytes == pytest.approx(3 * frac * size)
    bpc = slow.dram.bandwidth_bytes_per_s / slow.clock_hz
    assert r.latency_cycles - base.latency_cycles == pytest.approx(3 * frac * size / bpc)
    assert_invariants(c, m, slow, r)


STRICTLY_CAUSAL = """rank B, H, M, P, E, F
input Q[B, H, E, P]: f16
input K[B, H, E, M]: f16
input V[B, H, F, M]: f16
QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]
GM[b, h, p] = max[m] QK[b, h, m, p]
SN[b, h, m, p] = exp(QK[b, h, m, p] - GM[b, h, p]) where m < p
SD[b, h, p] = SN[b, h, m, p]
A[b, h, m, p] = SN[b, h, m, p] / SD[b, h, p]
AV[b, h, f, p] = A[b, h, m, p] * V[b, h, f, m]
"""


def test_a_pipelined_einsum_that_keeps_no_point_is_simulated_idle():
    """attention-3pass strictly causal, at one query: no key is kept, so SN
    (a subtraction feeding an exp, pipelined in FLAT's mapping) performs no
    operation at these shapes. Its least busy time is 0, not an error; the
    report holds every invariant."""
    _, m, a = _design("flat")
    c = ei.parse(STRICTLY_CAUSAL, name="strictly-causal")
    assert "SN" in m.pipelined
    r = simulate(c, m, a, dict(B=1, H=1, M=256, P=1, E=64, F=64))
    assert {e.name: e.busy_cycles for e in r.einsums}["SN"] == 0
    assert_invariants(c, m, a, r)


def test_a_partition_the_cascade_states_tiles_as_the_mappings_factors_do():
    """attention-1pass partitions M into M1 x M0 itself; FuseMax's binding
    also factors M (M0 = 256). Left to the cascade (M0 given as a shape),
    the loops over m1 and m0 still move along M: K and V are read per key
    tile the same, and the report is the same."""
    _, m, a = _design("fusemax-binding")
    c = ei.library.load(m.cascade)
    from mappers.mapping import parse_mapping
    text = m.node.source
    assert text.count("  M: {M1: rest, M0: 256}\n") == 1
    bare = parse_mapping(text.replace("  M: {M1: rest, M0: 256}\n", ""), "cascade-partition.yaml")
    shapes = dict(B=1, H=2, E=64, F=64, M=1024, P=1024)
    want, got = simulate(c, m, a, shapes), simulate(c, bare, a, dict(shapes, M0=256))
    assert (got.latency_cycles, got.dram_bytes) == (want.latency_cycles, want.dram_bytes)
    assert [(t.name, t.dram_read_bytes, t.buffer_bytes) for t in got.tensors] == \
        [(t.name, t.dram_read_bytes, t.buffer_bytes) for t in want.tensors]


def test_a_polynomial_count_is_evaluated_from_its_integer_terms(monkeypatch):
    """Counts are evaluated millions of times in a mapping search: an integer
    polynomial in the shapes (and a constant) is summed from its terms, not
    through sympy; anything else (a ceiling, a fraction) goes through sympy."""
    import simulator.facts as F
    poly, const, ceil = F.Count("2*B*H*M*P + 3*P"), F.Count("5"), F.Count("ceiling(M / 3) * P")
    calls = []
    monkeypatch.setattr(F, "evaluate", lambda expr, env: calls.append(expr) or 0)
    assert poly(dict(B=2, H=3, M=5, P=7)) == 2 * 2 * 3 * 5 * 7 + 3 * 7
    assert const({}) == 5 and calls == []
    ceil(dict(M=10, P=2))
    assert len(calls) == 1


def test_a_gather_is_refused_by_the_spatial_simulator_at_the_read():
    """paged-attention reads K through its block table: the spatial model
    has no tile for elements the data picks, so simulate refuses at QK's
    read of KC, naming the gather, before any number."""
    _, m, a = _design("fusemax-binding")
    c = ei.library.load("paged-attention")
    with pytest.raises(hw.HardwareError, match=r"paged-attention: the spatial model cannot map QK: it reads "
                                               r"KC\[.*\] through the gather BT\[b, m / BS\] \(an index given "
                                               r"by data\); gathers are modelled on GPUs only") as err:
        simulate(c, m, a, dict(B=1, H=2, G=1, M=64, E=8, F=8, NP=8, BS=16))
    loc = err.value.loc
    line = c.source.splitlines()[loc.line - 1]
    assert line.startswith("QK[") and line[loc.column - 1:].startswith("KC[")


def test_a_loop_variable_of_neither_the_cascade_nor_the_factors_is_named():
    from simulator.numbers import Numeric
    from simulator.tiling import nest
    _, m, _ = _design("fusemax-binding")
    c = ei.library.load(m.cascade)
    n = nest(c, m, {"M0": 256, "M1": 2}, Numeric(dict(B=1, H=1, M=512)))
    assert (n.extent("m1"), n.extent("h"), n.ranks_of("m0")) == (2, 1, {"M0", "M"})
    with pytest.raises(hw.HardwareError, match=r"^error: mapping binding: loop variable q9 is neither a rank of "
                                               r"attention-1pass nor a factor in `factors`$"):
        n.extent("q9")


@pytest.mark.parametrize("name", ["flat", "fusemax-binding", "unfused"])
def test_kept_tiles_as_formulas_evaluate_to_the_simulated_bytes(name):
    """The spatial mapper sizes the buffer from each kept tile as a formula
    in the shapes and factors (a sympy Max over the leaves that touch the
    tensor); at the simulated shapes and factors it is the simulator's
    kept tile, for every tensor of the mapping."""
    from simulator.numbers import Symbolic
    from simulator.tiling import nest, space, symbolic_factors, tile_elems, tiling
    c, m, a = _design(name)
    shapes = dict(B=1, H=2, E=64, F=64, M=1024, P=1024)
    m = m.for_shapes(shapes)
    s = space(c, m, a, shapes)
    numeric = tiling(s, a)
    n = nest(c, m, symbolic_factors(m), Symbolic())
    env = {**s.env, **numeric.factors}
    kept = [t for t in s.tensors if numeric.kept_bytes[t.name]]
    assert kept
    for t in s.tensors:
        formula = tile_elems(s, t, m.keep_of(t.name), n)
        assert evaluate(formula, env) * a.word_bytes == numeric.kept_bytes[t.name], t.name

"""Mapping files: every shipped mapping loads and simulates; mistakes in a
mapping are errors that say what and where."""
import re

import pytest

import einsum_ir as ei
import hw_models as hw
from mappers.mapping import load_mapping, mapping_names, parse_mapping
from simulator.analytical import simulate

BINDING_TEXT = (load_mapping("fusemax-binding").node.source)


@pytest.mark.parametrize("name", mapping_names())
def test_every_shipped_mapping_simulates(name):
    m = load_mapping(name)
    r = simulate(ei.library.load(m.cascade), m, hw.load_spatial(m.hardware),
                 dict(B=2, H=2, E=64, F=64, M=4096, P=4096))
    assert r.latency_cycles > 0 and r.dram_bytes > 0


def test_flat_variants_follow_the_length():
    m = load_mapping("flat")
    assert dict(m.for_shapes(dict(M=65536, E=64)).spill) == {"QK": 0.00775, "SN": 0.00775, "A": 0.00775}
    assert dict(m.for_shapes(dict(M=65536, E=128)).spill) == {"QK": 0.0154, "SN": 0.0154, "A": 0.0154}
    assert m.for_shapes(dict(M=1 << 20, E=64)).dram == {"QK", "A"}
    assert m.for_shapes(dict(M=1000, E=64)) is m


@pytest.mark.parametrize("old,new,message", [
    ("overlap:\n  kind: epochs", "overlap:\n  kind: epoch", "unknown overlap kind 'epoch'"),
    ("kind: epochs\n", "kind: overlapped\n", "`critical_path` is used only with overlap kind `epochs`"),
    ("+ max(SLNV, SPNV)", "+ max(SLNV, SPNVV)", "critical_path: names SPNVV, which is not an Einsum in `binding`"),
    ("  AV: pe1d\n", "", "names AV, which the nest runs but `binding` binds to no unit"),
    ("keep:            #", "keeps:            #", "did you mean 'keep'"),
    ("        run: [AV]", "        run: [AV, RM]", "RM runs in two places"),
])
def test_mapping_mistakes_are_reported(old, new, message):
    assert old in BINDING_TEXT
    with pytest.raises(hw.HardwareError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        parse_mapping(BINDING_TEXT.replace(old, new), "map.yaml")
    assert e.value.loc.file == "map.yaml"


@pytest.mark.parametrize("old,new,message", [
    ("  Q: p2\n", "", "`keep` must say where input Q is kept"),
    ("  AV: pe1d\n", "", "Einsum AV (divide) is bound to no unit"),
])
def test_mapping_mismatches_with_the_cascade_are_reported(old, new, message):
    text = BINDING_TEXT.replace(old, new)
    if old == "  AV: pe1d\n":      # the critical path must not name an unbound Einsum: drop AV there too
        text = text.replace("RD + RNV + AV", "RD + RNV")
    m = parse_mapping(text, "map.yaml")
    with pytest.raises(hw.HardwareError, match=message.replace("(", r"\(").replace(")", r"\)")):
        simulate(ei.library.load(m.cascade), m, hw.load_spatial("fusemax"), dict(B=1, H=1, E=64, F=64, M=512, P=512))


def test_tile_sizes_do_not_conflict():
    c = ei.library.load("attention-1pass")
    with pytest.raises(hw.HardwareError, match="mapping sets M0 = 256, but the shapes give M0 = 64"):
        simulate(c, load_mapping("fusemax-binding"), hw.load_spatial("fusemax"),
                 dict(B=1, H=1, E=64, F=64, M=512, P=512, M0=64))


@pytest.mark.parametrize("bad,message", [("__import__('os').getpid()", "__import__(...) is not allowed"),
                                         ("__import__(os).getpid()", "__import__(...) is not allowed"),
                                         ("BQK.func", "unexpected '.'"),
                                         ("max(BQK, LM).args", "unexpected '.'")])
def test_a_critical_path_cannot_reach_python(bad, message):
    """The path is parsed by attnc's own grammar at load; nothing of it is evaluated as Python."""
    with pytest.raises(hw.HardwareError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        parse_mapping(BINDING_TEXT.replace("max(SLNV, SPNV)", bad), "map.yaml")
    assert e.value.loc.file == "map.yaml" and e.value.loc.line == BINDING_TEXT[:BINDING_TEXT.index("critical_path")].count("\n") + 1


@pytest.mark.parametrize("old,new,message,at", [
    ("  K: m1\n", "  K: p1x\n", "K is kept under loop p1x, which does not enclose", "p1x"),
    ("  K: m1\n", "  KK: m1\n", "keep: KK is not a tensor of attention-1pass (did you mean 'K'?)", "KK"),
    ("  BQK: pe2d\n", "  BQK: pe2e\n", "unit 'pe2e' is not a unit of fusemax", "pe2e"),
    ("parfor: {pe1d: [p0]}", "parfor: {pe3d: [p0]}", "parfor names unit 'pe3d'", "for: [p1]"),
    ("      - for: [p1]\n", "      - for: [q1]\n", "loop variable q1 is neither a rank", "for: [q1]"),
    ("reread: [K, V]", "reread: [KV]", "KV is not a tensor or Einsum", "[KV]"),
    ("  AV: stream\n", "  AV: stream\nuncharged_in_evaluation: [expp]\n", "'expp' is not an operation kind "
     "(did you mean 'exp'?)", "expp"),
])
def test_names_are_checked_against_the_cascade_and_hardware_at_load(old, new, message, at):
    """The mapping names a library cascade and a hardware preset, so every
    name is checked when it loads, at the file, line and column of the name
    (or of the nest entry that holds it)."""
    assert old in BINDING_TEXT
    text = BINDING_TEXT.replace(old, new)
    with pytest.raises(hw.HardwareError, match=re.escape(message)) as e:
        parse_mapping(text, "map.yaml")
    loc = e.value.loc
    line = text.split("\n")[loc.line - 1]
    assert loc.file == "map.yaml" and at in line, (loc, line)


def test_mapping_values_are_typed():
    from mappers.mapping import Keep, Overlap, Where
    m = load_mapping("fusemax-binding")
    assert m.overlap is Overlap.EPOCHS
    keep = dict(m.keep)
    assert keep["K"] == Keep(Where.LOOP, "m1") and keep["AV"].where is Where.STREAM
    assert m.keep_of("BQK").where is Where.PE
    assert m.with_changes(overlap="phases", phases=(("BQK",),)).overlap is Overlap.PHASES
    with pytest.raises(ValueError):
        m.with_changes(overlap="sometimes")


FLAT_TEXT = load_mapping("flat").node.source


@pytest.mark.parametrize("fraction, ok", [("1", True), ("0", True), ("1.5", False), ("2", False)])
def test_a_spilled_fraction_is_at_most_one(fraction, ok):
    """A variant's spill is a fraction of the tensor sent to DRAM: 0 to 1;
    more is refused where it is written."""
    old = "    spill: {QK: 0.0691, SN: 0.0691, A: 0.0691}"
    text = FLAT_TEXT.replace(old, f"    spill: {{QK: {fraction}, SN: 0.0691, A: 0.0691}}")
    assert old in FLAT_TEXT and text != FLAT_TEXT
    if ok:
        m = parse_mapping(text, "map.yaml").for_shapes(dict(M=4096, E=128))
        assert dict(m.spill)["QK"] == float(fraction)
    else:
        with pytest.raises(hw.HardwareError, match=f"a spilled fraction is at most 1, got {fraction}") as e:
            parse_mapping(text, "map.yaml")
        assert (e.value.loc.file, e.value.loc.line) == ("map.yaml", FLAT_TEXT[:FLAT_TEXT.index(old)].count("\n") + 1)


def test_the_tensors_sent_through_dram_are_read_from_the_file():
    """`dram: [QK, A]` (FLAT's longest variants) is the set the mapping gives."""
    m = load_mapping("flat").for_shapes(dict(M=1 << 20, E=64))
    assert m.dram == {"QK", "A"}
    text = FLAT_TEXT.replace("    dram: [QK, A]", "    dram: [QK]")
    assert parse_mapping(text, "map.yaml").for_shapes(dict(M=1 << 20, E=64)).dram == {"QK"}

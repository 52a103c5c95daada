"""The critical path of an `epochs` mapping: parsed at load into a tree of
sums, maxima and coefficients (never evaluated as Python), its names checked
against the mapping's binding at load and against the cascade at simulate
time, with errors at the file, line and column of the offending name; a
mapping without one gets the safe default (every Einsum in sequence)."""
import random

import pytest
from hypothesis import given, settings, strategies as st

import einsum_ir as ei
import hw_models as hw
from mappers.mapping import Add, Max, Name, Num, Scale, load_mapping, parse_critical_path, parse_mapping
from simulator.analytical import simulate

BINDING = load_mapping("fusemax-binding")
TEXT = BINDING.node.source
PATH = str(BINDING.critical_path)
ONE_PASS = ei.library.load("attention-1pass")
FUSEMAX = hw.load_spatial("fusemax")
SHAPES = dict(B=1, H=2, E=64, F=64, M=2048, P=2048)
CP_LINE = TEXT[:TEXT.index("critical_path:")].count("\n") + 1
CP_COL = TEXT.split("\n")[CP_LINE - 1].index("critical_path:") + len("critical_path: ") + 1


def _escape(message):
    return "".join("\\" + ch if ch in "()[]*+.?^$|{}" else ch for ch in message)


def _with_path(path: str) -> str:
    assert PATH in TEXT
    return TEXT.replace(PATH, path)


# ------------------------------------------------------------------ the grammar

NAMES = ["A", "B", "C", "D", "fill_x"]


def _expr(depth):
    """Random critical-path text over NAMES, and its value by Python's own arithmetic."""
    leaf = st.one_of(st.sampled_from(NAMES), st.integers(0, 9).map(str))
    if depth == 0:
        return leaf
    sub = _expr(depth - 1)
    return st.one_of(
        leaf,
        st.tuples(sub, sub).map(lambda t: f"{t[0]} + {t[1]}"),
        st.lists(sub, min_size=1, max_size=3).map(lambda xs: f"max({', '.join(xs)})"),
        st.tuples(st.integers(1, 4), sub).map(lambda t: f"{t[0]} * ({t[1]})"),
        sub.map(lambda x: f"({x})"))


@settings(max_examples=150, deadline=None)
@given(text=_expr(3), values=st.lists(st.floats(0, 1e6), min_size=len(NAMES), max_size=len(NAMES)))
def test_the_tree_evaluates_as_arithmetic_does(text, values):
    """The parsed tree's value against Python's evaluation of the same text
    (the test's independent reference; the parser never calls eval), and
    printing the tree gives text that parses to the same value."""
    env = dict(zip(NAMES, values))
    cp = parse_critical_path(text)
    want = eval(text, {"max": lambda *xs: max(xs)}, dict(env))          # noqa: S307 - test reference over generated text
    assert cp.value(env) == pytest.approx(want, rel=1e-12, abs=1e-9)
    assert parse_critical_path(str(cp)).value(env) == pytest.approx(want, rel=1e-12, abs=1e-9)


def test_the_tree_is_typed_and_frozen():
    cp = parse_critical_path("max(A + B, 2 * C) + 3 + D")
    assert isinstance(cp.expr, Add)
    first, three, d = cp.expr.terms
    assert isinstance(first, Max) and isinstance(three, Num) and three.number == 3 and d == Name("D", d.loc)
    assert isinstance(first.args[1], Scale) and first.args[1].factor == 2
    assert [n.name for n in cp.names()] == ["A", "B", "C", "D"]
    with pytest.raises(AttributeError):
        cp.expr.terms = ()


@pytest.mark.parametrize("bad,at,message", [
    ("A - B", "-", "'-' is not allowed: subtraction"),
    ("A / 2", "/", "'/' is not allowed: division"),
    ("0.5 * A + B", "0.5", "coefficient 0.5 is below 1"),
    ("min(A, B)", "min", "min(...) is not allowed"),
    ("exp(A)", "exp", "the only function is max"),
    ("A * B", "A", "a product of two times is not a time"),
    ("max(A, B", None, "ends early: expected , or ) closing max("),
    ("A + ", None, "ends early: expected a name"),
    ("A B", "B", "unexpected 'B' (expected + or the end)"),
    ("A.real", ".", "unexpected '.'"),
    ("A + $", "$", "unexpected '$'"),
])
def test_grammar_errors_point_at_the_token(bad, at, message):
    """Each mistake is reported at its line and at the column of the token in
    the file (or just past the end when the text stops early)."""
    with pytest.raises(hw.HardwareError, match=_escape(message)) as e:
        parse_mapping(_with_path(bad), "map.yaml")
    assert (e.value.loc.file, e.value.loc.line) == ("map.yaml", CP_LINE)
    offset = bad.index(at) if at is not None else len(bad.rstrip())
    assert e.value.loc.column == CP_COL + offset


def test_a_quoted_path_still_points_at_the_column():
    text = _with_path(f"'{PATH.replace('SPNV)', 'SPNVX)')}'")
    with pytest.raises(hw.HardwareError, match="names SPNVX") as e:
        parse_mapping(text, "map.yaml")
    assert e.value.loc.column == CP_COL + 1 + PATH.index("SPNV)")


def test_a_folded_path_is_located_at_the_scalar():
    text = _with_path(">-\n    " + PATH.replace(" + max(SLNV", "\n    + max(SLNVX"))
    with pytest.raises(hw.HardwareError, match="names SLNVX") as e:
        parse_mapping(text, "map.yaml")
    assert e.value.loc.line == CP_LINE


# ------------------------------------------------------------------ load-time checks against the binding

def test_the_reported_bug_is_an_error_at_load():
    """A critical path that leaves out bound Einsums gave half the latency and
    a utilisation of 1.83; now the mapping does not load, and the error names
    what is missing and where the path is."""
    with pytest.raises(hw.HardwareError, match=r"does not name SLNV \(on pe2d\), SPNV \(on pe1d\)") as e:
        parse_mapping(_with_path(PATH.replace(" + max(SLNV, SPNV)", "")), "map.yaml")
    assert (e.value.loc.line, e.value.loc.column) == (CP_LINE, CP_COL)


@pytest.mark.parametrize("einsum", [n.name for n in BINDING.critical_path.names()])
def test_leaving_out_any_bound_einsum_is_an_error(einsum):
    """Every bound Einsum, removed from the path (with its `+`), is named."""
    tree = BINDING.critical_path.expr

    def drop(node):
        if isinstance(node, Name):
            return None if node.name == einsum else node
        kids = [k for k in (drop(c) for c in node.children()) if k is not None]
        if not kids:
            return None
        return Add(tuple(kids)) if isinstance(node, Add) else Max(tuple(kids), node.loc)
    with pytest.raises(hw.HardwareError, match=rf"does not name {einsum} \(on pe[12]d\)"):
        parse_mapping(_with_path(str(drop(tree))), "map.yaml")


@pytest.mark.parametrize("path,message,at", [
    (PATH.replace("SPNV)", "SPNVV)"), "names SPNVV, which is not an Einsum in `binding`", "SPNVV"),
    (PATH + " + fill_pe3d", "names fill_pe3d", "fill_pe3d"),
    (PATH + " + RM", "names RM twice", "RM", ),
    (PATH.replace("max(BQK + LM,", "max(BQK, LM,"), "BQK and LM both run on pe2d but are in different branches",
     "max(BQK, LM"),
    (PATH.replace("max(SLNV, SPNV)", "max(SLNV, SPNV + SLD)").replace("SLN + SLD", "SLN"),
     "SLNV and SLD both run on pe2d", "max(SLNV"),
])
def test_names_are_checked_against_the_binding(path, message, at):
    with pytest.raises(hw.HardwareError, match=_escape(message)) as e:
        parse_mapping(_with_path(path), "map.yaml")
    where = path.rindex(at) if "twice" in message else path.index(at)
    assert (e.value.loc.line, e.value.loc.column) == (CP_LINE, CP_COL + where)


def test_a_fill_of_a_unit_the_mapping_uses_is_a_name():
    m = parse_mapping(_with_path(PATH + " + 2 * fill_pe1d"), "map.yaml")
    assert m.critical_path.fills() == ("pe1d",)


def test_variants_are_checked_at_load():
    """A variant that moves AV onto the 2D array makes the path put pe2d in
    both branches of a max: reported at load, not when those shapes come."""
    text = TEXT + "variants:\n  - when: {M: 4096}\n    binding: {BQK: pe2d, LM: pe2d, SLN: pe2d, SLD: pe2d, " \
                  "SLNV: pe2d, RM: pe1d, PRM: pe1d, SPD: pe1d, RD: pe1d, SPNV: pe1d, RNV: pe1d, AV: pe2d}\n"
    with pytest.raises(hw.HardwareError, match="BQK and AV both run on pe2d"):
        parse_mapping(text, "map.yaml")


def test_overlap_keys_belong_to_their_kind():
    with pytest.raises(hw.HardwareError, match="`critical_path` is used only with overlap kind `epochs`"):
        parse_mapping(TEXT.replace("kind: epochs", "kind: overlapped"), "map.yaml")


# ------------------------------------------------------------------ phases

UNFUSED = load_mapping("unfused").node.source


@pytest.mark.parametrize("old,new,message", [
    ("[[QK], [GM, SN, SD, A], [AV]]", "[[QK], [GM, SN, SD, A], [AVV]]", "phase names AVV"),
    ("[[QK], [GM, SN, SD, A], [AV]]", "[[QK], [GM, SN, SD, A], [AV, QK]]", "QK is in two phases"),
    ("[[QK], [GM, SN, SD, A], [AV]]", "[[QK], [GM, SN, A], [AV]]",
     r"SD is bound but in no phase: its time would be left out of the latency\n"),
    ("[[QK], [GM, SN, SD, A], [AV]]", "[[QK], [GM, A], [AV]]",
     r"SN, SD are bound but in no phase: their time would be left out of the latency\n"),
])
def test_phases_are_checked_at_load(old, new, message):
    assert old in UNFUSED
    with pytest.raises(hw.HardwareError, match=message) as e:
        parse_mapping(UNFUSED.replace(old, new), "map.yaml")
    assert e.value.loc.file == "map.yaml" and e.value.loc.line == UNFUSED[:UNFUSED.index(old)].count("\n") + 1


def test_phases_are_checked_against_the_cascade():
    m = load_mapping("unfused")
    c = ei.library.load(m.cascade)
    a = hw.load_spatial(m.hardware)
    with pytest.raises(hw.HardwareError, match="SD is in no phase"):
        simulate(c, m.with_changes(phases=(("QK",), ("GM", "SN", "A"), ("AV",))), a, SHAPES)
    with pytest.raises(hw.HardwareError, match="QK is in 2 phases"):
        simulate(c, m.with_changes(phases=(("QK",), ("GM", "SN", "SD", "A"), ("AV", "QK"))), a, SHAPES)
    with pytest.raises(hw.HardwareError, match="`phases` names XX, which is not an Einsum of attention-3pass"):
        simulate(c, m.with_changes(phases=(("QK", "XX"), ("GM", "SN", "SD", "A"), ("AV",))), a, SHAPES)


# ------------------------------------------------------------------ simulate-time checks against the cascade

def test_a_path_given_in_code_is_checked_against_the_cascade():
    """`with_changes` parses a text path; simulate names the Einsum of the
    cascade that is bound but left out, or the name the cascade lacks."""
    with pytest.raises(hw.HardwareError, match=r"does not name SLNV \(on pe2d\), SPNV \(on pe1d\).*every Einsum "
                                               r"of attention-1pass bound to a unit"):
        simulate(ONE_PASS, BINDING.with_changes(critical_path=PATH.replace(" + max(SLNV, SPNV)", "")), FUSEMAX,
                 SHAPES)
    with pytest.raises(hw.HardwareError, match="names QK, which is not an Einsum of attention-1pass"):
        simulate(ONE_PASS, BINDING.with_changes(critical_path=PATH + " + QK"), FUSEMAX, SHAPES)
    with pytest.raises(hw.HardwareError, match=r"SLNV and BQK both run on pe2d .* max\(SLNV, SPNV, BQK\)"):
        simulate(ONE_PASS, BINDING.with_changes(critical_path=PATH.replace("BQK + LM", "LM").replace(
            "max(SLNV, SPNV)", "max(SLNV, SPNV, BQK)")), FUSEMAX, SHAPES)


def test_a_binding_changed_in_code_is_checked_against_the_path():
    """Binding changed after load (AV moved to a 2D array that can divide):
    simulate finds pe2d in both branches of the path's first max."""
    can_divide = FUSEMAX.with_changes(units={**FUSEMAX.units, "pe2d": FUSEMAX.unit("pe2d").__class__(
        "pe2d", FUSEMAX.unit("pe2d").shape, {**FUSEMAX.unit("pe2d").ops, "divide": FUSEMAX.unit("pe1d").ops["divide"]},
        FUSEMAX.unit("pe2d").register_file, FUSEMAX.unit("pe2d").area_um2_per_pe)})
    m = BINDING.with_changes(binding=tuple((e, "pe2d" if e == "AV" else u) for e, u in BINDING.binding))
    with pytest.raises(hw.HardwareError, match="BQK and AV both run on pe2d"):
        simulate(ONE_PASS, m, can_divide, SHAPES)


def test_a_binding_for_another_cascade_is_refused():
    """At load (the mapping names a library cascade), at the line of the name;
    and at simulate time for a mapping whose cascade is not known at load."""
    text = TEXT.replace("  AV: pe1d\n", "  AV: pe1d\n  EXTRA: pe1d\n").replace(PATH, PATH + " + EXTRA")
    with pytest.raises(hw.HardwareError, match="binding: EXTRA is not an Einsum of attention-1pass") as e:
        parse_mapping(text, "map.yaml")
    assert (e.value.loc.file, e.value.loc.line) == ("map.yaml", text[:text.index("EXTRA")].count("\n") + 1)
    m = parse_mapping(text.replace("cascade: attention-1pass", "cascade: my-own.ein"), "map.yaml")
    with pytest.raises(hw.HardwareError, match="binding: EXTRA is not an Einsum of attention-1pass"):
        simulate(ONE_PASS, m, FUSEMAX, SHAPES)


# ------------------------------------------------------------------ the default, and valid alternatives

def _serial_report(shapes):
    m = parse_mapping(TEXT.replace("\n  " + TEXT.split("\n")[CP_LINE - 1].strip(), ""), "map.yaml")
    assert m.overlap == "epochs" and m.critical_path is None
    return simulate(ONE_PASS, m, FUSEMAX, shapes)


@pytest.mark.parametrize("n", [1024, 4096])
def test_the_default_critical_path_is_every_einsum_in_sequence(n):
    """Without a stated path the latency is the sum over units of their busy
    time (compute-bound here), the report says so, and it is never below the
    stated path's."""
    shapes = dict(SHAPES, M=n, P=n)
    r = _serial_report(shapes)
    assert "default" in r.latency_rule and "sequence" in r.latency_rule
    total = sum(e.busy_cycles for e in r.einsums)
    assert r.latency_cycles == pytest.approx(max(total, r.dram_cycles))
    assert set(r.critical_path.split(" + ")) == {e.name for e in r.einsums}
    stated = simulate(ONE_PASS, BINDING, FUSEMAX, shapes)
    assert "the mapping's critical_path" in stated.latency_rule and stated.critical_path == PATH
    assert stated.latency_cycles <= r.latency_cycles


def _random_valid_path(rng: random.Random, units: dict[str, str]) -> str:
    """A random path that is valid by construction: the Einsums split into
    groups run one after another; within a group each unit runs its own in
    sequence and the units overlap (a max over units); random coefficients
    >= 1 and constants."""
    names = list(units)
    rng.shuffle(names)
    cuts = sorted(rng.sample(range(1, len(names)), rng.randint(0, min(4, len(names) - 1))))
    groups = [names[i:j] for i, j in zip([0] + cuts, cuts + [len(names)])]
    terms = []
    for g in groups:
        per_unit = {}
        for e in g:
            coef = rng.choice(["", "", "2 * "])
            per_unit.setdefault(units[e], []).append(coef + e)
        branches = [" + ".join(v) for v in per_unit.values()]
        terms.append(branches[0] if len(branches) == 1 else f"max({', '.join(branches)})")
    if rng.random() < 0.3:
        terms.append(str(rng.randint(0, 50)))
    return " + ".join(terms)


@pytest.mark.parametrize("seed", range(12))
def test_other_valid_paths_load_and_bound_the_stated_one_from_below_by_each_unit(seed):
    """Random valid paths load and simulate; the latency is never below any
    unit's busy time, and (without coefficients or constants) never above the
    default, every Einsum in sequence."""
    rng = random.Random(seed)
    units = dict(BINDING.binding)
    path = _random_valid_path(rng, units)
    m = parse_mapping(_with_path(path), "map.yaml")
    shapes = dict(SHAPES, M=rng.choice([512, 2048, 3000]), P=rng.choice([512, 2048]))
    r = simulate(ONE_PASS, m, FUSEMAX, shapes)
    for u, busy in r.unit_busy_cycles.items():
        assert r.latency_cycles >= busy * (1 - 1e-12)
        assert r.unit_utilisation[u] <= 1 + 1e-12
    if "*" not in path and not any(t.strip().isdigit() for t in path.split("+")):
        assert r.latency_cycles <= _serial_report(shapes).latency_cycles * (1 + 1e-12)

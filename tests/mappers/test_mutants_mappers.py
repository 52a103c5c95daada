"""Behaviours that the mutation run of `mappers` (docs/benchmarks.md,
"Mutation testing") found untested: a GPU mapping file read and refused
where it is wrong, the GPU shortlist's count of what it considered, the
spatial mapper's axis and keep options, the best point under each
objective, the name of an automatic mapping; and (the seed-22 sample) a
GPU mapping's text, the chunked shortlist, the screening with a key split,
the balanced start and the search's progress bar."""
import re

import numpy as np
import pytest

import einsum_ir as ei
from einsum_ir import library
from einsum_ir.analysis.fused import recognise
from einsum_ir.shapes import resolve
from hw_models import HardwareError, load_gpu, load_spatial
from mappers.gpu_mapping import GPUMapping, parse_gpu_mapping
from mappers.mapping import load_mapping, parse_critical_path
from mappers.gpu_search import candidates, shortlist
from mappers.spatial_space import axis_options, keep_options, keep_tensors, loop_vars, roles

H100 = load_gpu("h100")


def test_a_gpu_mapping_file_is_read_and_refused_at_its_location():
    """The keys of a GPU mapping file become a GPUMapping (defaults for the
    rest); a tile that is not a power of two is refused naming the file."""
    m = parse_gpu_mapping("doc: a test\nblock_m: 16\nblock_n: 32\nwarps: 8\nstages: 3\ntma: false\n", "g.yaml")
    assert m == GPUMapping(16, 32, 8, 3)
    with pytest.raises(HardwareError, match="block_n must be a power of two") as e:
        parse_gpu_mapping("block_m: 64\nblock_n: 48\n", "g.yaml")
    assert e.value.loc.file == "g.yaml"
    with pytest.raises(HardwareError, match="must be true or false") as e:
        parse_gpu_mapping("block_m: 64\ntma: 3\n", "g.yaml")
    assert (e.value.loc.file, e.value.loc.line) == ("g.yaml", 2)


def test_the_shortlist_counts_every_candidate_it_considered():
    """At head dim 256 some candidates do not fit the H100's shared memory:
    the note counts all the candidates, and a positive number rejected."""
    form = recognise(library.load("cab-self"))
    env = resolve(form.cascade, dict(B=1, H=1, P=128, E=256, F=256))
    best = shortlist(form, H100, env, top=1)
    n, rejected = map(int, re.search(r"(\d+) mappings considered, (\d+) rejected", best[0].notes[-1]).groups())
    assert n == len(list(candidates(form, H100, env)))
    assert 0 < rejected < n


ONE_PASS = ei.load("attention-1pass")
FUSEMAX = load_spatial("fusemax")


def _roles():
    return roles(ONE_PASS, FUSEMAX, dict(B=1, H=2, E=64, F=64, M=4096, P=4096))


def test_a_leaf_offers_only_the_variables_it_iterates_to_the_array():
    """Each option of a leaf is a variable its Einsums iterate, or the
    mapper's key or row tile when the leaf iterates the key or the row; every
    rank it iterates that is not batch, key or row (E, F) is offered.
    attention-1pass: the pass leaf iterates e and f, AV only f."""
    r = _roles()
    for i, lf in enumerate(r.leaves):
        its = {v.upper() for e in ONE_PASS.einsums if e.name in lf.run and not e.is_initial
               for v in e.iteration_vars}
        allowed = {x.lower() for x in its}
        if its & ({r.key} | set(ONE_PASS.parts(r.key))):
            allowed.add(r.key_names[1].lower())
        if r.row in its:
            allowed.add(r.row_names[2].lower())
        opts = axis_options(r, i)
        assert set(opts) <= allowed, (lf.run, opts)
        assert {x.lower() for x in its & {"E", "F"}} <= set(opts)
    assert "e" not in axis_options(r, len(r.leaves) - 1)       # AV reads no E


@pytest.mark.parametrize("order", ["kq", "qk"])
def test_a_recurrences_state_is_never_kept_inside_the_key_loop(order):
    """RM, RD, RNV carry their value from one key tile to the next: a keep
    level at or inside the key tile loop (m1) would restart it each tile.
    Their options are loops outside m1, or the PEs when m1 is innermost."""
    r = _roles()
    for t in keep_tensors(r):
        if not ONE_PASS.tensor(t).iterative:
            continue
        opts = keep_options(r, t, order)
        for leaf in range(len(r.leaves)):
            loops = loop_vars(r, leaf, order)
            if "m1" not in loops:
                continue
            inside = loops[loops.index("m1"):]
            assert not set(opts) & set(inside), (t, order, opts)
    rm = keep_options(r, "RM", order)
    assert ("pe" in rm) == (loop_vars(r, 0, order)[-1] == "m1")


@pytest.mark.parametrize("objective,column", [("latency", "latency"), ("energy", "energy"), ("edp", None)])
def test_the_best_point_and_its_key_follow_the_objective(objective, column):
    """best_point: the point of least score (latency, energy, or their
    product), ties broken by energy, then latency, then buffer; its key
    starts with that score."""
    from mappers.spatial_search import best_point
    res = {"latency": np.array([4.0, 2.0, 3.0, 2.0]), "energy": np.array([1.0, 5.0, 2.0, 4.0]),
           "buffer": np.array([10.0, 20.0, 30.0, 40.0])}
    score = res[column] if column else res["latency"] * res["energy"]
    want = min(range(4), key=lambda i: (score[i], res["energy"][i], res["latency"][i], res["buffer"][i]))
    key, i = best_point(res, objective)
    assert i == want
    assert key == (score[want], res["energy"][want], res["latency"][want], res["buffer"][want])


def test_an_automatic_mapping_is_named_auto():
    """The mapper's mappings are named `auto` unless a name is given (what
    `attnc map` prints and --save writes)."""
    from mappers.spatial_space import Candidate, to_mapping
    r = _roles()
    keep = tuple((t, keep_options(r, t, "kq")[0]) for t in keep_tensors(r))
    cand = Candidate(1, 1, 1, "kq", tuple((e, r.units[e][0]) for e in r.work), (), keep)
    assert to_mapping(r, cand).name == "auto"
    assert to_mapping(r, cand, "mine").name == "mine"


def test_a_schedule_reads_as_a_critical_path():
    """A stage with one unit is its Einsums in sequence; a stage with
    several is the max of each unit's sequence; stages add up."""
    from mappers.stages import Schedule
    s = Schedule(((("pe2d", ("A", "B")),), (("pe2d", ("C",)), ("pe1d", ("D", "E"))), (("pe1d", ()),)), 0.0)
    assert s.text() == "A + B + max(C, D + E)"


def test_a_binding_name_the_cascade_lacks_is_shown_in_its_line():
    """fusemax-binding checked against attention-3pass, which has none of
    its Einsums: the error points at the first bound name in the mapping
    file and shows that line with a caret under the name."""
    from mappers.mapping import check_names, load_mapping
    m = load_mapping("fusemax-binding")
    first = m.binding[0][0]
    with pytest.raises(HardwareError, match=f"binding: {first} is not an Einsum of attention-3pass") as e:
        check_names(m, ei.load("attention-3pass"), FUSEMAX)
    line = m.node.source.split("\n")[e.value.loc.line - 1]
    assert line.strip().startswith(f"{first}:")
    rendered = str(e.value).split("\n")
    assert rendered[1].strip() == line.strip()
    assert rendered[2].index("^") == rendered[1].index(first)


def test_critical_path_errors_carry_the_file_and_point_past_the_end():
    """A bad name is located in the given file at its own column; a path
    that ends early is located just past its last character."""
    from einsum_ir.errors import Loc
    from mappers.mapping import parse_critical_path
    at = Loc("m.yaml", 7, 18)
    with pytest.raises(HardwareError) as e:
        parse_critical_path("A + max(B, C", at, "x" * 40)
    assert (e.value.loc.file, e.value.loc.line, e.value.loc.column) == ("m.yaml", 7, 18 + len("A + max(B, C"))
    with pytest.raises(HardwareError) as e:
        parse_critical_path("A + B - C", at, "x" * 40)
    assert (e.value.loc.file, e.value.loc.line, e.value.loc.column) == ("m.yaml", 7, 18 + "A + B - C".index("-"))


def test_a_derived_schedule_costs_what_its_path_says_at_any_times():
    """derive's stage schedule for attention-1pass's binding at seeded
    random times per Einsum: its reported cost is its own path's value at
    those times (stages add, units in a stage overlap), never below the
    busiest unit's total and never above everything in sequence, nor above
    the paper's hand-written path (fusemax-binding's), a feasible schedule."""
    import random

    from mappers.mapping import load_mapping, parse_critical_path
    from mappers.stages import derive
    r = _roles()
    hand = load_mapping("fusemax-binding")
    binding = dict(hand.binding)
    rng = random.Random(21)
    for _ in range(12):
        times = {e: float(rng.choice([1, 2, 3, 5, 8, 13, 64])) for e in r.work}
        s = derive(r, binding, times)
        value = parse_critical_path(s.text()).value(times)
        per_unit = {u: sum(t for e, t in times.items() if binding[e] == u) for u in set(binding.values())}
        assert s.cost == pytest.approx(value, abs=1e-9)
        assert max(per_unit.values()) - 1e-9 <= s.cost <= sum(times.values()) + 1e-9
        assert s.cost <= hand.critical_path.value(times) + 1e-9


# ------------------------------------------------------------------ found by the fresh run (fourth session)

def _small_flat(side=8):
    import dataclasses
    hw = load_spatial("flat")
    return hw.with_changes(units={u: dataclasses.replace(x, shape=tuple(side for _ in x.shape))
                                  for u, x in hw.units.items()})


SMALL_SHAPES = dict(B=2, H=2, E=8, F=8, M=64, P=32)


@pytest.mark.parametrize("accounting", ["physical", "evaluation"])
def test_the_screening_evaluator_is_the_simulator_on_sampled_candidates(accounting):
    """relu-attention on an 8 x 8 FLAT: for structures drawn at random (both
    loop orders) and factor points drawn from each, the evaluator's latency
    and energy (in the accounting asked for) are the simulator's on the
    mapping file the candidate becomes."""
    import random

    from mappers.spatial_eval import Evaluator
    from mappers.spatial_search import _shapes, _with_path, build, dimensions
    from mappers.spatial_space import to_mapping
    from simulator.analytical import simulate
    c, hw = ei.load("relu-attention"), _small_flat()
    r = roles(c, hw, SMALL_SHAPES)
    ev = Evaluator(r, accounting)
    rng, dims, orders, compared = random.Random(5), dimensions(ev), set(), 0
    for _ in range(24):
        st = build(ev, {(k, w): rng.choice(v) for k, w, v in dims})
        if st is None:
            continue
        out = ev.evaluate(st, "energy")
        for i in rng.sample(range(len(ev.grid)), 2):
            if not np.isfinite(out["latency"][i]):
                continue
            cand = _with_path(ev, st, i, *map(int, ev.grid[i]))
            rep = simulate(c, to_mapping(r, cand, "t"), hw, _shapes(r, cand))
            assert out["latency"][i] == pytest.approx(rep.latency_cycles, rel=1e-9)
            assert out["energy"][i] == pytest.approx(rep.total_energy(accounting), rel=1e-9)
            orders.add(st.order)
            compared += 1
    assert compared >= 10 and orders == set(ev.orders) and len(orders) == 2


@pytest.mark.parametrize("accounting", ["physical", "evaluation"])
def test_a_search_screens_in_the_accounting_asked_for(accounting):
    """search(accounting=...) screens energy in that accounting: the chosen
    point's screening estimate is the exact report's energy in it (the two
    accountings differ on this mapping)."""
    from mappers.spatial_search import search
    c, hw = ei.load("relu-attention"), _small_flat()
    f = search(c, hw, SMALL_SHAPES, objective="energy", method="random", seed=1, budget=3_000,
               accounting=accounting)
    other = "evaluation" if accounting == "physical" else "physical"
    assert f.report.total_energy(accounting) != pytest.approx(f.report.total_energy(other), rel=1e-6)
    assert f.screened == pytest.approx(f.report.total_energy(accounting), rel=1e-9)
    # and the exact pick is ranked and reported in it too (it was the hardware's default accounting)
    assert f.report.accounting == accounting


def _reread_by_the_rule(c, m) -> set:
    """docs/mapper.md's rule read off a mapping file: a tensor is re-read
    from the buffer when, in a leaf that uses it (a view's reader uses the
    view's input), a loop inside the innermost loop indexing it does not
    index it; inputs and outputs always qualify, an intermediate only when
    `keep` holds it in the buffer."""
    in_leaf = {n for lf in m.leaves for n in lf.run}
    views = {e.name: {a.tensor for a in e.reads()} for e in c.einsums if not e.is_initial and e.name not in in_leaf}
    keep, out = dict(m.keep), set()
    for lf in m.leaves:
        used = set()
        for e in c.einsums:
            if e.name in lf.run and not e.is_initial:
                names = {a.tensor for a in e.reads()} | {e.name}
                used |= names.union(*(views.get(n, set()) for n in names)) - set(views)
        for t in used:
            if c.tensor(t).role not in ("input", "output") and not (t in keep and keep[t].in_buffer):
                continue
            ranks = set(c.tensor(t).ranks)

            def indexes(v):
                return bool({v.upper(), v.rstrip("0123456789").upper()} & ranks)

            inner = max((k for k, v in enumerate(lf.loops) if indexes(v)), default=-1)
            if not all(indexes(v) for v in lf.loops[inner + 1:]):
                out.add(t)
    return out


GAINED = """rank B, H, M, P, E, F
input Q[B, H, E, P]: f16
input K[B, H, E, M]: f16
input V[B, H, F, M]: f16
input G[F]: f16
output AV[B, H, F, P]: f16
QK[b, h, m, p] = sum[e] Q[b, h, e, p] * K[b, h, e, m]
AV[b, h, f, p] = sum[m] max(QK[b, h, m, p], 0) * V[b, h, f, m] * G[f]
"""


@pytest.mark.parametrize("design,hw_name", [("relu-attention", "flat"), ("attention-1pass", "fusemax"),
                                            ("gained", "flat")])
def test_reread_follows_the_rule_on_the_written_nest(design, hw_name):
    """For structures drawn at random, the mapping file's `reread` list is
    what the rule gives on its own nest and keep levels; among them streamed
    inputs and intermediates kept in the buffer."""
    import dataclasses
    import random

    from mappers.spatial_eval import Evaluator
    from mappers.spatial_search import _with_path, build, dimensions
    from mappers.spatial_space import to_mapping
    hw = load_spatial(hw_name)
    hw = hw.with_changes(units={u: dataclasses.replace(x, shape=tuple(8 for _ in x.shape))
                                for u, x in hw.units.items()})
    c = ei.parse(GAINED, name="gained") if design == "gained" else ei.load(design)
    r = roles(c, hw, SMALL_SHAPES)
    ev = Evaluator(r)
    rng, dims, listed = random.Random(5), dimensions(ev), set()
    for _ in range(30):
        st = build(ev, {(k, w): rng.choice(v) for k, w, v in dims})
        if st is None:
            continue
        m = to_mapping(r, _with_path(ev, st, 0, *map(int, ev.grid[0])), "t")
        assert set(m.reread) == _reread_by_the_rule(c, m), (st.order, dict(m.keep))
        listed |= {(c.tensor(t).role, str(m.keep_of(t))) for t in m.reread}
    assert ("input", "stream") in listed
    if design == "attention-1pass":
        assert any(role == "tensor" for role, _ in listed)
    if design == "gained":              # no loop indexes G (F is on the array): held nowhere, re-read
        assert "G" in m.reread


@pytest.mark.parametrize("n", [1024, 40, 10])
def test_the_factor_grid_by_hand(n):
    """The tile factors the search screens (docs/mapper.md): k0 and q0 the
    powers of two from 16 up to the largest array side (or up to the extent,
    then the extent itself, when the rank is shorter than the side; only
    the extent when it is shorter than 16); q1 every power of two up to the
    row tiles left, ceil(n / q0), and that number itself."""
    from mappers.spatial_space import factor_grid
    hw = load_spatial("fusemax")
    side = max(max(u.shape) for u in hw.units.values())
    r = roles(ei.load("attention-1pass"), hw, dict(B=1, H=2, E=64, F=64, M=n, P=n))
    grid = factor_grid(r)
    tiles = [1 << j for j in range(4, 20) if (1 << j) <= min(side, n)] + ([n] if n < side and n % 16 else [])
    tiles = sorted(set(tiles)) if n >= 16 else [n]
    assert sorted({k for k, _, _ in grid}) == sorted({q for _, q, _ in grid}) == tiles
    for k in tiles:
        for q in tiles:
            left = -(-n // q)
            want = sorted({1 << j for j in range(0, 20) if (1 << j) <= left} | {left})
            assert sorted(x for kk, qq, x in grid if (kk, qq) == (k, q)) == want


def test_the_progress_bar_names_the_search(capsys):
    """With progress on, the fused search's bar is labelled `fused` (and
    the random search's `random`) on stderr; with it off nothing is shown."""
    from mappers.spatial_eval import Evaluator
    from mappers.spatial_search import fused, random_search
    c, hw = ei.load("relu-attention"), _small_flat(4)
    shapes = dict(B=1, H=1, E=4, F=4, M=16, P=16)
    fused(Evaluator(roles(c, hw, shapes)), "latency", seed=1, budget=300, restarts=0, progress=True)
    assert re.search(r"(^|\r)fused:", capsys.readouterr().err, flags=re.M)
    random_search(Evaluator(roles(c, hw, shapes)), "latency", 20, 1, progress=True)
    assert re.search(r"(^|\r)random:", capsys.readouterr().err, flags=re.M)
    fused(Evaluator(roles(c, hw, shapes)), "latency", seed=1, budget=300, restarts=0, progress=False)
    assert capsys.readouterr().err == ""


def test_a_found_mapping_file_names_its_shapes_in_its_header():
    """The file's second line records the shapes it was found at, `K=V`
    pairs separated by spaces, in the order given."""
    from mappers.spatial_search import search
    c, hw = ei.load("relu-attention"), _small_flat()
    f = search(c, hw, SMALL_SHAPES, method="random", seed=1, budget=600)
    assert f.text.splitlines()[1] == "# at " + " ".join(f"{k}={v}" for k, v in SMALL_SHAPES.items()) + "."


def test_the_search_starts_each_einsum_on_the_unit_with_the_most_pes():
    """FuseMax with its units listed 1D array first: the start still puts
    QK and AV on the 2D array (65,536 PEs, not 256), whatever the order."""
    from mappers.spatial_search import Evaluator, _start, dimensions
    hw = FUSEMAX.with_changes(units=dict(reversed(list(FUSEMAX.units.items()))))
    ev = Evaluator(roles(ei.load("relu-attention"), hw, dict(B=1, H=2, E=64, F=64, M=4096, P=4096)))
    assert all(ev.r.units[e][0] == "pe1d" for e in ev.r.work)
    start = _start(ev, dimensions(ev))
    assert {e: start[("unit", e)] for e in ev.r.work} == {"QK": "pe2d", "AV": "pe2d"}


def test_the_fused_search_stops_when_a_small_space_is_exhausted():
    """One Einsum on a 4 x 4 FLAT at tiny shapes: twenty restarts in a row
    find nothing new long before the budget, and the search ends there
    with the best mapping (it once returned nothing from that exit)."""
    from mappers.spatial_search import search
    c = ei.parse("rank B, H, E, M, P\ninput Q[B, H, E, P]: f16\ninput K[B, H, E, M]: f16\n"
                 "QK[b, h, m, p] = Q[b, h, e, p] * K[b, h, e, m]\n", name="scores")
    f = search(c, _small_flat(4), dict(B=1, H=1, E=4, M=8, P=8), method="fused", budget=10 ** 9)
    assert f.method == "fused" and 0 < f.evaluated < 10 ** 6
    assert f.report.latency_cycles > 0


@pytest.mark.parametrize("method", ["random", "fused"])
def test_a_found_mapping_names_the_search_that_found_it(method):
    """Found.method is the search asked for (`attnc map` prints it)."""
    from mappers.spatial_search import search
    c, hw = ei.load("relu-attention"), _small_flat()
    f = search(c, hw, SMALL_SHAPES, method=method, seed=1, budget=600)
    assert (f.method, f.objective) == (method, "latency")


# attention-1pass: each Einsum's producers in the same key tile (read at the current iterate), by hand
SAME_TILE = {"LM": ["BQK"], "RM": ["LM"], "SLN": ["BQK", "RM"], "SLD": ["SLN"], "SLNV": ["SLN"], "PRM": ["RM"],
             "SPD": ["PRM"], "RD": ["SLD", "SPD"], "SPNV": ["PRM"], "RNV": ["SLNV", "SPNV"]}


def test_a_derived_schedule_runs_each_einsum_after_its_producers():
    """docs/mapper.md's stage rule: an Einsum that reads a result of the
    same tile is in a later stage, or in the same stage on the same unit
    after it; only an Einsum no one reads in its tile (a recurrence's next
    iterate) may wrap into stage 0. Checked on schedules derived for the
    FuseMax binding at random busy times."""
    import random

    from mappers.mapping import load_mapping
    from mappers.stages import derive
    c, hw = ei.load("attention-1pass"), load_spatial("fusemax")
    r = roles(c, hw, dict(B=64, H=12, E=64, F=64, M=4096, P=4096))
    binding = dict(load_mapping("fusemax-binding").binding)
    read_in_tile = {x for xs in SAME_TILE.values() for x in xs}
    rng = random.Random(3)
    for _ in range(20):
        times = {e: rng.choice([1.0, 2.0, 5.0, 20.0]) for e in r.work}
        s = derive(r, binding, times)
        where = {e: (k, u, es.index(e)) for k, st in enumerate(s.stages) for u, es in st for e in es}
        assert set(where) == set(r.work)
        for y, xs in SAME_TILE.items():
            for x in xs:
                (sy, uy, iy), (sx, ux, ix) = where[y], where[x]
                after = sy > sx or (sy == sx and uy == ux and iy > ix)
                assert after or (sy == 0 and y not in read_in_tile), (y, x, s.stages)


def test_an_einsums_energy_piece_does_not_depend_on_what_was_asked_first():
    """Evaluator.value builds an Einsum's operation energy on a unit with its
    busy cycles; asked for first (before any busy piece), it is built at
    the unit's first axis choice and is the same array."""
    from mappers.spatial_eval import Evaluator
    c, hw = ei.load("relu-attention"), _small_flat()
    first, after = Evaluator(roles(c, hw, SMALL_SHAPES)), Evaluator(roles(c, hw, SMALL_SHAPES))
    r = first.r
    for e in r.work:
        for u in r.units[e]:
            after.value(("busy", e, u, after.axes[(r.leaf_of(e), u)][-1]))
            got = first.value(("energy", e, u))
            assert np.all(got > 0)
            np.testing.assert_array_equal(got, after.value(("energy", e, u)))


def test_a_critical_path_written_as_a_folded_scalar_is_refused_at_the_scalar():
    """In a folded YAML scalar the text's columns are not the file's: an
    error in such a path points at the scalar itself; in a plain one, at
    the offending token's column (here the `-`, 6 characters in)."""
    from einsum_ir.errors import Loc
    from hw_models import HardwareError as Err
    from mappers.mapping import parse_mapping
    for columns, col in ((True, 26), (False, 20)):
        with pytest.raises(Err, match="'-' is not allowed") as e:
            parse_critical_path("A + B - C", Loc("f.yaml", 3, 20), "x", columns=columns)
        assert (e.value.loc.file, e.value.loc.line, e.value.loc.column) == ("f.yaml", 3, col)
    text = load_mapping("fusemax-binding").node.source
    folded = re.sub(r"critical_path: (.*)", lambda m: "critical_path: >-\n    " + m.group(1) + " - BQK", text)
    with pytest.raises(Err, match="'-' is not allowed") as e:
        parse_mapping(folded, "folded.yaml")
    lines = folded.splitlines()
    line = lines.index(next(x for x in lines if x.startswith("  critical_path:")))
    at = (e.value.loc.file, e.value.loc.line, e.value.loc.column)
    assert at == ("folded.yaml", line + 1, lines[line].index(">") + 1)      # the scalar's `>-`, 1-based


def test_an_unknown_overlap_kind_is_refused_with_the_kinds_listed():
    from mappers.mapping import OVERLAP_KINDS, parse_mapping
    text = load_mapping("fusemax-binding").node.source.replace("kind: epochs", "kind: pipelined")
    with pytest.raises(HardwareError, match="unknown overlap kind 'pipelined'") as e:
        parse_mapping(text, "k.yaml")
    assert str(e.value).splitlines()[0].endswith("expected one of " + ", ".join(OVERLAP_KINDS))


# ------------------------------------------------------------------ found by the seed-22 sample (issue 21)

def _words(m: GPUMapping) -> dict:
    """A GPU mapping's text read back word by word: `KEY=n` pairs, bare flags true."""
    out = {}
    for w in str(m).split():
        pair = re.fullmatch(r"(\w+)=(\d+)", w)
        out.update({pair[1]: int(pair[2])} if pair else {w: True})
    return out


@pytest.mark.parametrize("m", [GPUMapping(), GPUMapping(64, 32, 8, 3, splits=4),
                               GPUMapping(16, 16, pack_heads=4, tma=True), GPUMapping(128, 64, tma=True)])
def test_a_gpu_mappings_text_names_its_fields(m):
    """What `attnc map` prints for a mapping: BLOCK_M, BLOCK_N, warps and
    stages always, splits and pack_heads when above 1, the bare word `tma`
    when set; nothing else."""
    want = {"BLOCK_M": m.block_m, "BLOCK_N": m.block_n, "warps": m.warps, "stages": m.stages}
    want.update({k: getattr(m, k) for k in ("splits", "pack_heads") if getattr(m, k) > 1})
    want.update({"tma": True} if m.tma else {})
    assert _words(m) == want


def test_a_tma_mapping_the_model_ties_is_shown_as_differing_by_tma():
    """The model charges TMA loads as pointer loads, so a mapping and the
    same with `tma` tie: `attnc map` shows them as one row, `(= 1 more: tma)`;
    on an A100 the refusal names the mapping with its `tma`."""
    from attnc.gpu import distinct
    from simulator.gpu import predict_fused
    form = recognise(library.load("cab-self-causal"))
    env = resolve(form.cascade, dict(B=1, H=2, P=256, E=64, F=64))
    plain = GPUMapping(64, 32)
    ps = [predict_fused(form, m, H100, env) for m in (plain, plain.with_changes(tma=True))]
    assert ps[0].time_s == ps[1].time_s
    assert [(p.mapping, n, alt) for p, n, alt in distinct(ps)] == [(plain, 1, "tma")]
    assert ps[1].as_dict()["mapping"] == str(plain) + " tma"
    with pytest.raises(HardwareError, match=re.escape(f"mapping {plain} tma: TMA")):
        predict_fused(form, plain.with_changes(tma=True), load_gpu("a100"), env)


@pytest.mark.parametrize("design,shapes", [("linear-attention", dict(B=1, H=4, P=1024, M=1024, E=64, F=64)),
                                           ("lightning-attention", dict(B=1, H=4, M=1024, E=64, F=64, M0=32))])
def test_the_chunked_shortlist_is_the_model_over_every_chunk_warps_and_stages(design, shapes):
    """shortlist_chunked: docs/gpu.md's grid (chunks of 32, 64, 128 tokens for
    an unpartitioned design, the design's own M0 for a partitioned one; 4 or
    8 warps; 2 or 3 stages), each charged by predict_chunked on the chunk
    program built for its own chunk, ranked by time: the same list as the
    model run here on each point, and each prediction's program is built
    with its mapping's chunk."""
    from einsum_ir.analysis.chunk_program import chunk_program
    from einsum_ir.analysis.chunked import recognise as recognise_chunked
    from mappers.gpu_search import shortlist_chunked
    from simulator.gpu import predict_chunked
    c = library.load(design)
    env = resolve(c, shapes)
    form = recognise_chunked(c, env)
    chunks = (64,) if form.partitioned else (32, 64, 128)
    want = {}
    for bn in chunks:
        for w in (4, 8):
            for st in (2, 3):
                m = GPUMapping(64, bn, w, st)
                want[m] = predict_chunked(chunk_program(form, env, bn), m, H100, env).time_s
    got = shortlist_chunked(form, H100, env, top=100)
    assert {p.mapping: p.time_s for p in got} == pytest.approx(want, rel=1e-12)
    assert got[0].time_s == min(want.values())
    assert [p.time_s for p in got] == sorted(p.time_s for p in got)
    assert got[0].notes[-1] == f"{len(want)} mappings considered"
    chunk_axes = form.token_axes()
    for p in got:
        blocks = {p.program.blocks[a] for a in p.program.blocks if a in chunk_axes}
        assert blocks == {int(env["M0"]) if form.partitioned else p.mapping.block_n}
        assert p.parts["programs"] == env["B"] * env["H"]
    if not form.partitioned:            # the chunk matters here: a shortlist that ignored it would tie
        assert len({round(t, 15) for t in want.values()}) > 1


def _fusemax(side):
    import dataclasses
    hw = load_spatial("fusemax")
    return hw.with_changes(units={u: dataclasses.replace(x, shape=(side,) * len(x.shape)) for u, x in hw.units.items()})


def test_the_screening_with_a_key_split_is_the_simulator_on_the_same_path():
    """attention-1pass splits its key rank (M1 tiles of M0 keys): at every
    factor point of structures drawn at random, with key tiles of 16 and 32
    (M1 = 8 and 4), the evaluator's latency is the exact simulation of the
    mapping written with the path the screening uses (the reference point's);
    and the file's key factors are M0 = k0 and M1 the rest."""
    import random

    from mappers.spatial_eval import Evaluator
    from mappers.spatial_search import _shapes, build, dimensions
    from mappers.spatial_space import to_mapping
    from simulator.analytical import simulate
    c, hw = ONE_PASS, _fusemax(32)
    r = roles(c, hw, dict(B=1, H=2, E=16, F=16, M=128, P=32))
    ev = Evaluator(r)
    assert r.key_split and sorted({int(k) for k in ev.grid[:, 0]}) == [16, 32]
    rng, dims, seen, compared = random.Random(7), dimensions(ev), set(), 0
    for _ in range(12):
        st = build(ev, {(k, w): rng.choice(v) for k, w, v in dims})
        if st is None or compared >= 8:
            continue
        out, path = ev.evaluate(st, "latency"), ev.path(st.binding, dict(st.axes))
        for i in rng.sample(range(len(ev.grid)), 2):
            if not np.isfinite(out["latency"][i]):
                continue
            k0, q0, q1 = map(int, ev.grid[i])
            cand = st.candidate(k0, q0, q1, str(path))
            m = to_mapping(r, cand, "t")
            assert dict(m.factors)["M"] == (("M1", "rest"), ("M0", k0))
            rep = simulate(c, m, hw, _shapes(r, cand))
            assert out["latency"][i] == pytest.approx(rep.latency_cycles, rel=1e-12), (st, ev.grid[i])
            seen.add(k0)
            compared += 1
    assert compared >= 6 and seen == {16, 32}


@pytest.mark.parametrize("side", [32, 64])
def test_the_balanced_start_spreads_the_cascade_to_the_least_makespan(side):
    """FuseMax shrunk to a side x side 2D array beside its 256-PE 1D array:
    every Einsum but AV can run on either. The fused search's balanced
    start has the least makespan (the busiest unit's total of the Einsums'
    times at the reference point) of all 2^11 bindings, found here by
    brute force, below the largest-unit start's and the first-name one's;
    and the fused search costs it."""
    from itertools import product

    from mappers.spatial_eval import Evaluator
    from mappers.spatial_search import _balanced, _start, build, dimensions, fused
    r = roles(ONE_PASS, _fusemax(side), dict(B=1, H=2, E=64, F=64, M=1024, P=1024))
    ev = Evaluator(r)
    dims = dimensions(ev)
    bal, start = _balanced(ev, dims), _start(ev, dims)
    ref = ev.reference_index()
    epochs = ev.value(("epochs",))[ref]
    t = {(e, u): float(ev.value(("busy", e, u, start[("axes", (r.leaf_of(e), u))]))[ref] / epochs)
         for e in r.work for u in r.units[e]}

    def makespan(units):
        load = {}
        for e, u in zip(r.work, units):
            load[u] = load.get(u, 0.0) + t[(e, u)]
        return max(load.values())

    least = min(makespan(us) for us in product(*(r.units[e] for e in r.work)))
    got = makespan([bal[("unit", e)] for e in r.work])
    assert got == pytest.approx(least, rel=1e-12)
    assert got < makespan([start[("unit", e)] for e in r.work])
    assert got < makespan([min(r.units[e]) for e in r.work])
    target, plain = build(ev, bal), ev.evaluate

    def evaluate(st, *a, **k):
        if st == target:
            raise _Reached
        return plain(st, *a, **k)
    ev.evaluate = evaluate
    with pytest.raises(_Reached):
        fused(ev, "latency", seed=0, budget=10**7, restarts=0)


class _Reached(Exception):
    """The fused search came to cost the structure a test waits for."""


@pytest.mark.parametrize("method", ["random", "fused"])
def test_search_passes_progress_to_each_method(method, capsys):
    """search(progress=True) shows the chosen method's bar on stderr, labelled
    with the method; progress=False shows nothing."""
    from mappers.spatial_search import search
    c, hw = ei.load("relu-attention"), _small_flat(4)
    shapes = dict(B=1, H=1, E=4, F=4, M=16, P=16)
    for progress in (True, False):
        search(c, hw, shapes, method=method, seed=1, budget=60, progress=progress)
        err = capsys.readouterr().err
        assert bool(re.search(rf"(^|\r){method}:", err, flags=re.M)) == progress, err


@pytest.mark.parametrize("m, most", [(128, 2), (4096, 64), (8192, 128), (65536, 128)])
def test_key_splits_double_up_to_twice_the_key_tiles_and_at_most_128(m, most):
    """Decode (one query row, too few programs for 132 SMs) tries key splits
    1, 2, 4, ... up to twice the key tiles at the largest BLOCK_N (128),
    never past 128 splits."""
    form = recognise(library.load("decode"))
    env = resolve(form.cascade, dict(B=1, H=8, M=m, E=64, F=64))
    splits = sorted({c.splits for c in candidates(form, H100, env)})
    tiles = -(-m // 128)
    assert splits == [1] + [2 ** k for k in range(1, 8) if 2 ** k <= min(128, 2 * tiles)]
    assert splits[-1] == most


def test_a_batch_rank_indexes_every_input_along_the_sequence_queries_included():
    """Queries shared across the batch (Q[H, E, P]): B indexes the keys and
    values but not the queries, so it is no batch rank (an outer loop over
    B would re-read Q); H indexes all three and is one. With the queries
    per batch too, B is a batch rank again."""
    text = ("rank B, H, E, F, M, P\ninput Q[H, E, P]: f16\ninput K[B, H, E, M]: f16\ninput V[B, H, F, M]: f16\n"
            "QK[b, h, m, p] = Q[h, e, p] * K[b, h, e, m]\nAV[b, h, f, p] = QK[b, h, m, p] * V[b, h, f, m]\n")
    shapes = dict(B=2, H=2, E=64, F=64, M=4096, P=4096)
    r = roles(ei.parse(text, name="shared-queries"), FUSEMAX, shapes)
    assert (r.key, r.row, r.batch) == ("M", "P", ("H",))
    per_batch = text.replace("input Q[H, E, P]", "input Q[B, H, E, P]").replace("Q[h, e, p]", "Q[b, h, e, p]")
    assert roles(ei.parse(per_batch), FUSEMAX, shapes).batch == ("B", "H")

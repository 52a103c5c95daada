"""Behaviours that the mutation run of `mappers` (docs/benchmarks.md,
"Mutation testing") found untested: a GPU mapping file read and refused
where it is wrong, the GPU shortlist's count of what it considered, the
spatial mapper's axis and keep options, the best point under each
objective, and the name of an automatic mapping."""
import re

import numpy as np
import pytest

import einsum_ir as ei
from einsum_ir import library
from einsum_ir.analysis.fused import recognise
from einsum_ir.shapes import resolve
from hw_models import HardwareError, load_gpu, load_spatial
from mappers.gpu_mapping import GPUMapping, parse_gpu_mapping
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

"""The random design generator (einsum_ir.random_designs).

For a fixed seed, 300 designs (50 per family): each parses and validates,
prints and re-parses to an equal cascade, and executes on standard-normal
inputs at its shapes with finite outputs everywhere (the generator guards
every division a predicate may empty). The features a design claims are
checked against its parsed cascade; together the 300 cover every family and
every feature several times. Partitioned designs must not depend on the tile
size (an independent property of online softmax and chunked states: the
same cascade at M0 = 1 and M0 = the whole length gives the same numbers).
Same seed, same text.
"""
from __future__ import annotations

import collections
import runpy
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import einsum_ir as ei
from einsum_ir.ir import Access, Num, Op, Sym, walk
from einsum_ir.random_designs import FAMILIES, FEATURES, RandomDesign, design_strategy, random_design, random_designs

N, SEED = 300, 2024


@pytest.fixture(scope="module")
def designs() -> list[RandomDesign]:
    return list(random_designs(N, SEED))


@pytest.fixture(scope="module")
def parsed(designs) -> list[tuple[RandomDesign, ei.Cascade]]:
    return [(d, d.cascade()) for d in designs]


def _run(c: ei.Cascade, shapes: dict) -> dict[str, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # np.where evaluates both branches of a guard
        return ei.execute(c, ei.random_inputs(c, shapes, seed=7), shapes)


def test_every_design_round_trips_and_runs_finite(parsed):
    failures = []
    for d, c in parsed:
        try:
            assert ei.parse(str(c)) == c, "print -> parse gives a different cascade"
            out = _run(c, d.shapes)
            assert out, "no outputs"
            for name, arr in out.items():
                assert np.isfinite(arr).all(), f"output {name} has {np.size(arr) - np.isfinite(arr).sum()} " \
                                               "non-finite entries"
        except Exception as e:  # collected, so one run names every failing seed
            failures.append(f"{d.name}: {type(e).__name__}: {e}")
    assert not failures, "\n".join(failures[:10])


def test_every_family_and_feature_is_covered(designs):
    fams = collections.Counter(d.family for d in designs)
    assert fams == {f: N // len(FAMILIES) for f in FAMILIES}
    counts = collections.Counter(f for d in designs for f in d.features)
    rare = {f: counts[f] for f in FEATURES if counts[f] < 3}
    assert not rare, f"features produced fewer than 3 times in {N} designs: {rare}"
    assert set(counts) <= FEATURES


def _ranks(c):
    return {r.name: r for r in c.ranks}


def _reads(c):
    return [n for e in c.einsums for x in [e.expr] + ([e.predicate] if e.predicate is not None else [])
            for n in walk(x) if isinstance(n, Access)]


def _is_div(e, a: str, b: str) -> bool:
    """e is a / b (integer division) of the named variables or symbols."""
    return (isinstance(e, Op) and e.name in ("div", "floordiv")
            and [getattr(x, "name", None) for x in e.args] == [a, b])


def _length(d: RandomDesign) -> int:
    return d.shapes["M"] if "M" in d.shapes else d.shapes["P"]


# feature -> what it means for the parsed cascade (checked independently of the generator's bookkeeping)
CLAIMS = {
    "gqa": lambda d, c: _is_div(_ranks(c)["KH"].definition, "H", "G")
    and any(_is_div(i, "h", "G") for a in _reads(c) for i in a.indices),
    "decode": lambda d, c: "P" not in _ranks(c),
    "self": lambda d, c: str(_ranks(c)["M"].definition) == "P",
    "cross": lambda d, c: {"M", "P"} <= set(_ranks(c)) and not _ranks(c)["M"].definition
    and not _ranks(c)["P"].definition,
    "alias": lambda d, c: any(isinstance(r.definition, Sym) and r.definition.name in _ranks(c) for r in c.ranks),
    "partition": lambda d, c: any(r.part == "outer" for r in c.ranks),
    "ragged-tile": lambda d, c: _length(d) % d.shapes["M0"] != 0,
    "even-tile": lambda d, c: _length(d) % d.shapes["M0"] == 0,
    "iterative": lambda d, c: any(t.iterative for t in c.tensors),
    "last-iterate": lambda d, c: any(isinstance(i, Sym) and i.name == "M1" for a in _reads(c) for i in a.indices),
    "const-index": lambda d, c: "C" in _ranks(c) and any(isinstance(i, Num) for a in _reads(c) for i in a.indices),
    "mask-tensor": lambda d, c: any(t.dtype == "bool" for t in c.inputs),
    "let": lambda d, c: "\nlet " in d.text,
    "two-branches": lambda d, c: {"Q1", "Q2"} <= {t.name for t in c.inputs} and "Q3" not in {t.name for t in c.inputs},
    "three-branches": lambda d, c: {"Q1", "Q2", "Q3"} <= {t.name for t in c.inputs},
    "explicit-reduce": lambda d, c: "sum[" in d.text,
    "min-reduce": lambda d, c: any(e.reduce == "min" for e in c.einsums),
    "lse": lambda d, c: len(c.outputs) == 2,
    "decl": lambda d, c: any(t.dtype == "f32" for t in c.outputs),
    "online": lambda d, c: any(r.part == "outer" for r in c.ranks),
    "two-pass": lambda d, c: not any(t.iterative for t in c.tensors),
    "chunked": lambda d, c: any(r.part == "outer" for r in c.ranks) and "J" in _ranks(c),
    "relative": lambda d, c: str(_ranks(c)["RL"].definition) == "M + P - 1",
}


def test_claimed_features_hold_in_the_cascade(parsed):
    wrong = [f"{d.name}: claims {f}" for d, c in parsed for f, holds in CLAIMS.items()
             if f in d.features and not holds(d, c)]
    assert not wrong, "\n".join(wrong[:10])
    # single-output designs do not claim a second output
    assert all(len(c.outputs) == 1 for d, c in parsed if "lse" not in d.features)


def test_partitioned_designs_do_not_depend_on_the_tile_size(parsed):
    """Online softmax, two-pass and chunked states at one key per tile and at
    one tile for the whole length give the design's own numbers."""
    checked = 0
    for d, c in parsed:
        if "partition" not in d.features or checked >= 24:
            continue
        ref = _run(c, d.shapes)
        for m0 in (1, _length(d)):
            got = _run(c, {**d.shapes, "M0": m0})
            for name in ref:
                np.testing.assert_allclose(got[name], ref[name], rtol=1e-9, atol=1e-12,
                                           err_msg=f"{d.name}: {name} at M0 = {m0}")
        checked += 1
    assert checked == 24


def test_same_seed_same_design():
    a, b = list(random_designs(12, 5)), list(random_designs(12, 5))
    assert [d.text for d in a] == [d.text for d in b] and [d.shapes for d in a] == [d.shapes for d in b]
    assert len({d.text for d in a}) == 12
    for d in a:
        again = random_design(d.seed, d.family)
        assert again == d and again.features == d.features
    drawn = random_design(123)
    assert drawn == random_design(123, drawn.family)
    assert [d.family for d in random_designs(4, 0, families=["online", "alias"])] == \
        ["online", "alias", "online", "alias"]


def test_cascade_is_named_after_family_and_seed():
    d = random_design(3, "linear")
    assert d.cascade().name == "rand-linear-3" == d.name


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="unknown design family 'flash'.*softmax"):
        random_design(0, "flash")


def test_design_strategy_gives_valid_designs():
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(design_strategy(["online", "alias"]))
    def check(d):
        assert d.family in ("online", "alias")
        c = d.cascade()
        assert ei.parse(str(c)) == c

    check()


def test_show_script_prints_a_design(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["show_random_design.py", "17", "online"])
    script = Path(__file__).resolve().parents[2] / "scripts" / "show_random_design.py"
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(script), run_name="__main__")
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert random_design(17, "online").text in out

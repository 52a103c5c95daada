"""A fixed-seed slice of benchmarks/fuzz.py (issue 17, item 8): mutated and
generated designs, mutated presets and hostile command lines, each in a fresh
process with a time limit, end in "accepted" or "clean error" only; and the
fuzzer's own verdicts are checked on planted failures (a non-EinError, a
hang, a crash, a traceback on the command line)."""
from __future__ import annotations

import importlib.util
import os
import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fuzz():
    spec = importlib.util.spec_from_file_location("attnc_fuzz", ROOT / "benchmarks" / "fuzz.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["attnc_fuzz"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_a_fixed_seed_slice_has_no_internal_error_hang_or_crash(fuzz):
    rng = random.Random(17)
    cases = fuzz.design_cases(rng, 100) + fuzz.yaml_cases(rng, 40) + fuzz.cli_cases(rng, 24)
    results = fuzz.run_all(cases, timeout=10.0, workers=2)
    bad = [(c.kind, c.payload, outcome, shown[-800:]) for c, outcome, _, shown in results
           if outcome not in ("accepted", "clean error")]
    assert not bad, bad[:3]
    outcomes = {(c.kind.split(":")[0], outcome) for c, outcome, *_ in results}
    # the slice exercises both sides: valid designs run through every stage, broken ones are refused
    assert {("design", "accepted"), ("design", "clean error"), ("yaml", "clean error"),
            ("cli", "clean error")} <= outcomes


def test_valid_designs_and_presets_are_accepted(fuzz):
    import einsum_ir as ei
    text = ei.library.path("attention-1pass").read_text()
    assert fuzz.run_case(fuzz.Case("design", "t", text), 30)[0] == "accepted"
    preset = (ROOT / "hw_models/presets/gpu/h100.yaml").read_text()
    assert fuzz.run_case(fuzz.Case("yaml:gpu", "t", preset), 30)[0] == "accepted"


def test_the_verdicts_on_planted_failures(fuzz, monkeypatch):
    """The child is forked from this process, so a patched stage is what it runs."""
    import time
    case = fuzz.Case("design", "planted", "irrelevant")
    for stage, want in ((lambda text: {}["missing"], "internal error"),
                        (lambda text: time.sleep(30), "hang"),
                        (lambda text: os.abort(), "crash"),
                        (lambda text: None, "accepted")):
        monkeypatch.setattr(fuzz, "_run_design", stage)
        outcome, seconds, shown = fuzz.run_case(case, timeout=1.0)
        assert outcome == want, (want, shown)
        assert seconds < 20


def test_a_traceback_on_the_command_line_is_an_internal_error(fuzz, monkeypatch):
    import attnc.cli as cli

    def shows_a_traceback(args):
        print("Traceback (most recent call last):\n  ...", file=sys.stderr)
        return 2
    monkeypatch.setattr(cli, "cmd_list", shows_a_traceback)
    assert fuzz.run_case(fuzz.Case("cli", "planted", ["list"]), 10.0)[0] == "internal error"


def test_the_mutations_are_deterministic(fuzz):
    a = [c.payload for c in fuzz.design_cases(random.Random(3), 30)]
    b = [c.payload for c in fuzz.design_cases(random.Random(3), 30)]
    assert a == b and len(set(a)) > 20

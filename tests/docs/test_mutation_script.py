"""The pure parts of scripts/mutation.py (the sample and the interval the
mutation score in docs/benchmarks.md is quoted with); the mutation run itself
is slow and not part of the suite."""
import importlib.util
import math
import tomllib
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "mutation.py"
spec = importlib.util.spec_from_file_location("attnc_mutation_script", SCRIPT)
mutation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mutation)


@pytest.mark.parametrize("k, n", [(0, 10), (3, 10), (9, 10), (10, 10), (57, 80), (80, 80), (1, 1)])
def test_wilson_endpoints_solve_the_score_equation(k, n):
    """Wilson's interval is every p with |k/n - p| <= z sqrt(p (1 - p) / n):
    each endpoint inside (0, 1) solves it with equality, and the observed
    proportion lies inside."""
    z = 1.96
    lo, hi = mutation.wilson(k, n)
    assert 0 <= lo <= k / n <= hi <= 1
    for p in (lo, hi):
        if 1e-12 < p < 1 - 1e-12:
            assert abs(k / n - p) == pytest.approx(z * math.sqrt(p * (1 - p) / n), rel=1e-9)
    assert (lo == 0) == (k == 0) and (hi == 1) == (k == n)


def test_the_sample_is_fixed_by_its_seed_and_drawn_without_replacement():
    names = [f"pkg.mod.x_f__mutmut_{i}" for i in range(500)]
    a = mutation.draw(list(reversed(names)), 60, seed=7)
    assert a == mutation.draw(names, 60, seed=7)              # the input order does not matter
    assert len(set(a)) == 60 and set(a) <= set(names) and a == sorted(a)
    assert a != mutation.draw(names, 60, seed=8)
    assert mutation.draw(names, 0, seed=7) == sorted(names)   # 0: every mutant
    assert mutation.draw(names, 900, seed=7) == sorted(names)


def test_the_mutmut_table_parses_and_mutates_only_the_package():
    cfg = tomllib.loads(mutation.mutmut_config("simulator", ["tests/simulator"], 300))["tool"]["mutmut"]
    assert cfg["source_paths"] == ["simulator"]
    assert "simulator" not in cfg["also_copy"] and {"einsum_ir", "mappers", "codegen"} <= set(cfg["also_copy"])
    assert cfg["pytest_add_cli_args_test_selection"] == ["tests/simulator"]
    assert "--timeout=300" in cfg["pytest_add_cli_args"]


def test_deselected_tests_are_left_out_of_every_mutmut_run():
    cfg = tomllib.loads(mutation.mutmut_config("mappers", ["tests/mappers"], 300,
                                               ["tests/mappers/test_a.py::test_slow"]))["tool"]["mutmut"]
    assert "--deselect=tests/mappers/test_a.py::test_slow" in cfg["pytest_add_cli_args"]
    assert cfg["pytest_add_cli_args_test_selection"] == ["tests/mappers"]


def test_a_recheck_keeps_a_kill_and_replaces_other_verdicts(tmp_path):
    """scripts/mutation_recheck.py merges verdicts: a mutant once killed
    stays killed (another test file may not reach it); others are replaced."""
    spec = importlib.util.spec_from_file_location("attnc_mutation_recheck", SCRIPT.with_name("mutation_recheck.py"))
    recheck = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recheck)
    path = tmp_path / "recheck.json"
    recheck.merge(path, {"a": {"verdict": "killed"}, "b": {"verdict": "survived"}})
    got = recheck.merge(path, {"a": {"verdict": "survived"}, "b": {"verdict": "killed"}, "c": {"verdict": "no tests"}})
    assert {k: v["verdict"] for k, v in got.items()} == {"a": "killed", "b": "killed", "c": "no tests"}
    assert recheck.VERDICT[1] == recheck.VERDICT[3] == "killed" and recheck.VERDICT[0] == "survived"


def test_files_left_unmutated_reach_the_mutmut_table():
    """--do-not-mutate: codegen's run leaves codegen/rtl (cocotb-tested, minutes a test) unmutated."""
    cfg = tomllib.loads(mutation.mutmut_config("codegen", ["tests/codegen"], 300, [],
                                               ["codegen/rtl/*"]))["tool"]["mutmut"]
    assert cfg["do_not_mutate"] == ["codegen/rtl/*"] and cfg["source_paths"] == ["codegen"]
    assert mutation.parse_args(["codegen", "--do-not-mutate", "codegen/rtl/*"]).do_not_mutate == ["codegen/rtl/*"]


def test_einsum_ir_runs_against_the_tests_built_on_it_by_default():
    """docs/benchmarks.md's sixth-session command: einsum_ir's own tests and
    those of codegen (not the RTL), simulator and zoo; the fuzzer unmutated;
    flags add to the defaults, --tests replaces them."""
    tests, deselect, keep = mutation.run_options(mutation.parse_args(["einsum_ir"]))
    assert tests == ["tests/einsum_ir", "tests/codegen", "tests/simulator", "tests/zoo"]
    assert deselect[0] == "tests/codegen/rtl" and len(deselect) == 4 and all("[gna-2d]" in d for d in deselect[1:])
    assert keep == ["einsum_ir/random_designs.py"]
    tests, deselect, keep = mutation.run_options(mutation.parse_args(
        ["einsum_ir", "--tests", "tests/einsum_ir", "--deselect", "x", "--do-not-mutate", "einsum_ir/ops.py"]))
    assert tests == ["tests/einsum_ir"] and deselect[-1] == "x" and keep[-1] == "einsum_ir/ops.py"
    assert mutation.run_options(mutation.parse_args(["simulator"])) == (["tests/simulator"], [], [])

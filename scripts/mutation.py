"""Mutation testing of one attnc package with mutmut 3, on a fixed-seed sample.

A full mutmut run over every mutant of a package, each against the tests that
reach it, takes hours on a small machine; a random sample of the mutants gives
the mutation score with a stated 95% interval in minutes. The run never touches
the working tree: the tree (or a git revision) is copied into a scratch folder
(`.mutation/<package>/`, git-ignored) and mutmut mutates its own copy under
`mutants/` there. `--sample 0` runs every mutant.

    scripts/mutation.sh einsum_ir --sample 80 --rev HEAD

Scoring: killed, timed out and crashed mutants are detected; survivors and
mutants that no selected test reaches ("no tests") are not. The interval is
Wilson's score interval for a binomial proportion (sampling without
replacement makes the true interval a little narrower, so it is conservative).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("einsum_ir", "simulator", "codegen", "mappers")
ALL_PACKAGES = ("einsum_ir", "hw_models", "mappers", "simulator", "codegen", "attnc")
# What a package's run uses unless told otherwise (docs/benchmarks.md says why):
# einsum_ir is checked by the tests of what is built on it too (codegen's
# kernels against the executor, the simulator's counts, the zoo), not the RTL
# (which never calls its analyses); its fuzzer only makes test designs; the
# gna-2d cases (50 to 85 s each) repeat tests every other design runs.
GNA_2D = [f"tests/einsum_ir/{f}[gna-2d]" for f in (
    "test_traversal.py::test_every_library_design_agrees_with_the_simulated_traversal",
    "test_oracle.py::test_executor_agrees_with_the_oracle_on_every_design",
    "test_counts_hoisting.py::test_library_counts_equal_brute_force")]
DEFAULTS = {
    "einsum_ir": {"tests": ["tests/einsum_ir", "tests/codegen", "tests/simulator", "tests/zoo"],
                  "deselect": ["tests/codegen/rtl", *GNA_2D], "do_not_mutate": ["einsum_ir/random_designs.py"]},
}
# mutmut's exit-code vocabulary (mutmut/stats.py), grouped for the score.
DETECTED = {"killed", "timeout", "segfault"}
UNDETECTED = {"survived", "no tests"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("package", choices=PACKAGES)
    p.add_argument("--sample", type=int, default=80, help="mutants drawn at random; 0 runs all (default 80)")
    p.add_argument("--seed", type=int, default=21, help="seed of the draw (default 21)")
    p.add_argument("--rev", help="mutate this git revision instead of the working tree (e.g. HEAD)")
    p.add_argument("--tests", nargs="+", help="test paths to run (default tests/<package>; for einsum_ir also "
                                               "tests/codegen, tests/simulator and tests/zoo)")
    p.add_argument("--deselect", nargs="+", default=[], metavar="NODEID",
                   help="tests (pytest node ids or prefixes) left out of every run, besides the package's "
                        "defaults: a slow test that only repeats what others check, so that the one-off stats "
                        "and clean runs take less")
    p.add_argument("--do-not-mutate", nargs="+", default=[], metavar="GLOB",
                   help="source files left unmutated (mutmut globs relative to the project, e.g. "
                        "'codegen/rtl/*'), besides the package's defaults: a sub-package whose tests are too "
                        "slow for the run")
    p.add_argument("--test-timeout", type=int, default=300,
                   help="pytest-timeout wall seconds per test, a guard against hangs (default 300)")
    p.add_argument("--workdir", type=Path, default=ROOT / ".mutation", help="scratch folder (default .mutation/)")
    p.add_argument("--resume", action="store_true", help="keep earlier results in the scratch folder")
    p.add_argument("--list", action="store_true", help="only generate the mutants and print the sample")
    return p.parse_args(argv)


def copy_tree(dest: Path, rev: str | None) -> None:
    """The project's files, as committed at `rev` or as in the working tree (tracked and untracked,
    minus ignored), so that no import falls back to the editable install's live tree."""
    dest.mkdir(parents=True)
    if rev:
        archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        return
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, names):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def mutmut_config(package: str, tests: list[str], test_timeout: int, deselect: list[str] = (),
                  do_not_mutate: list[str] = ()) -> str:
    """The [tool.mutmut] table for one package: mutate it (but `do_not_mutate`), copy everything else beside it."""
    others = [p for p in ALL_PACKAGES if p != package] + ["benchmarks", "scripts", "docs", "README.md"]
    cfg = {
        "source_paths": [package],
        "also_copy": others,
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:randomly",
                                f"--timeout={test_timeout}", *(f"--deselect={d}" for d in deselect)],
        "pytest_add_cli_args_test_selection": tests,
        "do_not_mutate": list(do_not_mutate),
        # CPU-second limit per mutant = (time of its tests + constant) * multiplier * 2.
        "timeout_multiplier": 3.0,
        "timeout_constant": 5.0,
        "use_git_change_detection": False,
    }
    return "\n[tool.mutmut]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in cfg.items())


def run_options(args: argparse.Namespace) -> tuple[list[str], list[str], list[str]]:
    """(tests, deselected, unmutated): the package's defaults, `--tests`
    replacing its tests, `--deselect` and `--do-not-mutate` adding to them."""
    d = DEFAULTS.get(args.package, {})
    tests = args.tests or d.get("tests") or [f"tests/{args.package}"]
    deselect = list(dict.fromkeys(d.get("deselect", []) + args.deselect))
    keep = list(dict.fromkeys(d.get("do_not_mutate", []) + args.do_not_mutate))
    return tests, deselect, keep


def prepare(args: argparse.Namespace) -> Path:
    """A scratch copy of the project with a mutmut configuration for the package."""
    work = (args.workdir / args.package).resolve()
    if work.exists() and not args.resume:
        shutil.rmtree(work)
    if not work.exists():
        copy_tree(work, args.rev)
    project = work / "pyproject.toml"
    text = project.read_text().split("\n[tool.mutmut]\n")[0]     # a resumed run may change the options
    tests, deselect, keep = run_options(args)
    project.write_text(text + mutmut_config(args.package, tests, args.test_timeout, deselect, keep))
    return work


GENERATE = """
from mutmut.__main__ import copy_src_dir, copy_also_copy_files, setup_source_paths, create_mutants
copy_src_dir(); copy_also_copy_files(); setup_source_paths(); create_mutants(1)
"""


def all_mutants(work: Path) -> dict[str, int | None]:
    """Every mutant mutmut makes of the package, with its recorded exit code (None: not run)."""
    subprocess.run([sys.executable, "-c", GENERATE], cwd=work, check=True, stdout=subprocess.DEVNULL)
    codes: dict[str, int | None] = {}
    for meta in sorted((work / "mutants").rglob("*.py.meta")):
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    return codes


def draw(names: list[str], n: int, seed: int) -> list[str]:
    """A fixed-seed sample without replacement; n == 0 or n >= len means all."""
    names = sorted(names)
    if n <= 0 or n >= len(names):
        return names
    return sorted(random.Random(seed).sample(names, n))


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson's 95% score interval for k successes in n trials."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def status_of(code: int | None) -> str:
    from mutmut.stats import status_by_exit_code

    return status_by_exit_code[code]


def summarise(package: str, population: int, sample: list[str], codes: dict[str, int | None]) -> dict:
    """Counts by status over the sample, and the score with its interval."""
    counts: dict[str, int] = {}
    for name in sample:
        s = status_of(codes.get(name))
        counts[s] = counts.get(s, 0) + 1
    detected = sum(counts.get(s, 0) for s in DETECTED)
    scored = detected + sum(counts.get(s, 0) for s in UNDETECTED)
    lo, hi = wilson(detected, scored)
    return {"package": package, "mutants": population, "sampled": len(sample), "counts": counts,
            "detected": detected, "scored": scored, "score": detected / scored if scored else None,
            "interval95": [lo, hi],
            "undetected": sorted(n for n in sample if status_of(codes.get(n)) in UNDETECTED)}


SHOW = """
import sys
from mutmut.__main__ import find_mutant, get_diff_for_mutant
for name in sys.argv[1:]:
    print("=" * 8, name)
    print(get_diff_for_mutant(name, path=find_mutant(name).path))
"""


def write_report(work: Path, summary: dict) -> None:
    """report.json and the diff of every undetected mutant (survivors.diff) in the scratch folder."""
    (work / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
    with open(work / "survivors.diff", "w") as out:
        if summary["undetected"]:
            subprocess.run([sys.executable, "-c", SHOW, *summary["undetected"]], cwd=work, stdout=out, check=False)


def print_summary(s: dict, work: Path) -> None:
    lo, hi = s["interval95"]
    score = "n/a" if s["score"] is None else f"{100 * s['score']:.1f}% (95% CI {100 * lo:.1f}-{100 * hi:.1f}%)"
    counts = ", ".join(f"{k} {v}" for k, v in sorted(s["counts"].items()))
    print(f"\n{s['package']}: {s['sampled']} of {s['mutants']} mutants: {counts}")
    print(f"score {s['detected']}/{s['scored']} = {score}")
    print(f"report: {work / 'report.json'}; undetected diffs: {work / 'survivors.diff'}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    work = prepare(args)
    codes = all_mutants(work)
    sample = draw(list(codes), args.sample, args.seed)
    print(f"{args.package}: {len(codes)} mutants, {len(sample)} sampled (seed {args.seed})", flush=True)
    if args.list:
        print("\n".join(sample))
        return 0
    todo = sample if args.sample else []          # no names: mutmut runs every mutant
    todo = [n for n in todo if codes.get(n) is None] if args.resume else todo
    if todo or not args.sample:
        mutmut = str(Path(sys.executable).with_name("mutmut"))
        rc = subprocess.run([mutmut, "run", "--max-children", "1", *todo], cwd=work).returncode
        if rc != 0:
            print(f"mutmut run failed (exit {rc}); see the output above", file=sys.stderr)
            return rc
    codes = all_mutants(work)
    summary = summarise(args.package, len(codes), sample, codes)
    write_report(work, summary)
    print_summary(summary, work)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

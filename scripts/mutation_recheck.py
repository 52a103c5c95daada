"""Re-run the undetected mutants of a finished sample against chosen tests.

scripts/mutation.sh leaves, in `.mutation/PACKAGE/`, mutmut's copy of the
project with every mutant of the package behind a trampoline
(`mutants/`), and report.json naming the sampled mutants that no test
detected. This script checks what tests written since (or tests of another
package that mutmut's selection left out) make of them, without a new
mutmut run: it copies the named test files from the working tree into
`mutants/`, runs them once with no mutant active (they must pass on the
mutated revision's code, else the check says so and stops), then once per
mutant with `MUTANT_UNDER_TEST` set, the way mutmut activates a mutant.

    scripts/mutation.sh simulator --sample 60 --rev HEAD          # first
    .venv/bin/python scripts/mutation_recheck.py simulator --tests tests/simulator/test_x.py

Verdicts: killed (pytest exit 1, or 3: an internal error), survived (0),
no tests (5: nothing collected), error (anything else, e.g. a test file that
fails to import). The verdicts go to `recheck.json` beside report.json,
merged with earlier rechecks (a mutant once killed stays killed).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERDICT = {0: "survived", 1: "killed", 3: "killed", 5: "no tests"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("package")
    p.add_argument("--tests", nargs="+", required=True, help="test files or folders (relative to the repository)")
    p.add_argument("--names", nargs="+", help="these mutants (default: the sample's undetected, report.json)")
    p.add_argument("--copy", nargs="*", default=None,
                   help="test files to copy from the working tree first (default: every --tests path that is "
                        "a file; give --copy with no paths to copy nothing)")
    p.add_argument("--timeout", type=int, default=300, help="pytest-timeout seconds per test (default 300)")
    p.add_argument("--workdir", type=Path, default=ROOT / ".mutation", help="scratch folder (default .mutation/)")
    return p.parse_args(argv)


def copy_tests(mutants: Path, paths: list[str]) -> None:
    """The working tree's version of each test file, over the scratch copy's."""
    for rel in paths:
        src = ROOT / rel.split("::")[0]
        if not src.is_file():
            raise SystemExit(f"{rel}: not a file of the working tree")
        dest = mutants / rel.split("::")[0]
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)


def run_tests(mutants: Path, tests: list[str], mutant: str, timeout: int) -> int:
    """pytest's exit code for `tests` with `mutant` active ('' for none)."""
    env = dict(os.environ, TRITON_INTERPRET="1", MUTANT_UNDER_TEST=mutant)
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
           "-p", "no:randomly", f"--timeout={timeout}", *tests]
    return subprocess.run(cmd, cwd=mutants, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode


def merge(path: Path, found: dict[str, dict]) -> dict:
    """Earlier rechecks plus these; a kill is kept, other verdicts are replaced."""
    old = json.loads(path.read_text()) if path.exists() else {}
    for name, v in found.items():
        if old.get(name, {}).get("verdict") != "killed" or v["verdict"] == "killed":
            old[name] = v
    path.write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")
    return old


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    work = (args.workdir / args.package).resolve()
    mutants = work / "mutants"
    if not mutants.is_dir():
        raise SystemExit(f"{mutants}: no mutmut copy; run scripts/mutation.sh {args.package} first")
    names = args.names or json.loads((work / "report.json").read_text())["undetected"]
    copy_tests(mutants, [t for t in args.tests if (ROOT / t.split("::")[0]).is_file()]
               if args.copy is None else args.copy)
    base = run_tests(mutants, args.tests, "", args.timeout)
    if base != 0:
        print(f"the tests fail (pytest exit {base}) with no mutant active, on the mutated revision's code: "
              "fix them or choose others", file=sys.stderr)
        return 2
    found = {}
    for name in names:
        rc = run_tests(mutants, args.tests, name, args.timeout)
        verdict = VERDICT.get(rc, f"error (pytest exit {rc})")
        found[name] = {"verdict": verdict, "tests": args.tests}
        print(f"{verdict:9} {name}", flush=True)
    merge(work / "recheck.json", found)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

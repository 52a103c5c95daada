"""The known survivors of issue 21, written by hand as one-line mutants, each
checked to be killed by the tests that should catch it.

Every mutant is applied to a scratch copy of the project (a git revision, HEAD
by default, exported into a temporary folder), never to the working tree; the
copy's own packages are imported (python -m pytest puts the copy first on
sys.path, ahead of the editable install). A mutant whose text is not found
exactly once is reported as `stale` (the source moved on: update the table).

    .venv/bin/python scripts/mutation_known.py [--rev HEAD] [NAME ...]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Known:
    name: str
    what: str           # the bug the mutant plants
    path: str
    old: str            # must occur exactly once in `path`
    new: str
    tests: tuple[str, ...]


KNOWN = (
    Known("where-clip", "an out-of-range read under a `where` clause clipped instead of refused",
          "einsum_ir/execute.py", "if domain is None or np.any(bad & domain):", "if domain is None:",
          ("tests/einsum_ir/test_execute_bounds.py",)),
    Known("last-iterate", "a recurrence's last-value read counted as no pass (read as a constant)",
          "einsum_ir/analysis/passes.py", 'return None if iterative else ("const", str(index))',
          'return ("const", str(index))', ("tests/einsum_ir/test_traversal.py",)),
    Known("partial-tile", "the padded points past the end of a partial last tile taken as existing",
          "einsum_ir/execute.py", "conds.append(co * self.env[inner] + ci < self.env[r.parent])",
          "conds.append(co * self.env[inner] + ci <= self.env[r.parent])",
          ("tests/einsum_ir/test_execute_reference.py", "tests/einsum_ir/test_oracle.py")),
    Known("memory-bound", "epoch latency below the DRAM time in a memory-bound mapping",
          "simulator/schedule.py", "return Schedule(max(epochs * per, dram_cycles), epochs",
          "return Schedule(epochs * per, epochs", ("tests/simulator/test_spatial_invariants.py",)),
    Known("overlapped-dram", "overlapped latency without the DRAM time",
          "simulator/schedule.py", "return Schedule(max([dram_cycles] + list(busy.values())), 1, 0.0,",
          "return Schedule(max([0.0] + list(busy.values())), 1, 0.0,",
          ("tests/simulator/test_spatial_invariants.py",)),
    Known("spill-reread", "a spilled tensor re-read once instead of once per reading Einsum",
          "simulator/traffic.py", 'acc["dram_read"] += spilt * len(far)', 'acc["dram_read"] += spilt',
          ("tests/simulator/test_spatial_invariants.py",)),
    Known("split-kv-rows", "a key tile or split in which a row sees no key: exp(-inf - -inf) = NaN",
          "codegen/triton.py",
          """self.out(f"g_new = tl.where({gcode} == float(\\"-inf\\"), 0.0, {gcode})")""",
          """self.out(f"g_new = {gcode}")""",
          ("tests/codegen/test_mutation_survivors.py", "tests/codegen/test_triton.py")),
    Known("split-kv-empty", "split-KV combine: a row that sees no key in any split gives NaN",
          "codegen/triton.py",
          """self.out(f"{self.ident('gf', g)} = tl.where({gcode} == float(\\"-inf\\"), 0.0, {gcode})")""",
          """self.out(f"{self.ident('gf', g)} = {gcode}")""",
          ("tests/codegen/test_mutation_survivors.py", "tests/codegen/test_triton.py")),
)


def export(rev: str, dest: Path) -> None:
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def check(k: Known, tree: Path) -> str:
    """killed / SURVIVED / stale, with the mutant applied only for the duration of its tests."""
    path = tree / k.path
    text = path.read_text()
    if text.count(k.old) != 1:
        return "stale"
    tests = [t for t in k.tests if (tree / t.split("::")[0]).exists()]
    try:
        path.write_text(text.replace(k.old, k.new))
        env = dict(os.environ, TRITON_INTERPRET="1")
        rc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                             "-p", "no:xdist", *tests], cwd=tree, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    finally:
        path.write_text(text)
    return {0: "SURVIVED", 1: "killed"}.get(rc, f"error (pytest exit {rc})")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rev", default="HEAD")
    p.add_argument("names", nargs="*", help="only these (default all)")
    args = p.parse_args(argv)
    chosen = [k for k in KNOWN if not args.names or k.name in args.names]
    bad = 0
    with tempfile.TemporaryDirectory(prefix="attnc-known-mutants-") as tmp:
        export(args.rev, Path(tmp))
        for k in chosen:
            verdict = check(k, Path(tmp))
            bad += verdict != "killed"
            print(f"{verdict:9} {k.name:16} {k.path}: {k.what}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

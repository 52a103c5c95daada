"""The usage example `attnc compile` writes beside a kernel runs for any
design, a library one or a user's own file, on the CPU interpreter at small
shapes with the reference check, and carries the design's strings only as
Python literals (a design name with a newline runs no code)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import einsum_ir as ei
from attnc.gpu import _small_shapes, usage_example

ROOT = Path(__file__).resolve().parents[2]


def _run(script: Path, interpret: bool):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("TRITON_INTERPRET", None)
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.parametrize("which", ["library", "own file"])
def test_the_example_runs_and_checks_against_the_reference(tmp_path, which):
    if which == "library":
        c = ei.load("sliding-window")
        shapes = dict(B=1, H=2, P=4096, E=64, F=64, W=128)
    else:
        c = ei.parse((Path(__file__).parents[1] / "codegen" / "designs" / "diff_attention.ein").read_text(),
                     name="temp-causal\nimport os; os.system('touch PWNED')")
        shapes = dict(B=1, H=2, M=2048, P=2048, E=32, F=32)
    script = tmp_path / "example.py"
    script.write_text(usage_example(c, None, shapes, "kernel.py"))
    compile(script.read_text(), str(script), "exec")
    r = _run(script, interpret=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "relative error" in r.stdout and "against the reference" in r.stdout
    err = float(r.stdout.split("relative error ")[1].split()[0])
    assert err < 1e-4
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()


def test_without_a_gpu_or_the_interpreter_it_says_what_to_do(tmp_path):
    script = tmp_path / "example.py"
    script.write_text(usage_example(ei.load("cab-self"), None, dict(B=1, H=1, P=64, E=16, F=16), "k.py"))
    r = _run(script, interpret=False)
    if "cuda" in r.stdout:                                   # a GPU machine: nothing to say
        return
    assert r.returncode != 0 and "TRITON_INTERPRET=1" in r.stderr and "Traceback" not in r.stderr


def test_small_shapes_keep_tile_sizes_and_bring_lengths_down():
    c = ei.load("gla-chunkwise")
    small = _small_shapes(c, dict(B=4, H=16, E=128, F=128, M=8192, M0=64))
    assert small["M0"] == 64 and small["M"] == 64 and small["E"] == 64

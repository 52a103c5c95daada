"""Build and run a generated module under Icarus with cocotb, each
parameter set in its own build directory (Icarus reuses a build whose
parameters alone changed)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

HERE = Path(__file__).parent


def have_iverilog() -> bool:
    return shutil.which("iverilog") is not None


def run_cocotb(tmp: Path, sources: dict[str, str], top: str, test_module: str, spec: dict,
               parameters: dict | None = None) -> dict:
    """Write `sources` (file name -> text), build `top`, run `test_module`
    with the vector `spec`; the bench's result JSON (a failure raises)."""
    from cocotb_tools.runner import get_results, get_runner
    tmp.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in sources.items():
        (tmp / name).write_text(text)
        paths.append(tmp / name)
    (tmp / "vectors.json").write_text(json.dumps(spec))
    shutil.copy(HERE / f"{test_module}.py", tmp / f"{test_module}.py")   # the simulator imports it from test_dir
    runner = get_runner("icarus")
    runner.build(sources=paths, hdl_toplevel=top, build_dir=tmp / "build", parameters=parameters or {},
                 timescale=("1ns", "1ps"), always=True, log_file=tmp / "build.log")
    env = {"ATTNC_VECTORS": str(tmp / "vectors.json"), "ATTNC_RESULT": str(tmp / "result.json")}
    xml = runner.test(hdl_toplevel=top, test_module=test_module, test_dir=tmp, build_dir=tmp / "build",
                      extra_env=env, log_file=tmp / "sim.log", results_xml=str(tmp / "results.xml"))
    tests, fails = get_results(xml)
    result = json.loads((tmp / "result.json").read_text()) if (tmp / "result.json").exists() else {}
    assert tests >= 1 and fails == 0, (f"cocotb: {fails} of {tests} tests failed: {result.get('mismatches')}\n"
                                       + (tmp / "sim.log").read_text()[-3000:])
    return result

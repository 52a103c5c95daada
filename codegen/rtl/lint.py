"""`verilator --lint-only -Wall` on generated files, with the waivers of
lint.vlt beside this module (each with its reason)."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CONFIG = Path(__file__).with_name("lint.vlt")


def have_verilator() -> bool:
    return shutil.which("verilator") is not None


def lint(files: dict[str, str], parameters: dict[str, int] | None = None, timeout: float = 120,
         tops: list[str] | None = None) -> dict[str, list[str]]:
    """File name -> Verilator's warnings and errors for that file as the top
    module (its module name is the file's), the other files on the search
    path; `parameters` override the top's (a small array lints fast);
    `tops`: only these files as the top (default all)."""
    out: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="attnc_lint_") as d:
        for name, text in files.items():
            (Path(d) / name).write_text(text)
        for name in (tops if tops is not None else files):
            top = Path(name).stem
            params = [f"-G{k}={v}" for k, v in (parameters or {}).items() if re.search(rf"\b{k}\b\s*=", files[name])]
            cmd = ["verilator", "--lint-only", "-Wall", str(CONFIG), "-y", d, "--top-module", top, *params,
                   str(Path(d) / name)]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            out[name] = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("%")]
            if r.returncode != 0 and not out[name]:
                out[name] = [f"verilator exited with {r.returncode}"]
    return out

"""Every shell command and Python snippet in README.md and docs/*.md runs and
succeeds, at the shapes written or at a reduction the doc states in a
`docs-test` marker; output a doc shows (`$ attnc ...` blocks) is what the
command prints. See scripts/doc_commands.py for the rules."""
import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("doc_commands", ROOT / "scripts" / "doc_commands.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["doc_commands"] = mod
    spec.loader.exec_module(mod)
    return mod


dc = _load()
COMMANDS = dc.all_commands()


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if c.run], ids=lambda c: f"{c.file}:{c.line}")
def test_documented_command_succeeds(cmd, tmp_path):
    assert dc.problems(cmd, dc.workdir(tmp_path)) == []


def test_what_is_not_run_as_written_says_why():
    for c in COMMANDS:
        if c.run != c.text:
            assert c.why, (c.file, c.line)
    # the README's own commands all run, every one of them as written
    readme = [c for c in COMMANDS if c.file == "README.md" and c.text.startswith("attnc ")]
    assert len(readme) >= 13 and all(c.run == c.text for c in readme)


def test_readme_python_block_runs():
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})


def test_a_broken_command_fails_the_docs_test(tmp_path):
    """Break documented commands on purpose: a design renamed in the README,
    a figure changed in docs/gpu.md's shown output, a marker naming nothing."""
    cwd = dc.workdir(tmp_path)
    cmd = next(c for c in COMMANDS if c.file == "README.md" and c.text.startswith("attnc print "))
    assert dc.problems(cmd, cwd) == []
    cmd.run = cmd.run.replace("attention-1pass", "attention-1passs")
    found = dc.problems(cmd, cwd)
    assert len(found) == 1 and "exited with status 2" in found[0] and "attention-1passs" in found[0]

    shown = next(c for c in COMMANDS if c.output)
    assert dc.problems(shown, cwd) == []
    figure = next(ln for ln in shown.output if re.search(r"\d", ln))
    shown.output = [re.sub(r"\d", lambda m: str((int(m.group()) + 1) % 10), figure, count=1)]
    assert len(dc.problems(shown, cwd)) == 1

    doc = tmp_path / "broken.md"
    doc.write_text('<!-- docs-test: skip "attnc nothing-here" (x) -->\n\n    attnc list\n')
    with pytest.raises(ValueError, match="matches no command"):
        dc.commands(doc)


def test_update_takes_the_figures_from_the_output(tmp_path):
    """The shown output is produced by the script: a stale figure is replaced
    by the printed one, elisions and words kept."""
    cmd = dc.Command("x.md", 1, "attnc list", "attnc list")
    cmd.output = ["design    description", "alibi   ALiBi: no ... embeddings"]
    code, actual = dc.execute(cmd, dc.workdir(tmp_path))
    assert dc.missing_lines(cmd, actual) == []
    cmd.output = ["attention-1pass  The 1-pass cascade 99 ..."]
    new = dc.updated_output(cmd, "attention-1pass   The 1-pass cascade 17 of FuseMax")
    assert new == ["attention-1pass   The 1-pass cascade 17 ..."]

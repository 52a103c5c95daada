"""Every shell command in README.md and docs/*.md, found, run and checked.

A command is a line of a code block (indented or fenced) that starts with
`attnc`, `$ attnc`, `.venv/bin/...`, `python`, `scripts/` or an environment
assignment before one of these (`TRITON_INTERPRET=1 python ...`); a trailing
`\\` continues it, a trailing `# comment` is not part of it. Inline code spans
are references to commands, not commands, and are not run.

A command runs as written unless its file says otherwise, explicitly, in an
HTML comment anywhere in the file (each must match a command, or the docs
test fails):

    <!-- docs-test: run "ORIGINAL TEXT" as "REDUCED TEXT" (why) -->
    <!-- docs-test: skip "TEXT" (why) -->

A command holding a placeholder (`...`, `my-map.yaml` with no such file) is a
template; `my-design.ein` is provided (a copy of attention-1pass). A block whose
command is written `$ attnc ...` shows its output below it: every output line
shown must appear in the actual output (`...` elides a part of a line), so a
quoted number cannot drift from what the command prints.

    python scripts/doc_commands.py            # run them all, report
    python scripts/doc_commands.py --update   # rewrite the shown outputs from the actual ones
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STARTS = re.compile(r"^(\$ )?((\w+=\S+ )*)(attnc|\.venv/bin/\S+|python3?|scripts/\S+)( |$)")
MARKER = re.compile(r'<!--\s*docs-test:\s*(run|skip)\s+"([^"]+)"(?:\s+as\s+"([^"]+)")?\s*(\(.*?\))?\s*-->')
PLACEHOLDER = re.compile(r"(^|\s)\.\.\.(\s|$)|\bmy-(map|hw)\.yaml\b")
FIXTURES = {"my-design.ein": "einsum_ir/library/attention-1pass.ein"}
# Markers for docs whose owners have not yet written them into the file
# (the same syntax; they belong in the doc itself).
MARKERS_ELSEWHERE: dict[str, list[str]] = {}     # markers for files that cannot carry them


@dataclass
class Command:
    file: str
    line: int
    text: str                         # as written (continuations joined)
    run: str | None = None            # what the test runs (the text, or its marked reduction); None: not run
    why: str = ""                     # why it is reduced, skipped or a template
    output: list = field(default_factory=list)   # output lines the doc shows (for `$ ` commands)
    span: tuple = ()                  # (first, last) line index of the shown output in the file


def doc_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md"] + sorted((root / "docs").glob("*.md"))


def _blocks(lines: list[str]):
    """(first line index, [lines]) of each code block, indentation removed."""
    i, prev_blank = 0, True
    while i < len(lines):
        if lines[i].lstrip().startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].lstrip().startswith("```"):
                j += 1
            yield i + 1, lines[i + 1:j]
            i, prev_blank = j + 1, False
        elif prev_blank and lines[i].startswith("    ") and lines[i].strip():
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                j += 1
            while j > i and not lines[j - 1].strip():
                j -= 1
            yield i, [ln[4:] for ln in lines[i:j]]
            i, prev_blank = j, False
        else:
            prev_blank = not lines[i].strip()
            i += 1


def _strip_comment(text: str) -> str:
    """The command without a trailing `# comment` (a # inside quotes stays)."""
    try:
        lex = shlex.shlex(text, posix=True, punctuation_chars=False)
        lex.whitespace_split, lex.commenters = True, "#"
        return shlex.join(list(lex)) if "#" in text else " ".join(text.split())
    except ValueError:
        return " ".join(text.split())


def commands(path: Path) -> list[Command]:
    """The commands of one file, with its markers applied."""
    lines = path.read_text().splitlines()
    found = []
    for start, block in _blocks(lines):
        k = 0
        while k < len(block):
            raw = block[k]
            if not STARTS.match(raw.strip()):
                k += 1
                continue
            first = k
            while raw.rstrip().endswith("\\") and k + 1 < len(block):
                k += 1
                raw = raw.rstrip()[:-1] + " " + block[k].strip()
            cmd = Command(_name(path), start + first + 1, _strip_comment(raw))
            if raw.startswith("$ "):
                cmd.text = cmd.text.removeprefix("$ ")
                end = k + 1
                while end < len(block) and not block[end].startswith("$ "):
                    end += 1
                cmd.output = [ln for ln in block[k + 1:end] if ln.strip()]
                cmd.span = (start + k + 1, start + end)
                k = end - 1
            found.append(cmd)
            k += 1
    extra = MARKERS_ELSEWHERE.get(_name(path), [])
    _apply_markers(path, "\n".join(lines + extra), found)
    return found


def _name(path: Path) -> str:
    return str(path.resolve().relative_to(ROOT)) if path.resolve().is_relative_to(ROOT) else path.name


def _apply_markers(path: Path, text: str, found: list[Command]) -> None:
    for c in found:
        c.run = c.text
        if PLACEHOLDER.search(c.text):
            c.run, c.why = None, "template (holds a placeholder)"
    for m in MARKER.finditer(text):
        kind, what, repl, why = m.group(1), m.group(2), m.group(3), (m.group(4) or "()")[1:-1]
        hits = [c for c in found if what in c.text]
        if not hits:
            raise ValueError(f"{path.name}: docs-test marker {what!r} matches no command")
        if kind == "run" and repl is None:
            raise ValueError(f"{path.name}: `docs-test: run` needs `as \"...\"`: {m.group(0)}")
        for c in hits:
            c.run = None if kind == "skip" else c.text.replace(what, repl)
            c.why = (f"reduced: {why}" if kind == "run" else f"skipped: {why}")


def all_commands(root: Path = ROOT) -> list[Command]:
    return [c for p in doc_files(root) for c in commands(p)]


def workdir(tmp: Path) -> Path:
    """A directory that looks like the repository root (its entries linked)
    with the fixtures the docs name; what commands write lands here."""
    for entry in ROOT.iterdir():
        if entry.name not in (".git", ".venv") and not (tmp / entry.name).exists():
            (tmp / entry.name).symlink_to(entry)
    for name, src in FIXTURES.items():
        (tmp / name).write_text((ROOT / src).read_text())
    return tmp


def execute(cmd: Command, cwd: Path) -> tuple[int, str]:
    """Run a command in `cwd`: `attnc` in this process (fast), anything else
    in a shell with the virtualenv's bin first on PATH."""
    argv = shlex.split(cmd.run)
    env_vars = {}
    while argv and re.fullmatch(r"\w+=\S*", argv[0]):
        k, v = argv.pop(0).split("=", 1)
        env_vars[k] = v
    if argv and argv[0] in ("attnc", ".venv/bin/attnc"):
        return _attnc(argv[1:], cwd, env_vars)
    env = dict(os.environ, **env_vars, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    argv = [sys.executable if a in ("python", "python3", ".venv/bin/python") and i == 0 else a
            for i, a in enumerate(argv)]
    p = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    return p.returncode, p.stdout + p.stderr


def _attnc(argv: list[str], cwd: Path, env_vars: dict) -> tuple[int, str]:
    from attnc.cli import main
    old_cwd, old_env = os.getcwd(), {k: os.environ.get(k) for k in env_vars}
    out = io.StringIO()
    try:
        os.chdir(cwd)
        os.environ.update(env_vars)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                code = main(argv)
            except SystemExit as e:            # argparse: --help, usage errors
                code = e.code if isinstance(e.code, int) else 2
    finally:
        os.chdir(old_cwd)
        for k, v in old_env.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    return code, out.getvalue()


NUMBER = r"\d[\d,]*(?:\.\d+)?"


def _pattern(shown: str, wild: bool) -> re.Pattern:
    """A regex for one shown output line: whitespace runs match any run,
    `...` any text; numbers literal, or (wild) any number, captured."""
    segs = []
    for seg in shown.strip().split("..."):
        parts = re.split(f"({NUMBER})", seg)
        rx = "".join((f"({NUMBER})" if wild else re.escape(p)) if i % 2 else _words(p)
                     for i, p in enumerate(parts))
        segs.append(f"({rx})")
    return re.compile(r"^\s*" + ".*?".join(segs))


def _words(text: str) -> str:
    """`text` as a regex in which each run of whitespace matches any run."""
    return "".join(r"\s+" if w.isspace() else re.escape(w) for w in re.split(r"(\s+)", text) if w)


def problems(cmd: Command, cwd: Path) -> list[str]:
    """What is wrong with a documented command run in `cwd`: a nonzero exit
    status (with the output's last lines), or shown output lines it did not print."""
    code, actual = execute(cmd, cwd)
    if code != 0:
        tail = "\n".join(actual.splitlines()[-8:])
        return [f"{cmd.file}:{cmd.line}: `{cmd.run}` exited with status {code}:\n{tail}"]
    return [f"{cmd.file}:{cmd.line}: `{cmd.run}` did not print {m.strip()!r} "
            f"(rerun `python scripts/doc_commands.py --update` if the new figure is right)"
            for m in missing_lines(cmd, actual)]


def missing_lines(cmd: Command, actual: str) -> list[str]:
    """The shown output lines that no actual output line matches."""
    got = actual.splitlines()
    return [s for s in cmd.output if not any(_pattern(s, False).search(g) for g in got)]


def updated_output(cmd: Command, actual: str) -> list[str]:
    """The shown lines with their numbers (and spacing) taken from the actual
    output; a line whose words no longer appear is kept and reported."""
    out = []
    for s in cmd.output:
        rx = _pattern(s, True)
        hit = next((m for m in map(rx.search, actual.splitlines()) if m), None)
        if hit is None:
            print(f"{cmd.file}:{cmd.line}: no output line like {s.strip()!r}", file=sys.stderr)
            out.append(s)
            continue
        indent = s[:len(s) - len(s.lstrip())]
        counts = [len(re.findall(NUMBER, seg)) for seg in s.strip().split("...")]
        firsts = [1 + sum(1 + n for n in counts[:i]) for i in range(len(counts))]
        pieces = [hit.group(g) for g in firsts]
        seps = re.findall(r"\s*\.\.\.\s*", s.strip()) + [""]
        out.append(indent + "".join(p.strip() + sep for p, sep in zip(pieces, seps)))
    return out


def update(cmds: list[Command], cwd: Path) -> None:
    """Rewrite each shown output block from what its command prints now."""
    by_file: dict[str, list[Command]] = {}
    for c in cmds:
        if c.output and c.run:
            by_file.setdefault(c.file, []).append(c)
    for name, cs in by_file.items():
        path = ROOT / name
        lines = path.read_text().splitlines()
        for c in sorted(cs, key=lambda c: -c.span[0]):
            code, actual = execute(c, cwd)
            if code != 0:
                raise SystemExit(f"{c.file}:{c.line}: `{c.run}` failed ({code}):\n{actual}")
            new = updated_output(c, actual)
            indent = "    " if lines[c.span[0]].startswith("    ") else ""
            lines[c.span[0]:c.span[1]] = [indent + ln if ln else ln for ln in new]
        path.write_text("\n".join(lines) + "\n")
        print(f"updated {name}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--update", action="store_true", help="rewrite the shown outputs from the actual ones")
    args = ap.parse_args()
    import tempfile
    cmds = all_commands()
    with tempfile.TemporaryDirectory() as tmp:
        if args.update:
            update(cmds, workdir(Path(tmp)))
            return 0
        bad = 0
        for i, c in enumerate(cmds):
            if c.run is None:
                print(f"{c.file}:{c.line}: {c.why}: {c.text}")
                continue
            (Path(tmp) / str(i)).mkdir()
            found = problems(c, workdir(Path(tmp) / str(i)))
            bad += bool(found)
            print(f"{c.file}:{c.line}: {'FAILED' if found else 'ok'} ({c.why or 'as written'}): {c.run}"
                  + "".join(f"\n    {m}" for m in found))
        return 1 if bad else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())

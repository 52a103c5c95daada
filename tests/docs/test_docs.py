"""The examples in the docs are executed: every ```ein block parses and
validates, every ```python block runs."""
import re
from pathlib import Path

import pytest

import einsum_ir as ei

DOCS = Path(__file__).resolve().parents[2] / "docs"


def blocks(lang):
    for path in sorted(DOCS.glob("*.md")):
        for i, m in enumerate(re.finditer(rf"```{lang}\n(.*?)```", path.read_text(), re.S)):
            yield pytest.param(m.group(1), id=f"{path.name}-{i}")


@pytest.mark.parametrize("text", list(blocks("ein")))
def test_ein_blocks_parse(text):
    c = ei.parse(text, file="doc.ein")
    assert ei.parse(str(c)) == c


@pytest.mark.parametrize("code", list(blocks("python")))
def test_python_blocks_run(code):
    exec(compile(code, "doc.py", "exec"), {})


def test_builder_example_equals_the_library_design():
    code = next(b.values[0] for b in blocks("python") if "CascadeBuilder" in b.values[0])
    scope = {}
    exec(code, scope)
    assert scope["cascade"] == ei.library.load("attention-3pass")

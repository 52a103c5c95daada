"""docs/zoo.md's generated blocks are what scripts/build_zoo_doc.py produces
now: a change to a design or to the analysis must be followed by
`python scripts/build_zoo_doc.py --plot`."""
import importlib.util
from pathlib import Path

import einsum_ir as ei

ROOT = Path(__file__).resolve().parents[2]


def builder():
    spec = importlib.util.spec_from_file_location("build_zoo_doc", ROOT / "scripts" / "build_zoo_doc.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_zoo_doc_is_up_to_date():
    b = builder()
    text = b.DOC.read_text()
    assert b.fill(text, b.generated_blocks()) == text, "docs/zoo.md is stale: run scripts/build_zoo_doc.py"


def test_every_library_design_has_a_section_and_a_summary_row():
    text = (ROOT / "docs" / "zoo.md").read_text()
    for name in ei.library.names():
        assert f"\n### {name}\n" in text
        assert f"| [{name}](#{name}) |" in text
    assert (ROOT / "docs" / "zoo-growth.png").stat().st_size > 10_000

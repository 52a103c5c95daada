"""docs/flex.md covers the whole corpus: each variant of tests/flex/corpus
has its row in the generated tables (scripts/flex_table.py writes them), and
the designs beyond FlexAttention that the script maps exist."""
import importlib.util
from pathlib import Path

from tests.flex.flex_mods import CORPUS

ROOT = Path(__file__).resolve().parents[2]


def script():
    spec = importlib.util.spec_from_file_location("flex_table", ROOT / "scripts" / "flex_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def block(text, key):
    return text.split(f"<!-- BEGIN generated:{key} -->")[1].split(f"<!-- END generated:{key} -->")[0]


def test_every_variant_has_a_row_in_each_generated_table():
    text = (ROOT / "docs" / "flex.md").read_text()
    names = sorted(p.stem for p in CORPUS.glob("*.ein"))
    for key in ("variants", "corpus"):
        rows = [ln.split("|")[1].strip().strip("`") for ln in block(text, key).splitlines() if ln.startswith("| `")]
        assert rows == names, key


def test_the_variants_table_is_what_the_script_writes_now():
    """The cheap block (from the files alone) is checked exactly; the costed
    ones take minutes to recompute and are checked by row only (above)."""
    s = script()
    text = (ROOT / "docs" / "flex.md").read_text()
    rows = [s.variant_row(n) for n in sorted(p.stem for p in CORPUS.glob("*.ein"))]
    want = s.table(s.VARIANT_HEADER, rows)
    assert block(text, "variants").strip() == want.strip()


def test_every_design_beyond_flexattention_exists():
    import einsum_ir as ei
    s = script()
    for name in s.BEYOND_SHAPES:
        path = s.BEYOND / f"{name}.ein"
        c = ei.load(str(path)) if path.exists() else ei.load(name)
        assert c.einsums

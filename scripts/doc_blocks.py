"""The generated blocks of a doc page: text between `<!-- BEGIN generated:NAME -->`
and `<!-- END generated:NAME -->` is rewritten by a script, the prose around it
is kept (scripts/build_zoo_doc.py, scripts/flex_table.py)."""
from __future__ import annotations

import re
from pathlib import Path


def fill(text: str, blocks: dict[str, str], doc: Path | str = "the page") -> str:
    """`text` with each named block's content replaced; a block without its
    markers is an error naming the page."""
    for key, content in blocks.items():
        pattern = re.compile(rf"(<!-- BEGIN generated:{key} -->\n).*?(<!-- END generated:{key} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{doc} lacks the markers of the generated block {key!r}")
        text = pattern.sub(lambda m: m.group(1) + content + "\n" + m.group(2), text)
    return text

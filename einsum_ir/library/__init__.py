"""The library of attention designs shipped with attnc, one `.ein` file each;
a design is named by its file stem (`attention-1pass`)."""
from __future__ import annotations

import difflib
from pathlib import Path

from ..errors import EinError

_DIR = Path(__file__).parent


def names() -> list[str]:
    return sorted(p.stem for p in _DIR.glob("*.ein"))


def path(name: str) -> Path:
    p = _DIR / f"{name}.ein"
    if not p.exists():
        hint = difflib.get_close_matches(name, names(), n=1)
        raise EinError(f"no design named {name!r} in the library"
                       + (f" (did you mean {hint[0]}?)" if hint else "; `attnc list` shows them"))
    return p


def load(name: str):
    from ..parser import parse_file
    return parse_file(path(name))


def summary(name: str) -> str:
    """The first sentence of the design's header comment."""
    from ..parser import header_comment
    return first_sentence(header_comment(path(name).read_text()))


def first_sentence(doc: str) -> str:
    text = " ".join(doc.split())
    end = text.find(". ")
    return text if end < 0 else text[:end + 1]

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
    """First line of the design's header comment."""
    for line in path(name).read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""

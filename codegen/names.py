"""Identifiers for the design's names in generated code, and text that is
safe in a comment.

A design may name a rank like one of the kernel's own variables (`I` -> `i`,
the key-tile loop's index), a tensor like a parameter (`Q_s0`), or a rank
that lower-cases to a keyword (`IF`). Every name from the design therefore
becomes `<kind><number>_<name>`: the kind and number make it unique whatever
the name, the name is there for the reader, and the kernel's header lists
them all. Generator-internal names never have that form.
"""
from __future__ import annotations

KINDS = {"t": "tensor", "r": "row value", "v": "tile value", "c": "coordinate", "sym": "symbol",
         "gs": "normaliser", "gr": "running normaliser", "gl": "normaliser x log2(e)", "gf": "final normaliser", "st": "state",
         "stn": "next state", "acc": "accumulator", "cy": "scan carry"}


class Identifiers:
    def __init__(self):
        self.table: dict[tuple[str, str], str] = {}
        self.counts: dict[str, int] = {}

    def __call__(self, kind: str, name: str) -> str:
        key = (kind, name)
        if key not in self.table:
            assert kind in KINDS, kind
            self.table[key] = f"{kind}{self.counts.get(kind, 0)}_{name}"
            self.counts[kind] = self.counts.get(kind, 0) + 1
        return self.table[key]

    def header(self) -> str:
        return "# Names: " + ", ".join(f"{v} = {KINDS[k]} {n}" for (k, n), v in self.table.items()) + "."


def comment_text(text: str) -> str:
    """`text` safe inside a `#` comment: one line, control characters and
    anything a Python tokenizer might take for a line break escaped."""
    return "".join(ch if ch.isprintable() and ch not in "\u2028\u2029\x85" else ch.encode("unicode_escape").decode()
                   for ch in str(text))


class GeneratedCodeError(RuntimeError):
    """attnc wrote a kernel that is not valid Python: a bug in attnc, never
    the design's fault."""


def check_source(text: str, design: str) -> None:
    """Compile the generated text before anyone imports it: invalid code is
    reported as attnc's bug, not returned as a kernel."""
    try:
        compile(text, f"<attnc kernel for {comment_text(design)}>", "exec")
    except SyntaxError as err:
        raise GeneratedCodeError(f"attnc generated invalid Python for {comment_text(design)} (line {err.lineno}: "
                                 f"{err.msg}); this is a bug in attnc, please report it with the design") from None


__all__ = ["GeneratedCodeError", "Identifiers", "check_source", "comment_text"]

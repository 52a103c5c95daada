"""The project's one error family: every problem a user can cause is reported
with where it is (file, line, column) and what was expected, never as an
internal traceback."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Loc:
    """A position in a source text (1-based line and column)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{printable(self.file)}:{self.line}:{self.column}"


def printable(text: str) -> str:
    """`text` with control characters escaped (`\\n`, `\\x1b`): a file name
    with a newline or a terminal escape in it stays one harmless line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


_CONTEXT = 60     # characters shown either side of the column of an error in a long line


class EinError(Exception):
    """Base of all errors attnc reports to a user."""

    def __init__(self, message: str, loc: Loc | None = None, source: str | None = None):
        self.message = message
        self.loc = loc
        self.source = source
        super().__init__(self.render())

    @property
    def line(self) -> int | None:
        return self.loc.line if self.loc else None

    @property
    def column(self) -> int | None:
        return self.loc.column if self.loc else None

    def render(self) -> str:
        if self.loc is None:
            return f"error: {self.message}"
        text = f"{self.loc}: error: {self.message}"
        if self.source is not None:
            # Lines as the parser counts them: only \n ends one (not \f, \v, ...
            # as in str.splitlines); tabs expanded alike in the line and the caret.
            lines = self.source.split("\n")
            if 0 < self.loc.line <= len(lines):
                src = lines[self.loc.line - 1].removesuffix("\r")
                col = self.loc.column - 1
                if len(src) > 2 * _CONTEXT:        # a long line: the part around the column
                    lo = max(0, min(col - _CONTEXT, len(src) - 2 * _CONTEXT))
                    src = ("..." if lo else "") + src[lo:lo + 2 * _CONTEXT] + ("..." if lo + 2 * _CONTEXT < len(src) else "")
                    col = col - lo + (3 if lo else 0)
                pad = len(src[:col].expandtabs()) + max(0, col - len(src))
                text += f"\n  {src.expandtabs()}\n  {' ' * pad}^"
        return text


class ParseError(EinError):
    """The text is not valid `.ein` syntax."""


class ValidationError(EinError):
    """The cascade is syntactically valid but means nothing (undefined tensor, rank mismatch, ...)."""


class ShapeError(EinError):
    """Shapes or input arrays given at run or analysis time do not fit the cascade."""


class ExecutionError(EinError):
    """The reference executor could not evaluate an Einsum (e.g. an index out of range)."""


class ZeroDivisorError(ShapeError, ExecutionError):
    """A divisor is 0 at the shapes given (`m % W` with W = 0): a shape error
    found before execution, raised as an execution error too, since running
    the cascade is what it prevents."""

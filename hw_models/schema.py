"""YAML read with positions, and a small schema check, so that a typo in a
hardware or mapping file is an error at its line and column ("did you mean")
instead of a silent default or a wrong number."""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from einsum_ir.errors import EinError, Loc


class HardwareError(EinError):
    """A hardware description or mapping that cannot be used, and where."""


@dataclass(frozen=True)
class Node:
    """A YAML value with where it was written; `path` names it for messages."""

    value: object              # dict[str, Node] | list[Node] | scalar
    loc: Loc
    path: str
    source: str

    def error(self, message: str) -> HardwareError:
        return HardwareError(f"{self.path}: {message}", self.loc, self.source)

    # -- typed access ---------------------------------------------------------
    def mapping(self, required=(), optional=()) -> dict[str, "Node"]:
        if not isinstance(self.value, dict):
            raise self.error(f"expected a mapping with keys {', '.join(required) or '...'}, got "
                             f"{_kind(self.value)}")
        known = set(required) | set(optional)
        for k, v in self.value.items():
            if known and k not in known:
                hint = difflib.get_close_matches(k, sorted(known), n=1)
                raise v.key_error(k, hint, sorted(known))
        missing = [k for k in required if k not in self.value]
        if missing:
            raise self.error(f"missing {', '.join(missing)}")
        return self.value

    def key_error(self, key, hint, known) -> HardwareError:
        where = self.path.rsplit(".", 1)[0]
        return HardwareError(f"{where}: unknown key {key!r}"
                             + (f" (did you mean {hint[0]!r}?)" if hint else f"; expected one of {', '.join(known)}"),
                             self.key_loc, self.source)

    @property
    def key_loc(self) -> Loc:
        return getattr(self, "_key_loc", self.loc)

    def items(self):
        return self.mapping().items()

    def list(self) -> list["Node"]:
        if not isinstance(self.value, list):
            raise self.error(f"expected a list, got {_kind(self.value)}")
        return self.value

    def number(self, unit: str = "", positive=True, allow_zero=False) -> float:
        """A number, optionally written with a binary unit: `16 MiB`, `400 GiB/s`."""
        v = self.value
        if isinstance(v, str):
            v = _with_unit(v, unit, self)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.error(f"expected a number{' in ' + unit if unit else ''}, got {_kind(v)}")
        try:
            v = float(v)
        except OverflowError:
            v = math.inf
        if not math.isfinite(v):
            raise self.error(f"expected a finite number, got {self.value}")
        if positive and (v < 0 or (v == 0 and not allow_zero)):
            raise self.error(f"must be {'non-negative' if allow_zero else 'positive'}, got {v}")
        if v != 0 and not PLAUSIBLE[0] <= abs(v) <= PLAUSIBLE[1]:
            raise self.error(f"{self.value} is not a plausible value for a hardware quantity (its magnitude "
                             f"must lie in [{PLAUSIBLE[0]:g}, {PLAUSIBLE[1]:g}] in base units)")
        return v

    def integer(self, positive=True) -> int:
        v = self.number(positive=positive)
        if v != int(v):
            raise self.error(f"expected a whole number, got {self.value}")
        if abs(v) > 2 ** 53:
            raise self.error(f"{self.value} is too large for a count (the limit is 2**53)")
        return int(v)

    def string(self) -> str:
        if not isinstance(self.value, str):
            raise self.error(f"expected a name, got {_kind(self.value)}")
        return self.value


PLAUSIBLE = (1e-24, 1e24)
"""Magnitudes a hardware number may take in base units (Hz, bytes, pJ, um^2,
FLOP/s): 1e-300 MHz or 1e300 bytes would only make a model's arithmetic
underflow or overflow into 0, inf or NaN ("predicted nan ms")."""

_UNITS = {"": 1, "B": 1, "KiB": 2 ** 10, "MiB": 2 ** 20, "GiB": 2 ** 30, "TiB": 2 ** 40,
          "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "K": 1e3, "M": 1e6, "G": 1e9,
          "Hz": 1, "kHz": 1e3, "MHz": 1e6, "GHz": 1e9}


def _with_unit(text: str, unit: str, node: Node) -> float:
    m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([A-Za-z]*)(/s)?\s*", text)
    if not m:
        raise node.error(f"expected a number{' in ' + unit if unit else ''}, got {text!r}")
    try:
        x = float(m.group(1))
    except ValueError:
        raise node.error(f"{m.group(1)!r} is not a number") from None
    if m.group(2) not in _UNITS:
        raise node.error(f"unknown unit {m.group(2)!r} (use e.g. {', '.join(['KiB', 'MiB', 'GiB', 'MHz'])})")
    return x * _UNITS[m.group(2)]


def _kind(v) -> str:
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    return repr(v)


MAX_YAML_BYTES = 1 << 20
"""Largest hardware or mapping file read (1 MiB; presets are a few KB)."""
MAX_YAML_NODES = 100_000
"""Most values a file may hold once its aliases are expanded: an alias of an
alias of ... (a "billion laughs" file) multiplies a few lines into billions."""
MAX_YAML_DEPTH = 64
"""Deepest nesting of mappings and lists (presets nest 4 deep)."""


def load(text: str, file: str) -> Node:
    """Parse YAML text into Nodes that remember their line and column. Safe
    loading only (no Python objects); size, nesting and alias expansion are
    bounded, and a value that contains itself is refused."""
    if len(text) > MAX_YAML_BYTES:
        raise HardwareError(f"the file is larger than {MAX_YAML_BYTES} bytes", Loc(file, 1, 1))
    _flow_depth_ok(text, file)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        loc = Loc(file, mark.line + 1, mark.column + 1) if mark else Loc(file, 1, 1)
        raise HardwareError(f"not valid YAML: {getattr(e, 'problem', e)}", loc, text) from None
    except RecursionError:
        raise HardwareError(f"nested too deeply (the limit is {MAX_YAML_DEPTH} levels)", Loc(file, 1, 1)) from None
    if root is None:
        raise HardwareError("the file is empty", Loc(file, 1, 1), text)
    _check_graph(root, file, text)
    return _convert(root, "", file, text)


def _flow_depth_ok(text: str, file: str) -> None:
    """Refuse `[[[[...` or `{{{{...` nested past MAX_YAML_DEPTH before PyYAML
    sees it: its scanner takes time quadratic in the nesting (5000 levels ran
    for seconds) and its composer recurses once per level. Brackets inside
    quotes and comments do not count."""
    for n, ln in enumerate(text.split("\n"), 1):           # block nesting: by indentation
        body = ln.lstrip(" \t")
        indent = len(ln) - len(body)
        while body[:2] in ("- ", "? ", ": "):
            indent, body = indent + 2, body[2:].lstrip(" ")
        if indent > 4 * MAX_YAML_DEPTH:
            raise HardwareError(f"indented too deeply ({indent} columns; nesting is limited to {MAX_YAML_DEPTH} "
                                "levels)", Loc(file, n, 1), text)
    depth, quote, line, col = 0, None, 1, 0
    comment = False
    for ch in text:
        col += 1
        if ch == "\n":
            line, col, comment = line + 1, 0, False
            continue
        if comment:
            continue
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            comment = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise HardwareError(f"nested too deeply (more than {MAX_YAML_DEPTH} levels)", Loc(file, line, col),
                                    text)
        elif ch in "]}":
            depth = max(0, depth - 1)


def _check_graph(root, file: str, text: str) -> None:
    """Walk the composed YAML (aliases followed) without recursion: refuse a
    value that contains itself, nesting deeper than MAX_YAML_DEPTH, and more
    than MAX_YAML_NODES values in all."""
    def where(n):
        return Loc(file, n.start_mark.line + 1, n.start_mark.column + 1)
    count, path = 0, set()
    stack = [(root, 1, False)]
    while stack:
        node, depth, leaving = stack.pop()
        if leaving:
            path.discard(id(node))
            continue
        count += 1
        if count > MAX_YAML_NODES:
            raise HardwareError(f"the file expands to more than {MAX_YAML_NODES} values (aliases of "
                                "aliases multiply them)", where(node), text)
        if depth > MAX_YAML_DEPTH:
            raise HardwareError(f"nested too deeply (more than {MAX_YAML_DEPTH} levels)", where(node), text)
        if not isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            continue
        if id(node) in path:
            raise HardwareError("this value contains itself (an alias to an enclosing anchor)", where(node), text)
        path.add(id(node))
        stack.append((node, depth, True))
        kids = [x for kv in node.value for x in kv] if isinstance(node, yaml.MappingNode) else node.value
        stack.extend((k, depth + 1, False) for k in kids)


def load_file(path) -> Node:
    from einsum_ir.parser import read_source
    return load(read_source(path, MAX_YAML_BYTES, HardwareError), str(path))


def load_named(name_or_path, directory: Path, what: str, plural: str) -> Node:
    """A YAML file by path, or by the name of a file in `directory` (a preset);
    an unknown name is an error with a did-you-mean or the list."""
    p = Path(str(name_or_path))
    if p.suffix in (".yaml", ".yml") or p.exists():
        return load_file(p)
    names = sorted(q.stem for q in Path(directory).glob("*.yaml"))
    if str(name_or_path) in names:
        return load_file(Path(directory) / f"{name_or_path}.yaml")
    hint = difflib.get_close_matches(str(name_or_path), names, n=1)
    raise HardwareError(f"no {what} {str(name_or_path)!r}"
                        + (f" (did you mean {hint[0]!r}?)" if hint else f"; {plural}: {', '.join(names)}"))


def _convert(node, path: str, file: str, text: str) -> Node:
    loc = Loc(file, node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else None
            if not isinstance(key, str):
                raise HardwareError(f"{path or 'top level'}: keys must be names, got {key!r}",
                                    Loc(file, k.start_mark.line + 1, k.start_mark.column + 1), text)
            if key in out:
                raise HardwareError(f"{path + '.' if path else ''}{key} is given twice",
                                    Loc(file, k.start_mark.line + 1, k.start_mark.column + 1), text)
            child = _convert(v, f"{path}.{key}" if path else key, file, text)
            object.__setattr__(child, "_key_loc", Loc(file, k.start_mark.line + 1, k.start_mark.column + 1))
            out[key] = child
        return Node(out, loc, path or "top level", text)
    if isinstance(node, yaml.SequenceNode):
        return Node([_convert(v, f"{path}[{i}]", file, text) for i, v in enumerate(node.value)],
                    loc, path, text)
    try:
        value = yaml.SafeLoader("").construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, OverflowError) as e:
        raise HardwareError(f"{path or 'top level'}: cannot read this value: {getattr(e, 'problem', None) or e}",
                            loc, text) from None
    return Node(value, loc, path, text)

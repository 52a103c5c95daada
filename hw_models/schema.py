"""YAML read with positions, and a small schema check, so that a typo in a
hardware or mapping file is an error at its line and column ("did you mean")
instead of a silent default or a wrong number."""
from __future__ import annotations

import difflib
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
        if positive and (v < 0 or (v == 0 and not allow_zero)):
            raise self.error(f"must be {'non-negative' if allow_zero else 'positive'}, got {v}")
        return float(v)

    def integer(self, positive=True) -> int:
        v = self.number(positive=positive)
        if v != int(v):
            raise self.error(f"expected a whole number, got {self.value}")
        return int(v)

    def string(self) -> str:
        if not isinstance(self.value, str):
            raise self.error(f"expected a name, got {_kind(self.value)}")
        return self.value


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


def load(text: str, file: str) -> Node:
    """Parse YAML text into Nodes that remember their line and column."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        loc = Loc(file, mark.line + 1, mark.column + 1) if mark else Loc(file, 1, 1)
        raise HardwareError(f"not valid YAML: {getattr(e, 'problem', e)}", loc, text) from None
    if root is None:
        raise HardwareError("the file is empty", Loc(file, 1, 1), text)
    return _convert(root, "", file, text)


def load_file(path) -> Node:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise HardwareError(f"cannot read {path}: {e.strerror}") from None
    return load(text, str(path))


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
            key = yaml.safe_load(yaml.serialize(k)) if not isinstance(k, yaml.ScalarNode) else k.value
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
    value = yaml.safe_load(yaml.serialize(node))
    return Node(value, loc, path, text)

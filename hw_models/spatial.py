"""Spatial-array accelerators as data: PE arrays that each support a set of
operations at a cost, a global buffer, DRAM, a clock and an area per part.
A preset is a YAML file (hw_models/presets/*.yaml); `load_spatial` checks it
completely before any object exists."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from math import prod
from pathlib import Path
from types import MappingProxyType

from einsum_ir.ops import KIND_UNITS

from .schema import HardwareError, Node, load, load_named

PRESETS = Path(__file__).parent / "presets"
ACCOUNTINGS = ("physical", "evaluation")     # simulator.energy: the rules each names

# The operation kinds of einsum_ir.analysis.counts.KINDS, which a unit may support.
OP_KINDS = tuple(KIND_UNITS)


@dataclass(frozen=True)
class OpCost:
    """What one operation costs a PE: `cycles` in sequence, `energy_pj`.
    An operation the PE has no unit for is written as a sum of others
    (`exp: {as: {mac: 6}}`) and costs their sum."""

    cycles: int
    energy_pj: float
    composed_of: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class RegisterFile:
    read_pj: float       # per word
    write_pj: float
    words: int | None = None   # depth, where the source states it


@dataclass(frozen=True)
class ComputeUnit:
    name: str
    shape: tuple[int, ...]             # (rows, columns) of a 2D array, (n,) of a 1D array
    ops: Mapping[str, OpCost]
    register_file: RegisterFile
    area_um2_per_pe: float

    @property
    def pes(self) -> int:
        return prod(self.shape)

    @property
    def area_um2(self) -> float:
        return self.pes * self.area_um2_per_pe

    def missing(self, kinds) -> list[str]:
        """The operation kinds in `kinds` this unit cannot perform."""
        return [k for k in kinds if k not in self.ops]

    def cycles_per_point(self, ops: Mapping[str, int], pipelined: bool = False) -> int:
        """PE cycles for one point doing `ops` (kind -> count). In sequence
        the costs add; `pipelined`, the kinds use different stages of the PE
        (an add feeding an exp unit), so a point issues every max(...) cycles."""
        missing = self.missing(ops)
        if missing:
            raise HardwareError(f"unit {self.name} cannot perform {', '.join(missing)}")
        costs = [self.ops[k].cycles * n for k, n in ops.items() if n]
        if not costs:
            return 0
        return max(costs) if pipelined else sum(costs)

    def energy_per_point_pj(self, ops: Mapping[str, int]) -> float:
        return sum(self.ops[k].energy_pj * n for k, n in ops.items())


@dataclass(frozen=True)
class Buffer:
    """An on-chip SRAM accessed a row at a time: energy is per row touched."""

    name: str
    capacity_bytes: int
    row_bytes: int
    read_pj_per_row: float
    write_pj_per_row: float
    area_um2: float


@dataclass(frozen=True)
class DRAM:
    bandwidth_bytes_per_s: float
    pj_per_bit: float


@dataclass(frozen=True)
class SpatialArray:
    name: str
    doc: str
    clock_hz: float
    word_bytes: int
    units: Mapping[str, ComputeUnit]
    buffer: Buffer
    dram: DRAM
    staging: RegisterFile | None = None     # one register file between the arrays (FuseMax), if any
    accounting: str = "physical"            # energy rules by default: physical or evaluation (docs/spatial.md)

    def unit(self, name: str) -> ComputeUnit:
        if name not in self.units:
            raise HardwareError(f"{self.name} has no unit {name!r}; its units are {', '.join(self.units)}")
        return self.units[name]

    @property
    def area_um2(self) -> float:
        return sum(u.area_um2 for u in self.units.values()) + self.buffer.area_um2

    @property
    def dram_bytes_per_cycle(self) -> float:
        return self.dram.bandwidth_bytes_per_s / self.clock_hz

    def with_changes(self, **changes) -> "SpatialArray":
        from dataclasses import replace
        return replace(self, **changes)


# ------------------------------------------------------------------ loading

def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def load_spatial(name_or_path) -> SpatialArray:
    """A preset name (`fusemax`, `flat`) or a path to a YAML description."""
    return from_node(load_named(name_or_path, PRESETS, "hardware preset", "presets"))


def parse_spatial(text: str, file: str = "<hw>") -> SpatialArray:
    return from_node(load(text, file))


def from_node(root: Node) -> SpatialArray:
    top = root.mapping(required=("name", "clock", "word_bytes", "units", "global_buffer", "dram"),
                       optional=("doc", "staging_register_file", "accounting"))
    units = {}
    for uname, u in top["units"].items():
        units[uname] = _unit(uname, u)
    if not units:
        raise top["units"].error("at least one compute unit is needed")
    gb = top["global_buffer"].mapping(required=("capacity", "row_bits", "read_pj_per_row", "write_pj_per_row",
                                                "area_um2"))
    row_bits = gb["row_bits"].integer()
    if row_bits % 8:
        raise gb["row_bits"].error(f"a row of {row_bits} bits is not a whole number of bytes")
    word_bytes = top["word_bytes"].integer()
    buffer = Buffer("global_buffer", int(gb["capacity"].number("bytes")), row_bits // 8,
                    gb["read_pj_per_row"].number(), gb["write_pj_per_row"].number(), gb["area_um2"].number())
    if buffer.row_bytes % word_bytes:
        raise gb["row_bits"].error(f"a row of {row_bits} bits does not hold whole {word_bytes}-byte words")
    if buffer.capacity_bytes < buffer.row_bytes:
        raise gb["capacity"].error(f"{buffer.capacity_bytes} bytes is less than one row ({buffer.row_bytes} bytes)")
    d = top["dram"].mapping(required=("bandwidth", "pj_per_bit"))
    staging = _register_file(top["staging_register_file"]) if "staging_register_file" in top else None
    accounting = top["accounting"].string() if "accounting" in top else "physical"
    if accounting not in ACCOUNTINGS:
        raise top["accounting"].error(f"unknown accounting {accounting!r}; expected one of {', '.join(ACCOUNTINGS)}")
    return SpatialArray(
        staging=staging, accounting=accounting,
        name=top["name"].string(), doc=top["doc"].string() if "doc" in top else "",
        clock_hz=top["clock"].number("Hz"), word_bytes=word_bytes,
        units=MappingProxyType(units), buffer=buffer,
        dram=DRAM(d["bandwidth"].number("bytes/s"), d["pj_per_bit"].number()))


def _unit(name: str, node: Node) -> ComputeUnit:
    u = node.mapping(required=("shape", "ops", "register_file", "area_um2_per_pe"))
    shape = tuple(s.integer() for s in u["shape"].list())
    if len(shape) not in (1, 2):
        raise u["shape"].error(f"a PE array is 1D or 2D, got {len(shape)} dimensions")
    direct, composed = {}, {}
    for kind, spec in u["ops"].items():
        if kind not in OP_KINDS:
            import difflib
            hint = difflib.get_close_matches(kind, OP_KINDS, n=1)
            raise spec.key_error(kind, hint, list(OP_KINDS))
        s = spec.mapping(optional=("cycles", "energy_pj", "as"))
        if "as" in s:
            if "cycles" in s or "energy_pj" in s:
                raise spec.error("give either `as` (a sum of other operations) or cycles and energy_pj, not both")
            composed[kind] = (s["as"], [(k, v.integer()) for k, v in s["as"].items()])
        else:
            spec.mapping(required=("cycles", "energy_pj"))
            direct[kind] = OpCost(s["cycles"].integer(), s["energy_pj"].number(allow_zero=True))
    ops = dict(direct)
    for kind, (where, parts) in composed.items():
        for k, _ in parts:
            if k not in direct:
                raise where.error(f"{kind} is composed of {k}, which unit {name} does not perform directly")
        ops[kind] = OpCost(sum(direct[k].cycles * n for k, n in parts),
                           sum(direct[k].energy_pj * n for k, n in parts), tuple(parts))
    return ComputeUnit(name, shape, MappingProxyType(ops), _register_file(u["register_file"]),
                       u["area_um2_per_pe"].number())


def _register_file(node: Node) -> RegisterFile:
    rf = node.mapping(required=("read_pj", "write_pj"), optional=("words",))
    return RegisterFile(rf["read_pj"].number(allow_zero=True), rf["write_pj"].number(allow_zero=True),
                        rf["words"].integer() if "words" in rf else None)

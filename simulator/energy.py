"""Pass 5 of the spatial model: energy = action counts x energy per action,
no leakage, under one of two accountings (docs/spatial.md):

- `physical`: every access charged: each PE's register-file reads and
  writes, the staging register file between two arrays, every operation;
- `evaluation`: FuseMax's evaluation's rules, its two known slips kept as
  stated options: the arrays' PE register files are charged per PE (the
  count over all PEs divided by their number, as if the array had one PE),
  and a mapping's `uncharged_in_evaluation` operation kinds are not charged
  (+Cascade's exp energy, dropped there by a misspelt key).

The same counts (the earlier passes') are priced by both; only these rules
differ. Components: mac, other_ops, register_files, buffer_read,
buffer_write, dram."""
from __future__ import annotations

from dataclasses import dataclass, field

from hw_models.spatial import SpatialArray

COMPONENTS = ("mac", "other_ops", "register_files", "buffer_read", "buffer_write", "dram")


@dataclass(frozen=True)
class Accounting:
    name: str
    pe_register_files_per_pe: bool      # the slip: a PE array's register-file count divided by its PEs
    honour_uncharged: bool              # the slip: the mapping's uncharged_in_evaluation kinds cost nothing
    doc: str = ""


ACCOUNTINGS = {
    "physical": Accounting("physical", False, False, "every register-file access and every operation charged"),
    "evaluation": Accounting("evaluation", True, True, "FuseMax's evaluation: PE register files per PE, the "
                                                       "mapping's uncharged operations dropped"),
}


def accounting(name: str) -> Accounting:
    if name not in ACCOUNTINGS:
        raise ValueError(f"unknown accounting {name!r}; expected one of {', '.join(ACCOUNTINGS)}")
    return ACCOUNTINGS[name]


@dataclass(frozen=True)
class Energy:
    accounting: str
    by_component: dict                  # component -> pJ
    by_einsum: dict = field(default_factory=dict)   # Einsum -> component -> pJ
    by_tensor: dict = field(default_factory=dict)   # tensor -> component -> pJ

    @property
    def total_pj(self) -> float:
        return sum(self.by_component.values())


def op_energy(unit, counts: dict, uncharged=frozenset()) -> tuple[float, float]:
    """(MAC pJ, other operations' pJ): a composed operation (exp as 6 MACs)
    costs its parts, and its MAC parts are MAC energy."""
    mac = other = 0.0
    for kind, count in counts.items():
        if kind in uncharged:
            continue
        op = unit.ops[kind]
        for part, k in (op.composed_of or ((kind, 1),)):
            pj = count * k * unit.ops[part].energy_pj
            if part == "mac":
                mac += pj
            else:
                other += pj
    return mac, other


def einsum_energy(ec, hw: SpatialArray, acct: Accounting, uncharged) -> dict:
    unit = hw.unit(ec.unit)
    mac, other = op_energy(unit, ec.ops, uncharged if acct.honour_uncharged else frozenset())
    rf = unit.register_file
    regs = ec.rf_reads * rf.read_pj + ec.rf_writes * rf.write_pj
    return {"mac": mac, "other_ops": other,
            "register_files": regs / unit.pes if acct.pe_register_files_per_pe else regs}


def tensor_energy(tc, hw: SpatialArray) -> dict:
    buf, word = hw.buffer, hw.word_bytes
    staging = 0.0
    if hw.staging is not None:
        staging = (tc.staging_read_bytes * hw.staging.read_pj + tc.staging_write_bytes * hw.staging.write_pj) / word
    return {"buffer_read": tc.buffer_read_bytes / buf.row_bytes * buf.read_pj_per_row,
            "buffer_write": tc.buffer_write_bytes / buf.row_bytes * buf.write_pj_per_row,
            "dram": (tc.dram_read_bytes + tc.dram_write_bytes) * 8 * hw.dram.pj_per_bit,
            "register_files": staging}


def energy(hw: SpatialArray, costs, tensors, acct: Accounting, uncharged=frozenset()) -> Energy:
    by_einsum = {ec.name: einsum_energy(ec, hw, acct, uncharged) for ec in costs}
    by_tensor = {tc.name: tensor_energy(tc, hw) for tc in tensors}
    total = {k: 0.0 for k in COMPONENTS}
    for part in list(by_einsum.values()) + list(by_tensor.values()):
        for k, v in part.items():
            total[k] += v
    return Energy(acct.name, total, by_einsum, by_tensor)

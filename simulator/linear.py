"""The linear layers around attention, for end-to-end figures: a GEMM on the
2D array takes the longer of its compulsory traffic at DRAM bandwidth and its
MACs at one per PE per cycle (a well-mapped GEMM is bound by one of the two).

Energy, counted by the same rules as attention's Einsums: MACs; the PE
register files (two operands and the accumulator read, one write per MAC),
charged in full under the physical accounting and per PE under the
evaluation's; the buffer: each operand row read once per block of the other
operand along the array (rows x inner x ceil(cols / C) + inner x cols x
ceil(rows / R) words, about 2/256 per MAC on a 256 x 256 array) and each
output written once; compulsory DRAM traffic."""
from __future__ import annotations

from dataclasses import dataclass, field
from math import ceil

from hw_models.spatial import SpatialArray


@dataclass(frozen=True)
class GemmCost:
    name: str
    rows: int
    inner: int
    cols: int
    latency_cycles: float
    dram_bytes: float
    energies: dict = field(default_factory=dict)     # accounting -> component -> pJ

    @property
    def macs(self) -> int:
        return self.rows * self.inner * self.cols

    def energy_pj(self, accounting: str = "physical") -> float:
        return sum(self.energies[accounting].values())


def gemm(name: str, rows: int, inner: int, cols: int, hw: SpatialArray, unit: str = "pe2d") -> GemmCost:
    u = hw.unit(unit)
    word, buf = hw.word_bytes, hw.buffer
    r_axis, c_axis = (u.shape + (1,))[:2]
    dram = (rows * inner + inner * cols + rows * cols) * word
    macs = rows * inner * cols
    cycles = max(dram / hw.dram_bytes_per_cycle, macs / u.pes)
    operand_words = rows * inner * ceil(cols / c_axis) + inner * cols * ceil(rows / r_axis)
    common = {"mac": macs * u.ops["mac"].energy_pj, "other_ops": 0.0,
              "buffer_read": operand_words * word / buf.row_bytes * buf.read_pj_per_row,
              "buffer_write": rows * cols * word / buf.row_bytes * buf.write_pj_per_row,
              "dram": dram * 8 * hw.dram.pj_per_bit}
    rf = macs * (3 * u.register_file.read_pj + u.register_file.write_pj)
    energies = {"physical": {**common, "register_files": rf}, "evaluation": {**common, "register_files": rf / u.pes}}
    return GemmCost(name, rows, inner, cols, cycles, dram, energies)


def encoder_linear_layers(B: int, P: int, H: int, E: int, D: int, S: int, hw: SpatialArray) -> list[GemmCost]:
    """The six linear layers of one encoder layer (GEMM rows = B * P tokens):
    Q, K, V projections D -> H*E, the output projection H*E -> D, and the
    feed-forward network D -> S -> D."""
    n = B * P
    return [gemm("Q projection", n, D, H * E, hw), gemm("K projection", n, D, H * E, hw),
            gemm("V projection", n, D, H * E, hw), gemm("output projection", n, H * E, D, hw),
            gemm("FFN up", n, D, S, hw), gemm("FFN down", n, S, D, hw)]

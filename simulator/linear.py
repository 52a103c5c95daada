"""The linear layers around attention, for end-to-end figures: a GEMM on the
2D array takes the longer of its compulsory traffic at DRAM bandwidth and its
MACs at one per PE per cycle (a well-mapped GEMM is bound by one of the two).
Energy: MACs with their register-file accesses (two operands and the
accumulator read, one write, as attention's Einsums are charged), the
operands' DRAM traffic, and each operand through the global buffer once
(filled and read)."""
from __future__ import annotations

from dataclasses import dataclass

from hw_models.spatial import SpatialArray


@dataclass(frozen=True)
class GemmCost:
    name: str
    rows: int
    inner: int
    cols: int
    latency_cycles: float
    dram_bytes: float
    energy_pj: float

    @property
    def macs(self) -> int:
        return self.rows * self.inner * self.cols


def gemm(name: str, rows: int, inner: int, cols: int, hw: SpatialArray, unit: str = "pe2d") -> GemmCost:
    u = hw.unit(unit)
    word = hw.word_bytes
    dram = (rows * inner + inner * cols + rows * cols) * word
    macs = rows * inner * cols
    cycles = max(dram / hw.dram_bytes_per_cycle, macs / u.pes)
    rows_moved = dram / hw.buffer.row_bytes
    rf = u.register_file
    energy = (macs * (u.ops["mac"].energy_pj + 3 * rf.read_pj + rf.write_pj) + dram * 8 * hw.dram.pj_per_bit
              + rows_moved * (hw.buffer.read_pj_per_row + hw.buffer.write_pj_per_row))
    return GemmCost(name, rows, inner, cols, cycles, dram, energy)


def encoder_linear_layers(B: int, P: int, H: int, E: int, D: int, S: int, hw: SpatialArray) -> list[GemmCost]:
    """The six linear layers of one encoder layer (GEMM rows = B * P tokens):
    Q, K, V projections D -> H*E, the output projection H*E -> D, and the
    feed-forward network D -> S -> D."""
    n = B * P
    return [gemm("Q projection", n, D, H * E, hw), gemm("K projection", n, D, H * E, hw),
            gemm("V projection", n, D, H * E, hw), gemm("output projection", n, H * E, D, hw),
            gemm("FFN up", n, D, S, hw), gemm("FFN down", n, S, D, hw)]

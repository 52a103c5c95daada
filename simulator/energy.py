"""Pass 5 of the spatial model: energy = action counts x energy per action
(operations, register-file accesses, buffer rows, DRAM bits); no leakage."""
from __future__ import annotations

from hw_models.spatial import SpatialArray


def energy(hw: SpatialArray, costs, tensors, dram_bytes) -> dict:
    """pJ by component: compute, register_file, buffer, dram."""
    buf = hw.buffer
    return {
        "compute": sum(ec.compute_pj for ec in costs),
        "register_file": sum(ec.register_pj for ec in costs),
        "buffer": sum(t.buffer_read_bytes / buf.row_bytes * buf.read_pj_per_row
                      + t.buffer_write_bytes / buf.row_bytes * buf.write_pj_per_row for t in tensors),
        "dram": dram_bytes * 8 * hw.dram.pj_per_bit,
    }

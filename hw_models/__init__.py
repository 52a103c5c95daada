"""Hardware descriptions, as validated YAML presets: spatial arrays
(hw_models.spatial). GPUs follow in the GPU-model issue."""
from .schema import HardwareError
from .spatial import (OP_KINDS, DRAM, Buffer, ComputeUnit, OpCost, RegisterFile, SpatialArray, load_spatial,
                      parse_spatial, preset_names)

__all__ = ["DRAM", "OP_KINDS", "Buffer", "ComputeUnit", "HardwareError", "OpCost", "RegisterFile",
           "SpatialArray", "load_spatial", "parse_spatial", "preset_names"]

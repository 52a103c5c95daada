"""Hardware descriptions, as validated YAML presets: spatial arrays
(hw_models.spatial) and GPUs (hw_models.gpu)."""
from .gpu import GPU, gpu_names, load_gpu, parse_gpu
from .schema import HardwareError
from .spatial import (OP_KINDS, DRAM, Buffer, ComputeUnit, OpCost, RegisterFile, SpatialArray, load_spatial,
                      parse_spatial, preset_names)

__all__ = ["GPU", "gpu_names", "load_gpu", "parse_gpu", "DRAM", "OP_KINDS", "Buffer", "ComputeUnit", "HardwareError", "OpCost", "RegisterFile",
           "SpatialArray", "load_spatial", "parse_spatial", "preset_names"]

"""Hardware descriptions: spatial arrays and GPUs, as validated YAML presets.
Not built yet: see the spatial-array and GPU-model issues."""

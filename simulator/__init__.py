"""Cost models: analytical, event-level and GPU. Not built yet: see the
spatial-array and GPU-model issues."""

"""Mappings of cascades onto hardware, as data (mappers/mappings/*.yaml):
tiling, the loop nest, spatial axes, unit binding, buffer use and the overlap
rule. See docs/spatial.md. Searches over the space come with the GPU model."""
from .mapping import Leaf, Mapping, load_mapping, mapping_names, parse_mapping

__all__ = ["Leaf", "Mapping", "load_mapping", "mapping_names", "parse_mapping"]

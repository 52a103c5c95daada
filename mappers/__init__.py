"""The mapping space (tiling, loop order, spatial binding, fusion, unit
binding) and the searches over it. Not built yet: see the spatial-array issue."""

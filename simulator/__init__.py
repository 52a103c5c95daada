"""Cost models: the analytical spatial-array model (simulator.analytical),
its tile-level event simulation (simulator.events) and the linear layers
(simulator.linear). The GPU model follows in its issue."""

"""The benchmark scripts' GPU-free parts: sweeps, flop counts, memory
estimates, and a clean refusal where there is no GPU."""

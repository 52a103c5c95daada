"""Code generation: Triton kernels and Verilog RTL. Not built yet: see the
Triton code-generation issue."""

"""Tests of codegen: generated Triton kernels run by Triton's CPU interpreter."""

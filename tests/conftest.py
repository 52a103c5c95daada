"""Test tiers by resource: everything here runs on a CPU. Triton's
interpreter must be chosen before triton is first imported."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

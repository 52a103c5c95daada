"""Test tiers by resource: everything here runs on a CPU. Triton's
interpreter must be chosen before triton is first imported."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

# Generated kernels go to a temporary cache, never the user's home.
if not os.environ.get("ATTNC_CACHE"):
    import tempfile

    os.environ["ATTNC_CACHE"] = tempfile.mkdtemp(prefix="attnc-test-cache-")

#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite on all cores.
# Triton kernels run in its CPU interpreter (TRITON_INTERPRET=1, set before
# triton is imported); no test may be skipped for a missing dependency.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export TRITON_INTERPRET=1
exec .venv/bin/python -m pytest -n auto -q "$@"

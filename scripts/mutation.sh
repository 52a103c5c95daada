#!/usr/bin/env bash
# Mutation testing of one package (einsum_ir, simulator, codegen, mappers) with
# mutmut on a fixed-seed sample of its mutants: scripts/mutation.sh PACKAGE
# [--sample N] [--seed S] [--rev REV] (see scripts/mutation.py --help).
# Slow, so not in CI; runs at the lowest CPU priority, one process at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! .venv/bin/python -c "import mutmut, pytest_timeout" 2>/dev/null; then
    .venv/bin/python -m pip install -q -e ".[mutation]"
fi
export TRITON_INTERPRET=1
exec nice -n 19 .venv/bin/python scripts/mutation.py "$@"

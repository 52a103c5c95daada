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
# mutmut forks a test process per mutant from a process that has run tests: an OpenMP thread pool
# (torch's libgomp, MKL) started before the fork deadlocks the child at its next parallel region
# (a futex wait with no CPU, seen in a torch matmul). One thread means no pool to inherit.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
exec nice -n 19 .venv/bin/python scripts/mutation.py "$@"

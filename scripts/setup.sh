#!/usr/bin/env bash
# Set up everything attnc needs on a fresh Debian machine with Python 3.11:
# Icarus Verilog (for the RTL tests), a virtual environment in .venv, the CPU
# build of torch, and attnc with its test dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "setup: $*" >&2; }

if ! command -v iverilog >/dev/null 2>&1 || ! command -v verilator >/dev/null 2>&1 || ! command -v yosys >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
    say "installing Icarus Verilog, Verilator (lint) and Yosys (rtl-stats) (apt-get; for the RTL tests)..."
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq iverilog verilator yosys >/dev/null
else
    say "Icarus Verilog, Verilator, Yosys: already installed"
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    say "creating the virtual environment .venv ($PYTHON)..."
    "$PYTHON" -m venv .venv
fi
say "upgrading pip in .venv..."
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned: a bare `torch` requirement would pull the multi-GB CUDA build.
say "installing torch 2.13.0 (the longest step: minutes)..."
.venv/bin/python -m pip install -q torch==2.13.0
say "installing attnc and its test dependencies (triton, sympy, numpy, matplotlib, pytest, cocotb, dask distributed, ...)..."
.venv/bin/python -m pip install -q -e ".[test]"
say "done: .venv/bin/attnc is ready"

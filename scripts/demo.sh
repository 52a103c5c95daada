#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the main demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/attnc demo

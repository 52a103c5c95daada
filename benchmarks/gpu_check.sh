#!/usr/bin/env bash
# One run on a GPU machine measures everything at once (issue 20): the
# SDPA/FlexAttention sweep (benchmarks/gpu_attention.py), the generated
# kernels against torch (benchmarks/triton_vs_torch.py), document masks
# against issue 22's block-sparse bound (benchmarks/gpu_block_sparse.py),
# and the GPU model's error on the sweep (attnc validate). Uses the machine's own torch and
# Triton, no network; the checkout goes on PYTHONPATH. Under 10 minutes:
# each benchmark stops itself at its time limit and keeps what it measured.
#
#   benchmarks/gpu_check.sh [OUT_DIR]        (default gpu_check_out)
set -u
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-gpu_check_out}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET
"$PY" -c "import torch, triton; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.cuda.get_device_name(0), torch.__version__, triton.__version__)" \
  > "$OUT/device.txt" 2>&1 || { cat "$OUT/device.txt"; echo "gpu_check: no usable GPU (see $OUT/device.txt)"; exit 2; }
HW="${HW:-$("$PY" - <<'PY'
import torch
n = torch.cuda.get_device_name(0)
print("h200" if "H200" in n else "h100" if "H100" in n else "a100-pcie" if "A100" in n and "PCIe" in n else "a100")
PY
)}"
status=0
timeout 240 "$PY" "$ROOT/benchmarks/gpu_attention.py" --out "$OUT/sdpa.csv" --time-limit 200 > "$OUT/sdpa.log" 2>&1 || status=1
timeout 240 "$PY" "$ROOT/benchmarks/triton_vs_torch.py" --out "$OUT/generated.csv" --time-limit 200 > "$OUT/generated.log" 2>&1 || status=1
timeout 150 "$PY" "$ROOT/benchmarks/gpu_block_sparse.py" --out "$OUT/block_sparse.csv" --time-limit 100 > "$OUT/block_sparse.log" 2>&1 || status=1
if [ -s "$OUT/sdpa.csv" ]; then
  timeout 120 "$PY" -m attnc validate "$OUT/sdpa.csv" --hw "$HW" > "$OUT/validate.txt" 2>&1 || status=1
fi
{
  echo "# GPU check, $(date -u +%Y-%m-%d) on $(head -1 "$OUT/device.txt") (preset $HW)"
  echo
  for f in sdpa.csv generated.csv block_sparse.csv; do
    echo "## $f"; echo
    if [ -s "$OUT/$f" ]; then echo '```'; head -60 "$OUT/$f"; echo '```'; else echo "(not produced; see ${f%.csv}.log)"; fi
    echo
  done
  echo "## the model against the sweep"; echo
  if [ -s "$OUT/validate.txt" ]; then echo '```'; tail -40 "$OUT/validate.txt"; echo '```'; else echo "(not run)"; fi
} > "$OUT/summary.md"
echo "gpu_check: wrote $OUT/summary.md (status $status)"
exit $status

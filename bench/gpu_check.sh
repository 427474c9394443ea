#!/usr/bin/env bash
# The whole GPU check in one script (under 5 minutes on one H100/H200): the project's training step on
# VGG-Sound shapes (two ResNet18, batch 64, bf16 autocast, channels_last, cuDNN autotuner) for naive
# fusion and UMT with live and cached teachers, against a plain hand-written step of the same model in
# the same process (bench/reference_step.py), then the issue's torchvision reference script in a
# process of its own when torchvision and the script are there. Prints the tables and a summary.
#
#   bash bench/gpu_check.sh                       # from the repository root, on a machine with a GPU
#   PYTHON=/path/to/python REFERENCE=/path/to/reference_step.py OUT=/tmp/check bash bench/gpu_check.sh
#
# Needs torch with CUDA and the core dependencies (numpy, pydantic, pyyaml, tqdm); latefusion is read
# from src/ (no install). Figures go to $OUT (default: a temporary folder): step.json, reference.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d)}
BATCH=${BATCH:-64}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"

"$PYTHON" - <<'EOF'
import sys
try:
    import torch, pydantic, yaml, tqdm, numpy  # noqa: F401
except ImportError as error:
    sys.exit(f"gpu_check: {error}; install torch (CUDA build) and numpy pydantic pyyaml tqdm for $PYTHON")
if not torch.cuda.is_available():
    sys.exit("gpu_check: torch sees no CUDA device; this check needs a GPU")
print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, bf16 supported: {torch.cuda.is_bf16_supported()}", flush=True)
EOF

echo; echo "== 1. project steps and the plain reference step, one process (bench/step.py) =="
timeout 200 "$PYTHON" bench/step.py --shape vggsound --batch "$BATCH" --device cuda --methods naive umt-live umt-cached \
  --reference --rounds 25 --warmup 8 --json "$OUT/step.json"

# An external plain training step written with torchvision, to compare against (REFERENCE=path/to/script.py).
REFERENCE=${REFERENCE:-}
echo; echo "== 2. an external reference script (torchvision), its own process =="
if [ -n "$REFERENCE" ] && "$PYTHON" -c "import torchvision" 2>/dev/null; then
  mkdir -p "$OUT/reference"
  # Bounded: its last part (torch.compile) may take long; what it measured before is kept in its JSON.
  B="$BATCH" OUT="$OUT/reference" timeout 150 "$PYTHON" "$REFERENCE" || echo "(reference script stopped: exit $?)"
else
  echo "skipped: needs torchvision and REFERENCE=path/to/the reference script"
fi

echo; echo "== summary (samples/s; acceptance: project >= 0.95 x reference, UMT cached <= 1.05 x naive step time) =="
"$PYTHON" - "$OUT" "$BATCH" <<'EOF'
import json, sys
from pathlib import Path
out, batch = Path(sys.argv[1]), int(sys.argv[2])
step = json.loads((out / "step.json").read_text())
s = step["seconds_per_step"]
print(f"{step['device']}, batch {batch}, {step['precision']}, {step['layout']}")
print("| step | project | plain reference (same process) | project / reference |\n|---|---:|---:|---:|")
for ours, ref in [("naive", "reference naive"), ("umt (live teachers)", "reference umt (live teachers)"),
                  ("umt (cached features)", "reference umt (cached features)")]:
    print(f"| {ours} | {batch / s[ours]:.0f} | {batch / s[ref]:.0f} | {s[ref] / s[ours]:.3f} |")
print(f"\nproject step time, x naive: umt live {s['umt (live teachers)'] / s['naive']:.3f}, umt cached {s['umt (cached features)'] / s['naive']:.3f}")
anchor = out / "reference" / "anchor_bench.json"
if anchor.exists():
    ms = json.loads(anchor.read_text())
    if "bf16/naive" in ms:
        theirs = batch / ms["bf16/naive"] * 1000
        print(f"issue's torchvision reference, bf16 naive: {theirs:.0f} samples/s; project naive / it: {batch / s['naive'] / theirs:.3f} "
              f"(separate processes, one after the other)")
EOF
echo "figures in $OUT"

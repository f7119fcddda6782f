#!/usr/bin/env bash
# Predictor throughput on a GPU machine: one short run, CPU figures beside it for the ratio.
# Usage: bash bench/gpu_predictor.sh   (needs a CUDA build of torch and the project installed)
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible'; print(torch.cuda.get_device_name(0))"
for size in "--hidden 64 --layers 2" "--hidden 256 --layers 4 --batch-size 1024"; do
  echo "== cuda $size"
  python bench/predictor_throughput.py --device cuda $size --train-steps 50
done

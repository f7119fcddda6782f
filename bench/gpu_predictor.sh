#!/usr/bin/env bash
# The predictor on a GPU machine: throughput at two model sizes, then, given logs, the
# ablation table of bench/predictor_ablation.py with its three seeds side by side on the GPU.
#
#   bash bench/gpu_predictor.sh                                   # throughput only
#   bash bench/gpu_predictor.sh LOGS SHIFTED_LOGS OUT [STEPS]     # + ablations into OUT/
#
# Needs a CUDA build of torch and the project importable (installed, or on PYTHONPATH).
# The ablation runs after the throughput runs, so the timings are not shared with it; each
# seed writes OUT/seedN.json (and a .partial.json after every row), OUT/ablation.md merges them.
# The LoRA comparison adapts a model trained four times as long as the ablation rows (as
# fit-predictor trains it), as in docs/predictor.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible'; print(torch.cuda.get_device_name(0), torch.__version__)"
for size in "--hidden 64 --layers 2" "--hidden 256 --layers 4 --batch-size 1024"; do
  echo "== cuda $size"
  python3 bench/predictor_throughput.py --device cuda $size --train-steps 50
done
if [ $# -ge 3 ]; then
  logs=$1 shifted=$2 out=$3 steps=${4:-1500}
  mkdir -p "$out"
  for seed in 0 1 2; do
    python3 bench/predictor_ablation.py --logs "$logs" --shifted-logs "$shifted" \
      --seeds "$seed" --steps "$steps" --history 20 --epsilon 0.1 --eval-fraction 0.5 \
      --base-steps $((steps * 4)) --full-learning-rate 1e-3 --threads 4 \
      --json "$out/seed$seed.json" >"$out/seed$seed.log" 2>&1 &
  done
  wait
  python3 bench/predictor_ablation.py --merge "$out"/seed?.json | tee "$out/ablation.md"
fi

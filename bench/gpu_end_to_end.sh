#!/usr/bin/env bash
# The GPU path end to end, CPU and GPU side by side on one machine: predictor training,
# PPO with the predictor encoder, and the learned simulator. One short run (the CPU half took
# 7.5 minutes on a 2-core VM; docs/scaling.md has its figures).
#
#   bash bench/gpu_end_to_end.sh [OUT]        # OUT (default /tmp/loe_gym_gpu): logs, predictor
#   DEVICES=cpu bash bench/gpu_end_to_end.sh  # the CPU half only (machines without a GPU)
#
# Needs the project importable (pip install -e .) with a CUDA build of torch for the GPU half.
# Each figure comes from a bench script run once per device in the same call, so CPU and
# GPU share the machine, the data and the model; compare them only within one run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
out=${1:-/tmp/loe_gym_gpu}
devices=${DEVICES:-cpu cuda}
python3 -c "import torch; print('torch', torch.__version__, 'cuda:', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
mkdir -p "$out"
# A small real predictor for the learned simulator (fitted on the first device).
loe-gym collect-logs --collect.num-users 600 --output "$out/logs" --overwrite --no-progress
loe-gym fit-predictor --logs "$out/logs" --output "$out/predictor" --overwrite --no-progress \
  --training.max-epochs 1 --training.steps-per-epoch 100 --device "${devices%% *}"
for device in $devices; do
  echo "== predictor training and inference, $device"
  python3 bench/predictor_throughput.py --device "$device" --hidden 256 --layers 4 \
    --batch-size 1024 --train-steps 10 --repeats 2
  echo "== PPO with the predictor encoder (the experiment's settings), $device"
  python3 bench/ppo_throughput.py --device "$device" --users 1024 --repeats 2 --rollouts 5 \
    --predictor "$out/predictor/model" --no-peer
  echo "== learned simulator, $device"
  python3 bench/learned_simulator_throughput.py --device "$device" --users 1024 16384 \
    --predictor "$out/predictor/model" --logs "$out/logs" --repeats 2
done

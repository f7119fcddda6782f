#!/usr/bin/env bash
# The real-log path end to end on a file in MovieLens 100k's published format: import with
# no conversion, fit a predictor and validate the learned world against held-out users.
#   bash bench/real_log_validation.sh [WORK_DIR]
set -euo pipefail
work=${1:-$(mktemp -d)}
python bench/movielens_fixture.py --output "$work/ml-100k" --users 600
loe-gym import-logs --source "$work/ml-100k/u.data" --items "$work/ml-100k/u.item" \
    --preset movielens-100k --output "$work/log"
# validate-simulator fits the learned world's predictor (features only, no id embeddings:
# docs/simulators/learned.md) on the log's training users and replays the held-out ones.
loe-gym validate-simulator --logs "$work/log" --output "$work/validation" --no-progress \
    --predictor.training.max-epochs 2 --predictor.training.steps-per-epoch 400
echo "report: $work/validation/report.md"

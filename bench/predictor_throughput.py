"""Predictor throughput: training sequences/s and `encode` latency per batch of users.

    python bench/predictor_throughput.py                    # CPU, the default model size
    python bench/predictor_throughput.py --device cuda      # on a GPU machine

Training: optimizer steps of multi-task fine-tuning on synthetic batches (history length
50, batch 256) — targets (sequences) per second. Serving: `PredictorService.encode` and
`predict` (20 candidates) on 1, 64, 1024 and 4096 users with history length 50; median
latency of ``--repeats`` calls after a warm-up. Random weights and inputs: throughput
does not depend on them.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from loe_gym.predictor import PredictorConfig, PredictorModel
from loe_gym.predictor.serving import PredictorService


def synthetic_batch(config: PredictorConfig, batch: int, device: str) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    length, items = config.max_history_length, config.num_items
    tensors = {
        "history_item_ids": torch.randint(2, items + 2, (batch, length), generator=generator),
        "history_feedback": torch.rand(batch, length, 3, generator=generator),
        "history_gaps": torch.randint(
            1, config.num_gap_buckets, (batch, length), generator=generator
        ),
        "target_item_ids": torch.randint(2, items + 2, (batch,), generator=generator),
        "target_gaps": torch.randint(1, config.num_gap_buckets, (batch,), generator=generator),
        "click_labels": torch.randint(0, 2, (batch,), generator=generator).float(),
        "watch_time_labels": torch.rand(batch, generator=generator),
        "watch_time_mask": torch.ones(batch, dtype=torch.bool),
        "continuation_labels": torch.randint(0, 2, (batch,), generator=generator).float(),
        "return_labels": torch.randint(0, 2, (batch,), generator=generator).float(),
        "return_mask": torch.ones(batch, dtype=torch.bool),
        "ranking_labels": torch.randint(0, items, (batch,), generator=generator),
    }
    return {name: value.to(device) for name, value in tensors.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--num-items", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    config = PredictorConfig(
        num_items=args.num_items,
        num_item_features=13,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=2,
        max_history_length=50,
    )
    model = PredictorModel(config).to(args.device)
    model.set_item_features(np.random.default_rng(0).random((args.num_items, 13), dtype=np.float32))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = synthetic_batch(config, args.batch_size, args.device)
    # In training the data pipeline supplies each target's long-term profile.
    batch["history_profile"] = model.history_profile(
        batch["history_item_ids"], batch["history_feedback"]
    )
    model.train()

    def train_step() -> None:
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(3):
        train_step()
    rates = []
    for _ in range(args.repeats):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.train_steps):
            train_step()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        rates.append(args.batch_size * args.train_steps / (time.perf_counter() - start))
    print(f"device {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(
        f"model: hidden {args.hidden}, {args.layers} layers, {sum(p.numel() for p in model.parameters()):,} parameters"
    )
    print(
        f"training: {statistics.median(rates):,.0f} sequences/s (median of {args.repeats}; batch {args.batch_size}, history 50)\n"
    )

    service = PredictorService(model, device=args.device)
    rng = np.random.default_rng(0)
    print("| users | encode (ms) | users/s | predict 20 candidates (ms) |\n|---|---|---|---|")
    for users in (1, 64, 1024, 4096):
        items = rng.integers(-1, args.num_items, (users, 50))
        feedback = rng.random((users, 50, 3)).astype(np.float32)
        gaps = rng.integers(1, config.num_gap_buckets, (users, 50))
        candidates = rng.integers(0, args.num_items, (users, 20))
        service.encode(items, feedback, gaps)
        encode_times, predict_times = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            service.encode(items, feedback, gaps)
            encode_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            service.predict(items, feedback, gaps, candidates)
            predict_times.append(time.perf_counter() - start)
        encode = statistics.median(encode_times)
        print(
            f"| {users} | {encode * 1e3:.2f} | {users / encode:,.0f} | {statistics.median(predict_times) * 1e3:.2f} |"
        )


if __name__ == "__main__":
    main()

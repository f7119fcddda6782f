"""Items per second of the frozen text encoder (`loe_gym.predictor.text.TextEncoder`) on
the titles of `loe_gym/ItemChurn-v0`, per batch size: median of ``--repeats`` passes.

    python bench/text_encoding_throughput.py --threads 2

A catalog is encoded once and cached (safetensors keyed by model and texts): this is the
cost of the first encoding. Timings are those of the machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import torch

import loe_gym  # noqa: F401  (registers the environments)
from loe_gym.predictor.text import TextEncoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    env = gym.make("loe_gym/ItemChurn-v0")
    texts = list(env.unwrapped.catalog.texts)
    print(f"{len(texts)} titles, {torch.get_num_threads()} torch threads, model {args.model}")
    print("| batch size | items/s (median) | min–max |\n|---|---|---|")
    for batch_size in args.batch_sizes:
        encoder = TextEncoder(args.model, batch_size=batch_size)
        encoder.encode(texts[:batch_size])  # warm-up
        rates = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            encoder.encode(texts)
            rates.append(len(texts) / (time.perf_counter() - start))
        print(f"| {batch_size} | {statistics.median(rates):,.0f} | "
              f"{min(rates):,.0f}–{max(rates):,.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()

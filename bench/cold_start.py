"""Click AUC on cold-start items of `loe_gym/ItemChurn-v0`: ids, features, text, a
pretrained backbone with LoRA, and the same backbone from scratch, mean ± std over seeds.

    python bench/cold_start.py --seeds 0 1 2 --json docs/predictor_results/cold_start.json

Per seed: a log of ``--users`` users of the item-churn env under the ``diverse`` logging
policy (collection seed = the seed), then each variant fitted with a temporal split
(training before the cut, test on the latest ``--test-fraction`` of rows; cold items are
first seen on test days) and the same budget of optimizer steps:

* ``ids`` — item id embeddings only (`ModelConfig.item_features` off);
* ``features`` — ids + the catalog's features (topic, length);
* ``features + text`` — ids + features + the frozen MiniLM vectors of the titles;
* ``pretrained + LoRA`` — features + text, the backbone started from MiniLM's 6 layers
  (hidden 384) and adapted with LoRA rank ``--lora-rank``;
* ``same backbone, scratch`` — the same architecture, randomly initialised, fully trained.

The last two are large for a CPU (22 M parameters): they train ``--big-steps`` steps per
epoch of ``--big-batch-size`` rows over the last ``--big-history`` rows, and ``--big-seeds``
runs them on fewer seeds. Timings are those of the machine; the metrics are not.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loe_gym.predictor.configs import FitPredictorConfig, ModelConfig, TrainingConfig
from loe_gym.predictor.pipeline import fit_predictor

HEADS = ("click", "watch_time", "continuation", "return", "ranking")


def _variants(args: argparse.Namespace) -> dict[str, tuple[ModelConfig, dict[str, Any]]]:
    small = ModelConfig(max_history_length=args.history)
    big = small.replace(
        text_model="minilm", pretrained_backbone="minilm", max_history_length=args.big_history
    )
    big_budget = {"steps_per_epoch": args.big_steps, "batch_size": args.big_batch_size}
    return {
        "ids": (small.replace(item_features=False), {}),
        "features": (small, {}),
        "features + text": (small.replace(text_model="minilm"), {}),
        "pretrained + LoRA": (
            big, {"lora_rank": args.lora_rank, "learning_rate": 1e-3, **big_budget}
        ),
        "same backbone, scratch": (
            big.replace(pretrained_backbone=None, hidden_size=384, num_hidden_layers=6,
                        num_attention_heads=12),
            {"learning_rate": 3e-4, **big_budget},
        ),
    }  # fmt: skip


def _collect(seed: int, users: int, folder: Path) -> Path:
    path = folder / f"log_{seed}"
    command = [
        sys.executable, "-m", "agents.cli", "collect-logs", "--env-id", "loe_gym/ItemChurn-v0",
        "--collect.policy", "diverse", "--collect.num-users", str(users),
        "--collect.seed", str(seed), "--output", str(path), "--no-progress",
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    return path


def _run(name: str, model: ModelConfig, training: dict[str, Any], log: Path, seed: int,
         args: argparse.Namespace, folder: Path) -> dict[str, Any]:  # fmt: skip
    config = FitPredictorConfig(
        model=model,
        training=TrainingConfig(
            seed=seed,
            max_epochs=args.epochs,
            **{
                "learning_rate": 2e-3,
                "steps_per_epoch": args.steps,
                "batch_size": args.batch_size,
                **training,
            },
        ),
        split="temporal",
        test_fraction=args.test_fraction,
        validation_fraction=0.1,
        gru_epochs=0,
    )
    start = time.perf_counter()
    result = fit_predictor(log, folder / f"{seed}_{name}", config, progress=False)
    test, stage = result.test, result.stages["finetune"]
    return {
        "cold_click_auc": result.test_by_item_age["cold"]["click_auc"],
        "warm_click_auc": result.test_by_item_age["warm"]["click_auc"],
        "cold_targets": result.test_by_item_age["cold"]["targets"],
        **{f"loss_{head}": test.get(f"loss_{head}", float("nan")) for head in HEADS},
        "trainable_fraction": stage["trainable_fraction"],
        "trainable_parameters": stage["trainable_parameters"],
        "steps": stage["steps"],
        "seconds": time.perf_counter() - start,
    }


def _summary(rows: dict[str, list[dict[str, Any]]]) -> str:
    keys = ("cold_click_auc", "warm_click_auc", "loss_click", "loss_return", "trainable_fraction",
            "seconds")  # fmt: skip
    lines = ["| variant | seeds | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
    for name, runs in rows.items():
        cells = []
        for key in keys:
            values = [run[key] for run in runs]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.4f} ± {spread:.4f}")
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--big-seeds",
        type=int,
        nargs="*",
        default=None,
        help="seeds of the two 384-wide variants (default: --seeds)",
    )
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--history", type=int, default=20)
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--big-steps", type=int, default=150, help="per epoch, 384-wide variants")
    parser.add_argument("--big-batch-size", type=int, default=64)
    parser.add_argument("--big-history", type=int, default=10)
    parser.add_argument("--test-fraction", type=float, default=0.15)
    parser.add_argument("--variants", nargs="*", default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()  # fmt: skip
    variants = _variants(args)
    chosen = args.variants or list(variants)
    big_seeds = args.seeds if args.big_seeds is None else args.big_seeds
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in chosen}
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        for seed in args.seeds:
            log = _collect(seed, args.users, folder)
            for name in chosen:
                if (
                    name in ("pretrained + LoRA", "same backbone, scratch")
                    and seed not in big_seeds
                ):
                    continue
                model, training = variants[name]
                rows[name].append(_run(name, model, training, log, seed, args, folder))
                print(f"seed {seed} {name}: {json.dumps(rows[name][-1])}", flush=True)
    print(_summary({name: runs for name, runs in rows.items() if runs}))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"arguments": vars(args) | {"json": str(args.json)},
                                         "runs": rows}, indent=2, default=str))  # fmt: skip


if __name__ == "__main__":
    main()

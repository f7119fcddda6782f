"""Ablations of the predictor, mean ± std over seeds, on held-out users.

    loe-gym collect-logs --collect.num-users 5000 --output logs/engagement
    loe-gym collect-logs --collect.num-users 2000 --collect.seed 1 --output logs/engagement_shifted \\
        --env-options '{"simulator_kwargs": {"appeal_weight": 3.0, "interest_weight": 2.5,
        "return_bias": -2.0, "completion_quality_weight": 3.0}}'
    python bench/predictor_ablation.py --logs logs/engagement --shifted-logs logs/engagement_shifted

Rows (each one training run per seed, the same budget of optimizer steps):

* ``multi-task`` — every head trained together, no pre-training (the reference row);
* ``single-task click`` / ``single-task return`` — one head only; compare its metric;
* ``+ masked pre-training`` — one epoch of masked-item pre-training first;
* ``+ FGM adversarial`` — FGM on the input embeddings; clean and FGM-perturbed metrics;
* ``− long-term profile`` — the transformer over the last ``--history`` rows alone;
* LoRA vs full fine-tuning — the multi-task model adapted to a shifted user population
  (more clickbait-prone, less likely to return) on the same catalog: zero-shot, full
  fine-tuning, LoRA (rank ``--lora-rank`` on the attention's query/value and the candidate
  trunk's two layers, the output layers trained in full); "gain recovered" = LoRA's gain
  over zero-shot / full fine-tuning's, in click log loss. Adapt a model trained as
  fit-predictor trains it (``--base-steps 6000``): from one trained for ``--steps`` only, full
  fine-tuning's gain is partly the training the model still lacked, which
  ``--continued-training`` (the same budget on the original population) measures.

Seeds can run in separate processes (``--seeds 0 --json s0.json`` …) and be summarised
together with ``--merge s0.json s1.json s2.json``. LoRA variants can share one base:
with ``--shift-only --reuse-base DIR`` the first run keeps its multi-task model and its
zero-shot and full fine-tuning rows in ``DIR``, and later runs of the same settings train
only the adapters.

Timings are those of the machine; the metrics are not.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from loe_gym.predictor.batches import MaskedItemBatches, TargetBatches
from loe_gym.predictor.configs import (
    FINETUNING_TASKS,
    LORA_BIASES,
    FitPredictorConfig,
    ModelConfig,
    TrainingConfig,
)
from loe_gym.predictor.evaluation import evaluate, evaluate_perturbed
from loe_gym.predictor.pipeline import build_model, catalog_features
from loe_gym.predictor.sequences import load_sequences, split_users
from loe_gym.predictor.training import finetune, pretrain

METRICS = (
    "click_auc",
    "click_log_loss",
    "return_auc",
    "watch_time_rmse_expected_minutes",
    "ranking_ndcg_at_10",
)


def _splits(log: Path, seed: int, num_items: int) -> tuple[Any, Any, Any]:
    sequences, _ = load_sequences(log, num_items=num_items)
    return split_users(sequences, validation_fraction=0.1, test_fraction=0.1, seed=seed)


LORA_TARGETS = ("query", "value", "candidate_trunk.0", "candidate_trunk.3")
"""Modules with LoRA adapters when adapting to the shifted population (with
`LORA_FULLY_TRAINED`, `lora.adaptation_lora_modules` of the BERT model)."""

PROFILE_DECAYS = FitPredictorConfig().model.profile_decays
"""The long-term profile's time scales `fit_predictor` uses by default."""

LORA_RANK = 8
"""Rank of the adapters when adapting to the shifted population."""

LORA_FULLY_TRAINED = ("candidate_output", "profile_wide")
"""Modules trained in full next to the adapters when adapting to the shifted population."""


def _batches(
    part: Any,
    args: argparse.Namespace,
    *,
    shuffle: bool,
    seed: int,
    fraction: float = 1.0,
    features: Any = None,
    decays: Any = PROFILE_DECAYS,
) -> TargetBatches:
    return TargetBatches(
        part,
        batch_size=args.batch_size,
        max_history_length=args.history,
        shuffle=shuffle,
        seed=seed,
        target_fraction=fraction,
        item_features=features,
        profile_decays=decays if features is not None else None,
        # As `fit_predictor`: dense return labels in training, session ends in evaluation.
        session_return_labels=shuffle and FitPredictorConfig().session_return_labels,
    )


def _training_config(
    args: argparse.Namespace, seed: int, out: Path, **options: Any
) -> TrainingConfig:
    """One capped epoch of ``args.steps`` steps, no early stopping: every row, one budget."""
    values: dict[str, Any] = {
        "max_epochs": 1,
        "steps_per_epoch": args.steps,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "seed": seed,
        "tensorboard": False,
        "early_stopping_patience": None,
    }
    return TrainingConfig(**(values | options))


def _train(
    model: Any,
    train: Any,
    validation: Any,
    args: argparse.Namespace,
    seed: int,
    out: Path,
    **options: Any,
) -> Any:
    config = _training_config(args, seed, out, **options)
    features = model.item_features.cpu().numpy() if model.config.long_term_profile else None
    return finetune(
        model,
        _batches(
            train,
            args,
            shuffle=True,
            seed=seed,
            features=features,
            decays=model.config.profile_decays,
        ),
        _batches(
            validation,
            args,
            shuffle=False,
            seed=0,
            fraction=args.eval_fraction,
            features=features,
            decays=model.config.profile_decays,
        ),
        config,
        output_dir=out,
        progress=False,
    )


DEFAULT_LOSS_WEIGHTS = [ModelConfig().weight(task) for task in FINETUNING_TASKS]
"""`ModelConfig`'s default loss weights (click, watch, ranking, continuation, return), as
the JSON files keep them."""


SETTINGS = ("steps", "batch_size", "history", "hidden", "learning_rate", "epsilon", "eval_fraction")
"""Options that define a run; kept in the JSON files and printed with the table."""


OPTIONAL_SETTINGS: dict[str, Any] = {
    "base_steps": None,
    "full_learning_rate": None,
    "lora_steps": None,
    "lora_bias": "none",
    "lora_rank": LORA_RANK,
    "lora_target_modules": LORA_TARGETS,
    "lora_dora": False,
    "lora_modules_to_save": LORA_FULLY_TRAINED,
}
"""Options kept in the JSON files only where they differ from these defaults, so files of
runs from before an option existed still merge with runs that leave it alone."""


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    settings = {name: getattr(args, name) for name in SETTINGS}
    # The loss weights are ModelConfig's defaults (click, watch, ranking, cont., return).
    settings |= {"loss_weights": list(DEFAULT_LOSS_WEIGHTS)}
    for name, default in OPTIONAL_SETTINGS.items():
        value = getattr(args, name, default)
        value = tuple(value) if isinstance(value, list) else value
        if value != default:
            settings[name] = list(value) if isinstance(value, tuple) else value
    return settings


def _save_partial(args: argparse.Namespace, seed: int, rows: dict[str, Any]) -> None:
    """Keep the rows finished so far beside ``--json`` (a cut-short run keeps them)."""
    if args.json:
        partial = args.json.with_suffix(f".seed{seed}.partial.json")
        partial.write_text(
            json.dumps(
                {"seeds": [seed], "settings": _settings(args), "per_seed": [rows]}, default=float
            )
        )


REUSED_ROWS = ("multi-task", "shift: zero-shot")
"""Rows a ``--reuse-base`` folder keeps beside the multi-task model, and the full fine-tuning
row of each full fine-tuning learning rate tried: everything but the LoRA adaptation."""

FULL = "shift: full fine-tuning"

CONTINUED = "shift: more training, original population"
"""The ``--continued-training`` control: full fine-tuning's budget spent on the population the
model was trained on. Its gain on the shifted users is the part of full fine-tuning's gain
that is not adaptation (large when the multi-task model is short of converged)."""


def _reuse_key(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """What the reused base rows depend on: the runs are seeded, so equal keys, equal rows."""
    key = {name: getattr(args, name) for name in SETTINGS}
    logs = {"logs": str(args.logs.resolve()), "shifted_logs": str(args.shifted_logs.resolve())}
    if args.base_steps:  # in the key only when set
        key["base_steps"] = args.base_steps
    return key | logs | {"seed": seed, "loss_weights": list(DEFAULT_LOSS_WEIGHTS)}


def _full_rate(args: argparse.Namespace) -> str:
    """The full fine-tuning learning rate, as the ``--reuse-base`` folder files its row."""
    return f"{args.full_learning_rate or args.learning_rate:g}"


def _reused(args: argparse.Namespace, seed: int) -> tuple[Path, dict[str, Any] | None]:
    """The ``--reuse-base`` folder of a seed and what an earlier run with the same settings
    left there (a folder of other settings is an error, never silently mixed)."""
    folder = args.reuse_base / f"seed{seed}"
    if not (folder / "rows.json").exists():
        return folder, None
    stored = json.loads((folder / "rows.json").read_text())
    if stored["key"] != _reuse_key(args, seed):
        raise SystemExit(
            f"error: {folder} holds a run of other settings ({stored['key']}); give another "
            "--reuse-base folder or delete it."
        )
    return folder, stored


def run_seed(args: argparse.Namespace, seed: int, work: Path) -> dict[str, dict[str, float]]:
    if not args.reuse_base:
        return run_seed_fully(args, seed, work)
    folder, stored = _reused(args, seed)
    if stored is None:
        rows = run_seed_fully(args, seed, folder)
        stored = {
            "key": _reuse_key(args, seed),
            "rows": {name: rows[name] for name in REUSED_ROWS},
            "full fine-tuning": {_full_rate(args): rows[FULL]},
        }
        (folder / "rows.json").write_text(json.dumps(stored, default=float))
        return rows
    print(f"  seed {seed}: {', '.join(REUSED_ROWS)} reused from {folder}", flush=True)
    rows = stored["rows"]
    full = stored["full fine-tuning"].get(_full_rate(args))
    names: tuple[str, ...] = ("shift: LoRA",) if full else (FULL, "shift: LoRA")
    names += (CONTINUED,) if args.continued_training else ()
    if full:
        print(f"  seed {seed}: {FULL} at learning rate {_full_rate(args)} reused", flush=True)
        rows = rows | {FULL: full}
    # A private work folder: LoRA trials may share one base side by side.
    with tempfile.TemporaryDirectory() as tmp:
        rows = rows | _adapt(args, seed, Path(tmp), folder / "multitask_model", names, rows)
    if not full:  # kept for later trials at this full fine-tuning rate
        stored["full fine-tuning"][_full_rate(args)] = rows[FULL]
        (folder / "rows.json").write_text(json.dumps(stored, default=float))
    return rows


def run_seed_fully(args: argparse.Namespace, seed: int, work: Path) -> dict[str, dict[str, float]]:
    """Every row of one seed; the multi-task model is left in ``work/multitask_model``."""
    num_items, features, _ = catalog_features(args.logs)
    train, validation, test = _splits(args.logs, seed, num_items)
    test_batches = _batches(
        test, args, shuffle=False, seed=0, fraction=args.eval_fraction, features=features
    )
    plain_test_batches = _batches(test, args, shuffle=False, seed=0, fraction=args.eval_fraction)
    base = _base_config(args, seed)
    rows: dict[str, dict[str, float]] = {}

    def record(name: str, model: Any, perturbed: bool = False) -> None:
        batches = test_batches if model.config.long_term_profile else plain_test_batches
        metrics = evaluate(model, batches)
        if perturbed:
            noisy = evaluate_perturbed(model, batches, args.epsilon)
            metrics |= {f"perturbed_{k}": v for k, v in noisy.items()}
        rows[name] = metrics
        _save_partial(args, seed, rows)
        print(
            f"  seed {seed} {name}: "
            + ", ".join(f"{k}={metrics.get(k, math.nan):.4f}" for k in METRICS),
            flush=True,
        )

    def train_multitask(steps: int, folder: str) -> Any:
        model = build_model(base, num_items, features)
        return _train(model, train, validation, args, seed, work / folder, steps_per_epoch=steps)

    base_steps = args.base_steps or args.steps
    # With --shift-only the multi-task row is the adapted model; else it has the rows' budget.
    multitask_steps = base_steps if args.shift_only else args.steps
    multitask = train_multitask(multitask_steps, "multitask")
    record("multi-task", multitask.model, perturbed=True)
    # The ablation rows (skipped with --shift-only, which keeps the LoRA comparison).
    if not args.shift_only:
        for task in ("click", "return"):
            # The other heads off; the task keeps its default weight.
            weights = {t: base.model.weight(t) if t == task else 0.0 for t in FINETUNING_TASKS}
            single_config = base.replace(model=base.model.replace(task_weights=weights))
            single = build_model(single_config, num_items, features)
            record(
                f"single-task {task}",
                _train(single, train, validation, args, seed, work / f"single_{task}").model,
            )
        pre = build_model(base, num_items, features)
        masked = pretrain(
            pre,
            MaskedItemBatches(
                train, batch_size=args.batch_size, max_history_length=args.history, seed=seed
            ),
            None,
            _training_config(args, seed, work / "pretrain"),
            output_dir=work / "pretrain",
            progress=False,
        )
        record(
            "+ masked pre-training",
            _train(masked.model, train, validation, args, seed, work / "pretrained").model,
        )
        adversarial = build_model(base, num_items, features)
        record(
            "+ FGM adversarial",
            _train(
                adversarial,
                train,
                validation,
                args,
                seed,
                work / "fgm",
                adversarial="fgm",
                adversarial_epsilon=args.epsilon,
            ).model,
            perturbed=True,
        )
        without_profile = build_model(
            base.replace(model=base.model.replace(long_term_profile=False)), num_items, features
        )
        record(
            "− long-term profile",
            _train(without_profile, train, validation, args, seed, work / "no_profile").model,
        )

    if args.shifted_logs:
        adapted = multitask
        if base_steps != multitask_steps:
            adapted = train_multitask(base_steps, "adapted")
            record(f"multi-task, {base_steps} steps (adapted)", adapted.model)
        saved = work / "multitask_model"
        adapted.model.save_pretrained(saved)
        adaptations: tuple[str, ...] = ("shift: zero-shot", FULL, "shift: LoRA")
        adaptations += (CONTINUED,) if args.continued_training else ()
        rows |= _adapt(args, seed, work, saved, adaptations, rows)
    return rows


def _base_config(args: argparse.Namespace, seed: int) -> FitPredictorConfig:
    """The predictor every row of a seed starts from (or, adapted, is loaded into)."""
    return FitPredictorConfig(
        model=ModelConfig(hidden_size=args.hidden, max_history_length=args.history),
        training=TrainingConfig(learning_rate=2e-3, max_epochs=4, steps_per_epoch=1500, seed=seed),
    )


def _adapt(
    args: argparse.Namespace,
    seed: int,
    work: Path,
    saved: Path,
    names: tuple[str, ...],
    rows: dict[str, dict[str, float]],
) -> dict[str, dict[str, float]]:
    """The rows ``names`` of the adaptation of the ``saved`` multi-task model to the
    shifted population: zero-shot, full fine-tuning, LoRA."""
    num_items, features, _ = catalog_features(args.logs)
    shifted_train, shifted_validation, shifted_test = _splits(args.shifted_logs, seed, num_items)
    shifted_batches = _batches(
        shifted_test, args, shuffle=False, seed=0, fraction=args.eval_fraction, features=features
    )
    base = _base_config(args, seed)
    lora = {
        "learning_rate": args.lora_learning_rate or args.learning_rate,
        "steps_per_epoch": args.lora_steps or args.steps,
        "lora_bias": args.lora_bias,
        "lora_rank": args.lora_rank,
        "lora_target_modules": tuple(args.lora_target_modules),
        "lora_modules_to_save": tuple(args.lora_modules_to_save),
        "lora_use_dora": args.lora_dora,
    }
    full = {"learning_rate": args.full_learning_rate or args.learning_rate}
    options_of = {"shift: zero-shot": None, FULL: full, "shift: LoRA": lora, CONTINUED: full}
    original_train, original_validation, _ = _splits(args.logs, seed, num_items)
    adapted: dict[str, dict[str, float]] = {}
    for name in names:
        options = options_of[name]
        model = build_model(base.replace(initial_model=str(saved)), num_items, features)
        fraction = 1.0
        if options is not None:
            continued = name == CONTINUED
            result = _train(
                model,
                original_train if continued else shifted_train,
                original_validation if continued else shifted_validation,
                args,
                seed,
                work / name.replace(" ", "_").replace(":", ""),
                **options,
            )
            model, fraction = result.model, result.trainable_fraction
        metrics = evaluate(model, shifted_batches)
        metrics["trainable_fraction"] = fraction if options is not None else 0.0
        adapted[name] = metrics
        _save_partial(args, seed, rows | adapted)
        print(
            f"  seed {seed} {name}: click_auc={metrics['click_auc']:.4f} "
            f"click_log_loss={metrics['click_log_loss']:.4f} "
            f"trainable={metrics['trainable_fraction']:.4f}",
            flush=True,
        )
    return adapted


RECOVERED_LOSSES = {
    "click (log loss)": "loss_click",
    "next-day return (log loss)": "loss_return",
    "session continuation": "loss_continuation",
    "watch time": "loss_watch_time",
    "next clicked item (full-catalog softmax)": "loss_ranking",
    "total (weighted)": "loss",
}
"""Held-out losses whose gain recovered by LoRA the summary reports, head by head."""


def _recovered(
    per_seed: list[dict[str, dict[str, float]]],
    key: str,
    row: str = "shift: LoRA",
    higher_is_better: bool = False,
) -> list[float]:
    """Per seed, ``row``'s gain over zero-shot as a share of full fine-tuning's, on ``key``
    (a loss, or with ``higher_is_better`` a score such as an AUC)."""
    sign = -1.0 if higher_is_better else 1.0
    shares = []
    for rows in per_seed:
        zero = rows["shift: zero-shot"][key]
        full = sign * (zero - rows[FULL][key])
        gain = sign * (zero - rows[row][key])
        shares.append(gain / full if full > 0 else math.nan)
    return shares


def _mean_std(values: list[float], form: str) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):{form}} ± {spread:{form}}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--logs", type=Path, default=None)
    parser.add_argument("--shifted-logs", type=Path, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per training run")
    parser.add_argument(
        "--base-steps",
        type=int,
        default=None,
        help="optimizer steps of the multi-task model adapted to --shifted-logs (default: "
        "--steps; fit-predictor trains its model for 6000); without --shift-only it is a "
        "model of its own beside the ablation rows",
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument(
        "--epsilon", type=float, default=0.5, help="FGM radius (training and perturbed metrics)"
    )
    parser.add_argument(
        "--full-learning-rate",
        type=float,
        default=None,
        help="learning rate of full fine-tuning to the shifted population (default: "
        "--learning-rate)",
    )
    parser.add_argument(
        "--continued-training",
        action="store_true",
        help="add the control row: full fine-tuning's budget spent on the original population",
    )
    parser.add_argument("--lora-rank", type=int, default=LORA_RANK)
    parser.add_argument(
        "--lora-learning-rate", type=float, default=None, help="default: --learning-rate"
    )
    parser.add_argument(
        "--lora-bias",
        choices=LORA_BIASES,
        default="none",
        help="biases trained with the adapters (peft's bias option)",
    )
    parser.add_argument(
        "--lora-steps",
        type=int,
        default=None,
        help="optimizer steps of the LoRA adaptation (default: --steps, full fine-tuning's)",
    )
    parser.add_argument(
        "--lora-target-modules", nargs="+", default=list(LORA_TARGETS), help="modules with adapters"
    )
    parser.add_argument(
        "--lora-modules-to-save",
        nargs="*",
        default=list(LORA_FULLY_TRAINED),
        help="modules trained in full next to the adapters",
    )
    parser.add_argument(
        "--lora-dora",
        action="store_true",
        help="weight-decomposed adapters (DoRA, peft's use_dora)",
    )
    parser.add_argument(
        "--eval-fraction", type=float, default=0.2, help="share of held-out targets evaluated"
    )
    parser.add_argument(
        "--shift-only",
        action="store_true",
        help="only the multi-task model and its adaptation to --shifted-logs",
    )
    parser.add_argument(
        "--reuse-base",
        type=Path,
        default=None,
        metavar="DIR",
        help="with --shift-only: keep the multi-task model and the zero-shot and full "
        "fine-tuning rows here, and reuse them in later runs of the same settings (a LoRA "
        "trial then trains the adapters only; the runs are seeded, so the rows are those a "
        "rerun would give)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the per-seed rows here")
    parser.add_argument(
        "--merge", type=Path, nargs="+", default=None, help="summarise these --json files instead"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (when seeds run side by side)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.merge is None and args.logs is None:
        parser.error("--logs is required (or --merge with the JSON files of earlier runs)")
    if args.reuse_base and not (args.shift_only and args.shifted_logs):
        parser.error(
            "--reuse-base keeps the LoRA comparison's base: give --shift-only and --shifted-logs"
        )
    start = time.perf_counter()
    per_seed = []
    if args.merge:
        loaded = [json.loads(path.read_text()) for path in args.merge]
        per_seed = [rows for data in loaded for rows in data["per_seed"]]
        args.seeds = [seed for data in loaded for seed in data["seeds"]]
        settings = [data.get("settings") for data in loaded]
        if any(setting != settings[0] for setting in settings):
            raise SystemExit(f"error: the files were run with different settings: {settings}")
        for name, value in (settings[0] or {}).items():
            setattr(args, name, value)
        args.loss_weights = (settings[0] or {}).get("loss_weights")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            for seed in args.seeds:
                per_seed.append(run_seed(args, seed, Path(tmp) / f"seed{seed}"))
    args.shifted_logs = args.shifted_logs or any("shift: LoRA" in rows for rows in per_seed)
    names = list(per_seed[0])
    keys = sorted({k for rows in per_seed for row in rows.values() for k in row})
    summary = {
        name: {
            key: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0)
            for key in keys
            for v in [
                [
                    rows[name][key]
                    for rows in per_seed
                    if key in rows[name] and not math.isnan(rows[name][key])
                ]
            ]
            if v
        }
        for name in names
    }
    shown = (
        "click_auc",
        "return_auc",
        "watch_time_rmse_expected_minutes",
        "ranking_ndcg_at_10",
        "perturbed_click_auc",
        "perturbed_return_auc",
    )
    print(
        f"\nseeds {args.seeds}; mean ± std; "
        + ", ".join(f"{name} {getattr(args, name)}" for name in SETTINGS)
        + f", loss weights {getattr(args, 'loss_weights', None) or DEFAULT_LOSS_WEIGHTS}"
        + f"; {time.perf_counter() - start:.0f} s\n"
    )
    print("| variant | " + " | ".join(shown) + " |")
    print("|---|" + "---|" * len(shown))
    for name in names:
        if name.startswith("shift"):
            continue
        # A single-task model's other heads are untrained: only its own metric is shown.
        task = name.removeprefix("single-task ") if name.startswith("single-task") else None
        cells = [
            f"{summary[name][k][0]:.4f} ± {summary[name][k][1]:.4f}"
            if k in summary[name] and (task is None or k == f"{task}_auc")
            else "—"
            for k in shown
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.shifted_logs:
        print(
            "\n| shifted population | click AUC | click log loss | trainable fraction |\n|---|---|---|---|"
        )
        for name in names:
            if name.startswith("shift"):
                s = summary[name]
                print(
                    f"| {name[7:]} | {s['click_auc'][0]:.4f} ± {s['click_auc'][1]:.4f} | {s['click_log_loss'][0]:.4f} ± {s['click_log_loss'][1]:.4f} | {s['trainable_fraction'][0]:.4f} |"
                )
        gains = _recovered(per_seed, "click_log_loss")
        print(
            f"\nLoRA recovers {statistics.mean(gains):.0%} of full fine-tuning's log-loss gain (per seed: {[round(g, 3) for g in gains]})"
        )
        auc_gains = _recovered(per_seed, "click_auc", higher_is_better=True)
        print(f"LoRA recovers {_mean_std(auc_gains, '.0%')} of its click AUC gain")
        control = all(CONTINUED in rows for rows in per_seed)
        header = "| held-out loss | full fine-tuning's gain | LoRA recovers |"
        header += " more training, original population |" if control else ""
        print("\n" + header + "\n|---|---|---|" + ("---|" if control else ""))
        for name, key in RECOVERED_LOSSES.items():
            full_gains = [rows["shift: zero-shot"][key] - rows[FULL][key] for rows in per_seed]
            cells = [_mean_std(full_gains, ".4f"), _mean_std(_recovered(per_seed, key), ".0%")]
            if control:
                cells.append(_mean_std(_recovered(per_seed, key, CONTINUED), ".0%"))
            print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "seeds": args.seeds,
                    "settings": _settings(args),
                    "per_seed": per_seed,
                    "summary": summary,
                },
                indent=2,
                default=float,
            )
        )


if __name__ == "__main__":
    main()

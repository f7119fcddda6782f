"""Ranking protocols of the next clicked item, side by side as the literature reports them.

One pass over the clicked test targets ranks each target under three protocols, for every
model (the transformer's ranking head, popularity, the GRU) on the same rows:

| key suffix | protocol | what is ranked |
|---|---|---|
| (none) | full catalog, all items | the target among every catalog item |
| ``_unseen`` | full catalog, seen items excluded | the target among the items the user had not clicked before the target's step |
| ``_sampled_100`` | 1 + 100 sampled negatives | the target among 100 items drawn uniformly, without replacement, from those unseen items (seeded) |

Seen items are those the user *clicked* before the target's step — its whole past, not
only the ``max_history_length`` rows the model reads. The target itself is always ranked,
also when the user clicked it before (a repeat: re-consumption is legitimate on many
platforms, which is why the all-items numbers stay). Ranks are pessimistic on ties
(`metrics.target_ranks`), so with the same scores a target's rank can only fall from one
protocol to the next: full ≥ seen excluded ≥ sampled.

Sampled metrics are not estimates of the full ones and can reorder models (Krichene &
Rendle, "On Sampled Metrics for Item Recommendation", KDD 2020); they are here to compare
with papers that report them, never instead of the full-catalog numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from accelerate.utils import extract_model_from_parallel
from torch import nn

from loe_gym.predictor.batches import TargetBatches
from loe_gym.predictor.configs import FitPredictorConfig
from loe_gym.predictor.losses import forward_keys, model_inputs
from loe_gym.predictor.metrics import hit_rate_at_k, ndcg_at_k
from loe_gym.predictor.ranking_baselines import PopularityRanker, train_gru_ranker
from loe_gym.predictor.sequences import UserSequences, item_popularity

__all__ = [
    "PROTOCOLS",
    "SAMPLED_NEGATIVES",
    "RankingProtocols",
    "Scorer",
    "SeenItems",
    "model_ranking_scorer",
    "protocol_ranks",
    "rank_with_protocols",
    "ranking_table",
    "sample_negatives",
]

SAMPLED_NEGATIVES = 100
"""Negatives drawn per target for the sampled protocol (the literature's usual 100)."""

PROTOCOLS: dict[str, str] = {
    "": "full catalog, all items",
    "_unseen": "full catalog, seen items excluded",
    f"_sampled_{SAMPLED_NEGATIVES}": f"1 + {SAMPLED_NEGATIVES} sampled negatives",
}
"""Suffix of each protocol's metric keys → the protocol in words."""

CUTOFF = 10
"""``k`` of NDCG@k and HR@k."""

_NEGATIVE_STREAM = 0x5A3
"""Keeps the negatives' random stream apart from the seed's other uses."""

Scorer = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]
"""A batch (`TargetBatches`) → ``(B, num_items)`` scores of every catalog item."""


class SeenItems:
    """Which items each target's user clicked before the target's step.

    Args:
        sequences: the users the targets belong to (``TargetBatches.sequences``).
    """

    def __init__(self, sequences: UserSequences) -> None:
        self.num_items = sequences.num_items
        self._clicked_rows = np.flatnonzero(sequences.clicked)  # ascending: by user, by time
        self._item = sequences.item_id
        self._user_start = sequences.offsets[:-1][sequences.row_user_index()]

    def mask(self, rows: np.ndarray, history_end: np.ndarray) -> np.ndarray:
        """``(B, num_items) bool``: the items clicked in each target's past.

        Args:
            rows: ``(B,)`` target rows.
            history_end: ``(B,)`` the first row of each target's step
                (`TargetBatches.history_end`): the past is the user's rows before it.
        """
        rows = np.asarray(rows, dtype=np.int64)
        low = np.searchsorted(self._clicked_rows, self._user_start[rows])
        high = np.searchsorted(self._clicked_rows, np.asarray(history_end))
        counts = np.maximum(high - low, 0)
        # Every target's clicked rows, flattened: start of its run + position within it.
        within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        clicked = self._clicked_rows[np.repeat(low, counts) + within]
        seen = np.zeros((rows.size, self.num_items), dtype=bool)
        seen[np.repeat(np.arange(rows.size), counts), self._item[clicked]] = True
        return seen


def sample_negatives(
    seen: np.ndarray, targets: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` items per row drawn uniformly without replacement among the items
    neither seen nor the target.

    Args:
        seen: ``(B, num_items) bool`` (`SeenItems.mask`).
        targets: ``(B,)`` target item per row.
        count: negatives per row.
        rng: the draw's generator.

    Returns:
        ``(B, k)`` item columns and ``(B, k) bool`` which of them are real negatives, with
        ``k = min(count, num_items − 1)``; a row with fewer eligible items has fewer
        valid ones.
    """
    rows, num_items = seen.shape
    size = min(count, num_items - 1)
    if size <= 0:
        return np.zeros((rows, 0), np.int64), np.zeros((rows, 0), bool)
    # The `size` smallest of uniform keys are a uniform sample without replacement;
    # excluded items get keys above every eligible one.
    keys = rng.random((rows, num_items))
    keys[seen] = 2.0
    keys[np.arange(rows), targets] = 2.0
    columns = np.argpartition(keys, size - 1, axis=1)[:, :size]
    return columns, np.take_along_axis(keys, columns, axis=1) < 1.0


def protocol_ranks(
    scores: np.ndarray,
    targets: np.ndarray,
    seen: np.ndarray,
    negatives: np.ndarray,
    valid: np.ndarray,
) -> dict[str, np.ndarray]:
    """``(B,) int64`` rank from 1 of each target under each protocol (keys: the suffixes
    of `PROTOCOLS`); ties are ranked ahead of the target.

    Args:
        scores: ``(B, num_items)`` scores of every item.
        targets: ``(B,)`` target items.
        seen: ``(B, num_items) bool`` items removed from the second protocol (the target
            stays even where it is set).
        negatives, valid: the sampled items and their validity (`sample_negatives`).
    """
    index = np.arange(scores.shape[0])
    target_score = scores[index, targets][:, None]
    ahead = scores >= target_score  # the target included: rank 1 when nothing beats it
    others_seen = seen.copy()
    others_seen[index, targets] = False
    sampled_ahead = valid & (np.take_along_axis(scores, negatives, axis=1) >= target_score)
    suffixes = list(PROTOCOLS)
    return {
        suffixes[0]: ahead.sum(axis=1).astype(np.int64),
        suffixes[1]: (ahead & ~others_seen).sum(axis=1).astype(np.int64),
        suffixes[2]: 1 + sampled_ahead.sum(axis=1).astype(np.int64),
    }


def model_ranking_scorer(model: nn.Module) -> Scorer:
    """The predictor's ranking head as a `Scorer` (eval mode, no gradient)."""
    model = extract_model_from_parallel(model)
    keys = forward_keys(model)
    device = next(model.parameters()).device

    def score(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        # Inputs only: with labels the model would compute losses nobody reads.
        inputs = {
            key: value
            for key, value in model_inputs(batch, keys, device).items()
            if not key.endswith(("_labels", "_mask"))
        }
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                return model(**inputs).ranking_logits.float().cpu()
        finally:
            model.train(was_training)

    return score


@dataclass(frozen=True)
class RankingProtocols:
    """`rank_with_protocols`' answer."""

    models: dict[str, dict[str, float]]
    """Per model, ``ndcg_at_10<suffix>`` and ``hit_rate_at_10<suffix>`` per protocol."""
    description: dict[str, Any]
    """Targets, negatives, seed, repeats: what the report says of the protocols."""


def rank_with_protocols(
    scorers: Mapping[str, Scorer],
    batches: TargetBatches,
    *,
    seed: int,
    negatives: int = SAMPLED_NEGATIVES,
) -> RankingProtocols:
    """NDCG@10 and HR@10 of each scorer under every protocol, on the clicked target rows
    of ``batches`` (in their order, ``batches.batch_size`` at a time).

    The negatives depend only on ``seed`` and the rows, so every scorer meets the same
    ones; the scores of a batch are dropped once ranked (no ``(rows, num_items)`` array)."""
    sequences = batches.sequences
    ranked = batches.targets[sequences.clicked[batches.targets]]
    seen_items = SeenItems(sequences)
    ranks: dict[str, dict[str, list[np.ndarray]]] = {
        name: {suffix: [] for suffix in PROTOCOLS} for name in scorers
    }
    repeats = short = 0
    for start in range(0, ranked.size, batches.batch_size):
        rows = ranked[start : start + batches.batch_size]
        batch = batches.batch(rows)
        targets = sequences.item_id[rows]
        seen = seen_items.mask(rows, batches.history_end(rows))
        rng = np.random.default_rng([seed, _NEGATIVE_STREAM, start])
        sampled, valid = sample_negatives(seen, targets, negatives, rng)
        repeats += int(seen[np.arange(rows.size), targets].sum())
        short += int((valid.sum(axis=1) < negatives).sum())
        for name, scorer in scorers.items():
            scores = np.asarray(scorer(batch).float().numpy(), dtype=np.float64)
            for suffix, values in protocol_ranks(scores, targets, seen, sampled, valid).items():
                ranks[name][suffix].append(values)
    models: dict[str, dict[str, float]] = {}
    for name, by_protocol in ranks.items():
        models[name] = {}
        for suffix, parts in by_protocol.items():
            values = np.concatenate(parts) if parts else np.zeros(0, np.int64)
            models[name][f"ndcg_at_{CUTOFF}{suffix}"] = ndcg_at_k(values, k=CUTOFF)
            models[name][f"hit_rate_at_{CUTOFF}{suffix}"] = hit_rate_at_k(values, k=CUTOFF)
    description = {
        "targets": int(ranked.size),
        "repeat_targets": repeats,
        "sampled_negatives": negatives,
        "targets_with_fewer_negatives": short,
        "seed": seed,
        "protocols": {suffix or "(none)": words for suffix, words in PROTOCOLS.items()},
    }
    return RankingProtocols(models, description)


def ranking_table(
    config: FitPredictorConfig,
    model: nn.Module,
    train: UserSequences,
    train_targets: TargetBatches,
    test_batches: TargetBatches,
    progress: bool,
) -> RankingProtocols:
    """The transformer, popularity and (if ``config.gru_epochs``) a GRU trained on
    ``train_targets``, ranked under every protocol on the clicked test targets."""
    num_items = train.num_items
    scorers: dict[str, Scorer] = {
        "transformer": model_ranking_scorer(model),
        "popularity": PopularityRanker(item_popularity(train, num_items)),
    }
    if config.gru_epochs:
        scorers["gru"] = train_gru_ranker(
            train_targets,
            num_items=num_items,
            hidden_size=config.model.hidden_size,
            epochs=config.gru_epochs,
            steps_per_epoch=config.training.steps_per_epoch,
            seed=config.training.seed,
            progress=progress,
        )
    with torch.inference_mode():
        return rank_with_protocols(scorers, test_batches, seed=config.training.seed)

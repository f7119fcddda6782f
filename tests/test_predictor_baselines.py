"""Popularity and GRU ranking baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from loe_gym.predictor.metrics import hit_rate_at_k
from loe_gym.predictor.ranking_baselines import (
    GRURanker,
    PopularityRanker,
    ranking_scores,
    train_gru_ranker,
)

NUM_ITEMS = 12


def toy_batches(count: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """The next clicked item is (last history item + 1) mod 12: learnable from history,
    invisible to popularity (every item is equally popular)."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        catalog = torch.randint(0, NUM_ITEMS, (32, 5), generator=generator)
        batches.append(
            {
                "history_item_ids": catalog + 2,
                "history_feedback": torch.rand(32, 5, 3, generator=generator),
                "history_gaps": torch.ones(32, 5, dtype=torch.long),
                "ranking_labels": (catalog[:, -1] + 1) % NUM_ITEMS,
            }
        )
    return batches


def test_gru_learns_what_popularity_cannot() -> None:
    train, test = toy_batches(60, seed=0), toy_batches(5, seed=1)
    gru = train_gru_ranker(train, num_items=NUM_ITEMS, hidden_size=16, epochs=3, seed=0)
    popularity = PopularityRanker(np.ones(NUM_ITEMS))
    gru_hits = hit_rate_at_k(*ranking_scores(gru, test), k=1)
    popularity_hits = hit_rate_at_k(*ranking_scores(popularity, test), k=1)
    assert gru_hits > 0.9
    assert popularity_hits < 0.2  # ties counted against the target


def test_gru_ignores_unclicked_rows() -> None:
    batch = toy_batches(1, seed=2)[0]
    batch["ranking_labels"][:] = -100
    with pytest.raises(ValueError, match="No clicked target rows"):
        ranking_scores(GRURanker(NUM_ITEMS, 8), [batch])


def test_popularity_rejects_bad_counts() -> None:
    with pytest.raises(ValueError, match="non-empty 1-d"):
        PopularityRanker(np.zeros((2, 2)))

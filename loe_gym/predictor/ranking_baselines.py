"""Ranking baselines for the predictor: item popularity and a GRU over the history.

Both answer the ranking task of the predictor — which catalog item will the user click
next — on the same batches (`loe_gym.predictor.batches.TargetBatches`), so their NDCG@10 and
HR@10 sit beside the transformer's in one table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

IGNORE_INDEX = -100
SPECIAL_TOKENS = 2  # model ids: 0 = padding, 1 = [MASK], catalog id + 2 otherwise


class PopularityRanker:
    """Scores every item by how often it was clicked in the training log.

    Args:
        click_counts: ``(num_items,)`` clicks per catalog item.
    """

    def __init__(self, click_counts: np.ndarray) -> None:
        counts = np.asarray(click_counts, dtype=np.float64)
        if counts.ndim != 1 or counts.size == 0:
            raise ValueError(
                f"click_counts must be a non-empty 1-d array, got shape {counts.shape}."
            )
        self.scores = torch.as_tensor(np.log1p(counts), dtype=torch.float32)

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``(B, num_items)`` the same popularity scores for every row."""
        return self.scores.expand(batch["history_item_ids"].shape[0], -1)


class GRURanker(nn.Module):
    """GRU4Rec-style next-click model: a GRU over (item, feedback, gap) tokens.

    Args:
        num_items: catalog size; the output scores every catalog item.
        hidden_size: embedding and GRU width.
        num_gap_buckets: size of the gap-bucket vocabulary of the batches.
    """

    def __init__(self, num_items: int, hidden_size: int = 64, num_gap_buckets: int = 10) -> None:
        super().__init__()
        self.num_items = num_items
        self.item_embedding = nn.Embedding(num_items + SPECIAL_TOKENS, hidden_size, padding_idx=0)
        self.feedback = nn.Linear(3, hidden_size)
        self.gap_embedding = nn.Embedding(num_gap_buckets, hidden_size, padding_idx=0)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True)
        self.output = nn.Linear(hidden_size, num_items)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``(B, num_items)`` next-click logits from the (left-padded) history."""
        tokens = (
            self.item_embedding(batch["history_item_ids"])
            + self.feedback(batch["history_feedback"])
            + self.gap_embedding(batch["history_gaps"])
        )
        # Left padding: the last time step holds the most recent interaction.
        outputs, _ = self.gru(tokens)
        return self.output(outputs[:, -1])


def train_gru_ranker(
    batches: Iterable[Mapping[str, torch.Tensor]],
    *,
    num_items: int,
    hidden_size: int = 64,
    num_gap_buckets: int = 10,
    epochs: int = 3,
    steps_per_epoch: int | None = None,
    learning_rate: float = 3e-3,
    seed: int = 0,
    progress: bool = False,
) -> GRURanker:
    """Train a `GRURanker` with softmax cross-entropy on the clicked target rows
    (``ranking_labels`` are catalog ids, −100 where the target was not clicked), for
    ``epochs`` passes of at most ``steps_per_epoch`` batches."""
    torch.manual_seed(seed)
    model = GRURanker(num_items, hidden_size, num_gap_buckets)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    model.train()
    for epoch in range(epochs):
        if hasattr(batches, "set_epoch"):
            batches.set_epoch(epoch)
        for step, batch in enumerate(
            tqdm(batches, desc=f"GRU epoch {epoch + 1}", disable=not progress)
        ):
            if steps_per_epoch is not None and step >= steps_per_epoch:
                break
            labels = batch["ranking_labels"]
            keep = labels != IGNORE_INDEX
            if not bool(keep.any()):
                continue
            rows = {k: v[keep] for k, v in batch.items() if torch.is_tensor(v)}
            loss = nn.functional.cross_entropy(model(rows), rows["ranking_labels"])
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
    model.eval()
    return model


@torch.inference_mode()
def ranking_scores(
    ranker: nn.Module | PopularityRanker, batches: Iterable[Mapping[str, torch.Tensor]]
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and targets of the clicked rows: ``(R, num_items)`` and ``(R,)`` catalog ids."""
    scores, targets = [], []
    for batch in batches:
        keep = batch["ranking_labels"] != IGNORE_INDEX
        if not bool(keep.any()):
            continue
        rows = {k: v[keep] for k, v in batch.items() if torch.is_tensor(v)}
        scores.append(ranker(rows).float().numpy())
        targets.append(rows["ranking_labels"].numpy())
    if not scores:
        raise ValueError("No clicked target rows in the batches: ranking needs clicks.")
    return np.concatenate(scores), np.concatenate(targets)

"""How much a title can tell on `loe_gym/ItemChurn-v0`, before any model is trained.

    python bench/text_information.py

1. Monte-Carlo click AUC of the click utility with the user's interest known and the
   item's appeal known, unknown, or known as well as a title tells it (a noisy estimate
   with the R² below), at the env's weights and at the default Engagement weights.
2. R² of a ridge regression from the MiniLM title vectors to the hidden appeal and
   quality, fitted on the first 1000 items and scored on the other 440.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from scipy.special import expit
from sklearn.metrics import roc_auc_score

import loe_gym  # noqa: F401  (registers the environments)
from loe_gym.predictor.text import item_text_vectors


def ridge_r2(vectors: np.ndarray, target: np.ndarray, train: int = 1000) -> float:
    design = np.c_[vectors, np.ones(len(vectors))]
    fit, test = design[:train], design[train:]
    weights = np.linalg.solve(fit.T @ fit + np.eye(design.shape[1]), fit.T @ target[:train])
    residual = target[train:] - test @ weights
    return float(1.0 - residual.var() / target[train:].var())


def auc_table(r2: float, samples: int = 300_000, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    interest = rng.uniform(-1, 1, samples)
    quality = rng.beta(2, 2, samples)
    appeal = np.clip(1 - quality + rng.normal(0, 0.25, samples), 0, 1)
    r = np.sqrt(r2)  # an estimate correlated r with appeal, shrunk to its mean
    noise = rng.normal(size=samples) * appeal.std()
    estimate = appeal.mean() + r * (r * (appeal - appeal.mean()) + np.sqrt(1 - r * r) * noise)
    print("| weights (interest, appeal) | appeal known | unknown | as told by a title |")
    print("|---|---|---|---|")
    for interest_weight, appeal_weight in ((2.5, 4.0), (3.5, 2.0)):
        base = -1.0 + interest_weight * interest
        clicked = rng.random(samples) < expit(base + appeal_weight * appeal)
        cells = [
            roc_auc_score(clicked, base + appeal_weight * a)
            for a in (appeal, appeal.mean(), estimate)
        ]
        print(
            f"| {interest_weight}, {appeal_weight} | "
            + " | ".join(f"{c:.3f}" for c in cells)
            + " |"
        )


def main() -> None:
    catalog = gym.make("loe_gym/ItemChurn-v0").unwrapped.catalog
    vectors = item_text_vectors(catalog.texts, "minilm", progress=False)
    r2 = {name: ridge_r2(vectors, catalog.hidden[name]) for name in ("appeal", "quality")}
    print(
        f"held-out R² from the title vectors: appeal {r2['appeal']:.2f}, quality {r2['quality']:.2f}"
    )
    auc_table(r2["appeal"])


if __name__ == "__main__":
    main()

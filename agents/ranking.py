"""What reference policies and the predictor wrappers share: ranking candidates by score,
and the names of the predictor's score columns.

A module of its own (numpy only) so that neither `agents.reference_policies` nor
`agents.predictor_env` has to import the other.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

__all__ = ["SCORE_NAMES", "reward_model_score", "top_slates"]

Scores = TypeVar("Scores")  # a numpy array or a torch tensor

SCORE_NAMES = (
    "click_probability",
    "watch_time_if_clicked",
    "watch_time",
    "continuation_probability",
    "return_probability",
)
"""Columns of the predictor's ``candidate_scores`` (see `PredictorService.predict` and
`agents.predictor_env.PredictorObservations`)."""


def reward_model_score(scores: Scores, return_weight: float, continuation_weight: float) -> Scores:
    """The reward model's value of each candidate in minutes, ``E[watch] + return_weight ·
    P(return) + continuation_weight · P(continue)`` (uncentred: centring, as
    `agents.predictor_env.PredictorReward` does, changes no ranking).

    Args:
        scores: ``(..., len(SCORE_NAMES))`` predictor scores, numpy or torch.

    Returns:
        ``(...)``, of the same kind.
    """
    column = {name: scores[..., i] for i, name in enumerate(SCORE_NAMES)}  # type: ignore[index]
    return (  # type: ignore[no-any-return]
        column["watch_time"]
        + return_weight * column["return_probability"]
        + continuation_weight * column["continuation_probability"]
    )


def top_slates(scores: np.ndarray, slate_size: int) -> np.ndarray:
    """Indices of the ``slate_size`` best candidates per row, best first.

    Args:
        scores: ``(num_users, num_candidates)``.

    Returns:
        ``(num_users,)`` when ``slate_size == 1``, else ``(num_users, slate_size)``.
    """
    if slate_size == 1:
        return scores.argmax(axis=1)
    best = np.argpartition(-scores, slate_size - 1, axis=1)[:, :slate_size]
    order = np.argsort(-np.take_along_axis(scores, best, axis=1), axis=1)
    return np.take_along_axis(best, order, axis=1)

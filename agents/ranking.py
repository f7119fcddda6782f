"""What reference policies and the predictor wrappers share: ranking candidates by score,
and the names of the predictor's score columns.

A module of its own (numpy only) so that neither `agents.reference_policies` nor
`agents.predictor_env` has to import the other.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SCORE_NAMES", "top_slates"]

SCORE_NAMES = (
    "click_probability",
    "watch_time_if_clicked",
    "watch_time",
    "continuation_probability",
    "return_probability",
)
"""Columns of the predictor's ``candidate_scores`` (see `PredictorService.predict` and
`agents.predictor_env.PredictorObservations`)."""


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

"""A user simulator learned from logs: the predictor's heads drive every response.

`LearnedUsers` turns a trained `loe_gym.predictor.PredictorModel` into a user model that
any environment and agent can use like the hand-written ones. A user's state is what the
predictor conditions on (the last ``history_length`` rows shown with their feedback and
time gaps, and the running long-term profile of the whole life), so the simulator is the
predictor's own predictive distribution, sampled one step at a time::

    click        single item: c ~ Bernoulli(p̂_click); slate: multinomial logit over the
                 slate and a no-click option, with utilities logit(p̂_click)
    watch time   w = expm1(log1p(ŵ) + watch_log_std·ε), ε ~ N(0, 1), capped at the item's
                 length if the catalog has a ``length`` feature; 0 without a click
    completion   w / length, in [0, 1] (1 on a click if the catalog has no length)
    session end  e ~ Bernoulli(1 − p̂_continue)  (of the clicked item, else the slate mean)
    return gap   g ~ Geometric(p̂_return): the trained next-day return probability taken as
                 a constant daily hazard; g > churn_gap_days is churn (calibrated on the
                 logs' censored return gaps: `simulators.return_gaps`)

``p̂_click``, ``ŵ`` (minutes watched if clicked), ``p̂_continue`` and ``p̂_return`` are the
predictor's scores of the shown items, given the history and the gap before this step
(same session, or the days since the last visit on a session's first step). Every
user starts with an empty history, as every user in the logs did: heterogeneity between
users comes from what the predictor infers as their history grows.

Sessions end, and users return, asynchronously: every user is on their own clock, as
in the hand-written models. One step costs two batched predictor calls (scores, and the
profile update): the predictor's size sets the speed (bench/learned_simulator_throughput.py).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import logit

from loe_gym.catalog import Catalog
from loe_gym.logs import read_public_catalog
from loe_gym.predictor.sequences import new_session_gap
from loe_gym.predictor.serving import SAME_SESSION_GAP, PredictorService
from loe_gym.simulator import (
    Responses,
    geometric_gaps,
    multinomial_logit_choice,
    row_any,
    row_sum,
)
from loe_gym.types import FloatArray, Generator, IntArray

__all__ = [
    "ITEM_SPREAD_THRESHOLD",
    "IndistinguishableItemsError",
    "LearnedUsers",
    "LearnedUsersState",
    "catalog_from_log",
]

FIRST_ROW_GAP = 2
"""Gap bucket of a user's first row (see `loe_gym.predictor.sequences`)."""

ITEM_SPREAD_THRESHOLD = 1e-3
"""A learned world is refused when, for every probe user, the click probabilities of
all items have a relative spread (std / mean over the catalog) below this: its items are
indistinguishable (`LearnedUsers` raises `IndistinguishableItemsError`)."""

PROBE_USERS, PROBE_STEPS = 4, 5
"""The probe of `ITEM_SPREAD_THRESHOLD`: users with an empty history and after a few
random steps."""


class IndistinguishableItemsError(ValueError):
    """The predictor gives every item the same click probability: no policy could do
    better than random in its world, so evaluating one there would mean nothing."""


@dataclass(frozen=True)
class LearnedUsersState:
    """What the predictor conditions on, per user (``L`` = ``history_length``).

    Attributes:
        history_item_ids: ``(N, L) int64`` the last items shown, oldest first, −1 = none.
        history_feedback: ``(N, L, 3) float32`` clicked, watch minutes, completion.
        history_gaps: ``(N, L) int64`` gap bucket before each row.
        profile: ``(N, T, F + 1, 4) float32`` long-term profile of the whole life
            (``(N, 0)`` for a predictor without one).
        next_gap: ``(N,) int64`` gap bucket of the coming step.
    """

    history_item_ids: IntArray
    history_feedback: FloatArray
    history_gaps: IntArray
    profile: FloatArray
    next_gap: IntArray


def catalog_from_log(path: str | os.PathLike[str]) -> Catalog:
    """The public catalog stored with a log (``_catalog.parquet``): features and topics,
    never the hidden attributes (a learned simulator must not see them)."""
    catalog = read_public_catalog(path)
    if catalog is None:
        raise ValueError(
            f"The log at {str(path)!r} has no catalog (_catalog.parquet); pass catalog= a "
            "loe_gym Catalog with the items' public features instead."
        )
    return catalog


class LearnedUsers:
    """Batched users whose behaviour is a trained predictor's (see the module docstring).

    Args:
        predictor: a checkpoint directory (``fit-predictor``'s ``<output>/model``), a
            `PredictorService`, or a ``PredictorModel``.
        catalog: the items: a `Catalog`, or the directory of the log the predictor was
            fitted on (its ``_catalog.parquet`` gives feature names and topics). Default:
            the predictor's own item features, with generic names.
        history_length: rows of history the predictor sees per step (default its
            ``max_history_length``); older rows reach it through the long-term profile.
        churn_gap_days: a drawn return gap longer than this is churn (the engagement
            model's 7 by default). Calibrate it on the logs with
            `simulators.return_gaps.calibrate_churn`, as
            `agents.validation.learned_env_options` does: the learned world then churns
            as often per session end as the logs' Kaplan–Meier estimate says.
        watch_log_std: std of the Gaussian noise on ``log1p(minutes)`` around the
            predicted watch time (0 = the prediction itself; the watch-time loss of the
            fit, √MSE, is the natural value).
        device: where the predictor runs (None: the command's ``--device``,
            `loe_gym.devices.current_device`).
        batch_size: users per predictor call.

    Raises:
        IndistinguishableItemsError: the predictor gives every item the same click
            probability (a probe of users × all items spreads less than
            `ITEM_SPREAD_THRESHOLD`): e.g. a catalog without features or text and a
            predictor without item id embeddings.

    Examples:
        >>> sim = LearnedUsers("runs/predictor/model", catalog="data/logs")  # doctest: +SKIP
        >>> env = gym.make_vec("loe_gym/Recommendation-v0", num_envs=1024,  # doctest: +SKIP
        ...                    simulator=sim)
    """

    response_extras: tuple[str, ...] = ()
    user_feature_size: int = 0

    def __init__(
        self,
        predictor: str | os.PathLike[str] | PredictorService | Any,
        *,
        catalog: Catalog | str | os.PathLike[str] | None = None,
        history_length: int | None = None,
        churn_gap_days: int = 7,
        watch_log_std: float = 0.0,
        device: str | None = None,
        batch_size: int = 4096,
    ) -> None:
        if isinstance(predictor, PredictorService):
            service = predictor
        elif isinstance(predictor, (str, os.PathLike)):
            if not Path(predictor).exists():
                raise FileNotFoundError(
                    f"No predictor checkpoint at {str(predictor)!r}; pass the 'model' folder "
                    "written by loe-gym fit-predictor (or loe-gym experiment's predictor/model)."
                )
            service = PredictorService.from_pretrained(
                predictor, device=device, batch_size=batch_size
            )
        else:
            service = PredictorService(predictor, device=device, batch_size=batch_size)
        self.service = service
        config = service.config
        if catalog is None:
            features = service.model.item_features.detach().cpu().numpy()
            catalog = Catalog(
                features=features,
                feature_names=tuple(f"feature_{i}" for i in range(features.shape[1])),
            )
        elif not isinstance(catalog, Catalog):
            catalog = catalog_from_log(catalog)
        reason = service.catalog_mismatch(catalog)
        if reason is not None:
            raise ValueError(
                f"The catalog is not the one the predictor was fitted on: {reason}; pass the "
                "catalog of the predictor's logs (catalog=<log directory>)."
            )
        self.catalog = catalog
        maximum = int(config.max_history_length)
        self.history_length = maximum if history_length is None else int(history_length)
        if not 1 <= self.history_length <= maximum:
            raise ValueError(
                f"history_length must lie in [1, {maximum}] (the predictor's "
                f"max_history_length), got {history_length}."
            )
        if isinstance(churn_gap_days, bool) or int(churn_gap_days) != churn_gap_days:
            raise TypeError(f"churn_gap_days must be an int, got {churn_gap_days!r}.")
        if churn_gap_days < 1:
            raise ValueError(f"churn_gap_days must be ≥ 1, got {churn_gap_days}.")
        self.churn_gap_days = int(churn_gap_days)
        if not np.isfinite(watch_log_std) or watch_log_std < 0:
            raise ValueError(f"watch_log_std must be finite and ≥ 0, got {watch_log_std!r}.")
        self.watch_log_std = float(watch_log_std)
        self._num_gap_buckets = int(config.num_gap_buckets)
        self._profile_shape = tuple(config.profile_shape) if config.long_term_profile else ()
        names = catalog.feature_names
        self._length = (
            np.asarray(catalog.features[:, names.index("length")], dtype=np.float64)
            if "length" in names
            else None
        )
        self.item_spread = self._item_spread()
        """The largest relative spread (std / mean) over the catalog of the probe users'
        click probabilities (`ITEM_SPREAD_THRESHOLD`)."""
        if self.item_spread < ITEM_SPREAD_THRESHOLD:
            raise IndistinguishableItemsError(self._indistinguishable_message())

    def __repr__(self) -> str:
        return (
            f"LearnedUsers(num_items={self.catalog.num_items}, "
            f"history_length={self.history_length}, churn_gap_days={self.churn_gap_days})"
        )

    # --- the contract ---------------------------------------------------------

    def reset(self, num_users: int, rng: Generator) -> LearnedUsersState:
        length = self.history_length
        profile_shape = self._profile_shape or (0,)
        return LearnedUsersState(
            history_item_ids=np.full((num_users, length), -1, dtype=np.int64),
            history_feedback=np.zeros((num_users, length, 3), dtype=np.float32),
            history_gaps=np.zeros((num_users, length), dtype=np.int64),
            profile=np.zeros((num_users, *profile_shape), dtype=np.float32),
            next_gap=np.full(num_users, FIRST_ROW_GAP, dtype=np.int64),
        )

    def respond(self, state: LearnedUsersState, slates: IntArray, rng: Generator) -> Responses:
        num_users, slate_size = slates.shape
        scores = self._scores(state, slates)
        click_probability = scores["click_probability"]
        if slate_size == 1:
            clicked = rng.random((num_users, 1)) < click_probability
        else:
            clicked = multinomial_logit_choice(_logit(click_probability), rng)
        noise = rng.standard_normal((num_users, slate_size))
        watch = np.expm1(np.log1p(scores["watch_time_if_clicked"]) + self.watch_log_std * noise)
        watch = np.maximum(watch, 0.0)
        if self._length is not None:
            length = self._length[slates]
            watch = np.minimum(watch, length)
            completion = np.where(length > 0, watch / np.maximum(length, 1e-12), 1.0)
        else:
            completion = np.ones_like(watch)
        watch_time = np.where(clicked, watch, 0.0)
        completion = np.where(clicked, np.clip(completion, 0.0, 1.0), 0.0)

        clicked_any = row_any(clicked)
        continuation = self._of_choice(scores["continuation_probability"], clicked, clicked_any)
        session_end = rng.random(num_users) >= continuation
        daily_return = self._of_choice(scores["return_probability"], clicked, clicked_any)
        gap = geometric_gaps(daily_return, rng)
        churned = session_end & (gap > self.churn_gap_days)
        gap_days = np.where(session_end & ~churned, gap, 0).astype(np.int64)
        return Responses(
            clicked=clicked,
            watch_time=watch_time,
            completion=completion,
            session_end=session_end,
            gap_days=gap_days,
            churned=churned,
        )

    def update(
        self,
        state: LearnedUsersState,
        slates: IntArray,
        responses: Responses,
        rng: Generator,
    ) -> LearnedUsersState:
        num_users, slate_size = slates.shape
        feedback = np.stack(
            [responses.clicked.astype(np.float32), responses.watch_time, responses.completion],
            axis=-1,
        ).astype(np.float32)
        # The step's first row carries the gap before the step; the others are the same step.
        gaps = np.full((num_users, slate_size), SAME_SESSION_GAP, dtype=np.int64)
        gaps[:, 0] = state.next_gap
        length = self.history_length
        ids = np.concatenate([state.history_item_ids, slates.astype(np.int64)], axis=1)
        all_feedback = np.concatenate([state.history_feedback, feedback], axis=1)
        all_gaps = np.concatenate([state.history_gaps, gaps], axis=1)
        profile = state.profile
        if self._profile_shape:
            profile = self.service.history_profile(slates, feedback, state.profile)
        returns = responses.session_end & ~responses.churned
        next_gap = np.where(
            returns,
            new_session_gap(responses.gap_days, self._num_gap_buckets),
            SAME_SESSION_GAP,
        ).astype(np.int64)
        return LearnedUsersState(
            history_item_ids=ids[:, -length:].copy(),
            history_feedback=all_feedback[:, -length:].copy(),
            history_gaps=all_gaps[:, -length:].copy(),
            profile=profile,
            next_gap=next_gap,
        )

    def user_features(self, state: LearnedUsersState) -> FloatArray:
        return np.zeros((state.next_gap.shape[0], 0), dtype=np.float32)

    # --- the model's expectations (privileged in the learned world) ---------------

    def expected_responses(
        self, state: LearnedUsersState, items: IntArray
    ) -> dict[str, FloatArray]:
        """The predictor's expectations for each user and item shown alone, ``(N, K)``:
        ``click_probability``, ``watch_time`` (unconditional expected minutes, before the
        watch noise), ``watch_time_if_clicked``, ``continuation_probability`` and
        ``return_probability`` (daily return hazard if the session ends here)."""
        return self._scores(state, items)

    # --- helpers ------------------------------------------------------------------

    def _item_spread(self) -> float:
        """The largest, over probe users and steps, relative std of the click
        probabilities over the catalog (inf for a catalog of one item: nothing to tell
        apart)."""
        num_items = self.catalog.num_items
        if num_items < 2:
            return math.inf
        rng = np.random.default_rng(0)
        state = self.reset(PROBE_USERS, rng)
        spreads = []
        for step in range(PROBE_STEPS + 1):
            items = np.broadcast_to(np.arange(num_items), (PROBE_USERS, num_items))
            click = self._scores(state, items)["click_probability"]
            mean = np.maximum(click.mean(axis=1), 1e-12)
            spreads.append(click.std(axis=1) / mean)
            if step < PROBE_STEPS:
                slates = rng.integers(0, num_items, (PROBE_USERS, 1))
                state = self.update(state, slates, self.respond(state, slates, rng), rng)
        return float(np.max(spreads))

    def _indistinguishable_message(self) -> str:
        config = self.service.config
        features = np.asarray(self.catalog.features)
        if not config.item_id_embeddings and features.shape[1] == 0:
            cause = (
                "the predictor has no item id embeddings (item_id_embeddings=False) and the "
                "catalog has no public features"
            )
        elif not config.item_id_embeddings and np.all(features == features[:1]):
            cause = (
                "the predictor has no item id embeddings (item_id_embeddings=False) and the "
                f"catalog's {features.shape[1]} public features are the same for every item"
            )
        else:
            cause = "its item inputs do not change its click predictions"
        if config.item_id_embeddings:
            # Already on: the fit learned nothing per item (too few steps or rows per item).
            fix = (
                "train the predictor longer or on more rows per item (its item id "
                "embeddings are on but learned no difference)"
            )
        else:
            fix = (
                "refit with item id embeddings (loe-gym fit-predictor "
                "--model.item-id-embeddings)"
            )
        return (
            f"Every item gets the same click probability in this learned world (relative "
            f"spread {self.item_spread:.1e} over the {self.catalog.num_items} items, below "
            f"{ITEM_SPREAD_THRESHOLD:g}): {cause}. No policy could do better than random "
            "in it, so it is refused. Give the items public features or text (import the "
            f"log with item feature columns) and refit, or {fix}."
        )

    def _scores(self, state: LearnedUsersState, items: IntArray) -> dict[str, np.ndarray]:
        profile = state.profile if self._profile_shape else None
        scores = self.service.predict(
            state.history_item_ids,
            state.history_feedback,
            state.history_gaps,
            np.asarray(items),
            target_gaps=state.next_gap,
            history_profile=profile,
        )
        return {name: value.astype(np.float64) for name, value in scores.items()}

    @staticmethod
    def _of_choice(values: FloatArray, clicked: np.ndarray, clicked_any: np.ndarray) -> FloatArray:
        """``(N,)`` the clicked item's value, or the slate's mean without a click."""
        if values.shape[1] == 1:
            return values[:, 0]
        return np.where(clicked_any, row_sum(values * clicked), values.mean(axis=1))


def _logit(probability: FloatArray) -> FloatArray:
    return np.asarray(logit(np.clip(probability, 1e-6, 1.0 - 1e-6)))

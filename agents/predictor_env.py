"""The predictor inside the environment loop: its view of each user as observations,
its long-term heads as a reward model, and its task scores as an action space.

These are Gymnasium vector wrappers over `loe_gym.RecommendationVectorEnv` (either
autoreset mode), so the same wrapped env serves SB3 training (through
`agents.sb3_vec_env.RecommendationSB3VecEnv`) and the evaluation protocol:

| wrapper | changes | for |
|---|---|---|
| `PredictorObservations` | adds ``user_state (H,)`` and ``candidate_scores (C, 5)`` | every predictor-based agent |
| `PredictorReward` | reward := predicted watch + weighted predicted gains in next-day return and session continuation | training without the simulator's reward |
| `FusionWeights` | action := a ``Box`` of weights over the task scores (RLUR-style) | SAC / TD3 |

The predictor sees more than the environment's short ``history_item_ids`` window: the
wrapper keeps each user's last ``history_length`` rows with their time gaps and a running
long-term profile of the whole life (profiles add up, one new row per step), so the
encoding costs one backbone pass over ``history_length + 1`` tokens per user and step.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import VectorEnv, VectorWrapper

from agents.ranking import SCORE_NAMES, top_slates
from loe_gym import RecommendationVectorEnv
from loe_gym.envs.vector_env import AutoresetMode
from loe_gym.predictor.sequences import new_session_gap
from loe_gym.predictor.serving import SAME_SESSION_GAP, PredictorService

__all__ = [
    "FUSION_TASKS",
    "FusionWeights",
    "PredictorObservations",
    "PredictorReward",
    "check_predictor_matches",
    "item_vector_table",
    "rank_by_weights",
]


def _keys(space: gym.Space[Any]) -> set[str]:
    return set(space.spaces) if isinstance(space, spaces.Dict) else set()


def check_predictor_matches(service: PredictorService, core: RecommendationVectorEnv) -> None:
    """Raise ``ValueError`` unless the predictor was trained on the env's catalog."""
    reason = service.catalog_mismatch(core.catalog, "environment")
    if reason is not None:
        raise ValueError(
            f"{reason[0].upper()}{reason[1:]}; fit the predictor on logs of this environment "
            "(loe-gym collect-logs, then loe-gym fit-predictor)."
        )


class PredictorObservations(VectorWrapper):  # type: ignore[misc]
    """Adds the predictor's encoding of each user to the observations.

    New keys: ``user_state`` ``(N, H)`` float32, the predictor's user state, and
    ``candidate_scores`` ``(N, C, 5)`` float32, its prediction for each candidate shown
    next (columns `agents.ranking.SCORE_NAMES`); with ``item_vector_size = K > 0`` also
    ``candidate_item_vectors`` ``(N, C, K)`` float32, each candidate's item token (id,
    feature and text embedding) on the catalog's first ``K`` principal components, each
    scaled to unit variance over the catalog (`item_vector_table`).

    Args:
        env: a `RecommendationVectorEnv` (possibly wrapped) with the ``history``
            observation layout.
        service: the trained predictor (`PredictorService`), fitted on this catalog.
        history_length: rows the transformer sees (default: the predictor's maximum);
            older rows reach it through the long-term profile.
        item_vector_size: principal components of the item tokens per candidate (0: none).
            The task scores are what the predictor makes of an item for this user; the item
            vector is what it knows of the item itself, which the policy can weigh by the
            reward it earns (e.g. what a title says of a fresh item's quality).
    """

    def __init__(
        self,
        env: VectorEnv,
        service: PredictorService,
        history_length: int | None = None,
        item_vector_size: int = 0,
    ) -> None:
        super().__init__(env)
        core: RecommendationVectorEnv = env.unwrapped  # type: ignore[assignment]
        if "candidate_ids" not in _keys(core.single_observation_space):
            raise ValueError(
                "PredictorObservations needs the 'history' observation layout "
                f"(observation='history'); this env has {core.layout.kind!r}."
            )
        check_predictor_matches(service, core)
        self.service = service
        self.core = core
        config = service.config
        self.history_length = (
            int(config.max_history_length) if history_length is None else int(history_length)
        )
        if not 1 <= self.history_length <= int(config.max_history_length):
            raise ValueError(
                f"history_length must lie in [1, {config.max_history_length}] (the "
                f"predictor's max_history_length), got {history_length}."
            )
        self._num_gap_buckets = int(config.num_gap_buckets)
        self._has_profile = bool(config.long_term_profile)
        n, c = self.num_envs, core.config.num_candidates
        extra = {
            "user_state": spaces.Box(-np.inf, np.inf, (service.hidden_size,), np.float32),
            "candidate_scores": spaces.Box(0.0, np.inf, (c, len(SCORE_NAMES)), np.float32),
        }
        self._item_vectors = (
            item_vector_table(service.item_vectors(), item_vector_size)
            if item_vector_size
            else None
        )
        if self._item_vectors is not None:
            extra["candidate_item_vectors"] = spaces.Box(
                -np.inf, np.inf, (c, item_vector_size), np.float32
            )
        self.single_observation_space = spaces.Dict(
            {**env.single_observation_space.spaces, **extra}  # type: ignore[attr-defined]
        )
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, n)
        self._ids = np.full((n, self.history_length), -1, np.int64)
        self._feedback = np.zeros((n, self.history_length, 3), np.float32)
        self._gaps = np.zeros((n, self.history_length), np.int64)
        self._profile = (
            np.zeros((n, *config.profile_shape), np.float32) if self._has_profile else None
        )
        self._target_gaps = np.full(n, SAME_SESSION_GAP, np.int64)

    # --- Gymnasium API ---

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        mask = (options or {}).get("reset_mask")
        self._forget(np.ones(self.num_envs, bool) if mask is None else np.asarray(mask, bool))
        return self._augment(obs), info

    def step(
        self, actions: Any
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(actions)
        self._remember(info)
        done = terminated | truncated
        if self.core.autoreset_mode is AutoresetMode.SAME_STEP:
            if np.count_nonzero(done):
                self._augment_final(info, done)
                self._forget(done)
        else:
            # next_step mode: users reset by this step did not act; their obs is a new life.
            self._forget(~info["acted"])
        return self._augment(obs), reward, terminated, truncated, info

    # --- per-user memory ---

    def _forget(self, users: np.ndarray) -> None:
        self._ids[users] = -1
        self._feedback[users] = 0.0
        self._gaps[users] = 0
        if self._profile is not None:
            self._profile[users] = 0.0

    def _remember(self, info: dict[str, Any]) -> None:
        """Append each acting user's shown items and feedback; update the profiles."""
        acted = info["acted"]
        slates = np.where(acted[:, None], info["slate"], -1)  # (N, S)
        feedback = np.stack(
            [info["clicked"].astype(np.float32), info["watch_time"], info["completion"]], -1
        ).astype(np.float32)
        gaps = np.full(slates.shape, SAME_SESSION_GAP, np.int64)
        gaps[:, 0] = self._target_gaps
        if self._profile is not None:
            self._profile = self.service.history_profile(slates, feedback, self._profile)
        rows = np.flatnonzero(acted)
        for memory, new in ((self._ids, slates), (self._feedback, feedback), (self._gaps, gaps)):
            # Shift each acting user's window left by s and write the new rows at its end.
            window = np.concatenate([memory[rows], new[rows]], axis=1)
            memory[rows] = window[:, -self.history_length :]

    # --- observations ---

    def _gap_of_next_step(self, context: np.ndarray) -> np.ndarray:
        """Gap bucket of the step each user takes next, from ``context`` (day,
        step_in_session, days_since_last_visit), by the rule the logs use."""
        days = new_session_gap(context[:, 2], self._num_gap_buckets)
        return np.where(context[:, 1] > 0, SAME_SESSION_GAP, days)

    def _scores(
        self, rows: np.ndarray | slice, candidate_ids: np.ndarray, target_gaps: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        states, scores = self.service.encode_and_predict(
            self._ids[rows],
            self._feedback[rows],
            self._gaps[rows],
            candidate_ids,
            target_gaps,
            None if self._profile is None else self._profile[rows],
        )
        return states, np.stack([scores[name] for name in SCORE_NAMES], -1)

    def _augment(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._target_gaps = self._gap_of_next_step(obs["context"])
        states, scores = self._scores(slice(None), obs["candidate_ids"], self._target_gaps)
        return {**obs, **self._predictor_keys(obs["candidate_ids"], states, scores)}

    def _predictor_keys(
        self, candidate_ids: np.ndarray, states: np.ndarray, scores: np.ndarray
    ) -> dict[str, np.ndarray]:
        keys = {"user_state": states, "candidate_scores": scores}
        if self._item_vectors is not None:
            keys["candidate_item_vectors"] = self._item_vectors[candidate_ids]
        return keys

    def _augment_final(self, info: dict[str, Any], done: np.ndarray) -> None:
        """Add the predictor keys to the final observations of finished users (SB3
        bootstraps truncated lives from them)."""
        users = np.flatnonzero(done)
        finals = [info["final_obs"][u] for u in users]
        candidates = np.stack([f["candidate_ids"] for f in finals])
        context = np.stack([f["context"] for f in finals])
        states, scores = self._scores(users, candidates, self._gap_of_next_step(context))
        for i, user in enumerate(users):
            keys = self._predictor_keys(candidates[i], states[i], scores[i])
            info["final_obs"][user] = {**finals[i], **keys}


def item_vector_table(vectors: np.ndarray, size: int) -> np.ndarray:
    """``vectors (M, H)`` on their first ``size`` principal components, each scaled to unit
    variance over the ``M`` rows: ``(M, size)`` float32. Raises ``ValueError`` unless
    ``1 ≤ size ≤ min(M, H)``."""
    m, h = vectors.shape
    if not 1 <= size <= min(m, h):
        raise ValueError(
            f"item_vector_size must lie in [1, {min(m, h)}] (the predictor's hidden size "
            f"{h}, the catalog's {m} items), got {size}; 0 turns the item vectors off."
        )
    centred = vectors.astype(np.float64) - vectors.mean(0)
    _, singular, directions = np.linalg.svd(centred, full_matrices=False)
    # Components of (near) zero variance stay zero instead of being blown up to noise.
    spread = singular[:size] / np.sqrt(max(m - 1, 1))
    scale = np.divide(1.0, spread, out=np.zeros_like(spread), where=spread > 1e-8 * spread[0])
    # Each component's sign is fixed by its largest loading, so a refit gives the same table.
    signs = np.sign(directions[np.arange(size), np.abs(directions[:size]).argmax(1)])
    return (centred @ (directions[:size].T * signs * scale)).astype(np.float32)


def _chosen(values: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """``values (N, C)`` of the shown candidates, ``(N, S)``."""
    slots = np.asarray(actions).reshape(values.shape[0], -1)
    return np.take_along_axis(values, slots, axis=1)


class _ActsOnDecisionScores(VectorWrapper):  # type: ignore[misc]
    """Base of the wrappers that need the ``candidate_scores`` the agent saw when it chose
    (those of the previous observation)."""

    def __init__(self, env: VectorEnv, example: str) -> None:
        super().__init__(env)
        if "candidate_scores" not in _keys(env.single_observation_space):
            raise TypeError(
                f"{type(self).__name__} reads the predictor's scores: wrap a "
                f"PredictorObservations env, e.g. {example}."
            )
        self._scores: np.ndarray | None = None

    def reset(self, **kwargs: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._scores = obs["candidate_scores"]
        return obs, info

    def _decision_scores(self) -> np.ndarray:
        if self._scores is None:
            raise RuntimeError("Call reset() before step().")
        return self._scores

    def _step(
        self, actions: Any
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(actions)
        self._scores = obs["candidate_scores"]
        return obs, reward, terminated, truncated, info


class PredictorReward(_ActsOnDecisionScores):
    """Replaces the simulator's reward by one the predictor derives from the shown items.

    ``reward = Σ_shown [ E[watch] + return_weight · ΔP(return) + continuation_weight · ΔP(continue) ]``:
    the minutes the predictor expects now, plus two weighted long-term terms, each how much
    more likely than after an average candidate (``Δ``: minus the mean over the user's
    candidates) the user is to come back tomorrow (the return head's prediction if the
    session ended after this item) and to go on with the session (the continuation head).
    Centring keeps the terms from paying for steps as such (a "living bonus" that would
    reward dragging lives out); they pay for choosing what brings users back and keeps
    them watching.

    The estimates are those in ``candidate_scores`` at decision time. The simulator's own
    reward stays in ``info["true_reward"]`` for monitoring only; nothing the agent learns
    from reads it — unless ``observed_reward``, where it replaces ``E[watch]`` (the
    ``hybrid`` reward source: what happened now, plus the predictor's long-term terms).
    Wrap a `PredictorObservations` env.
    """

    def __init__(
        self,
        env: VectorEnv,
        return_weight: float = 30.0,
        continuation_weight: float = 20.0,
        *,
        observed_reward: bool = False,
    ) -> None:
        super().__init__(env, "PredictorReward(PredictorObservations(env, service))")
        for name, value in (
            ("return_weight", return_weight),
            ("continuation_weight", continuation_weight),
        ):
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be finite and ≥ 0, got {value}.")
        self.return_weight = float(return_weight)
        self.continuation_weight = float(continuation_weight)
        self.observed_reward = observed_reward

    def step(
        self, actions: Any
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        scores = self._decision_scores()
        obs, true_reward, terminated, truncated, info = self._step(actions)
        index = {name: i for i, name in enumerate(SCORE_NAMES)}

        def gain(name: str) -> np.ndarray:
            values = scores[..., index[name]]
            return _chosen(values, actions) - values.mean(axis=1, keepdims=True)

        # What happens now: the simulator's reward, or the minutes the predictor expects.
        now = 0.0 if self.observed_reward else _chosen(scores[..., index["watch_time"]], actions)
        reward = (
            now
            + self.return_weight * gain("return_probability")
            + self.continuation_weight * gain("continuation_probability")
        ).sum(axis=1)
        if self.observed_reward:
            reward = reward + true_reward
        if "acted" in info:
            reward = np.where(info["acted"], reward, 0.0)
        info["true_reward"] = true_reward
        return obs, reward, terminated, truncated, info


FUSION_TASKS = ("click_probability", "watch_time", "continuation_probability", "return_probability")
"""The task scores a fusion-weight action weights, in order."""


def rank_by_weights(weights: np.ndarray, scores: np.ndarray, slate_size: int) -> np.ndarray:
    """Candidate indices ``(N,)`` (or ``(N, S)`` for slates) of the best candidates when
    each is ranked by ``Σ_k w_k · z_k``: ``weights`` ``(N, 4)`` over `FUSION_TASKS`,
    ``z`` the candidate's scores ``(N, C, 5)`` standardised within the user's candidates
    (so that one weight scale fits probabilities and minutes alike)."""
    tasks = scores[..., [SCORE_NAMES.index(name) for name in FUSION_TASKS]]
    z = (tasks - tasks.mean(1, keepdims=True)) / (tasks.std(1, keepdims=True) + 1e-6)
    w = np.clip(np.asarray(weights, np.float32).reshape(-1, 1, len(FUSION_TASKS)), -1.0, 1.0)
    return top_slates((z * w).sum(-1), slate_size)


class FusionWeights(_ActsOnDecisionScores):
    """An RLUR-style action: a ``Box`` of weights over the predictor's task scores.

    The agent outputs ``w ∈ [−1, 1]^4`` over click probability, expected watch,
    continuation and next-day return (`FUSION_TASKS`); `rank_by_weights` picks the shown
    candidates. Wrap a `PredictorObservations` env (after `PredictorReward`, if any: the
    reward wrapper reads candidate indices).
    """

    def __init__(self, env: VectorEnv) -> None:
        super().__init__(env, "FusionWeights(PredictorObservations(env, service))")
        self.core: RecommendationVectorEnv = env.unwrapped  # type: ignore[assignment]
        k = len(FUSION_TASKS)
        self.single_action_space = spaces.Box(-1.0, 1.0, (k,), np.float32)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)

    def step(
        self, actions: Any
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        weights = np.asarray(actions)
        expected = (self.num_envs, len(FUSION_TASKS))
        if weights.shape != expected or weights.dtype.kind not in "fiu":
            raise ValueError(
                f"FusionWeights actions must be numbers of shape {expected} (num_users, one "
                f"weight per task of {FUSION_TASKS}), got {weights.dtype} of shape "
                f"{weights.shape}."
            )
        if not np.isfinite(weights).all():
            user = int(np.flatnonzero(~np.isfinite(weights).all(axis=1))[0])
            raise ValueError(
                f"FusionWeights actions must be finite; user {user} got "
                f"{weights[user].tolist()}. A NaN action usually means the agent diverged."
            )
        slate_size = self.core.config.slate_size
        return self._step(rank_by_weights(weights, self._decision_scores(), slate_size))

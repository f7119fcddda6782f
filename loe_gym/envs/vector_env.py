"""The batched core: a Gymnasium ``VectorEnv`` where each sub-environment is one user.

Everything else is a view of this class: `RecommendationEnv` is its ``num_users=1``
view, and the SB3 adapter in ``agents`` drives it in ``same_step`` autoreset mode.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from loe_gym.envs.candidates import CandidateRetrieval
from loe_gym.envs.config import EnvConfig, parse_autoreset
from loe_gym.envs.observations import (
    PROFILE_WEIGHTS,
    ObservationLayout,
    check_memory,
    history_features,
    updated_profile,
)
from loe_gym.envs.rendering import RENDER_FPS, RENDER_MODES, check_render_mode, render_text
from loe_gym.envs.simulators import make_simulator
from loe_gym.errors import did_you_mean
from loe_gym.simulator import (
    Responses,
    check_step,
    replace_users,
    row_sum,
    user_feature_bounds,
)
from loe_gym.spaces import SlateSpace, replace_repeats
from loe_gym.types import BoolArray, Generator, IntArray

PER_USER_ARRAYS = (
    "_user_id",
    "_episode",
    "_day",
    "_session",
    "_step_in_session",
    "_days_since_last_visit",
    "_episode_steps",
    "_history_items",
    "_history_feedback",
    "_history_profile",
    "_last_response",
    "_needs_reset",
    "_candidates",
)
"""The env's arrays with leading axis ``num_users`` besides the simulator state: what a
fork (`loe_gym.envs.forking.fork_env`) copies per user."""


class RecommendationVectorEnv(VectorEnv):  # type: ignore[type-arg]
    """A batch of users, each living through sessions and days of recommendations.

    ## Description

    Each of the ``num_envs`` sub-environments is one user of a user simulator
    (``simulator``; the default is the long-term-engagement model of
    ``simulators.engagement``). At every step the environment retrieves
    ``num_candidates`` items uniformly without replacement from the catalog, the agent
    picks a slate of ``slate_size`` of them, the simulator's users respond (click, watch,
    end the session, come back after some days or churn) and change (interests,
    satisfaction, fatigue). An episode is one user's life over ``horizon_days`` days
    across many sessions: the goal is long-term engagement, not the next click.

    ## Action Space

    ``slate_size == 1``: ``Discrete(num_candidates)`` per user, the index of the
    candidate to show (batched: ``MultiDiscrete([num_candidates] * num_users)``).
    ``slate_size > 1``: `loe_gym.spaces.SlateSpace` per user, a ``MultiDiscrete`` of
    ``slate_size`` indices of *distinct* candidates (its ``sample`` draws distinct ones).
    A repeated candidate is replaced, left to right, by the lowest unused candidate index
    (policies of SB3, TorchRL and others sample a ``MultiDiscrete``'s positions
    independently); ``info["slate"]`` holds the items shown. With
    ``duplicate_slate_items="error"`` a repeat is rejected instead.

    ## Observation Space

    A flat ``Dict`` (per user; the vector env adds a leading ``num_users`` axis).
    With ``observation="history"`` (default):

    | key | meaning | shape | range |
    |-----|---------|-------|-------|
    | ``candidate_ids`` | catalog ids of the candidates | ``(C,)`` int64 | ``[0, num_items)`` |
    | ``candidate_features`` | public features of the candidates | ``(C, F)`` float32 | catalog min/max |
    | ``history_item_ids`` | last ``H`` shown items, oldest first; −1 = none yet | ``(H,)`` int64 | ``[−1, num_items)`` |
    | ``history_features`` | public features of the history items; zeros where none yet | ``(H, F)`` float32 | catalog min/max and 0 |
    | ``history_feedback`` | clicked, watch_time (min), completion per history item | ``(H, 3)`` float32 | ``≥ 0`` |
    | ``history_profile`` | the whole life's shown items: per weight (shown, clicked, watch minutes, completion) their features' weighted mean, then the weight's total | ``(4, F + 1)`` float32 | catalog min/max and 0; totals ``≥ 0`` |
    | ``context`` | day, step in session, days since the previous visit | ``(3,)`` float32 | ``≥ 0`` |
    | ``user`` | observable user features, only if the simulator has some | ``(U,)`` float32 | simulator's |

    With ``observation="recsim"``: ``user`` (the simulator's observable user vector,
    ``(U,)``), ``doc`` (candidates' features, ``(C, F)``), ``doc_ids`` (their ids,
    ``(C,)`` int64) and ``response`` (the last step's responses per slate position,
    ``(slate_size, R)`` float32, columns ``clicked, watch_time`` then the simulator's
    ``response_extras``; zeros before the first step).

    ## Rewards

    ``reward="watch_time"`` (default): minutes watched this step.
    ``reward="click"``: number of clicks this step. ``info["reward_parts"]`` reports both.

    ## Starting State

    New users are sampled by ``simulator.reset`` at the start of a session on day 0,
    with an empty history.

    ## Episode End

    ``terminated``: the user churned (for the engagement model: the return gap exceeded
    the churn threshold; for the RecSim ports: the time budget ran out, RecSim's ``done``).
    ``truncated``: the user's next visit would fall on day ``horizon_days`` or later, or
    the episode reached ``max_episode_steps``.
    Finished users are replaced by new ones according to ``autoreset_mode``
    (Gymnasium's ``next_step`` by default; ``same_step`` puts the final observation in
    ``info["final_obs"]``).

    ## Info

    Arrays with leading axis ``num_users`` describing the step just taken: ``acted``
    (False where the step only reset the user), ``user_id`` (unique per simulated user
    life), ``life`` (how many lives the slot held before this one; not ``episode``, which
    Gymnasium's ``RecordEpisodeStatistics`` and SB3's ``Monitor`` reserve for episode
    summaries), ``day``, ``session``, ``step_in_session``, ``slate`` (item ids),
    ``clicked``, ``watch_time``, ``completion``, ``session_end``, ``gap_days``,
    ``churned``, ``returned_next_day``, and ``reward_parts`` (``watch_time``, ``click``).

    ## Arguments

    | argument | default | meaning |
    |----------|---------|---------|
    | ``num_envs`` | 1 | number of users simulated side by side |
    | ``simulator`` | ``"simulators.engagement:EngagementUsers"`` | instance, class, entry point or built-in name |
    | ``simulator_kwargs`` | ``{}`` | options of the simulator's config |
    | ``num_candidates`` | 20 | candidates per step |
    | ``slate_size`` | 1 | items shown per step |
    | ``history_length`` | 10 | history items in the observation |
    | ``horizon_days`` | 30 | days per episode |
    | ``max_episode_steps`` | None | optional step cap per episode |
    | ``reward`` | ``"watch_time"`` | or ``"click"`` |
    | ``observation`` | ``"history"`` | or ``"recsim"`` |
    | ``duplicate_slate_items`` | ``"replace"`` | or ``"error"`` (see Action Space) |
    | ``autoreset_mode`` | ``"next_step"`` | or ``"same_step"``, ``"disabled"`` |

    ## Version History

    * v0: initial version.

    Example:
        >>> import gymnasium as gym
        >>> import loe_gym
        >>> envs = gym.make_vec("loe_gym/Engagement-v0", num_envs=4)
        >>> obs, info = envs.reset(seed=0)
        >>> obs["candidate_features"].shape
        (4, 20, 13)
        >>> obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
        >>> reward.shape
        (4,)
    """

    metadata: dict[str, Any] = {  # noqa: RUF012 (Gymnasium declares it so)
        "autoreset_mode": AutoresetMode.NEXT_STEP,
        "render_modes": list(RENDER_MODES),
        "render_fps": RENDER_FPS,
    }

    def __init__(
        self,
        num_envs: int = 1,
        *,
        autoreset_mode: str | AutoresetMode = "next_step",
        render_mode: str | None = None,
        **options: Any,
    ) -> None:
        if (
            isinstance(num_envs, bool)
            or not isinstance(num_envs, (int, np.integer))
            or num_envs < 1
        ):
            raise ValueError(
                f"num_envs (the number of users) must be a positive integer, got {num_envs!r}."
            )
        self.config = EnvConfig.from_dict(options)
        self.autoreset_mode = parse_autoreset(autoreset_mode)
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}
        self.simulator = make_simulator(self.config.simulator, self.config.simulator_kwargs)
        self.catalog = self.simulator.catalog
        cfg = self.config
        if cfg.num_candidates > self.catalog.num_items:
            raise ValueError(
                f"num_candidates={cfg.num_candidates} exceeds the catalog's {self.catalog.num_items} "
                "items; lower num_candidates or use a larger catalog."
            )
        self.num_envs = int(num_envs)
        self.num_users = self.num_envs
        self.render_mode = check_render_mode(render_mode)
        self._build_spaces()

        self._features = self.catalog.features  # (num_items, F) float32, read-only
        self._rows = np.arange(self.num_envs)[:, None]
        self._watch_time_limit = getattr(self.simulator, "watch_time_observation_limit", None)
        # Arrays that step() creates anew every step (so it may reset their rows in place).
        recorded = (
            {"_last_response"}
            if cfg.observation == "recsim"
            else {"_history_profile"}
            | ({"_history_items", "_history_feedback"} if cfg.history_length else set())
        )
        self._fresh_after_step = frozenset(
            {
                "_day",
                "_session",
                "_step_in_session",
                "_days_since_last_visit",
                "_episode_steps",
                "_candidates",
                *recorded,
            }
        )
        self._rng: Generator = np.random.default_rng()
        self._candidate_rng: Generator = np.random.default_rng()
        self._next_user_id = 0
        self._has_reset = False
        self._retrieval = CandidateRetrieval(self.catalog, cfg.num_candidates, cfg.horizon_days)

    def _build_spaces(self) -> None:
        """The observation layout and the single and batched spaces."""
        cfg = self.config
        extras = tuple(getattr(self.simulator, "response_extras", ()))
        self.layout = ObservationLayout(
            kind=cfg.observation,
            num_candidates=cfg.num_candidates,
            slate_size=cfg.slate_size,
            history_length=cfg.history_length,
            user_feature_size=int(self.simulator.user_feature_size),
            response_fields=("clicked", "watch_time", *extras),
        )
        # float32 like the observation (float64 bounds make Gymnasium warn on every build).
        low, high = user_feature_bounds(self.simulator)
        user_bounds = (low.astype(np.float32), high.astype(np.float32))
        self.single_observation_space = self.layout.space(self.catalog, user_bounds)
        check_memory(self.num_envs, self.single_observation_space)  # before batching it
        if cfg.slate_size == 1:
            self.single_action_space: spaces.Space[Any] = spaces.Discrete(cfg.num_candidates)
            self.action_space = batch_space(self.single_action_space, self.num_envs)
        else:
            self.single_action_space = SlateSpace(cfg.num_candidates, cfg.slate_size)
            self.action_space = SlateSpace(cfg.num_candidates, cfg.slate_size, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)

    # ------------------------------------------------------------------ reset

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Sample new users (all, or those in ``options["reset_mask"]``).

        Args:
            seed: an int seeds the environment's single random generator (users are
                drawn from one stream, so a batch is reproducible as a whole).
            options: ``{"reset_mask": (num_users,) bool}`` to reset only some users.
        """
        # Validate everything before changing anything: a rejected reset leaves the env as it was.
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            if isinstance(seed, (list, tuple)):
                raise TypeError(
                    "RecommendationVectorEnv draws all users from one random stream; pass one "
                    f"int seed, not a list of {len(seed)} seeds."
                )
            raise TypeError(f"seed must be an int or None, got {seed!r}.")
        if seed is not None and seed < 0:
            raise ValueError(f"seed must be a non-negative int or None, got {seed}.")
        options = dict(options or {})
        unknown = [key for key in options if key != "reset_mask"]
        if unknown:
            raise ValueError(
                f"Unknown reset option {unknown[0]!r}.{did_you_mean(str(unknown[0]), ['reset_mask'])} "
                "The only option is 'reset_mask'."
            )
        mask = options.get("reset_mask")
        if mask is not None:
            if not self._has_reset:
                raise ValueError(
                    "The first reset must reset every user: drop options['reset_mask']."
                )
            mask = np.asarray(mask)
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
                raise ValueError(
                    f"options['reset_mask'] must be a bool array of shape ({self.num_envs},), got "
                    f"{mask.dtype} of shape {mask.shape}."
                )
        if seed is not None:
            # Two streams: users and their responses, and candidate retrieval. Policies
            # compared under one seed then see the same users and the same candidates.
            user_seed, candidate_seed = np.random.SeedSequence(int(seed)).spawn(2)
            self._rng = np.random.default_rng(user_seed)
            self._candidate_rng = np.random.default_rng(candidate_seed)
            self._next_user_id = 0  # same seed, same user ids
        if mask is None:
            self._reset_all()
        else:
            self._reset_users(mask)
        self._has_reset = True
        return self._observe(), {"user_id": self._user_id.copy()}

    def _reset_all(self) -> None:
        n, cfg = self.num_envs, self.config
        self._state = self.simulator.reset(n, self._rng)
        self._user_id = np.arange(self._next_user_id, self._next_user_id + n, dtype=np.int64)
        self._next_user_id += n
        self._episode = np.zeros(n, np.int64)
        self._day = np.zeros(n, np.int64)
        self._session = np.zeros(n, np.int64)
        self._step_in_session = np.zeros(n, np.int64)
        self._days_since_last_visit = np.zeros(n, np.int64)
        self._episode_steps = np.zeros(n, np.int64)
        self._history_items: np.ndarray = np.full((n, cfg.history_length), -1, np.int64)
        self._history_feedback = np.zeros((n, cfg.history_length, 3), np.float32)
        self._history_profile = np.zeros(
            (n, len(PROFILE_WEIGHTS), self.catalog.num_features + 1), np.float32
        )
        self._last_response = np.zeros(
            (n, cfg.slate_size, len(self.layout.response_fields)), np.float32
        )
        self._needs_reset = np.zeros(n, bool)
        self._candidates = self._draw_candidates(n, self._day)

    def _reset_users(self, mask: BoolArray, fresh: frozenset[str] = frozenset()) -> None:
        """Replace the users in ``mask`` by new ones.

        Arrays may be shared with observations already handed out, so they are copied
        before writing, except those named in ``fresh``: ``step`` passes the arrays it
        created itself this step (not yet handed out), whose rows it may overwrite in
        place. Outside ``step`` new candidates are drawn for the new users; inside, the
        whole batch has just drawn fresh ones, which keeps the candidate stream aligned
        across policies.
        """
        count = int(np.count_nonzero(mask))
        if count == 0:
            return
        self._state = replace_users(self._state, mask, self.simulator.reset(count, self._rng))
        new_ids = np.arange(self._next_user_id, self._next_user_id + count, dtype=np.int64)
        self._next_user_id += count
        self._user_id = _put(self._user_id, mask, new_ids)
        self._episode = self._episode + mask
        for name, value in (
            ("_day", 0),
            ("_session", 0),
            ("_step_in_session", 0),
            ("_days_since_last_visit", 0),
            ("_episode_steps", 0),
            ("_history_items", -1),
            ("_history_feedback", 0.0),
            ("_history_profile", 0.0),
            ("_last_response", 0.0),
            ("_needs_reset", False),
        ):
            array = getattr(self, name)
            if name not in fresh:
                array = array.copy()
            array[mask] = value
            setattr(self, name, array)
        if "_candidates" not in fresh or self._retrieval.by_day:
            # With item churn the batch drew for the old users' days: new users start on 0.
            self._candidates = _put(
                self._candidates, mask, self._draw_candidates(count, np.zeros(count, np.int64))
            )

    # ------------------------------------------------------------------- step

    def step(
        self, actions: Any
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._has_reset:
            raise RuntimeError("Call reset() before step().")
        cfg = self.config
        slots = self._validate_actions(actions)  # (N, S) candidate indices
        needs_reset = self._needs_reset
        # count_nonzero is several times cheaper than .any() on small arrays, and a
        # single-user step is a few dozen such calls.
        resetting = np.count_nonzero(needs_reset) > 0
        if resetting and self.autoreset_mode is AutoresetMode.DISABLED:
            users = np.flatnonzero(needs_reset)[:5].tolist()
            raise RuntimeError(
                f"Users {users} finished their episode; with autoreset_mode='disabled' call "
                "reset(options={'reset_mask': mask}) for them before stepping again."
            )
        acted = ~needs_reset
        # Describe the step about to be taken (info), before time advances.
        day, session, step_in_session = self._day, self._session, self._step_in_session
        user_id, episode = self._user_id, self._episode

        slates = self._candidates[self._rows, slots]
        state = self._state
        responses = self.simulator.respond(state, slates, self._rng)
        watch = row_sum(responses.watch_time)
        check_step(self.simulator, responses, watch)  # before anything changes
        self._state = self.simulator.update(state, slates, responses, self._rng)

        clicks = row_sum(responses.clicked).astype(np.float64)
        reward = watch if cfg.reward == "watch_time" else clicks

        terminated, truncated = self._advance_time(day, session, step_in_session, responses)
        self._record(slates, responses)
        self._candidates = self._draw_candidates(self.num_envs, self._day)
        fresh = self._fresh_after_step

        info: dict[str, Any] = {
            "acted": acted,
            "user_id": user_id,
            "life": episode,
            "day": day,
            "session": session,
            "step_in_session": step_in_session,
            "slate": slates,
            "clicked": responses.clicked,
            "watch_time": responses.watch_time,
            "completion": responses.completion,
            "session_end": responses.session_end,
            "gap_days": responses.gap_days,
            "churned": responses.churned,
            "returned_next_day": responses.returned_next_day,
            "reward_parts": {"watch_time": watch, "click": clicks},
        }
        if resetting:
            # Gymnasium's next-step autoreset: this step only resets those users.
            self._reset_users(needs_reset, fresh)
            reward = np.where(acted, reward, 0.0)
            terminated &= acted
            truncated &= acted
            _silence(info, acted)
            info["user_id"], info["life"] = self._user_id.copy(), self._episode.copy()
        done = terminated | truncated
        if self.autoreset_mode is AutoresetMode.SAME_STEP and np.count_nonzero(done):
            self._reset_now(done, fresh, info)
        elif self.autoreset_mode is not AutoresetMode.SAME_STEP:
            self._needs_reset = done
        return self._observe(), reward, terminated, truncated, info

    def _advance_time(
        self, day: np.ndarray, session: np.ndarray, step_in_session: np.ndarray, responses: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Move the clock past a step; ``(terminated, truncated)``, each ``(N,) bool``.

        A finished session moves the user to the day of the next visit."""
        cfg = self.config
        session_end, churned = responses.session_end, responses.churned
        returns = session_end & ~churned
        self._day = day + np.where(returns, responses.gap_days, 0)
        self._session = session + returns
        self._step_in_session = np.where(session_end, 0, step_in_session + 1)
        self._days_since_last_visit = np.where(
            returns, responses.gap_days, self._days_since_last_visit
        )
        self._episode_steps = self._episode_steps + 1
        terminated = churned.copy()
        truncated = ~terminated & (self._day >= cfg.horizon_days)
        if cfg.max_episode_steps is not None:
            truncated |= ~terminated & (self._episode_steps >= cfg.max_episode_steps)
        return terminated, truncated

    def _reset_now(self, done: np.ndarray, fresh: frozenset[str], info: dict[str, Any]) -> None:
        """Same-step autoreset: keep the finished users' last observations in ``info``."""
        final_obs = self._observe()
        info["final_obs"] = np.array(
            [
                # Copies: the reset below overwrites these rows in place.
                {k: v[i].copy() for k, v in final_obs.items()} if done[i] else None
                for i in range(self.num_envs)
            ],
            dtype=object,
        )
        info["_final_obs"] = done
        self._reset_users(done, fresh)

    # ---------------------------------------------------------------- helpers

    def _validate_actions(self, actions: Any) -> IntArray:
        """Return ``(num_users, slate_size)`` int64 candidate indices or raise."""
        n, c, s = self.num_envs, self.config.num_candidates, self.config.slate_size
        array = np.asarray(actions)
        expected = (n,) if s == 1 else (n, s)
        if array.shape != expected:
            if s == 1 and array.shape == (n, 1):
                array = array[:, 0]
            else:
                raise ValueError(
                    f"actions must have shape {expected} (num_users={n}"
                    f"{'' if s == 1 else f', slate_size={s}'}), got shape {array.shape}."
                )
        if array.dtype.kind not in "iu":
            detail = ""
            if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
                detail = " containing NaN or inf"
            raise TypeError(
                f"actions must be integer candidate indices in [0, {c}), got dtype "
                f"{array.dtype}{detail}. Pass integer indices, e.g. actions.astype(np.int64)."
            )
        if np.count_nonzero((array < 0) | (array >= c)):
            flat = array.reshape(n, -1)
            user = int(np.flatnonzero(((flat < 0) | (flat >= c)).any(axis=1))[0])
            raise ValueError(
                f"actions must be candidate indices in [0, {c}); user {user} got "
                f"{flat[user].tolist() if s > 1 else int(flat[user, 0])}."
            )
        slots = array.reshape(n, s).astype(np.int64, copy=False)
        if s > 1:
            ordered = np.sort(slots, axis=1)
            equal = ordered[:, 1:] == ordered[:, :-1]
            if np.count_nonzero(equal):
                if self.config.duplicate_slate_items == "replace":
                    return replace_repeats(slots, c)
                user = int(np.flatnonzero(equal)[0] // (s - 1))
                raise ValueError(
                    f"A slate must hold distinct candidates; user {user} got {slots[user].tolist()}. "
                    "Pick slate_size different candidate indices."
                )
        return slots

    def _draw_candidates(self, count: int, days: IntArray) -> IntArray:
        """``(count, C)`` distinct candidate ids per row, for users on ``days (count,)``."""
        return self._retrieval.draw(count, days, self._candidate_rng)

    def _record(self, slates: IntArray, responses: Responses) -> None:
        """Push the shown items into the history and keep the responses for ``recsim``."""
        cfg = self.config
        if self.layout.kind == "recsim":
            watch_time = responses.watch_time
            if self._watch_time_limit is not None:
                # RecSim clips what the agent observes (not the reward) to its response space.
                watch_time = np.minimum(watch_time, self._watch_time_limit)
            response = np.empty(self._last_response.shape, np.float32)
            response[..., 0] = responses.clicked
            response[..., 1] = watch_time
            for column, name in enumerate(self.layout.response_fields[2:], start=2):
                response[..., column] = responses.extras[name]
            self._last_response = response
            return
        self._history_profile = updated_profile(
            self._history_profile, np.take(self._features, slates, axis=0), responses
        )
        h, s = cfg.history_length, cfg.slate_size
        if h == 0:
            return
        if s >= h:
            self._history_items = slates[:, s - h :].copy()
        else:
            self._history_items = np.concatenate([self._history_items[:, s:], slates], axis=1)
        # Shift the window left by s and write this step's feedback at its end.
        feedback = np.empty_like(self._history_feedback)
        kept = max(h - s, 0)
        feedback[:, :kept] = self._history_feedback[:, s:]
        new = slice(kept, h)
        first = max(s - h, 0)
        feedback[:, new, 0] = responses.clicked[:, first:]
        feedback[:, new, 1] = responses.watch_time[:, first:]
        feedback[:, new, 2] = responses.completion[:, first:]
        self._history_feedback = feedback

    def _observe(self) -> dict[str, np.ndarray]:
        candidate_features = np.take(self._features, self._candidates, axis=0)
        if self.layout.kind == "recsim":
            return {
                "user": self.simulator.user_features(self._state).astype(np.float32, copy=False),
                "doc": candidate_features,
                "doc_ids": self._candidates,
                "response": self._last_response,
            }
        context = np.empty((self.num_envs, 3), np.float32)
        context[:, 0] = self._day
        context[:, 1] = self._step_in_session
        context[:, 2] = self._days_since_last_visit
        obs = {
            "candidate_ids": self._candidates,
            "candidate_features": candidate_features,
            "history_item_ids": self._history_items,
            "history_features": history_features(self._features, self._history_items),
            "history_feedback": self._history_feedback,
            "history_profile": self._history_profile,
            "context": context,
        }
        if self.layout.user_feature_size:
            obs["user"] = self.simulator.user_features(self._state).astype(np.float32, copy=False)
        return obs

    def action_masks(self) -> BoolArray:
        """``(num_users, C)`` (slates: ``(num_users, S·C)``, a block per position): True
        where a candidate may be chosen, which is every one (sb3-contrib's MaskablePPO
        asks)."""
        return np.ones((self.num_envs, self.config.num_candidates * self.config.slate_size), bool)

    def render(self) -> tuple[str, ...] | None:
        """With ``render_mode="ansi"``, one line of text per user; else ``None``."""
        return render_text(self) if self.render_mode == "ansi" else None

    # -------------------------------------------------------- for baselines

    @property
    def state(self) -> Any:
        """The simulator's (privileged) state of the current users; read-only by contract."""
        return self._state

    @property
    def candidates(self) -> IntArray:
        """``(num_users, num_candidates)`` item ids of the current candidates."""
        return self._candidates

    @property
    def rng(self) -> Generator:
        return self._rng

    @property
    def day(self) -> IntArray:
        """``(num_users,) int64`` the day of each user's next step."""
        return self._day

    @property
    def needs_reset(self) -> BoolArray:
        """``(num_users,) bool`` users whose next step only resets them (next_step mode)."""
        return self._needs_reset

    def fork(self, users: Any, copies: int = 1, *, seed: int | None = None) -> Any:
        """A new env of ``len(users) * copies`` slots copying those users' rows, with
        common random numbers across copies; this env is untouched (see
        `loe_gym.envs.forking.fork_env`)."""
        from loe_gym.envs.forking import fork_env

        return fork_env(self, users, copies, seed=seed)

    def __repr__(self) -> str:
        return (
            f"RecommendationVectorEnv(num_users={self.num_envs}, simulator={self.simulator!r}, "
            f"num_candidates={self.config.num_candidates}, slate_size={self.config.slate_size})"
        )


def _put(array: np.ndarray, mask: BoolArray, values: Any) -> np.ndarray:
    """A copy of ``array`` with rows ``mask`` set to ``values``."""
    out = array.copy()
    out[mask] = values
    return out


def _silence(info: dict[str, Any], acted: np.ndarray) -> None:
    """Zero what ``info`` says of users who did not act (their slot was being reset): the
    simulator stepped those users' finished lives too; report nothing of it."""
    for key in ("session_end", "churned", "returned_next_day", "clicked"):
        info[key] = info[key] & (acted[:, None] if info[key].ndim == 2 else acted)
    for key in ("watch_time", "completion"):
        info[key] = np.where(acted[:, None], info[key], 0.0)
    info["gap_days"] = np.where(acted, info["gap_days"], 0)
    info["reward_parts"] = {
        name: np.where(acted, part, 0.0) for name, part in info["reward_parts"].items()
    }

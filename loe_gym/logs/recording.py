"""`LogInteractions`: a vector-env wrapper that logs every real step to a Parquet log,
with the privileged columns (evaluation only) on request."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper

from loe_gym.catalog import Catalog
from loe_gym.logs.validation import _as_array
from loe_gym.logs.writer import ParquetLogWriter
from loe_gym.simulator import is_privileged

__all__ = ["LogInteractions"]

# Log column -> key of the loe_gym vector env's step info.
_INFO_KEYS: Final = {
    "user_id": "user_id",
    "episode": "life",
    "day": "day",
    "session": "session",
    "step": "step_in_session",
    "clicked": "clicked",
    "watch_time": "watch_time",
    "completion": "completion",
    "session_end": "session_end",
    "returned_next_day": "returned_next_day",
    "gap_days": "gap_days",
    "slates": "slate",
    "mask": "acted",
}
_INFO_LABELS: Final = {
    **{name: f"info[{key!r}]" for name, key in _INFO_KEYS.items()},
    "true_click_probability": "simulator.expected_responses()['click_probability']",
    "true_watch_time": "simulator.expected_responses()['watch_time']",
    "true_return_probability": "simulator.return_probability()",
}


def _find_catalog(env: VectorEnv) -> Catalog | None:
    unwrapped = env.unwrapped
    catalog = getattr(unwrapped, "catalog", None)
    if catalog is None:
        catalog = getattr(getattr(unwrapped, "simulator", None), "catalog", None)
    return catalog if isinstance(catalog, Catalog) else None


def _privileged_core(env: VectorEnv) -> Any:
    """The unwrapped loe_gym core of ``env``, checked to support privileged logging."""
    core = env.unwrapped
    simulator = getattr(core, "simulator", None)
    # Looked up on the class too: the core's state property is unset before reset.
    if not (hasattr(type(core), "state") or hasattr(core, "state")) or simulator is None:
        raise TypeError(
            "privileged=True needs a loe_gym vector environment exposing .state and "
            f".simulator (gym.make_vec('loe_gym/...', ...)); got {type(core).__name__}."
        )
    if not is_privileged(simulator):
        raise TypeError(
            f"privileged=True needs a simulator with expected_responses(); "
            f"{type(simulator).__name__} has none (see loe_gym.PrivilegedSimulator)."
        )
    mode = env.metadata.get("autoreset_mode", getattr(core, "autoreset_mode", None))
    if mode == AutoresetMode.SAME_STEP:
        # The return probability needs each user's state after the step; same-step
        # autoreset replaces the finished users' state before the wrapper can read it.
        raise ValueError(
            "privileged=True needs autoreset_mode 'next_step' (the default) or 'disabled': "
            "with 'same_step' the state of users who finish is replaced within the step."
        )
    return core


class LogInteractions(VectorWrapper):
    """Logs every real step of a loe_gym vector environment to a Parquet log.

    Reads the per-step arrays of the environment's ``info`` (``acted``, ``user_id``,
    ``episode``, ``day``, ``session``, ``step_in_session``, ``slate``, ``clicked``,
    ``watch_time``, ``completion``, ``session_end``, ``gap_days``,
    ``returned_next_day``); users with ``acted`` False (an autoreset step) are skipped,
    and so are slots outside `log_mask` when it is set.
    Buffered rows are flushed on `reset`; `close` closes the log and the environment.

    With ``privileged=True`` it also logs the privileged columns (evaluation only) from
    the unwrapped core's ``simulator`` and ``state``: ``expected_responses(state, slate)``
    of the state before the step, and ``simulator.return_probability(state)`` of the
    state after it where the simulator has that method (else NaN).

    Args:
        env: a loe_gym vector environment (``gym.make_vec("loe_gym/Engagement-v0", ...)``).
        path: the log directory (see `ParquetLogWriter`).
        policy: name of the policy acting in the environment (the ``policy`` column).
        rows_per_group: rows per part file.
        overwrite: replace an existing log at ``path``.
        catalog: catalog to store with the log; by default the environment's.
        privileged: log the privileged columns (needs a `PrivilegedSimulator` and
            ``next_step`` or ``disabled`` autoreset).
        policy_components: component names of a mixture policy (see `ParquetLogWriter`).

    Attributes:
        writer: the `ParquetLogWriter`.
        policy_component: ``(num_envs,)`` index into ``policy_components`` of the
            component that chose the coming step's slates (−1 for none), or None; the
            acting policy sets it before each step.
    """

    def __init__(
        self,
        env: VectorEnv,
        path: str | os.PathLike[str],
        *,
        policy: str,
        rows_per_group: int = 65_536,
        overwrite: bool = False,
        catalog: Catalog | None = None,
        privileged: bool = False,
        policy_components: Sequence[str] = (),
        run: Mapping[str, Any] | None = None,
        resume: bool = False,
    ) -> None:
        super().__init__(env)
        self.policy_component: np.ndarray | None = None
        # Checked before the writer exists, so a refused wrapper creates no log.
        # The unwrapped core when logging privileged columns, else None.
        self._core: Any = _privileged_core(env) if privileged else None
        self._log_mask: np.ndarray | None = None
        self.writer = ParquetLogWriter(
            path,
            rows_per_group=rows_per_group,
            policy=policy,
            catalog=catalog if catalog is not None else _find_catalog(env),
            overwrite=overwrite,
            privileged=privileged,
            policy_components=policy_components,
            run=run,
            resume=resume,
        )

    @property
    def log_mask(self) -> np.ndarray | None:
        """``(num_envs,) bool`` slots whose steps are logged (with ``acted``), or None
        for every slot. Set it to stop logging slots, e.g. once a population's user has
        finished and the slot holds a new user."""
        return self._log_mask

    @log_mask.setter
    def log_mask(self, mask: Any) -> None:
        if mask is not None:
            mask = _as_array(
                "log_mask", mask, kind="b", shape=(self.num_envs,), expected="(num_envs,)"
            ).copy()
        self._log_mask = mask

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        # A reset ends the episodes in flight: make their rows durable.
        self.writer.flush()
        return self.env.reset(seed=seed, options=options)

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        # Simulator states are never mutated (rule 7 of the simulator contract), so this
        # reference still holds the pre-step state after the step. The expectations are
        # taken on the slate the env reports, which is the slate shown even when the env
        # replaced repeated candidates.
        state_before = self._core.state if self._core is not None else None
        observations, rewards, terminations, truncations, info = self.env.step(actions)
        self._log(info, state_before)
        return observations, rewards, terminations, truncations, info

    def close(self, **kwargs: Any) -> None:
        try:
            self.writer.close()
        finally:
            super().close(**kwargs)

    def _log(self, info: Mapping[str, Any], state_before: Any = None) -> None:
        missing = [key for key in _INFO_KEYS.values() if key not in info]
        if missing:
            raise KeyError(
                "LogInteractions needs the step info of a loe_gym vector environment; "
                f"the info lacks {missing}. Wrap an environment made by "
                "gym.make_vec('loe_gym/...', ...)."
            )
        slates = _as_array(
            _INFO_LABELS["slates"],
            info["slate"],
            kind="i",
            shape=(self.num_envs, None),
            expected="(num_envs, slate_size)",
        )
        columns = {name: info[key] for name, key in _INFO_KEYS.items()}
        mask = np.asarray(info["acted"])
        if self._log_mask is not None:
            mask = mask & self._log_mask
        if self._core is not None:
            if not np.count_nonzero(mask):
                return
            columns.update(self._privileged_columns(slates, state_before))
        if self.policy_component is not None:
            columns["policy_component"] = self.policy_component
        self.writer._write(columns, slates=slates, mask=mask, labels=_INFO_LABELS)

    def _privileged_columns(self, slates: np.ndarray, state_before: Any) -> dict[str, Any]:
        """The privileged columns of a step: expectations of ``slates`` in the pre-step
        state, and the next-day return probability in the post-step state."""
        core = self._core
        simulator = core.simulator
        expected = simulator.expected_responses(state_before, slates)
        lacking = [key for key in ("click_probability", "watch_time") if key not in expected]
        if lacking:
            raise KeyError(
                f"{type(simulator).__name__}.expected_responses() returns no {lacking}; "
                "privileged logging needs 'click_probability' and 'watch_time'."
            )
        return_probability = getattr(simulator, "return_probability", None)
        if callable(return_probability):
            after = np.asarray(return_probability(core.state), dtype=np.float64)
        else:
            after = np.full(self.num_envs, np.nan)
        return {
            "true_click_probability": expected["click_probability"],
            "true_watch_time": expected["watch_time"],
            "true_return_probability": after,
        }

"""Checks shared by the workflow configs of `agents.configs`: seeds, the environment and
the agent's history against its predictor's."""

from __future__ import annotations

from typing import Any


def check_seeds(config: Any, name: str = "seeds") -> None:
    """``config.<name>``: a non-empty tuple of distinct integers ≥ 0 (set as a tuple)."""
    seeds = getattr(config, name)
    object.__setattr__(config, name, tuple(seeds))
    if not seeds:
        raise ValueError(
            f"{type(config).__name__}.{name} must name at least one seed, e.g. (0, 1, 2)."
        )
    negative = [
        seed for seed in seeds if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0
    ]
    if negative:
        raise ValueError(
            f"{type(config).__name__}.{name} must be integers ≥ 0 (numpy's seeds), got "
            f"{negative} in {tuple(seeds)}."
        )
    repeated = sorted({seed for seed in seeds if list(seeds).count(seed) > 1})
    if repeated:
        raise ValueError(
            f"{type(config).__name__}.{name} repeats {repeated} in {tuple(seeds)}: a repeated "
            "seed repeats a population (or a training run), and the CIs would count it as "
            "independent. Give distinct seeds, e.g. (0, 1, 2)."
        )


GENERIC_ENV = "loe_gym/Recommendation-v0"
"""The id that hosts any simulator (``env_options["simulator"]``)."""


def check_environment(config: Any, *, options_may_follow: bool = False) -> None:
    """``config.env_options`` is a dict or None, and the generic id names its simulator
    (without one it would silently run the default engagement simulator); with
    ``options_may_follow`` (evaluate: the agents' options apply) the second is skipped."""
    options = config.env_options
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"env_options must be a dict of environment options, got {options!r}.")
    if (
        config.env_id == GENERIC_ENV
        and "simulator" not in (options or {})
        and not options_may_follow
    ):
        raise ValueError(
            f"{type(config).__name__}: {GENERIC_ENV} hosts your own simulator; name it "
            """with --env-options '{"simulator": "my_package.module:MyUsers"}' (or use """
            "a registered id such as loe_gym/Engagement-v0): without one it would "
            "silently run the default engagement simulator."
        )


def check_history(config: Any) -> None:
    """The agent's encoder sees no more history than its predictor was trained on."""
    agent, trained = config.agent.encoder_history_length, config.predictor.model.max_history_length
    if agent > trained:
        raise ValueError(
            f"{type(config).__name__}.agent.encoder_history_length={agent} exceeds "
            f"predictor.model.max_history_length={trained}, the history the predictor is "
            "trained on; lower the first or raise the second."
        )


def check_backend(agent: Any) -> None:
    """A `TrainConfig`'s ``backend`` against the options it supports."""
    if agent.backend != "rllib":
        if agent.num_env_runners:
            raise ValueError(
                f"TrainConfig.num_env_runners={agent.num_env_runners} needs backend='rllib' "
                "(--agent.backend rllib); the sb3 backend samples in one process."
            )
        return
    if agent.algorithm != "ppo":
        raise ValueError(
            f"backend='rllib' trains ppo, not algorithm={agent.algorithm!r}: pass "
            "--agent.algorithm ppo, or --agent.backend sb3 for the other algorithms."
        )
    runners = max(1, agent.num_env_runners)
    if agent.num_users % runners:
        raise ValueError(
            f"num_users={agent.num_users} does not split evenly over num_env_runners="
            f"{agent.num_env_runners}: pass a multiple of {runners}, e.g. "
            f"{runners * max(1, agent.num_users // runners)}."
        )

"""Text rendering of the environments (``render_mode="ansi"``)."""

from __future__ import annotations

import warnings
from typing import Any

RENDER_MODES = ("ansi",)
RENDER_FPS = 4
"""Frames per second when replayed (Gymnasium's checker asks every renderer for one)."""


def check_render_mode(render_mode: str | None) -> str | None:
    """The render mode the env will use: ``render_mode`` if supported, else ``None``.

    Gymnasium lets clients ask for any mode (SB3's ``make_vec_env`` asks for
    ``"rgb_array"`` by default), so an unsupported mode is not an error: the env is
    built, warns once, and ``render()`` returns ``None``.
    """
    if render_mode is None or render_mode in RENDER_MODES:
        return render_mode
    warnings.warn(
        f"render_mode={render_mode!r} is not supported (supported: "
        f"{', '.join(RENDER_MODES)}); the environment will not render. Pass "
        "render_mode='ansi' for a text line per user.",
        UserWarning,
        stacklevel=3,
    )
    return None


def render_text(env: Any) -> tuple[str, ...]:
    """One line per user of a `RecommendationVectorEnv`: where the user is in their life
    and what the last step showed and got (public information only)."""
    lines = []
    profile = env._history_profile if env.layout.kind == "history" else None
    for user in range(env.num_envs):
        line = (
            f"user {int(env._user_id[user])}: day {int(env._day[user])}, "
            f"session {int(env._session[user])}, step {int(env._step_in_session[user])}"
        )
        if profile is not None:
            # The profile's last column holds the totals: shown, clicked, watch, completion.
            shown, clicked, watch, _ = profile[user, :, -1]
            line += f", {shown:.0f} shown, {clicked:.0f} clicked, {watch:.1f} min watched"
        if env.config.history_length:
            line += f", last item {int(env._history_items[user, -1])}"
        lines.append(line)
    return tuple(lines)

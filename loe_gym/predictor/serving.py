"""`PredictorService`: batched inference of a trained predictor on NumPy observations.

Agents hold histories as the environments give them (``history_item_ids`` with −1 for "no
item yet", raw feedback in minutes); the service converts them to the model's inputs,
encodes each history once and scores its candidates with the model's candidate heads::

    service = PredictorService.from_pretrained("runs/fine/best")
    scores = service.predict(ids, feedback, gaps, candidate_ids)   # dict of (N, C) arrays
    states = service.encode(ids, feedback, gaps)                   # (N, H) user states

Throughput: a call costs one backbone pass per history (``L + 1`` tokens) and one small
MLP pass per candidate, in chunks of ``batch_size`` histories; the backbone dominates, so
scoring more candidates per user is almost free. Measured on two (shared) CPU cores with
20 candidates per user: about 5 000–10 000 users per second for
``PredictorConfig.tiny`` (hidden 16, one layer, 20 history items) and 1 000–2 000 for the
default size (hidden 64, two layers, 50 history items). The service leaves
``torch.set_num_threads`` alone: set it in the process that owns the cores. On a GPU, raise
``batch_size`` until throughput stops growing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from loe_gym.errors import check_positive_int
from loe_gym.predictor.configuration_predictor import PredictorConfig
from loe_gym.predictor.embeddings import PAD_ID, to_model_ids
from loe_gym.predictor.loading import load_predictor
from loe_gym.predictor.modeling_predictor import PredictorModel

__all__ = ["SAME_SESSION_GAP", "PredictorService"]

# ids, feedback, gaps, target gaps, profiles (or None): the arguments of `PredictorModel.encode`.
_ModelArguments = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]

SAME_SESSION_GAP = 1
"""Gap bucket of a step in the same session as the previous one (the default target gap)."""


class PredictorService:
    """Batched ``encode`` / ``predict`` of a `PredictorModel` on NumPy arrays.

    Args:
        model: a trained ``PredictorModel`` (a LoRA model is merged first). The service
            moves it to ``device`` and puts it in eval mode.
        device: where inference runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``, …).
        batch_size: history rows per forward pass; bounds the memory of one call.

    Inputs, for ``N`` users with histories of length ``L`` (oldest first, left-padded):

    | argument | meaning | shape | values |
    |---|---|---|---|
    | ``history_item_ids`` | catalog ids of shown items, −1 = no item | ``(N, L)`` int | ``[−1, num_items)`` |
    | ``history_feedback`` | clicked, watch time (minutes), completion | ``(N, L, 3)`` float | ``≥ 0``, finite |
    | ``history_gaps`` | gap bucket before each item, as in `sequences` (1 same session, 2 new session the same or next day, 3… after 2… days) | ``(N, L)`` int | ``[0, num_gap_buckets)`` |
    | ``target_gaps`` | gap bucket of the step to predict; default 1 (same session) | ``(N,)`` int or ``None`` | ``[1, num_gap_buckets)`` |
    | ``candidate_ids`` | catalog ids of the items to score | ``(N, C)`` int | ``[0, num_items)`` |
    | ``history_profile`` | long-term profiles (`history_profile`) of the users' whole pasts; default: that of the history given | ``(N, T, F + 1, 4)`` float or ``None`` | finite |

    Padding positions (id −1) get padding tokens whatever their feedback and gap hold. The
    transformer sees the last ``max_history_length`` rows; the long-term profile (if the
    model has one) summarises all rows given, so pass the whole history, or keep a running
    profile per user (profiles add up) and pass it with the recent rows.
    """

    def __init__(
        self, model: nn.Module, *, device: str | torch.device | None = None, batch_size: int = 4096
    ) -> None:
        # Imported here: peft and accelerate are needed only when a model has adapters.
        from loe_gym.devices import current_device
        from loe_gym.predictor.lora import merge_lora

        self.device = torch.device(current_device() if device is None else device)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.model = cast(PredictorModel, merge_lora(model).to(self.device).eval())
        self.config: PredictorConfig = self.model.config
        self.num_items = int(self.config.num_items)
        self.hidden_size = int(self.config.hidden_size)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str | torch.device | None = None,
        **kwargs: Any,
    ) -> PredictorService:
        """Load a checkpoint written by ``save_pretrained`` (e.g. ``fit``'s ``best/``)."""
        return cls(load_predictor(path), device=device, **kwargs)

    def catalog_mismatch(self, catalog: Any, what: str = "catalog") -> str | None:
        """Why ``catalog`` (a `loe_gym.Catalog`) is not the one this predictor was fitted
        on, as a phrase naming it ``what``; None when it is."""
        if catalog.num_items != self.num_items:
            return (
                f"the predictor was trained on a catalog of {self.num_items} items but the "
                f"{what} has {catalog.num_items}"
            )
        features = self.model.item_features.detach().cpu().numpy()
        if features.shape != catalog.features.shape or not np.allclose(
            features, catalog.features, atol=1e-5
        ):
            return (
                f"the predictor's item features differ from the {what}'s (another "
                "catalog_seed or simulator?)"
            )
        return None

    def item_vectors(self) -> np.ndarray:
        """The item tokens ``(num_items, H)`` float32 the transformer sees, in catalog id
        order: id embedding + projected features (+ projected text)."""
        with torch.inference_mode():
            return self.model.catalog_item_embeddings().float().cpu().numpy()

    def encode(
        self,
        history_item_ids: np.ndarray,
        history_feedback: np.ndarray,
        history_gaps: np.ndarray,
        target_gaps: np.ndarray | None = None,
        history_profile: np.ndarray | None = None,
    ) -> np.ndarray:
        """User states ``(N, H)`` float32 of ``N`` histories (inputs: see the class)."""
        inputs = self._history(
            history_item_ids, history_feedback, history_gaps, target_gaps, history_profile
        )
        states = np.empty((inputs[0].shape[0], self.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for rows, chunk in self._chunks(inputs):
                states[rows] = self.model.encode(*chunk).float().cpu().numpy()
        return states

    def history_profile(
        self,
        history_item_ids: np.ndarray,
        history_feedback: np.ndarray,
        previous_profile: np.ndarray | None = None,
    ) -> np.ndarray:
        """Long-term profiles ``(N, T, F + 1, 4)`` float32 of histories (inputs: see the
        class), every row counted. With ``previous_profile``, the profile of the rows
        before these, it returns that of the whole: an agent keeps a running profile per
        user and passes each step's new rows."""
        if not self.config.long_term_profile:
            raise ValueError(
                "This predictor has no long-term profile (PredictorConfig.long_term_profile "
                "is False); pass histories only."
            )
        dummy_gaps = np.zeros(np.shape(history_item_ids), dtype=np.int64)
        ids, feedback, _, _, previous = self._history(
            history_item_ids, history_feedback, dummy_gaps, None, previous_profile
        )
        profile = np.empty((ids.shape[0], *self.config.profile_shape), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, ids.shape[0], self.batch_size):
                rows = slice(start, start + self.batch_size)
                ids_rows, feedback_rows = self._tensors(ids[rows], feedback[rows])
                before = None if previous is None else self._tensors(previous[rows])[0]
                value = self.model.history_profile(ids_rows, feedback_rows, before)
                profile[rows] = value.float().cpu().numpy()
        return profile

    def predict(
        self,
        history_item_ids: np.ndarray,
        history_feedback: np.ndarray,
        history_gaps: np.ndarray,
        candidate_ids: np.ndarray,
        target_gaps: np.ndarray | None = None,
        history_profile: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Scores ``(N, C)`` float32 of each user's candidates (inputs: see the class).

        Keys (those of ``PredictorModel.score_candidates``): ``click_probability``,
        ``watch_time_if_clicked`` (expected minutes given a click), ``watch_time``
        (unconditional expected minutes, ``click_probability · watch_time_if_clicked``),
        ``continuation_probability`` (the session goes on after this step),
        ``return_probability`` (next-day return if the session ends here).
        """
        return self.encode_and_predict(
            history_item_ids,
            history_feedback,
            history_gaps,
            candidate_ids,
            target_gaps,
            history_profile,
        )[1]

    def encode_and_predict(
        self,
        history_item_ids: np.ndarray,
        history_feedback: np.ndarray,
        history_gaps: np.ndarray,
        candidate_ids: np.ndarray,
        target_gaps: np.ndarray | None = None,
        history_profile: np.ndarray | None = None,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """`encode` and `predict` in one backbone pass: user states ``(N, H)`` and the
        scores ``(N, C)`` of each user's candidates (what an agent needs at every step)."""
        inputs = self._history(
            history_item_ids, history_feedback, history_gaps, target_gaps, history_profile
        )
        ids = inputs[0]
        candidates = np.asarray(candidate_ids)
        if candidates.ndim != 2 or candidates.shape[0] != ids.shape[0]:
            raise ValueError(
                f"candidate_ids must have shape (N, num_candidates) with N = {ids.shape[0]} "
                f"histories, got shape {candidates.shape}."
            )
        _check_integers("candidate_ids", candidates, 0, self.num_items)
        candidates = to_model_ids(candidates.astype(np.int64))
        results: dict[str, np.ndarray] = {}
        states = np.empty((ids.shape[0], self.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for rows, chunk in self._chunks(inputs):
                encoded = self.model.encode_with_history(*chunk)
                states[rows] = encoded.user_state.float().cpu().numpy()
                scores = self.model.score_candidates(
                    encoded, torch.from_numpy(candidates[rows]).to(self.device)
                )
                for name, value in scores.items():
                    if name not in results:
                        results[name] = np.empty(candidates.shape, dtype=np.float32)
                    results[name][rows] = value.float().cpu().numpy()
        return states, results

    # --- conversion of environment arrays to model inputs ---

    def _history(
        self,
        history_item_ids: np.ndarray,
        history_feedback: np.ndarray,
        history_gaps: np.ndarray,
        target_gaps: np.ndarray | None,
        history_profile: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """Checked model inputs: ids ``(N, L)`` int64 (−1 → padding, else id + 2),
        feedback ``(N, L, 3)`` float32 with ``log1p`` minutes, gaps ``(N, L)`` and target
        gaps ``(N,)`` int64, profiles ``(N, T, F + 1, 4)`` float32 or ``None``. The caller's
        arrays are never modified."""
        ids = np.asarray(history_item_ids)
        if ids.ndim != 2:
            raise ValueError(
                f"history_item_ids must have shape (N, history_length), got shape {ids.shape}; "
                "for one user pass history_item_ids[None]."
            )
        num_users, length = ids.shape
        _check_integers("history_item_ids", ids, -1, self.num_items)
        feedback = np.asarray(history_feedback, dtype=np.float32)
        expected = (num_users, length, self.config.feedback_size)
        if feedback.shape != expected:
            raise ValueError(
                f"history_feedback must have shape (N, history_length, 3) = {expected}, got "
                f"{feedback.shape}."
            )
        gaps = np.asarray(history_gaps)
        if gaps.shape != ids.shape:
            raise ValueError(
                f"history_gaps must have the shape of history_item_ids, {ids.shape}, got "
                f"{gaps.shape}."
            )
        is_item = ids >= 0
        _check_integers("history_gaps", gaps[is_item], 0, self.config.num_gap_buckets)
        kept_feedback = feedback[is_item]
        if not np.isfinite(kept_feedback).all() or (kept_feedback < 0).any():
            raise ValueError(
                "history_feedback must be finite and ≥ 0 (clicked, watch minutes, completion) "
                "on history items; found NaN, inf or a negative value."
            )
        if target_gaps is None:
            target = np.full(num_users, SAME_SESSION_GAP, dtype=np.int64)
        else:
            target = np.asarray(target_gaps)
            if target.shape != (num_users,):
                raise ValueError(
                    f"target_gaps must have shape (N,) = ({num_users},), got {target.shape}."
                )
            _check_integers("target_gaps", target, 1, self.config.num_gap_buckets)
            target = target.astype(np.int64)
        model_ids = np.where(is_item, to_model_ids(ids.astype(np.int64)), PAD_ID)
        # The model was trained on log1p(minutes), which keeps long watches from dominating.
        model_feedback = np.where(is_item[..., None], feedback, 0.0).astype(np.float32)
        model_feedback[..., 1] = np.log1p(model_feedback[..., 1])
        model_gaps = np.where(is_item, gaps, 0).astype(np.int64)
        profile = None
        if history_profile is not None:
            profile = np.asarray(history_profile, dtype=np.float32)
            expected_profile = (num_users, *self.config.profile_shape)
            if profile.shape != expected_profile:
                raise ValueError(
                    f"history_profile must have shape (N, time scales, num_item_features + 1, 4) = "
                    f"{expected_profile}, got {profile.shape}; compute it with "
                    "PredictorService.history_profile."
                )
            if not np.isfinite(profile).all():
                raise ValueError("history_profile must be finite; found NaN or inf.")
        return model_ids, model_feedback, model_gaps, target, profile

    def _chunks(
        self, inputs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]
    ) -> Iterator[tuple[slice, _ModelArguments]]:
        """``(rows, model arguments)`` per chunk of ``batch_size`` histories."""
        ids, feedback, gaps, target, profile = inputs
        for start in range(0, ids.shape[0], self.batch_size):
            rows = slice(start, start + self.batch_size)
            tensors = self._tensors(ids[rows], feedback[rows], gaps[rows], target[rows])
            chunk_profile = None if profile is None else self._tensors(profile[rows])[0]
            yield rows, (tensors[0], tensors[1], tensors[2], tensors[3], chunk_profile)

    def _tensors(self, *arrays: np.ndarray) -> tuple[torch.Tensor, ...]:
        return tuple(torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in arrays)


def _check_integers(name: str, values: np.ndarray, low: int, high: int) -> None:
    """Raise naming ``name`` unless ``values`` are integers in ``[low, high)``."""
    if values.dtype.kind not in "iu":
        if values.dtype.kind == "f" and values.size and np.all(values == np.round(values)):
            pass  # whole floats (e.g. from a float observation array) are accepted
        elif values.size:
            raise TypeError(f"{name} must hold integers, got dtype {values.dtype}.")
    if values.size and (values.min() < low or values.max() >= high):
        bad = values[(values < low) | (values >= high)][0]
        raise ValueError(f"{name} must lie in [{low}, {high}), got {bad}.")

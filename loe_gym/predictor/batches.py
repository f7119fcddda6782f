"""Batches of tensors for the predictor, assembled from `UserSequences`.

Two iterables assemble batches with numpy fancy indexing over the sequences' flat arrays,
with no Python loop per row:

* `TargetBatches` for the multi-task heads: one target row and the rows before it (and the
  long-term profile of all of them, `profile_prefix_sums`);
* `MaskedItemBatches` for masked-item pre-training: windows of consecutive rows.

Item ids inside the model are catalog ids + 2: 0 is padding (`PAD_ID`) and 1 is
``[MASK]`` (`MASK_ID`). Labels that a loss must ignore are −100 (`IGNORE_INDEX`,
PyTorch's default ``ignore_index``). Gap buckets are those of `loe_gym.predictor.sequences`.
The privileged columns of a log are exposed under their own keys, for evaluation only,
never as model inputs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Final

import numpy as np
import torch

from loe_gym.errors import check_positive_int
from loe_gym.logs import PRIVILEGED_COLUMNS
from loe_gym.predictor.sequences import UserSequences

__all__ = [
    "IGNORE_INDEX",
    "ITEM_ID_OFFSET",
    "MASKED_ITEM_BATCH_KEYS",
    "MASK_ID",
    "PAD_ID",
    "TARGET_BATCH_KEYS",
    "MaskedItemBatches",
    "TargetBatches",
    "profile_prefix_sums",
]

# Local copies of the model's constants, so that data loading does not import the model.
PAD_ID: Final = 0
"""Model item id of padding."""
MASK_ID: Final = 1
"""Model item id of the ``[MASK]`` token."""
ITEM_ID_OFFSET: Final = 2
"""Model item id = catalog id + ``ITEM_ID_OFFSET``."""
IGNORE_INDEX: Final = -100
"""Label value that losses ignore."""

TARGET_BATCH_KEYS: Final = (
    "history_item_ids",
    "history_feedback",
    "history_gaps",
    "target_item_ids",
    "target_gaps",
    "click_labels",
    "watch_time_labels",
    "watch_time_mask",
    "continuation_labels",
    "return_labels",
    "return_mask",
    "ranking_labels",
    "user_index",
)
"""Keys of every `TargetBatches` batch (plus `PRIVILEGED_COLUMNS` for privileged logs)."""

MASKED_ITEM_BATCH_KEYS: Final = (
    "history_item_ids",
    "history_feedback",
    "history_gaps",
    "masked_item_labels",
)
"""Keys of every `MaskedItemBatches` batch."""


def _feedback(sequences: UserSequences) -> np.ndarray:
    """``(num_rows, 3) float32``: clicked, log1p(watch_time), completion."""
    feedback = np.empty((sequences.num_rows, 3), dtype=np.float32)
    feedback[:, 0] = sequences.clicked
    feedback[:, 1] = np.log1p(sequences.watch_time)
    feedback[:, 2] = sequences.completion
    return feedback


def _check_fraction(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must lie in (0, 1], got {value}.")
    return value


# Streams of the batch generators: one for the target subsample, one per epoch.
_SUBSAMPLE_STREAM: Final = 0
_EPOCH_STREAM: Final = 1


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([seed, _EPOCH_STREAM, epoch])


class TargetBatches:
    """Shuffled batches of target rows with their left-padded histories.

    Every row with an earlier step of the same user is a target (for single-item slates:
    every row at index ``t ≥ 1`` within its user). Its history is the up to
    ``max_history_length`` rows before the target's *step*: with slates of several
    items, the other items of the target's own step are left out, because their
    feedback was produced at the same moment as the target's (a click on one excludes a
    click on another). Histories are left-padded, so the most recent row is last.

    Each batch is a dict of tensors, ``B`` targets and ``L = max_history_length``:

    ======================  ==========  =======  =========================================
    key                     shape       dtype    meaning
    ======================  ==========  =======  =========================================
    history_item_ids        (B, L)      long     model item ids (catalog id + 2), 0 = pad
    history_feedback        (B, L, 3)   float32  clicked, log1p(watch_time), completion
    history_gaps            (B, L)      long     gap buckets, 0 = pad
    target_item_ids         (B,)        long     model item id of the target row
    target_gaps             (B,)        long     gap bucket of the target row
    click_labels            (B,)        float32  clicked
    watch_time_labels       (B,)        float32  log1p(watch_time)
    watch_time_mask         (B,)        bool     clicked (watch time is learnt on clicks)
    continuation_labels     (B,)        float32  1 − session_end (1 = the user stays)
    return_labels           (B,)        float32  returned_next_day
    return_mask             (B,)        bool     session_end, and its return known
    ranking_labels          (B,)        long     target catalog id if clicked, else −100
    user_index              (B,)        long     index of the user in ``sequences``
    ======================  ==========  =======  =========================================

    ``user_index`` is for evaluation (GAUC), not a model input; so are the privileged
    columns, ``true_click_probability``, ``true_watch_time`` and
    ``true_return_probability`` ``(B,) float32``, present when the log has them.

    With ``item_features``, batches also hold ``history_profile (B, T, F + 1, 4) float32``:
    the long-term profile of *every* row of the user before the target's step (not only
    the last ``L``), as `PredictorModel.history_profile` defines it.

    Args:
        sequences: the users to draw targets from.
        batch_size: targets per batch.
        max_history_length: ``L``.
        shuffle: shuffle the targets each epoch (seeded); else log order.
        target_fraction: keep this seeded fraction of the targets (fixed at
            construction, the same every epoch).
        drop_last: drop the last, smaller batch.
        item_features: ``(num_items, F)`` the catalog's public features
            (``Catalog.features``), for the ``history_profile`` key; ``None`` leaves it out.
        profile_decays: the time scales of the profile, the model's
            ``config.profile_decays``; required with ``item_features``.
        target_policies: only rows whose slate these policies chose are targets (every
            row stays in the histories): e.g. ``("diverse:random",)``, the randomised
            exposures of a mixture, whose outcomes carry no selection bias of the logging
            policy. Empty: every row.
        click_target_policies: only rows whose slate these policies chose train the click
            and watch-time heads; every target row trains the other tasks. Batches then
            hold ``click_mask (B,) bool`` and ``watch_time_mask`` keeps clicked rows of
            these policies. The cure for selection bias where it bites (which item gets
            clicked) without starving the session and return heads of data.
        session_return_labels: label next-day return on *every* row with the outcome of
            its session (``return_mask``: rows whose session ended in the log), not only
            on the session's last step. Training signal for the return head grows by the
            mean session length; evaluation keeps the default (the Bayes reference is
            defined at session ends).
        target_rows: ``(num_rows,) bool``: only these rows are targets (every row stays
            in the histories), e.g. the rows after a temporal split's cut.
        seed: seeds the subsample and the shuffles. The order of an epoch depends only on
            ``seed`` and the epoch number: `set_epoch` chooses it (a resumed run repeats
            the orders), else each iteration starts the next epoch.
    """

    def __init__(
        self,
        sequences: UserSequences,
        *,
        batch_size: int = 256,
        max_history_length: int = 50,
        shuffle: bool = True,
        target_fraction: float = 1.0,
        drop_last: bool = False,
        item_features: np.ndarray | None = None,
        profile_decays: Sequence[float] | None = None,
        session_return_labels: bool = False,
        target_policies: Sequence[str] = (),
        click_target_policies: Sequence[str] = (),
        target_rows: np.ndarray | None = None,
        seed: int = 0,
    ) -> None:
        self.sequences = sequences
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.max_history_length = check_positive_int("max_history_length", max_history_length)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        target_fraction = _check_fraction("target_fraction", target_fraction)
        self.seed = int(seed)
        self.epoch = 0

        s = sequences
        num_rows = s.num_rows
        self._user = s.row_user_index()
        self._user_start = s.offsets[:-1][self._user]
        self._step_start = _step_starts(s, self._user)
        is_target = self._step_start > self._user_start
        if target_policies:
            is_target &= _rows_chosen_by(s, target_policies, "target_policies")
        if target_rows is not None:
            is_target &= _row_mask("target_rows", target_rows, num_rows)
        self._click_rows = (
            _rows_chosen_by(s, click_target_policies, "click_target_policies")
            if click_target_policies
            else None
        )
        targets = np.flatnonzero(is_target)
        if target_fraction < 1.0:
            size = round(target_fraction * targets.size)
            subsample = np.random.default_rng([self.seed, _SUBSAMPLE_STREAM])
            targets = np.sort(subsample.choice(targets, size=size, replace=False))
        self.targets = targets
        """``(num_targets,) int64`` row indices of the targets, ascending."""

        # Per-row arrays in the dtypes of the batch, gathered per batch without copies
        # beyond the gather itself.
        self._model_items = s.item_id + ITEM_ID_OFFSET
        self._feedback = _feedback(s)
        self._gaps = s.gap_bucket
        self._clicked = s.clicked.astype(np.float32)
        self._watch_labels = self._feedback[:, 1].copy()
        self._session_end = s.session_end.astype(np.float32)
        self._returned = s.returned_next_day.astype(np.float32)
        self._return_mask = s.session_end & np.asarray(s.return_known, dtype=bool)
        if session_return_labels and num_rows:
            # The last row of each row's session carries the session's outcome.
            last = _session_last_rows(s, self._user)
            self._returned = self._returned[last]
            self._return_mask = self._return_mask[last]
        # Labels over items are catalog ids: the model's item logits are in catalog order.
        self._ranking = np.where(s.clicked, self._model_items - ITEM_ID_OFFSET, IGNORE_INDEX)
        self._privileged = (
            {name: getattr(s, name) for name in PRIVILEGED_COLUMNS} if s.has_privileged else {}
        )
        self._positions = np.arange(-self.max_history_length, 0, dtype=np.int64)
        self._profiles = None
        if item_features is not None:
            if profile_decays is None:
                raise ValueError(
                    "item_features needs profile_decays too: pass the model's "
                    "config.profile_decays, so the profiles are those the model expects."
                )
            self._profiles = profile_prefix_sums(s, item_features, profile_decays, self._feedback)

    @property
    def num_targets(self) -> int:
        return int(self.targets.size)

    def history_end(self, rows: np.ndarray) -> np.ndarray:
        """``(B,) int64`` the first row of each target row's step: the target's past is
        its user's rows before it (the history is the last ``L`` of them)."""
        return self._step_start[np.asarray(rows, dtype=np.int64)]

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_targets // self.batch_size
        return math.ceil(self.num_targets / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (its order depends on seed and epoch)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rng = _epoch_rng(self.seed, self.epoch)
        self.epoch += 1
        order = rng.permutation(self.targets) if self.shuffle else self.targets
        for batch in range(len(self)):
            yield self.batch(order[batch * self.batch_size : (batch + 1) * self.batch_size])

    def batch(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """The batch of the target rows ``rows`` (``(B,)`` row indices, e.g. from
        `targets`)."""
        rows = np.asarray(rows, dtype=np.int64)
        # (B, L) row indices ending just before each target's step; invalid ones are
        # those before the user's first row (left padding).
        index = self._step_start[rows, None] + self._positions
        valid = index >= self._user_start[rows, None]
        index = np.where(valid, index, 0)
        feedback = self._feedback[index]
        feedback[~valid] = 0.0
        clicked = self._clicked[rows]
        session_end = self._session_end[rows]
        arrays: dict[str, np.ndarray] = {
            "history_item_ids": np.where(valid, self._model_items[index], PAD_ID),
            "history_feedback": feedback,
            "history_gaps": np.where(valid, self._gaps[index], 0),
            "target_item_ids": self._model_items[rows],
            "target_gaps": self._gaps[rows],
            "click_labels": clicked,
            "watch_time_labels": self._watch_labels[rows],
            "watch_time_mask": clicked > 0,
            "continuation_labels": 1.0 - session_end,  # 1 = the user stays
            "return_labels": self._returned[rows],
            "return_mask": self._return_mask[rows],
            "ranking_labels": self._ranking[rows],
            "user_index": self._user[rows],
        }
        if self._click_rows is not None:
            arrays["click_mask"] = self._click_rows[rows]
            arrays["watch_time_mask"] &= arrays["click_mask"]
        if self._profiles is not None:
            arrays["history_profile"] = self._profiles[self._step_start[rows]]
        for name, values in self._privileged.items():
            arrays[name] = values[rows]
        return {name: torch.from_numpy(values) for name, values in arrays.items()}

    def __repr__(self) -> str:
        return (
            f"TargetBatches(num_targets={self.num_targets}, batch_size={self.batch_size}, "
            f"max_history_length={self.max_history_length}, batches={len(self)})"
        )


def _step_starts(s: UserSequences, user: np.ndarray) -> np.ndarray:
    """``(num_rows,) int64``: the first row of each row's step (``user``: each row's user
    index); the history of a target ends before it."""
    num_rows = s.num_rows
    new_step = np.ones(num_rows, dtype=bool)
    if num_rows > 1:
        new_step[1:] = (
            (user[1:] != user[:-1])
            | (s.day[1:] != s.day[:-1])
            | (s.session[1:] != s.session[:-1])
            | (s.step[1:] != s.step[:-1])
        )
    return np.maximum.accumulate(np.where(new_step, np.arange(num_rows, dtype=np.int64), 0))


def _session_last_rows(s: UserSequences, user: np.ndarray) -> np.ndarray:
    """``(num_rows,)``: the last row of each row's session (``user``: each row's user
    index; at least one row)."""
    num_rows = s.num_rows
    is_last = np.ones(num_rows, dtype=bool)
    is_last[:-1] = (
        (user[1:] != user[:-1]) | (s.day[1:] != s.day[:-1]) | (s.session[1:] != s.session[:-1])
    )
    last = np.where(is_last, np.arange(num_rows), num_rows)
    return np.minimum.accumulate(last[::-1])[::-1]


def _rows_chosen_by(sequences: UserSequences, policies: Sequence[str], option: str) -> np.ndarray:
    """``(num_rows,) bool``: the rows whose slate one of ``policies`` chose."""
    unknown = [p for p in policies if p not in sequences.policy_names]
    if unknown:
        raise ValueError(
            f"{option} {unknown} name no policy of the log; its rows were chosen by "
            f"{list(sequences.policy_names)}."
        )
    wanted = [sequences.policy_names.index(p) for p in policies]
    return np.isin(np.asarray(sequences.policy), wanted)


def profile_prefix_sums(
    sequences: UserSequences,
    item_features: np.ndarray,
    profile_decays: Sequence[float],
    feedback: np.ndarray | None = None,
) -> np.ndarray:
    """``(num_rows, T, F + 1, 4) float32``: row ``r`` holds the long-term profile of the
    rows of its user *before* ``r`` (see `PredictorModel.history_profile`): per decay
    ``λ`` of ``profile_decays`` and public feature ``f`` of the items shown (and a
    constant 1), the sums of ``λ^(rows after it) · x_f · (1, clicked, log1p(watch_time),
    completion)``."""
    from scipy.signal import lfilter

    features = np.asarray(item_features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] != sequences.num_items:
        raise ValueError(
            f"item_features must have shape (num_items, F) with num_items = "
            f"{sequences.num_items}, got shape {features.shape}; pass Catalog.features."
        )
    if not np.isfinite(features).all():
        raise ValueError("item_features must be finite; found NaN or inf.")
    decays = [float(decay) for decay in profile_decays]
    if not decays or any(not 0.0 < decay <= 1.0 for decay in decays):
        raise ValueError(
            f"profile_decays must be non-empty numbers in (0, 1], got {decays!r}; pass the "
            "model's config.profile_decays."
        )
    if feedback is None:
        feedback = _feedback(sequences)
    rows = sequences.item_id
    values = np.column_stack([np.ones(sequences.num_rows), feedback.astype(np.float64)])
    starts = np.repeat(sequences.offsets[:-1], sequences.lengths)
    # Rows since the user's first row: how much a sum carried over from earlier users
    # has decayed by row r.
    age = np.arange(sequences.num_rows) - starts
    num_features = features.shape[1] + 1
    profiles = np.empty(
        (sequences.num_rows, len(decays), num_features, values.shape[1]), dtype=np.float32
    )
    for f in range(num_features):
        column = features[rows, f] if f < features.shape[1] else np.ones(sequences.num_rows)
        for k in range(values.shape[1]):
            term = column * values[:, k]
            for s, decay in enumerate(decays):
                # y[r] = λ·y[r − 1] + term[r − 1] over all rows, in float64 (float32 over
                # millions of rows would lose the small per-user values), then minus what
                # earlier users left: λ^age · y[user start].
                carried = lfilter([0.0, 1.0], [1.0, -decay], term)
                if starts.size:
                    carried = carried - decay**age * carried[starts]
                profiles[:, s, f, k] = carried
    return profiles


class MaskedItemBatches:
    """Batches of windows of consecutive rows with masked items, for pre-training.

    Each epoch, every user with ``n`` rows gives ``ceil(n / L)`` windows of
    ``min(n, L)`` consecutive rows at seeded random places (``L = max_history_length``),
    left-padded to ``L``; so each row is seen about once per epoch. In each window each
    real item is replaced by `MASK_ID` with probability ``mask_probability`` (BERT4Rec's
    20%), and at least one is.

    Masked positions keep their time gap but their feedback is zeroed. BERT4Rec masks
    item ids only, because its tokens carry nothing else; ours carry the item's outcome,
    and watch time / completion is the item's length, a catalog feature that would
    identify the masked item without any sequence modelling. The model should read a
    `MASK_ID` position's feedback as unknown (as for its query token), not as "not
    clicked".

    Keys, all ``(B, L)``: ``history_item_ids`` (long, masked ids), ``history_feedback``
    (``(B, L, 3)`` float32), ``history_gaps`` (long), ``masked_item_labels`` (long: the
    original model id at masked positions, −100 elsewhere).

    Args:
        sequences: the users to draw windows from.
        batch_size: windows per batch.
        max_history_length: ``L``.
        mask_probability: probability of masking each real item, in (0, 1).
        shuffle: shuffle the windows each epoch; else by user.
        seed: seeds the window places, the masks and the shuffles; as in `TargetBatches`,
            an epoch depends only on ``seed`` and its number (see `set_epoch`).
    """

    def __init__(
        self,
        sequences: UserSequences,
        *,
        batch_size: int = 256,
        max_history_length: int = 50,
        mask_probability: float = 0.2,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        self.sequences = sequences
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.max_history_length = check_positive_int("max_history_length", max_history_length)
        mask_probability = float(mask_probability)
        if not 0.0 < mask_probability < 1.0:
            raise ValueError(f"mask_probability must lie in (0, 1), got {mask_probability}.")
        self.mask_probability = mask_probability
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.epoch = 0
        lengths = sequences.lengths
        users = np.flatnonzero(lengths > 0)
        windows = -(-lengths[users] // self.max_history_length)
        self._window_user = np.repeat(users, windows)
        self._width = np.minimum(lengths, self.max_history_length)[self._window_user]
        self._model_items = sequences.item_id + ITEM_ID_OFFSET
        self._feedback = _feedback(sequences)
        self._gaps = sequences.gap_bucket
        self._columns = np.arange(self.max_history_length, dtype=np.int64)

    @property
    def num_windows(self) -> int:
        return int(self._window_user.size)

    def __len__(self) -> int:
        return math.ceil(self.num_windows / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (its windows and masks depend on seed
        and epoch)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rng = _epoch_rng(self.seed, self.epoch)
        self.epoch += 1
        s = self.sequences
        user = self._window_user
        room = s.lengths[user] - self._width + 1
        start = s.offsets[user] + (rng.random(user.size) * room).astype(np.int64)
        order = rng.permutation(user.size) if self.shuffle else np.arange(user.size)
        for batch in range(len(self)):
            chosen = order[batch * self.batch_size : (batch + 1) * self.batch_size]
            yield self._batch(start[chosen], self._width[chosen], rng)

    def _batch(
        self, start: np.ndarray, width: np.ndarray, rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        length = self.max_history_length
        pad = length - width  # real rows occupy columns pad … L − 1
        valid = self._columns >= pad[:, None]
        index = np.where(valid, start[:, None] + self._columns - pad[:, None], 0)
        items = np.where(valid, self._model_items[index], PAD_ID)
        masked = valid & (rng.random(items.shape) < self.mask_probability)
        # Windows where the draw masked nothing get one uniformly chosen real position.
        empty = np.flatnonzero(~masked.any(axis=1))
        if empty.size:
            column = pad[empty] + (rng.random(empty.size) * width[empty]).astype(np.int64)
            masked[empty, column] = True
        feedback = self._feedback[index]
        feedback[~valid | masked] = 0.0
        arrays = {
            "history_item_ids": np.where(masked, MASK_ID, items),
            "history_feedback": feedback,
            "history_gaps": np.where(valid, self._gaps[index], 0),
            "masked_item_labels": np.where(masked, items - ITEM_ID_OFFSET, IGNORE_INDEX),
        }
        return {name: torch.from_numpy(values) for name, values in arrays.items()}

    def __repr__(self) -> str:
        return (
            f"MaskedItemBatches(num_windows={self.num_windows}, batch_size={self.batch_size}, "
            f"max_history_length={self.max_history_length}, "
            f"mask_probability={self.mask_probability})"
        )


def _row_mask(name: str, mask: np.ndarray, num_rows: int) -> np.ndarray:
    if np.shape(mask) != (num_rows,):
        raise ValueError(
            f"{name} must be a (num_rows,) = ({num_rows},) bool mask, got shape {np.shape(mask)}."
        )
    return np.asarray(mask, dtype=bool)

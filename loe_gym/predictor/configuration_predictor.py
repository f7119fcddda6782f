"""`PredictorConfig`: the sizes, backbone and loss weighting of the multi-task predictor.

Importing this module registers `PredictorConfig` with ``AutoConfig`` under the model type
``"loe_predictor"``.
"""

from __future__ import annotations

import math
import os
from typing import Any

from loe_gym.errors import check_choice, check_positive_int, did_you_mean
from loe_gym.predictor.configs import BACKBONES, LOSS_WEIGHTINGS, TASKS, ModelConfig

try:  # transformers ≥ 5 renamed the base class; 4.45+ only has the old spelling.
    from transformers import PreTrainedConfig as _ConfigBase
except ImportError:  # pragma: no cover - exercised on transformers 4.x only
    from transformers import PretrainedConfig as _ConfigBase
from transformers import AutoConfig

_NON_ARCHITECTURE_ARGUMENTS = (
    "num_items",
    "num_item_features",
    "intermediate_size",
    "num_gap_buckets",
    "feedback_size",
    "backbone_path",
    "initializer_range",
    "text_embedding_size",
)
"""Arguments of `PredictorConfig` that `ModelConfig` does not choose: the catalog's sizes,
read from the log, and settings kept at their defaults by the fit on a log."""

_ARGUMENTS = (*ModelConfig().predictor_arguments(), *_NON_ARCHITECTURE_ARGUMENTS)
"""Every argument of `PredictorConfig` (a misspelt keyword close to one is rejected)."""


class PredictorConfig(_ConfigBase):
    """Configuration of `PredictorModel`, validated when built.

    Every argument is checked in ``__init__``; a bad value raises with the value received
    and the fix. A keyword close to one of the arguments below (``hidden_sizes=32``) is
    rejected with a suggestion instead of being stored silently; other keywords go to the
    ``transformers`` base class as usual.

    | argument | meaning | default |
    |---|---|---|
    | `num_items` | catalog size; catalog ids are ``0 … num_items − 1`` | required |
    | `num_item_features` | width ``F`` of the catalog's public feature matrix | required |
    | `hidden_size` | width ``H`` of tokens, user state and item embeddings | 64 |
    | `num_hidden_layers` | transformer blocks of the backbone | 2 |
    | `num_attention_heads` | attention heads; must divide `hidden_size` | 2 |
    | `intermediate_size` | width of the backbone's feed-forward layers | ``4 × hidden_size`` |
    | `hidden_dropout_prob` | dropout on embeddings, hidden states and heads | 0.1 |
    | `attention_dropout_prob` | dropout on attention weights | 0.1 |
    | `max_history_length` | history tokens seen; older ones are dropped | 50 |
    | `num_gap_buckets` | time-gap buckets: 0 pad, 1 same session, 2 next day, 3… later | 10 |
    | `feedback_size` | feedback values per token: clicked, log1p(watch time), completion | 3 |
    | `backbone` | ``"bert"`` (bidirectional) or ``"gpt2"`` (causal) | ``"bert"`` |
    | `backbone_path` | local directory of pretrained backbone weights, or ``None`` | ``None`` |
    | `task_weights` | weight ``w_i`` of each task's loss; missing tasks get 1.0 | all 1.0 |
    | `loss_weighting` | ``"fixed"`` or ``"uncertainty"`` (Kendall et al. 2018) | ``"fixed"`` |
    | `initializer_range` | standard deviation of the initial weights | 0.02 |
    | `target_attention` | candidate heads also attend from the candidate to the history outputs (DIN-style; under evaluation) | False |
    | `long_term_profile` | summarise the *whole* history (not only the last `max_history_length` rows) per public item feature, for the user state and, crossed with each candidate's features, for the candidate heads | True |
    | `item_id_embeddings` | items are their id embedding + projected features; ``False``: features only, so nothing is learnt per item (a learned simulator's choice: id embeddings absorb the logging policy's selection of items for users) | True |
    | `text_model` | the frozen text model whose item vectors the model reads (``"minilm"`` or a local folder), or ``None`` for no item text | ``None`` |
    | `text_embedding_size` | width ``D`` of those vectors (the catalog's, set by `PredictorModel.set_item_text_vectors`' caller) | 0 |
    | `profile_decays` | one profile per time scale: each row's weight is ``decay ** (rows after it)``; 1.0 = plain sums over the whole history | ``(1.0, 0.95)`` |

    Example:
        >>> config = PredictorConfig(num_items=100, num_item_features=4, hidden_size=32)
        >>> config.intermediate_size
        128
        >>> PredictorConfig(num_items=100, num_item_features=4, backbone="bret")
        Traceback (most recent call last):
        ...
        ValueError: PredictorConfig.backbone must be one of 'bert', 'gpt2', got 'bret'. Did you mean 'bert'?
    """

    model_type = "loe_predictor"

    def __init__(
        self,
        num_items: int = 1,
        num_item_features: int = 0,
        hidden_size: int = 64,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 2,
        intermediate_size: int | None = None,
        hidden_dropout_prob: float = 0.1,
        attention_dropout_prob: float = 0.1,
        max_history_length: int = 50,
        num_gap_buckets: int = 10,
        feedback_size: int = 3,
        backbone: str = "bert",
        backbone_path: str | os.PathLike[str] | None = None,
        task_weights: dict[str, float] | None = None,
        loss_weighting: str = "fixed",
        initializer_range: float = 0.02,
        target_attention: bool = False,
        long_term_profile: bool = True,
        profile_decays: tuple[float, ...] | list[float] = (1.0, 0.95),
        item_id_embeddings: bool = True,
        text_model: str | None = None,
        text_embedding_size: int = 0,
        **kwargs: Any,
    ) -> None:
        # `transformers` builds configs with no arguments (e.g. to diff against defaults
        # when saving), so the catalog sizes have placeholder defaults; a real model
        # always passes them.
        _reject_near_misses(kwargs)
        self.num_items = _positive_int("num_items", num_items)
        self.num_item_features = _nonnegative_int("num_item_features", num_item_features)
        self.hidden_size = _positive_int("hidden_size", hidden_size)
        self.num_hidden_layers = _positive_int("num_hidden_layers", num_hidden_layers)
        self.num_attention_heads = _positive_int("num_attention_heads", num_attention_heads)
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"PredictorConfig.hidden_size={self.hidden_size} is not divisible by "
                f"num_attention_heads={self.num_attention_heads}; choose a hidden_size that is "
                f"a multiple of the number of heads (e.g. "
                f"{self.num_attention_heads * max(1, round(self.hidden_size / self.num_attention_heads))})."
            )
        self.intermediate_size = (
            4 * self.hidden_size
            if intermediate_size is None
            else _positive_int("intermediate_size", intermediate_size)
        )
        self.hidden_dropout_prob = _dropout("hidden_dropout_prob", hidden_dropout_prob)
        self.attention_dropout_prob = _dropout("attention_dropout_prob", attention_dropout_prob)
        self.max_history_length = _positive_int("max_history_length", max_history_length)
        self.num_gap_buckets = _positive_int("num_gap_buckets", num_gap_buckets)
        if self.num_gap_buckets < 3:
            raise ValueError(
                f"PredictorConfig.num_gap_buckets must be ≥ 3 (0 = padding, 1 = same session, "
                f"2 = next day), got {self.num_gap_buckets}."
            )
        self.feedback_size = _positive_int("feedback_size", feedback_size)
        self.backbone = check_choice("PredictorConfig.backbone", backbone, BACKBONES)
        self.backbone_path = _backbone_path(backbone_path)
        self.task_weights = _task_weights(task_weights)
        self.loss_weighting = check_choice(
            "PredictorConfig.loss_weighting", loss_weighting, LOSS_WEIGHTINGS
        )
        self.initializer_range = _positive_float("initializer_range", initializer_range)
        # The candidate heads also attend from the candidate to the history (DIN-style),
        # so per-topic interest need not be squeezed into the one user-state vector.
        self.target_attention = _flag("target_attention", target_attention)
        # Interests are revealed over hundreds of rows, far more than a transformer over
        # the last few dozen sees; the profile keeps additive statistics of all of them.
        self.long_term_profile = _flag("long_term_profile", long_term_profile)
        # Several time scales: lifetime sums (interests) and recent-weighted ones
        # (satisfaction, drift), e.g. 0.95 weighs the last ~20 rows most.
        self.profile_decays = _decays(profile_decays)
        # Without per-item embeddings the model generalises over features only: an item
        # shown mostly to users who like it cannot get a high click rate of its own.
        self.item_id_embeddings = _flag("item_id_embeddings", item_id_embeddings)
        # Item text enters as frozen vectors of a language model, projected into the item
        # vector: items never seen in training are still told apart by their text.
        self.text_model, self.text_embedding_size = _text(text_model, text_embedding_size)
        super().__init__(**kwargs)

    @classmethod
    def tiny(cls, num_items: int, num_item_features: int, **overrides: Any) -> PredictorConfig:
        """A small, fast config for tests and smoke runs (hidden 16, one layer, 2 heads).

        >>> PredictorConfig.tiny(num_items=30, num_item_features=5).hidden_size
        16
        """
        values: dict[str, Any] = {
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 32,
            "max_history_length": 20,
        }
        values.update(overrides)
        return cls(num_items=num_items, num_item_features=num_item_features, **values)

    @property
    def profile_shape(self) -> tuple[int, int, int]:
        """Shape ``(T, F + 1, 1 + feedback_size)`` of one user's long-term profile: per
        time scale (`profile_decays`) and public item feature (and a constant 1), the
        decayed sums over the history of the feature times ``(1, feedback…)``."""
        return (len(self.profile_decays), self.num_item_features + 1, 1 + self.feedback_size)

    @property
    def max_sequence_length(self) -> int:
        """Tokens fed to the backbone: ``max_history_length`` history tokens + the query."""
        return self.max_history_length + 1


# --- argument checks; each names the argument, the value received and the fix ---


def _is_integer(value: object) -> bool:
    return not isinstance(value, bool) and hasattr(value, "__index__")


def _positive_int(name: str, value: object) -> int:
    return check_positive_int(f"PredictorConfig.{name}", value)


def _nonnegative_int(name: str, value: object) -> int:
    if not _is_integer(value) or int(value) < 0:  # type: ignore[call-overload]
        raise ValueError(
            f"PredictorConfig.{name} must be an integer ≥ 0, got {value!r}; pass the number of "
            f"columns of the catalog's feature matrix (Catalog.num_features)."
        )
    return int(value)  # type: ignore[call-overload]


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"PredictorConfig.{name} must be True or False, got {value!r}.")
    return value


def _decays(value: object) -> list[float]:
    # A list, not a tuple: that is what config.json gives back.
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(
            f"PredictorConfig.profile_decays must be a sequence of numbers in (0, 1], got "
            f"{value!r}."
        )
    decays = [_number("profile_decays", decay) for decay in value]
    if not decays or any(not 0.0 < decay <= 1.0 for decay in decays):
        raise ValueError(
            f"PredictorConfig.profile_decays must be a non-empty sequence of numbers in (0, 1] "
            f"(1.0 = plain sums), got {list(value)!r}."  # type: ignore[call-overload]
        )
    return decays


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"PredictorConfig.{name} must be a number, got {value!r} ({type(value).__name__})."
        )
    if not math.isfinite(value):
        raise ValueError(f"PredictorConfig.{name} must be finite, got {value}.")
    return float(value)


def _positive_float(name: str, value: object) -> float:
    as_float = _number(name, value)
    if as_float <= 0:
        raise ValueError(f"PredictorConfig.{name} must be > 0, got {as_float}.")
    return as_float


def _dropout(name: str, value: object) -> float:
    as_float = _number(name, value)
    if not 0.0 <= as_float < 1.0:
        raise ValueError(
            f"PredictorConfig.{name} must lie in [0, 1) (a dropout probability; 0 disables "
            f"it), got {as_float}."
        )
    return as_float


def _backbone_path(value: str | os.PathLike[str] | None) -> str | None:
    if value is None:
        return None
    path = os.fspath(value)
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"PredictorConfig.backbone_path={path!r} is not an existing directory; pass a local "
            "directory written by BertModel/GPT2Model.save_pretrained, or None to train the "
            "backbone from scratch (nothing is ever downloaded)."
        )
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(
            f"PredictorConfig.backbone_path={path!r} has no config.json; pass a directory "
            "written by BertModel/GPT2Model.save_pretrained."
        )
    return path


def _text(model: str | None, size: int) -> tuple[str | None, int]:
    model = None if model is None else str(model)
    size = _nonnegative_int("text_embedding_size", size)
    if (model is None) != (size == 0):
        raise ValueError(
            f"PredictorConfig: text_model={model!r} needs text_embedding_size > 0 and "
            f"text_embedding_size={size} needs a text_model; set both (the text model's "
            "width) or neither."
        )
    return model, size


def _task_weights(value: dict[str, float] | None) -> dict[str, float]:
    weights = dict.fromkeys(TASKS, 1.0)
    if value is None:
        return weights
    if not isinstance(value, dict):
        raise TypeError(
            f"PredictorConfig.task_weights must be a dict task → weight, got {value!r}; "
            f"tasks: {', '.join(TASKS)}."
        )
    for task, weight in value.items():
        if task not in TASKS:
            raise ValueError(
                f"PredictorConfig.task_weights has an unknown task {task!r}."
                f"{did_you_mean(str(task), TASKS)} Known tasks: {', '.join(TASKS)}."
            )
        as_float = _number(f"task_weights[{task!r}]", weight)
        if as_float < 0:
            raise ValueError(
                f"PredictorConfig.task_weights[{task!r}] must be ≥ 0 (0 switches the task "
                f"off), got {as_float}."
            )
        weights[task] = as_float
    return weights


_BASE_KEYS = frozenset(_ConfigBase().to_dict()) | {
    "name_or_path",
    "_name_or_path",
    "torch_dtype",
    "attn_implementation",
    "transformers_version",
    "model_type",
    "num_labels",
    "experts_implementation",
}


def _reject_near_misses(kwargs: dict[str, Any]) -> None:
    # `transformers` stores unknown keywords as attributes: a misspelt argument would be
    # ignored without a word. Keywords of the base class pass; look-alikes of ours do not.
    for key in kwargs:
        if key in _BASE_KEYS:
            continue
        hint = did_you_mean(key, _ARGUMENTS)
        if hint:
            raise TypeError(
                f"PredictorConfig got an unknown argument {key!r}.{hint} Its arguments: "
                f"{', '.join(_ARGUMENTS)}."
            )


# `exist_ok`: re-importing (e.g. after `importlib.reload`) must not fail.
AutoConfig.register(PredictorConfig.model_type, PredictorConfig, exist_ok=True)

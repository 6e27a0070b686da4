"""Baseline presses with the same interface as LOOK-M (no modality prior, no merging).

* `StreamingLLMPress`: the first `sinks` tokens (attention sinks) and the most recent ones.
* `H2OPress`: heavy hitters by attention accumulated over every prompt query, plus a recent window.
* `SnapKVPress`: attention from the last `window` queries, max-pooled over neighbouring keys, plus the window.
* `RandomPress`: a random subset (seeded per layer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from longvlm.presses.base import KVPress, LayerView, tiered
from longvlm.presses.scoring import accumulated_scores, window_scores
from longvlm.presses.budget import KVBudget
from longvlm.errors import ConfigError


def _heads(view: LayerView) -> int:
    return int(view.keys.shape[1])


class StreamingLLMPress(KVPress):
    """Keep `sinks` first tokens, then the most recent ones (the same tokens in every head)."""

    name = "streaming"

    def __init__(self, budget: KVBudget | float | int, *, sinks: int = 4, record_indices: bool = False) -> None:
        super().__init__(budget, record_indices=record_indices)
        self.sinks = sinks

    def priority(self, view: LayerView) -> torch.Tensor:
        index = view.index_in_row().float()
        sink = (index >= 0) & (index < self.sinks)
        priority = torch.where(sink, 2.0 * view.length - index, index)  # sinks first (earliest first), then recency
        return priority[:, None, :].expand(-1, _heads(view), -1)


class H2OPress(KVPress):
    """Heavy-hitter oracle: accumulated attention of all prompt queries (O(L^2) compute, chunked memory)."""

    name = "h2o"

    def __init__(self, budget: KVBudget | float | int, *, window: int = 32, query_chunk: int | None = None,
                 record_indices: bool = False) -> None:
        super().__init__(budget, record_indices=record_indices)
        self.window = window
        self.query_chunk = query_chunk

    def priority(self, view: LayerView) -> torch.Tensor:
        return tiered(accumulated_scores(view, self.query_chunk), view.recent(self.window).long())


class SnapKVPress(KVPress):
    """SnapKV: window-query attention, max-pooled with `kernel` so that neighbours of important keys stay."""

    name = "snapkv"

    def __init__(self, budget: KVBudget | float | int, *, window: int = 32, kernel: int = 7,
                 record_indices: bool = False) -> None:
        super().__init__(budget, record_indices=record_indices)
        if kernel < 1 or kernel % 2 == 0:
            raise ConfigError(f"SnapKV pooling kernel must be odd and positive, got {kernel}")
        self.window = window
        self.kernel = kernel

    def priority(self, view: LayerView) -> torch.Tensor:
        scores = window_scores(view, self.window)
        batch, heads, length = scores.shape
        pooled = F.max_pool1d(scores.reshape(batch * heads, 1, length), self.kernel, stride=1,
                              padding=self.kernel // 2).reshape(batch, heads, length)
        return tiered(pooled, view.recent(self.window).long())


class RandomPress(KVPress):
    """Uniformly random tokens per head; reproducible (seeded with `seed` and the layer index)."""

    name = "random"

    def __init__(self, budget: KVBudget | float | int, *, seed: int = 0, record_indices: bool = False) -> None:
        super().__init__(budget, record_indices=record_indices)
        self.seed = seed

    def priority(self, view: LayerView) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + int(view.module.layer_idx))
        batch, heads, length = view.keys.shape[:3]
        return torch.rand(batch, heads, length, generator=generator).to(view.keys.device)

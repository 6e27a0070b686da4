"""Baseline presses with the same interface as LOOK-M (no modality prior, no merging of their own; wrap them
in `MergingPress` to merge).

* `StreamingLLMPress`: the first `sinks` tokens (attention sinks) and the most recent ones.
* `H2OPress`: heavy hitters by attention accumulated over every prompt query, plus a recent `window`.
* `SnapKVPress`: attention from the last `window` queries, max-pooled over `kernel` neighbouring keys, plus
  the window.
* `RandomPress`: a random subset (seeded per layer).

Every press is a dataclass: `SnapKVPress(0.2)`, `SnapKVPress(budget=64, window=16)`; hyperparameters after
the budget are keyword-only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from longvlm.presses.base import LayerView, ScorerPress, require_int, tiered
from longvlm.presses.scoring import accumulated_scores, window_scores
from longvlm.errors import ConfigError


def _heads(view: LayerView) -> int:
    return int(view.keys.shape[1])


@dataclass(kw_only=True)
class StreamingLLMPress(ScorerPress):
    """Keep `sinks` first tokens, then the most recent ones (the same tokens in every head)."""

    name = "streaming"

    sinks: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        require_int(self, "sinks", 0)

    def priority(self, view: LayerView) -> torch.Tensor:
        index = view.index_in_row().float()
        sink = (index >= 0) & (index < self.sinks)
        priority = torch.where(sink, 2.0 * view.length - index, index)  # sinks first (earliest first), then recency
        return priority[:, None, :].expand(-1, _heads(view), -1)


@dataclass(kw_only=True)
class H2OPress(ScorerPress):
    """Heavy-hitter oracle: accumulated attention of all prompt queries (O(L^2) compute, memory bounded by
    `query_chunk` queries at a time, auto when None), after the `window` most recent tokens."""

    name = "h2o"

    window: int = 32
    query_chunk: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        require_int(self, "window", 0)
        if self.query_chunk is not None:
            require_int(self, "query_chunk", 1)

    def priority(self, view: LayerView) -> torch.Tensor:
        return tiered(accumulated_scores(view, self.query_chunk), view.recent(self.window).long())


@dataclass(kw_only=True)
class SnapKVPress(ScorerPress):
    """SnapKV: attention of the last `window` queries, max-pooled over `kernel` (odd) neighbouring keys so
    that neighbours of important keys stay; the window itself is kept first."""

    name = "snapkv"

    window: int = 32
    kernel: int = 7

    def __post_init__(self) -> None:
        super().__post_init__()
        require_int(self, "window", 1)
        require_int(self, "kernel", 1)
        if self.kernel % 2 == 0:
            raise ConfigError(f"SnapKV pooling kernel must be odd and positive, got {self.kernel}")

    def priority(self, view: LayerView) -> torch.Tensor:
        scores = window_scores(view, self.window)
        batch, heads, length = scores.shape
        pooled = F.max_pool1d(scores.reshape(batch * heads, 1, length), self.kernel, stride=1,
                              padding=self.kernel // 2).reshape(batch, heads, length)
        return tiered(pooled, view.recent(self.window).long())


@dataclass(kw_only=True)
class RandomPress(ScorerPress):
    """Uniformly random tokens per head; reproducible (seeded with `seed` and the layer index)."""

    name = "random"

    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        require_int(self, "seed")

    def priority(self, view: LayerView) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + int(view.module.layer_idx))
        batch, heads, length = view.keys.shape[:3]
        return torch.rand(batch, heads, length, generator=generator).to(view.keys.device)

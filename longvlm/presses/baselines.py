"""Baseline presses with the same interface as LOOK-M (no modality prior, no merging of their own; wrap them
in `MergingPress` to merge).

* `StreamingLLMPress`: the first `sinks` tokens (attention sinks) and the most recent ones.
* `H2OPress`: heavy hitters by attention accumulated over every prompt query, plus a recent `window` (H2O's and
  LOOK-M's H2O baseline); `normalize=True, window=0` is kvpress's ObservedAttentionPress.
* `SnapKVPress`: attention from the last `window` queries, pooled (`pooling` "max" or "avg") over `kernel`
  neighbouring keys outside the window, plus the window (SnapKV / kvpress); `pool_window=True` pools across the
  window too.
* `RandomPress`: a random subset (seeded per layer).

Every press is a dataclass: `SnapKVPress(0.2)`, `SnapKVPress(budget=64, window=16)`; hyperparameters after
the budget are keyword-only. Each choice that differs between references is a named option; the table of
defaults, reference code lines and tests is docs/parity/presses.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from longvlm.presses.base import (LayerView, ScorerPress, require_bool, require_choice, require_int, require_window,
                                  tiered, window_tokens)
from longvlm.presses.scoring import accumulated_scores, observed_counts, summed_attention
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
    """Heavy-hitter oracle: attention accumulated over all prompt queries (O(L^2) compute, memory bounded by
    `query_chunk` queries at a time, auto when None), after the `window` most recent tokens (int count, or float
    ratio of each row's prompt as LOOK-M's H2O baseline: 0.1). `normalize`: divide each key's sum by the number
    of queries that see it (L - j; kvpress's ObservedAttentionPress, which has no window: `window=0`)."""

    name = "h2o"

    window: int | float = 32
    query_chunk: int | None = None
    normalize: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        require_window(self, "window", 0)
        if self.query_chunk is not None:
            require_int(self, "query_chunk", 1)
        require_bool(self, "normalize")

    def scores(self, view: LayerView) -> torch.Tensor:
        """[B, Hkv, L] accumulated (or, with `normalize`, mean observed) attention of each key."""
        scores = accumulated_scores(view, self.query_chunk)
        return scores / observed_counts(view.length, scores.device) if self.normalize else scores

    def priority(self, view: LayerView) -> torch.Tensor:
        return tiered(self.scores(view), view.recent(window_tokens(self.window, view.real)).long())


POOLINGS = ("max", "avg")


@dataclass(kw_only=True)
class SnapKVPress(ScorerPress):
    """SnapKV: attention of the last `window` queries, pooled over `kernel` (odd) neighbouring keys so that
    neighbours of important keys stay; the window itself is kept first. `pooling`: "max" or "avg"
    (`F.max_pool1d` / `F.avg_pool1d`, zero padding); the pooling runs per query head before the average over the
    query heads of a KV head. `pool_window=False` (SnapKV, kvpress) pools only the keys before the window;
    True pools across the whole prompt, so the keys just before the window inherit the window's scores.
    Defaults: SnapKV's LongBench configuration (window 32, kernel 7, max); kvpress: window=64, kernel=5, "avg"."""

    name = "snapkv"

    window: int = 32
    kernel: int = 7
    pooling: str = "max"
    pool_window: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        require_int(self, "window", 1)
        require_int(self, "kernel", 1)
        if self.kernel % 2 == 0:
            raise ConfigError(f"SnapKV pooling kernel must be odd and positive, got {self.kernel}")
        require_choice(self, "pooling", POOLINGS)
        require_bool(self, "pool_window")

    def scores(self, view: LayerView) -> torch.Tensor:
        """[B, Hkv, L] pooled window attention (the window's own keys unpooled unless `pool_window`)."""
        summed = summed_attention(view, self.window)  # [B, Hkv, G, L]
        batch, kv_heads, groups, length = summed.shape
        recent = view.recent(self.window)
        if not self.pool_window:
            summed = summed.masked_fill(recent[:, None, None, :], 0.0)
        pool = F.max_pool1d if self.pooling == "max" else F.avg_pool1d
        pooled = pool(summed.reshape(-1, 1, length), self.kernel, stride=1, padding=self.kernel // 2)
        return pooled.reshape(batch, kv_heads, groups, length).mean(dim=2)

    def priority(self, view: LayerView) -> torch.Tensor:
        return tiered(self.scores(view), view.recent(self.window).long())


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

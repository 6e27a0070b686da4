"""The two kinds of reducers and how they compose.

* A `VisualCompressor` shrinks the merged visual tokens of each frame/page *before* the LLM: a feature grid
  [T, H, W, C] becomes [T, H/k, W/k, C] (k^2 fewer tokens). `longvlm.compression.visual` applies it to
  Qwen2-VL's merged-token sequences and reports the grid that keeps M-RoPE positions consistent.
* A `KVPress` (`longvlm.compression.press`) prunes the KV cache of every attention layer at the end of prefill,
  knowing which cache entries are text, image or video tokens.

An input reducer comes before both: question-aware selection (`longvlm.encoders.selection.QuestionSelector`)
ranks the pages/frames against the question so that the token budget planner gives the best ones native
resolution and the rest low resolution or none.

`Compression` holds one of each; they compose in that order (selection, visual compressor, KV pruning).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from longvlm.errors import ConfigError

if TYPE_CHECKING:
    from longvlm.compression.press import KVPress
    from longvlm.encoders.selection import QuestionSelector


def check_factor(factor: int) -> int:
    """Validate a downsample factor k (a positive int; the planner uses 1, 2 or 4)."""
    if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
        raise ConfigError(f"downsample factor must be a positive integer (1, 2 or 4), got {factor!r}")
    return factor


def to_regions(grid: torch.Tensor, factor: int) -> torch.Tensor:
    """[T, H, W, C] -> [T, H/k, W/k, k*k, C]: the k x k features of each output cell, row-major inside it."""
    t, h, w, c = grid.shape
    if h % factor or w % factor:
        raise ConfigError(f"a {h}x{w} token grid does not divide into {factor}x{factor} regions; plan the input "
                          f"with downsample={factor} so that its sides are multiples of {factor} merged tokens")
    x = grid.reshape(t, h // factor, factor, w // factor, factor, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(t, h // factor, w // factor, factor * factor, c)


class VisualCompressor(nn.Module):
    """Reduce each frame/page feature grid k x k times. k=1 always returns the grid unchanged.

    Subclasses implement `reduce(grid, factor)` for k > 1; `forward` validates and dispatches. Modules with
    parameters (Oryx) are saved with `state_dict`; parameter-free ones (pooling) have none.
    """

    name = "visual"

    def forward(self, grid: torch.Tensor, factor: int) -> torch.Tensor:
        check_factor(factor)
        if grid.ndim != 4:
            raise ConfigError(f"expected a [T, H, W, C] feature grid, got shape {tuple(grid.shape)}")
        if factor == 1:
            return grid
        return self.reduce(grid, factor)

    def reduce(self, grid: torch.Tensor, factor: int) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class Compression:
    """Reducers for one question, applied in order: `selector` ranks the pages/frames against the question
    (the best `native_items` get native resolution, the rest low resolution or none; video: the best frames
    are kept when thinning and added as native close-ups), `visual` on the encoded features of each
    frame/page with factor `downsample` (1, 2, 4 or "auto": see `longvlm.encoders.planner.auto_downsample`),
    then `kv_press` on the KV cache at prefill. `visual=None` with a factor > 1 means average pooling."""

    visual: VisualCompressor | None = None
    downsample: int | str = 1
    kv_press: KVPress | None = None
    selector: QuestionSelector | None = None
    native_items: int = 4

    def __post_init__(self) -> None:
        if self.downsample != "auto":
            check_factor(self.downsample)
        if not isinstance(self.native_items, int) or isinstance(self.native_items, bool) or self.native_items < 0:
            raise ConfigError(f"native_items must be a non-negative integer, got {self.native_items!r}")

    def visual_factor(self, kind: str, duration_s: float | None = None) -> int:
        """The factor k for an input of this kind (resolves "auto")."""
        from longvlm.encoders.planner import auto_downsample

        return auto_downsample(kind, duration_s) if self.downsample == "auto" else int(self.downsample)

    def visual_compressor(self) -> VisualCompressor:
        from longvlm.compression.pooling import AvgPoolCompressor

        return self.visual if self.visual is not None else AvgPoolCompressor()

"""The visual compressor interface: shrink the merged visual tokens of each frame/page *before* the LLM.

A feature grid [T, H, W, C] becomes [T, H/k, W/k, C] (k^2 fewer tokens). `longvlm.compression.visual` applies
it to Qwen2-VL's merged-token sequences and reports the grid that keeps M-RoPE positions consistent. How a
compressor composes with question-aware selection and KV presses: `longvlm.options.Compression`.
"""

from __future__ import annotations

import torch
from torch import nn

from longvlm.errors import ConfigError

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
    """Reduce each frame/page feature grid k x k times. k=1 returns `identity(grid)`: the grid unchanged (an Oryx
    compressor can be configured to apply its formula instead, `OryxConfig.identity_mode`; the pipeline never
    runs a compressor at k=1).

    Subclasses implement `reduce(grid, factor)` for k > 1; `forward` validates and dispatches. Modules with
    parameters (Oryx) are saved with `state_dict`; parameter-free ones (pooling) have none.
    """

    name = "visual"

    def forward(self, grid: torch.Tensor, factor: int) -> torch.Tensor:
        check_factor(factor)
        if grid.ndim != 4:
            raise ConfigError(f"expected a [T, H, W, C] feature grid, got shape {tuple(grid.shape)}")
        if factor == 1:
            return self.identity(grid)
        return self.reduce(grid, factor)

    def identity(self, grid: torch.Tensor) -> torch.Tensor:
        """What k=1 returns: the grid unchanged."""
        return grid

    def reduce(self, grid: torch.Tensor, factor: int) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

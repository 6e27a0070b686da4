"""Apply a visual compressor to Qwen2-VL merged visual tokens and keep their M-RoPE positions consistent.

Token order. The vision tower returns, per item (image, or video with grid (t, gh, gw) in patches), the merged
tokens of each temporal patch in row-major order over the (gh/m, gw/m) merged grid (m = spatial merge size, 2):
`patchify` orders patches merge-window by merge-window and the patch merger turns each window into one token
(Qwen2.5-VL's windowed attention restores this order at its end). So the tokens of an item are exactly
`tokens.view(t, gh/m, gw/m, C)`.

Reported grid. After a k x k compressor the item has (t, gh/(m k), gw/(m k)) merged tokens, still row-major.
We report grid_thw = (t, gh/k, gw/k): the LLM derives positions from grid // m, so compressed token (i, j) of a
temporal patch gets the 3D position (t0 + time, s + i, s + j) of a k-times smaller image; temporal positions
(including Qwen2.5-VL's `second_per_grid_ts`) do not change, and the text after the item continues at
s + max(gh, gw)/(m k), as for an image of that size. Sides must be divisible (no padding): plan the input with
the same `downsample` so that its sides are multiples of m*k patches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from longvlm.compression.base import VisualCompressor, check_factor
from longvlm.errors import ConfigError


def compressed_grid(grid_thw: Sequence[int], factor: int, merge_size: int = 2) -> tuple[int, int, int]:
    """The grid_thw (in patches) to report for an item compressed k x k; see the module docstring."""
    check_factor(factor)
    t, gh, gw = (int(v) for v in grid_thw)
    if gh % (merge_size * factor) or gw % (merge_size * factor):
        raise ConfigError(f"grid {t}x{gh}x{gw} (patches) does not divide into {factor}x{factor} regions of "
                          f"merged tokens; plan the input with downsample={factor}")
    return t, gh // factor, gw // factor


def compress_item(tokens: torch.Tensor, grid_thw: Sequence[int], compressor: VisualCompressor, factor: int,
                  merge_size: int = 2, *, block_width: int | None = None,
                  ) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Merged tokens [t*h*w, C] of one item with patch grid (t, gh, gw) -> (compressed tokens, reported grid).

    `block_width` W: the channels are several stacked blocks of W features (DeepStack: the LLM input, then one
    block per injection layer, `longvlm.vlm.vision`); each block is compressed by the same compressor on its
    own, so a learned compressor sized for the LLM's hidden size applies to every block."""
    new_grid = compressed_grid(grid_thw, factor, merge_size)
    t, gh, gw = (int(v) for v in grid_thw)
    h, w = gh // merge_size, gw // merge_size
    if tokens.shape[0] != t * h * w:
        raise RuntimeError(f"{tokens.shape[0]} tokens do not match grid {t}x{gh}x{gw} "
                          f"({t * h * w} merged tokens)")
    if factor == 1:
        return tokens, new_grid
    width = tokens.shape[-1] if block_width is None else block_width
    if tokens.shape[-1] % width:
        raise RuntimeError(f"features of width {tokens.shape[-1]} are not blocks of {width}")
    blocks = [compressor(block.reshape(t, h, w, width), factor).reshape(-1, width)
              for block in tokens.split(width, dim=-1)]
    return torch.cat(blocks, dim=-1), new_grid

"""3D (temporal, height, width) M-RoPE position ids, computed by longvlm for any sequence of visual blocks.

transformers computes these itself in `get_rope_index`, but only for one grid per `<|vision_start|>` block.
A hybrid-resolution video (`longvlm.planning.hybrid`) is one block made of several grids (items of different
sizes in time order), so longvlm builds the ids itself and passes them to `generate()`; for one grid per
block the result is identical to `get_rope_index` (tested against it).

Rules (transformers 5.x, the default `text_after_vision="transformers"`):
- text tokens: the three ids are equal and grow by 1 per token;
- a visual block starting at position p: each grid's token (k, i, j) -- k-th temporal patch of the block,
  counted over all its grids, row i, column j after the spatial merge -- gets
  (p + floor(k * interval), p + i, p + j), interval = 1 for Qwen2-VL and images, and
  tokens_per_second * second_per_grid for Qwen2.5-VL videos (absolute time);
- text after the block continues at p + max over its grids of max(rows, columns).

transformers 4.x (and the original Qwen2-VL code) continued text after a block at max(all its ids) + 1
instead, so a video whose temporal extent exceeds its spatial one ends later there. In 5.x the text after a
long video re-uses positions inside the video's temporal range, and a second video's temporal ids restart
from the text position instead of following the first video's. `text_after_vision="after_max"` gives the 4.x
rule.

Decoding: in transformers 5.23 `generate()` always works from explicit `position_ids` (it builds them with
`get_rope_index` when none are given) and extends every row by the last prompt position + 1 per new token;
the `rope_deltas` rule of 4.x (continue after max(prompt ids) + 1) is not used. So passing longvlm's ids to
`generate()` decodes exactly as transformers would with its own (tested), and new tokens may sit inside a
long video's temporal range in both cases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from longvlm.errors import ConfigError
from longvlm.vlm.families import family_of

TEXT_AFTER_VISION = ("transformers", "after_max")


@dataclass(frozen=True)
class VisualBlock:
    """One run of visual placeholder tokens: its (t, h, w) patch grids in order and the temporal id step."""

    grids: tuple[tuple[int, int, int], ...]
    time_interval: float = 1.0  # temporal position step per temporal patch

    def tokens(self, spatial_merge_size: int) -> int:
        return sum(t * h * w for t, h, w in self.grids) // spatial_merge_size ** 2


def blocks_for_items(image_grid_thw: torch.Tensor | None, video_grid_thw: torch.Tensor | None,
                     mm_token_type_ids: torch.Tensor, *, tokens_per_second: float | None = None,
                     second_per_grid_ts: torch.Tensor | None = None,
                     timestamped_frames: bool = False) -> list[VisualBlock]:
    """One block per grid, in the order the blocks appear in `mm_token_type_ids` (as transformers pairs them).

    `tokens_per_second` (Qwen2.5-VL) makes video temporal ids follow absolute time with `second_per_grid_ts`
    (default 1 s per temporal patch, as in transformers). `timestamped_frames` (Qwen3-VL, Qwen3.5): each
    temporal patch of a video is its own block (grid (1, h, w)), as their `get_rope_index` splits the grids.
    """
    images = iter([] if image_grid_thw is None else image_grid_thw.tolist())
    video_grids = [] if video_grid_thw is None else video_grid_thw.tolist()
    if timestamped_frames:
        video_grids = [[1, h, w] for t, h, w in video_grids for _ in range(t)]
    videos = iter(video_grids)
    seconds = iter([] if second_per_grid_ts is None else second_per_grid_ts.reshape(-1))
    blocks = []
    for kind, _, _ in _runs(mm_token_type_ids):
        if kind == 1:
            blocks.append(VisualBlock((tuple(next(images)),)))
        elif kind == 2:
            grid = tuple(next(videos))
            interval = 1.0
            if tokens_per_second is not None:
                interval = _interval(tokens_per_second, next(seconds, torch.tensor(1.0)))
            blocks.append(VisualBlock((grid,), interval))
    return blocks


def _interval(tokens_per_second: float, second_per_grid: torch.Tensor | float) -> float:
    """tokens_per_second * seconds per temporal patch, rounded to float32 as transformers computes it."""
    return float((tokens_per_second * torch.as_tensor(second_per_grid, dtype=torch.float32)).to(torch.float32))


def video_time_interval(config, second_per_grid: torch.Tensor | float) -> float:
    """Temporal id step per temporal patch of a video for this model config: Qwen2.5-VL counts absolute time
    (`vision_config.tokens_per_second` ids per second), Qwen2-VL one id per temporal patch."""
    if family_of(config).absolute_time:
        return _interval(config.vision_config.tokens_per_second, second_per_grid)
    return 1.0


def _runs(types: torch.Tensor) -> list[tuple[int, int, int]]:
    """(value, start, end) of each run of equal values in a 1-D sequence."""
    values = types.reshape(-1).tolist()
    runs, start = [], 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[start]:
            runs.append((values[start], start, i))
            start = i
    return runs


def mrope_position_ids(mm_token_type_ids: torch.Tensor, blocks: Sequence[VisualBlock], spatial_merge_size: int,
                       *, text_after_vision: str = "transformers") -> tuple[torch.Tensor, int]:
    """3D position ids [3, 1, L] for one sequence and its rope delta (max id + 1 - L).

    `mm_token_type_ids` ([L] or [1, L]: 0 text, 1 image, 2 video) marks the placeholders; each run of visual
    tokens takes the next block of `blocks`, whose grids must hold exactly that many tokens.
    """
    if text_after_vision not in TEXT_AFTER_VISION:
        raise ConfigError(f"text_after_vision must be one of {TEXT_AFTER_VISION}, got {text_after_vision!r}")
    merge = spatial_merge_size
    pieces, current = [], 0
    block_iter = iter(blocks)
    for kind, start, end in _runs(mm_token_type_ids):
        if kind == 0:
            pieces.append(torch.arange(current, current + end - start).expand(3, -1))
            current += end - start
            continue
        block = next(block_iter, None)
        if block is None:
            raise RuntimeError("more visual placeholder runs than visual blocks")
        if block.tokens(merge) != end - start:
            raise RuntimeError(f"visual block of {block.tokens(merge)} tokens placed on {end - start} placeholders")
        step, extent = 0, 0
        first = len(pieces)
        for t, h, w in block.grids:
            rows, cols = h // merge, w // merge
            temporal = (torch.arange(step, step + t) * torch.tensor(block.time_interval)).long()
            grid_t, grid_h, grid_w = torch.meshgrid(temporal, torch.arange(rows), torch.arange(cols), indexing="ij")
            pieces.append(torch.stack([grid_t, grid_h, grid_w]).reshape(3, -1) + current)
            step += t
            extent = max(extent, rows, cols)
        if text_after_vision == "transformers":
            current += extent
        else:
            current = int(torch.cat(pieces[first:], dim=1).max()) + 1
    if next(block_iter, None) is not None:
        raise RuntimeError("more visual blocks than visual placeholder runs")
    positions = torch.cat(pieces, dim=1) if pieces else torch.zeros(3, 0, dtype=torch.long)
    delta = int(positions.max()) + 1 - positions.shape[1] if positions.numel() else 0
    return positions.unsqueeze(1), delta


def generation_position_ids(mm_token_type_ids: torch.Tensor, blocks: Sequence[VisualBlock], spatial_merge_size: int,
                            *, text_after_vision: str = "transformers") -> torch.Tensor:
    """[4, 1, L] ids for `generate(position_ids=...)`: a plain 0..L-1 row (transformers' mask and packing
    row) above the 3D ids, the layout generate() builds itself for Qwen2-VL in transformers 5.x."""
    positions, _ = mrope_position_ids(mm_token_type_ids, blocks, spatial_merge_size,
                                      text_after_vision=text_after_vision)
    text = torch.arange(positions.shape[-1]).view(1, 1, -1)
    return torch.cat([text, positions], dim=0)

"""Parameter-free visual compressors: k x k average pooling and bilinear downsampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from longvlm.compression.base import VisualCompressor, to_regions


class AvgPoolCompressor(VisualCompressor):
    """Each output token is the mean of the k x k merged tokens of its region."""

    name = "avgpool"

    def reduce(self, grid: torch.Tensor, factor: int) -> torch.Tensor:
        return to_regions(grid, factor).mean(dim=-2)


class BilinearCompressor(VisualCompressor):
    """Bilinear resampling of the grid to (H/k, W/k) (half-pixel centres, no antialiasing): for k=2 it equals
    average pooling, for k=4 each output is the mean of the central 2 x 2 of its region."""

    name = "bilinear"

    def reduce(self, grid: torch.Tensor, factor: int) -> torch.Tensor:
        to_regions(grid[:1, :, :, :1], factor)  # same divisibility rule (and error) as the other compressors
        t, h, w, _ = grid.shape
        x = grid.permute(0, 3, 1, 2)
        y = F.interpolate(x.float(), size=(h // factor, w // factor), mode="bilinear", align_corners=False)
        return y.to(grid.dtype).permute(0, 2, 3, 1).contiguous()

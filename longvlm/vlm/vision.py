"""Every call of the vision tower: pixels -> merged visual tokens, for images and for video frames.

The encoders of `longvlm.pipeline`, the memory bridge's stream (`longvlm.memory.streaming`) and training all
come through here, so the dtype/device handling and the patch layout (`longvlm.processing.patches`) are in one
place. Nothing is planned here: sizes come from the caller's plan.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from longvlm.processing.patches import image_patches, video_patches
from longvlm.vlm.loading import VLM


def vision_placement(vlm: VLM) -> tuple[torch.device, torch.dtype]:
    """(device, dtype) of the vision tower's parameters: where pixels must go."""
    param = next(vlm.model.model.visual.parameters())
    return param.device, param.dtype


def image_tokens(vlm: VLM, images: Sequence[Image.Image | np.ndarray], sizes: Sequence[tuple[int, int]],
                 ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Images resized to `sizes` (height, width) -> one [tokens, C] tensor of merged tokens per image, and the
    [N, 3] grid_thw they were encoded with. Gradients flow when the tower requires them."""
    device, dtype = vision_placement(vlm)
    pixels, grid = image_patches(list(images), list(sizes), vlm.vision)
    out = vlm.model.get_image_features(pixel_values=pixels.to(device, dtype), image_grid_thw=grid.to(device))
    return list(out.pooler_output), grid


def video_tokens(vlm: VLM, pixels: torch.Tensor, grid: torch.Tensor) -> list[torch.Tensor]:
    """Patched video pixels (`longvlm.processing.patches.video_patches`, several items concatenated) and their
    [N, 3] grid_thw -> one [tokens, C] tensor of merged tokens per item."""
    device, dtype = vision_placement(vlm)
    out = vlm.model.get_video_features(pixel_values_videos=pixels.to(device, dtype), video_grid_thw=grid.to(device))
    return list(out.pooler_output)


def frame_tokens(vlm: VLM, frames: Sequence[np.ndarray], size: tuple[int, int]) -> tuple[torch.Tensor, list[int]]:
    """Frames (a whole number of temporal patches) of one video item at `size` -> its merged tokens [tokens, C]
    and its grid_thw."""
    pixels, grid = video_patches(list(frames), size, vlm.vision)
    return video_tokens(vlm, pixels, grid)[0], grid[0].tolist()

"""Pixels -> `pixel_values` + `grid_thw` in the layout Qwen2-VL's vision tower and merger expect.

Written here instead of using transformers' video processor, which needs torchvision (not importable beside
the CPU torch build this project pins). Checked against transformers' PIL image processor in the tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from longvlm.processing.spec import VisionSpec


def resize_frame(image: Image.Image | np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize (PIL, as transformers' PIL processor does) to an HxWx3 uint8 array."""
    if isinstance(image, np.ndarray) and image.shape == (height, width, 3) and image.dtype == np.uint8:
        return image  # already the right size and layout (e.g. synthetic frames)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (width, height):
        image = image.resize((width, height), resample=Image.Resampling.BICUBIC)
    return np.asarray(image)


def normalize(frames: np.ndarray, spec: VisionSpec) -> np.ndarray:
    """uint8 [T, H, W, 3] -> float32 [T, 3, H, W], rescaled to [0, 1] and normalised with the spec's mean/std."""
    x = frames.astype(np.float32) * np.float32(1 / 255)
    x = (x - np.asarray(spec.image_mean, np.float32)) / np.asarray(spec.image_std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def patchify(frames: np.ndarray, spec: VisionSpec) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """float [T, C, H, W] -> ([grid_t*grid_h*grid_w, C*tp*p*p], (grid_t, grid_h, grid_w)).

    T is padded to a multiple of the temporal patch by repeating the last frame (an image, T=1, becomes two
    identical frames). Patches are ordered merge-window by merge-window, as the patch merger expects.
    """
    t, c, h, w = frames.shape
    p, m, tp = spec.patch_size, spec.merge_size, spec.temporal_patch_size
    if h % (p * m) or w % (p * m):
        raise ValueError(f"frame size {h}x{w} is not a multiple of {p * m}; resize it with the spec first")
    if pad := -t % tp:
        frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
        t += pad
    gt, gh, gw = t // tp, h // p, w // p
    x = torch.from_numpy(frames).view(gt, tp, c, gh // m, m, p, gw // m, m, p)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(gt * gh * gw, c * tp * p * p), (gt, gh, gw)


def image_patches(images: Sequence[Image.Image | np.ndarray], sizes: Sequence[tuple[int, int]],
                  spec: VisionSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Images resized to `sizes` -> (pixel_values, image_grid_thw) for the model."""
    pieces, grids = [], []
    for image, (h, w) in zip(images, sizes, strict=True):
        patches, grid = patchify(normalize(resize_frame(image, h, w)[None], spec), spec)
        pieces.append(patches)
        grids.append(grid)
    return torch.cat(pieces), torch.tensor(grids, dtype=torch.long)


def video_patches(frames: Sequence[Image.Image | np.ndarray], size: tuple[int, int],
                  spec: VisionSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Video frames resized to `size` -> (pixel_values_videos, video_grid_thw) for one video item."""
    h, w = size
    stacked = np.stack([resize_frame(f, h, w) for f in frames])
    patches, grid = patchify(normalize(stacked, spec), spec)
    return patches, torch.tensor([grid], dtype=torch.long)

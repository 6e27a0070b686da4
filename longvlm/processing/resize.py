"""Native-resolution sizing with the semantics of transformers' Qwen2-VL image processor."""

from __future__ import annotations

import math

from longvlm.errors import InputError
from longvlm.limits import MAX_ASPECT_RATIO


def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56,
                 max_pixels: int = 28 * 28 * 1280) -> tuple[int, int]:
    """Size (h, w) closest to (height, width) with both sides multiples of `factor`, aspect ratio kept,
    and `min_pixels <= h * w <= max_pixels` (up to the rounding of each side to `factor`).

    Same rule as `transformers.models.qwen2_vl.image_processing_qwen2_vl.smart_resize`.
    """
    if height <= 0 or width <= 0:
        raise InputError(f"image size must be positive, got {height}x{width}")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise InputError(f"aspect ratio of a {height}x{width} image is above {MAX_ASPECT_RATIO:g}, which "
                           f"Qwen2-VL's resizer does not accept")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar

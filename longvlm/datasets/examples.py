"""In-memory training/evaluation examples: a user turn of text and visual items, and the exact answer."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ImageItem:
    """One image (or PDF page), HxWx3 uint8."""

    pixels: np.ndarray


@dataclass
class VideoItem:
    """Video frames [T, H, W, 3] uint8 with their timestamps in seconds."""

    frames: np.ndarray
    timestamps: list[float]


@dataclass
class Example:
    """A question about visual/text content with one exact answer.

    `parts` is the user turn in order (strings and visual items); `task` names the generator and question
    type (e.g. 'video_needle/color'); `meta` holds what an evaluation needs (depth, length, needle index...).
    """

    parts: list[str | ImageItem | VideoItem]
    answer: str
    task: str
    meta: dict = field(default_factory=dict)

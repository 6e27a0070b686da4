"""The vision-side constants of a model family's vision tower (patching, pixel bounds, normalisation)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from longvlm.processing.resize import smart_resize
from longvlm.errors import ConfigError

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class VisionSpec:
    """How pixels become visual tokens: one LLM token per `merge_size`^2 patches of `patch_size`^2 pixels,
    and one temporal patch per `temporal_patch_size` video frames."""

    patch_size: int = 14
    merge_size: int = 2
    temporal_patch_size: int = 2
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280
    image_mean: tuple[float, float, float] = field(default=OPENAI_CLIP_MEAN)
    image_std: tuple[float, float, float] = field(default=OPENAI_CLIP_STD)

    @property
    def factor(self) -> int:
        """Side length in pixels of the square that becomes one LLM token."""
        return self.patch_size * self.merge_size

    def resized(self, height: int, width: int, max_pixels: int | None = None, downsample: int = 1) -> tuple[int, int]:
        """`smart_resize` with this spec's bounds (`max_pixels` overrides the upper bound).

        With `downsample` k > 1 both sides become multiples of `factor * k`, so that the merged token grid
        divides into k x k regions for a visual compressor (`longvlm.compression`).
        """
        upper = self.max_pixels if max_pixels is None else max_pixels
        return smart_resize(height, width, self.factor * downsample, self.min_pixels, max(upper, self.min_pixels))

    def grid(self, height: int, width: int, num_frames: int = 1) -> tuple[int, int, int]:
        """(t, h, w) patch grid of an already resized image (num_frames=1) or video."""
        grid_t = -(-num_frames // self.temporal_patch_size) if num_frames > 1 else 1
        return grid_t, height // self.patch_size, width // self.patch_size

    def tokens(self, height: int, width: int, num_frames: int = 1, downsample: int = 1) -> int:
        """LLM tokens for an already resized image or video of that size (after a k x k visual compressor
        when `downsample` k > 1; the size must then be a multiple of `factor * k`)."""
        t, h, w = self.grid(height, width, num_frames)
        return t * h * w // (self.merge_size ** 2 * downsample ** 2)

    @classmethod
    def from_preprocessor_config(cls, config: dict, defaults: VisionSpec | None = None) -> VisionSpec:
        """Read a Hugging Face `preprocessor_config.json` dict (4.x or 5.x layout); keys it lacks come from
        `defaults` (the family's spec; Qwen2-VL's by default)."""
        size = config.get("size") or {}
        defaults = defaults or cls()
        return cls(
            patch_size=int(config.get("patch_size", defaults.patch_size)),
            merge_size=int(config.get("merge_size", defaults.merge_size)),
            temporal_patch_size=int(config.get("temporal_patch_size", defaults.temporal_patch_size)),
            min_pixels=int(config.get("min_pixels") or size.get("shortest_edge") or defaults.min_pixels),
            max_pixels=int(config.get("max_pixels") or size.get("longest_edge") or defaults.max_pixels),
            image_mean=tuple(config.get("image_mean", defaults.image_mean)),
            image_std=tuple(config.get("image_std", defaults.image_std)),
        )

    @classmethod
    def from_model_dir(cls, path: str | os.PathLike, defaults: VisionSpec | None = None) -> VisionSpec:
        """Read `preprocessor_config.json` from a model directory (see `from_preprocessor_config`)."""
        file = os.path.join(path, "preprocessor_config.json")
        if not os.path.isfile(file):
            raise ConfigError(f"{path}: no preprocessor_config.json (is this a vision-language model directory?)")
        with open(file) as fh:
            return cls.from_preprocessor_config(json.load(fh), defaults)

    def to_preprocessor_config(self, processor_class: str = "Qwen2VLImageProcessor") -> dict:
        """The `preprocessor_config.json` dict transformers' Qwen2-VL image processor reads."""
        return {
            "image_processor_type": processor_class,
            "patch_size": self.patch_size, "merge_size": self.merge_size,
            "temporal_patch_size": self.temporal_patch_size,
            "min_pixels": self.min_pixels, "max_pixels": self.max_pixels,
            "size": {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels},
            "image_mean": list(self.image_mean), "image_std": list(self.image_std),
            "do_resize": True, "do_rescale": True, "do_normalize": True, "do_convert_rgb": True,
            "rescale_factor": 1 / 255, "resample": 3,
        }

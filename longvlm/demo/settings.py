"""The settings panel's values, validated, and the objects they turn into for the pipeline."""

from __future__ import annotations

import math
from dataclasses import dataclass

from longvlm.demo.features import Feature, compression_feature
from longvlm.errors import ConfigError
from longvlm.vlm.routes import ROUTES

DOWNSAMPLE_CHOICES = ("1", "2", "4", "auto")
MAX_SAMPLE_FPS = 60.0  # no video is sampled faster than this


@dataclass(frozen=True)
class DemoSettings:
    """What the user chose in the settings panel. Compression fields only matter when this build has
    `longvlm.compression` (see `longvlm.demo.features`); otherwise asking for them is a `ConfigError`."""

    max_visual_tokens: int | None = None  # None: what fits the model (longvlm.vlm.room)
    sample_fps: float = 1.0
    max_frames: int | None = None
    max_new_tokens: int | None = None  # None: the model's default answer room
    route: str = "auto"  # "auto" | "text" | "vlm" (longvlm.vlm.routes)
    compressor: str = "none"
    downsample: str = "1"
    kv_press: str = "none"
    kv_budget: float = 1.0
    memory_bridge: str = "off"  # videos: "off", a shipped bridge ("small"), or a bridge directory

    def validated(self) -> DemoSettings:
        """Self, if every value is usable; `ConfigError` naming the bad one otherwise."""
        if self.max_visual_tokens is not None and (not isinstance(self.max_visual_tokens, int)
                                                   or self.max_visual_tokens < 64):
            raise ConfigError(f"visual-token budget must be an integer >= 64, got {self.max_visual_tokens!r}")
        if not (self.sample_fps > 0 and math.isfinite(self.sample_fps)) or self.sample_fps > MAX_SAMPLE_FPS:
            raise ConfigError(f"video sampling rate must be in (0, {MAX_SAMPLE_FPS:g}] frames per second, got "
                              f"{self.sample_fps!r}")
        if self.max_frames is not None and self.max_frames < 2:
            raise ConfigError(f"max frames must be at least 2, got {self.max_frames!r}")
        if self.max_new_tokens is not None and not 1 <= self.max_new_tokens <= 4096:
            raise ConfigError(f"max new tokens must be in 1..4096, got {self.max_new_tokens!r}")
        if self.route not in ROUTES:
            raise ConfigError(f"route must be one of {', '.join(ROUTES)}, got {self.route!r}")
        if self.downsample not in DOWNSAMPLE_CHOICES:
            raise ConfigError(f"compression ratio must be one of {', '.join(DOWNSAMPLE_CHOICES)}")
        if not 0.0 < self.kv_budget <= 1.0:
            raise ConfigError(f"KV budget must be a fraction in (0, 1], got {self.kv_budget!r}")
        if self.memory_bridge != "off" and self.wants_compression:
            raise ConfigError("the memory bridge replaces visual compression and KV pruning: turn those off, or "
                              "set the memory bridge to off")
        return self

    def memory(self, vlm):
        """`MemoryOptions` for videos with the chosen bridge, or None when off (streaming checks that the bridge
        was trained with `vlm`)."""
        if self.memory_bridge == "off":
            return None
        from longvlm.vlm.loading import load_memory_bridge
        from longvlm.vlm.memory_inputs import MemoryOptions

        return MemoryOptions(load_memory_bridge(self.memory_bridge).to(vlm.model.device))

    @property
    def wants_compression(self) -> bool:
        return self.compressor != "none" or self.kv_press != "none"

    def compression(self, feature: Feature | None = None):
        """A `longvlm.compression.Compression` for these settings, or None when none is asked for."""
        if not self.wants_compression:
            return None
        feature = feature or compression_feature()
        if not feature.available:
            raise ConfigError(f"compression is {feature.reason}")
        from longvlm import compression as lib

        if self.compressor not in ("none", *lib.VISUAL_COMPRESSORS):
            raise ConfigError(f"unknown compressor {self.compressor!r}; known: {', '.join(feature.choices)}")
        visual = lib.VISUAL_COMPRESSORS[self.compressor]() if self.compressor != "none" else None
        downsample = "auto" if self.downsample == "auto" else int(self.downsample)
        if visual is None:
            downsample = 1
        press = lib.build_press(self.kv_press, float(self.kv_budget)) if self.kv_press != "none" else None
        return lib.Compression(visual=visual, downsample=downsample, kv_press=press)

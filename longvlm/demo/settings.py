"""The settings panel's values, validated, and the objects they turn into for the pipeline."""

from __future__ import annotations

import math
from dataclasses import dataclass

from longvlm.errors import ConfigError
from longvlm.options import (DOWNSAMPLE_CHOICES, Compression, Options, build_compression, build_options,
                             default_compressor_weights)
from longvlm.routes import ROUTES
from longvlm.vlm.loading import VLM

MAX_SAMPLE_FPS = 60.0  # no video is sampled faster than this


@dataclass(frozen=True)
class DemoSettings:
    """What the user chose in the settings panel, by registry names (see `longvlm.options.build_options`)."""

    max_visual_tokens: int | None = None  # None: what fits the model (longvlm.vlm.room)
    sample_fps: float = 1.0
    max_frames: int | None = None
    max_new_tokens: int | None = None  # None: the model's default answer room
    route: str = "auto"  # "auto" | "text" | "vlm" (longvlm.routes)
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

    @property
    def wants_compression(self) -> bool:
        return self.compressor != "none" or self.downsample != "1" or self.kv_press != "none"

    def compression(self, vlm: VLM | None = None, *, with_press: bool = True) -> Compression | None:
        """The `Compression` for these settings (the same builder and rule as the CLI: a ratio above 1 with no
        compressor named average-pools), or None when none is asked for. `with_press=False` leaves the KV
        press out (the demo applies the press chosen when each question is asked)."""
        hidden = vlm.config.text_config.hidden_size if vlm is not None else None
        return build_compression(compressor=None if self.compressor == "none" else self.compressor,
                                 downsample=self.downsample, hidden_size=hidden,
                                 compressor_weights=default_compressor_weights(self.compressor, vlm),
                                 kv_press=None if self.kv_press == "none" or not with_press else self.kv_press,
                                 kv_budget=float(self.kv_budget) if self.kv_press != "none" and with_press else None)

    def options(self, vlm: VLM) -> Options:
        """`Options` for reading an input with `vlm` (without the KV press: it is chosen per question)."""
        return build_options(vlm, memory_bridge=None if self.memory_bridge == "off" else self.memory_bridge,
                             compressor=None if self.compressor == "none" else self.compressor,
                             downsample=self.downsample, max_visual_tokens=self.max_visual_tokens,
                             sample_fps=self.sample_fps, max_frames=self.max_frames, route=self.route)

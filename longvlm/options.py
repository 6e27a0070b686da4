"""How to read and reduce one input: one frozen `Options` object for every caller, and `build_options`, the one
builder from names that the CLI, the demo, the lmms-eval adapter and the benchmarks share.

`Options` holds the budgets (visual tokens, answer length), the sampling of videos (fps, max frames,
resolution mode), of PDFs (dpi, max pages), the `Compression` (question-aware selection, a visual compressor,
a KV press, applied as one unit by `longvlm.pipeline.encode` and `longvlm.pipeline.answer`), the memory bridge
and the route. Every name a user can type comes from a registry: `longvlm.presses.PRESSES`,
`longvlm.compression.VISUAL_COMPRESSORS`, `longvlm.memory.streaming.SELECT_MODES`, `longvlm.routes.ROUTES`,
`longvlm.planning.planner.RESOLUTIONS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from longvlm.compression import (SHIPPED_COMPRESSORS, TRAINABLE_COMPRESSORS, AvgPoolCompressor, VisualCompressor,
                                 build_compressor, check_factor)
from longvlm.errors import ConfigError
from longvlm.memory.loading import build_memory_bridge
from longvlm.memory.streaming import SELECT_MODES, MemoryOptions
from longvlm.planning.hybrid import HybridConfig
from longvlm.planning.planner import RESOLUTIONS, auto_downsample
from longvlm.presses import DEFAULT_KV_BUDGET, KVPress, build_press
from longvlm.retrieval.ranking import QuestionSelector
from longvlm.routes import ROUTES

if TYPE_CHECKING:
    from longvlm.vlm.loading import VLM

DOWNSAMPLE_CHOICES = ("1", "2", "4", "auto")
"""Visual compression factors k by name: k x k fewer tokens per frame/page; auto: PDFs 1, video 2, long video 4."""


@dataclass(frozen=True)
class Compression:
    """Reducers for one question, applied in order: `selector` ranks the pages/frames against the question
    (the best `native_items` get native resolution, the rest low resolution or none; video: the best frames
    are kept when thinning and added as native close-ups), `visual` on the encoded features of each
    frame/page with factor `downsample` (1, 2, 4 or "auto": see `longvlm.planning.planner.auto_downsample`),
    then `kv_press` on the KV cache at prefill. `visual=None` with a factor > 1 means average pooling."""

    visual: VisualCompressor | None = None
    downsample: int | str = 1
    kv_press: KVPress | None = None
    selector: QuestionSelector | None = None
    native_items: int = 4

    def __post_init__(self) -> None:
        if self.downsample != "auto":
            check_factor(self.downsample)
        if not isinstance(self.native_items, int) or isinstance(self.native_items, bool) or self.native_items < 0:
            raise ConfigError(f"native_items must be a non-negative integer, got {self.native_items!r}")

    def visual_factor(self, kind: str, duration_s: float | None = None) -> int:
        """The factor k for an input of this kind (resolves "auto")."""
        return auto_downsample(kind, duration_s) if self.downsample == "auto" else int(self.downsample)

    def visual_compressor(self) -> VisualCompressor:
        """The compressor applied when the factor is above 1 (average pooling unless one was given)."""
        return self.visual if self.visual is not None else AvgPoolCompressor()


@dataclass(frozen=True)
class Options:
    """Everything that decides how an input is read, reduced and answered (defaults: what fits the model).

    `max_visual_tokens` / `max_new_tokens`: None is what fits the model's context (`longvlm.vlm.room`); larger
    values are lowered with a note. Video: `sample_fps`, `max_frames`, `video_resolution` ("uniform",
    "hybrid", "auto") with `hybrid`; PDF: `dpi`, `max_pages`. `compression` (see `Compression`), `memory`
    (video only: stream through a memory bridge) and `route` ("auto", "text", "vlm"; used by the CLI and the
    demo, which pick the text route or the VLM)."""

    max_visual_tokens: int | None = None
    max_new_tokens: int | None = None
    sample_fps: float = 1.0
    max_frames: int | None = None
    dpi: float = 144.0
    max_pages: int | None = None
    video_resolution: str = "uniform"
    hybrid: HybridConfig | None = None
    compression: Compression | None = None
    memory: MemoryOptions | None = field(default=None, compare=False)
    route: str = "auto"

    def __post_init__(self) -> None:
        for name in ("max_visual_tokens", "max_new_tokens", "max_frames", "max_pages"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"{name} must be a whole number of at least 1 (or None), got {value!r}")
        for name in ("sample_fps", "dpi"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be a positive finite number, got {value!r}")
        if self.video_resolution not in RESOLUTIONS:
            raise ConfigError(f"video_resolution must be one of {', '.join(RESOLUTIONS)}, got "
                              f"{self.video_resolution!r}")
        if self.route not in ROUTES:
            raise ConfigError(f"route must be one of {', '.join(ROUTES)}, got {self.route!r}")
        if self.memory is not None and not isinstance(self.memory, MemoryOptions):
            raise ConfigError(f"memory= takes MemoryOptions (longvlm.memory.streaming), got "
                              f"{type(self.memory).__name__}")
        if self.memory is not None and (self.compression is not None or self.video_resolution != "uniform"):
            raise ConfigError("a memory bridge streams uniform-resolution frames without compression; drop the "
                              "compression / video resolution options, or the memory bridge")

    def replace(self, **changes) -> Options:
        """A copy with `changes` (validated again)."""
        return replace(self, **changes)

    @property
    def kv_press(self) -> KVPress | None:
        return self.compression.kv_press if self.compression is not None else None


def build_compression(*, select: bool = False, native_items: int = 4, compressor: str | None = None,
                      downsample: str | int = "1", compressor_weights: str | None = None,
                      kv_press: str | None = None, kv_budget: float | int | None = None,
                      kv_merge: str | None = None, hidden_size: int | None = None) -> Compression | None:
    """A `Compression` from registry names, or None when nothing is asked for. One rule for every caller: a
    factor above 1 without a named compressor average-pools; a named compressor with factor 1 is refused.
    `kv_merge` (a `longvlm.presses.MERGE_METHODS` name, or 'none') merges what the press evicts into what it
    keeps (`MergingPress`; LOOK-M's own merge rule); None keeps the press's default."""
    downsample = str(downsample)
    if downsample not in DOWNSAMPLE_CHOICES:
        raise ConfigError(f"downsample must be one of {', '.join(DOWNSAMPLE_CHOICES)}, got {downsample!r}")
    if kv_budget is not None and kv_press is None:
        raise ConfigError("--kv-budget sets how much of the KV cache --kv-press keeps; give --kv-press too")
    if kv_merge is not None and kv_press is None:
        raise ConfigError("--kv-merge merges what --kv-press evicts; give --kv-press too")
    if compressor is not None and downsample == "1":
        raise ConfigError(f"the {compressor} compressor needs a factor: give --downsample 2, 4 or auto")
    if compressor_weights is not None and compressor is None:
        raise ConfigError("--compressor-weights loads a trained compressor; name it with --compressor")
    if downsample == "1" and kv_press is None and not select:
        return None
    visual = None
    if compressor is not None:
        visual = build_compressor(compressor, hidden_size, compressor_weights)
    press = None
    if kv_press is not None:
        press = build_press(kv_press, DEFAULT_KV_BUDGET if kv_budget is None else kv_budget, merge=kv_merge)
    selector = None
    if select:
        selector = QuestionSelector()
    return Compression(visual=visual, downsample="auto" if downsample == "auto" else int(downsample),
                       kv_press=press, selector=selector, native_items=native_items)


def default_compressor_weights(compressor: str | None, vlm: VLM | None) -> str | None:
    """The weights a trainable compressor uses when none are named: those shipped for the loaded model (Oryx
    for 'small'), else None (untrained: Oryx starts as average pooling)."""
    if compressor in TRAINABLE_COMPRESSORS and vlm is not None and vlm.name in SHIPPED_COMPRESSORS:
        return vlm.name
    return None


def build_options(vlm: VLM | None = None, *, memory_bridge: str | None = None, memory_select: str = "auto",
                  select: bool = False, native_items: int = 4, compressor: str | None = None,
                  downsample: str | int = "1", compressor_weights: str | None = None, kv_press: str | None = None,
                  kv_budget: float | int | None = None, kv_merge: str | None = None, **settings) -> Options:
    """`Options` from what a user typed: registry names for the compressor, press, memory bridge ('small', a
    directory, or 'random'), memory segment choice, plus the plain `Options` fields in `settings`. The CLI, the
    demo, the lmms-eval adapter and the benchmarks all build their options here. `vlm` is needed for a
    compressor or memory bridge (their sizes and device)."""
    hidden = vlm.config.text_config.hidden_size if vlm is not None else None
    weights = compressor_weights or default_compressor_weights(compressor, vlm)
    compression = build_compression(select=select, native_items=native_items, compressor=compressor,
                                    downsample=downsample, compressor_weights=weights,
                                    kv_press=kv_press, kv_budget=kv_budget, kv_merge=kv_merge, hidden_size=hidden)
    memory = None
    if memory_bridge is not None:
        if memory_select not in SELECT_MODES:
            raise ConfigError(f"memory select must be one of {', '.join(SELECT_MODES)}, got {memory_select!r}")
        if vlm is None:
            raise ConfigError("a memory bridge needs the model it was trained with (pass vlm=)")
        memory = MemoryOptions(build_memory_bridge(memory_bridge, vlm), select=memory_select)
    return Options(compression=compression, memory=memory, **settings)


__all__ = ["Compression", "DOWNSAMPLE_CHOICES", "Options", "build_compression", "build_options",
           "default_compressor_weights"]

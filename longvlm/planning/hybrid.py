"""Hybrid-resolution video frames (GIRAFFE, arXiv 2412.12735 §3.5) for Qwen2-VL-family vision towers.

The paper splits the sampled frames into groups of L; the first frame of each group is encoded at high
resolution (m tokens), the other L-1 at low resolution (m/s tokens); defaults L=4, m=240, s=3. At the same
token budget this keeps more frames than one uniform resolution while some frames stay sharp.

Mapping to Qwen2-VL / Qwen2.5-VL:
- The unit that gets its own tokens is a *temporal patch*: `temporal_patch_size` (2) consecutive sampled
  frames are merged into one set of tokens. "Frame" in the paper's sense is therefore a temporal patch here
  (a *step*): groups are L steps, the first at the high size, the other L-1 at the low size.
- A video item has one size, so a hybrid video becomes several video items in time order: per group one
  high-resolution item of 1 step and one low-resolution item of L-1 steps (the last group may be shorter).
  Each item has its own `video_grid_thw` row and goes through the vision tower as usual.
- The LLM sees all items as one video: one `<|vision_start|> ... <|vision_end|>` block holding the items'
  tokens in time order. Their temporal position ids are the ones a single video of all the steps would get
  (step k -> floor(k * interval), interval = 1 for Qwen2-VL, tokens_per_second * seconds per step for
  Qwen2.5-VL), so they are monotone and proportional to real time (steps are sampled uniformly); each item's
  height/width ids span its own grid. transformers' `get_rope_index` handles one grid per block only (and in
  5.x restarts each block's temporal ids at the running text position), so longvlm computes these ids
  itself (`longvlm.vlm.positions`) and passes them to `generate()`.
- Low size = the high size's pixels divided by s (as a `smart_resize` cap), so a low step has about 1/s of
  the high step's tokens; the exact counts come from the sizes (`smart_resize` rounds each side to 28 px).

`longvlm.planning.planner.plan_video(..., resolution="hybrid" | "auto")` chooses the sizes for a budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from longvlm.processing.spec import VisionSpec
from longvlm.errors import ConfigError


@dataclass(frozen=True)
class HybridConfig:
    """Group length L (steps), high-resolution target m (tokens per step) and token ratio s."""

    group: int = 4
    high_tokens: int = 240
    ratio: float = 3.0

    def __post_init__(self) -> None:
        if self.group < 1:
            raise ConfigError(f"hybrid group length must be >= 1, got {self.group}")
        if self.high_tokens < 1:
            raise ConfigError(f"hybrid high-resolution tokens must be >= 1, got {self.high_tokens}")
        if not self.ratio >= 1:
            raise ConfigError(f"hybrid resolution ratio must be >= 1, got {self.ratio}")


@dataclass(frozen=True)
class ResolutionRun:
    """A run of consecutive steps at one resolution: steps first_step .. first_step + steps - 1."""

    first_step: int
    steps: int
    high: bool


def hybrid_segments(num_steps: int, group: int) -> list[ResolutionRun]:
    """Per group of `group` steps: a high-resolution segment of 1 step, then a low one of the rest."""
    segments = []
    for start in range(0, num_steps, group):
        size = min(group, num_steps - start)
        segments.append(ResolutionRun(start, 1, True))
        if size > 1:
            segments.append(ResolutionRun(start + 1, size - 1, False))
    return segments


def low_pixel_cap(high_size: tuple[int, int], ratio: float, floor_cap: int) -> int:
    """Pixel cap of the low resolution: the high size's pixels / s, not below `floor_cap`."""
    return max(floor_cap, int(high_size[0] * high_size[1] / ratio))


def hybrid_sizes(height: int, width: int, spec: VisionSpec, high_cap: int, ratio: float,
                 floor_cap: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """((high h, high w), (low h, low w)) of a (height x width) video for a high pixel cap. The low size is
    derived from the high size actually reached (a small video may stay below the cap)."""
    high = spec.resized(height, width, max_pixels=high_cap)
    low = spec.resized(height, width, max_pixels=low_pixel_cap(high, ratio, floor_cap))
    return high, low


def hybrid_token_count(num_steps: int, height: int, width: int, spec: VisionSpec, config: HybridConfig,
                       high_cap: int, floor_cap: int) -> int:
    """Exact LLM tokens of `num_steps` steps in the hybrid layout at the given high pixel cap."""
    (hh, hw), (lh, lw) = hybrid_sizes(height, width, spec, high_cap, config.ratio, floor_cap)
    per_high, per_low = spec.tokens(hh, hw), spec.tokens(lh, lw)
    high_steps = -(-num_steps // config.group)
    return high_steps * per_high + (num_steps - high_steps) * per_low

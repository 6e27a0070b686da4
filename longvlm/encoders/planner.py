"""Token budget planner: choose per-page resolution, and for video the frame count and resolution,
so that the visual tokens fed to the model fit a budget. Its counts are exact (what the model receives)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from longvlm.datasets import sampling
from longvlm.encoders.spec import VisionSpec
from longvlm.errors import BudgetError, ConfigError


@dataclass(frozen=True)
class PlannedImage:
    """One page/image fed as its own visual item, resized to (height, width)."""

    source_index: int  # 0-based page (or image) index in the input
    height: int
    width: int
    tokens: int


@dataclass(frozen=True)
class PlannedVideo:
    """One video item: which frames, at which size."""

    frame_indices: list[int]
    height: int
    width: int
    tokens: int

    @property
    def num_frames(self) -> int:
        return len(self.frame_indices)


@dataclass(frozen=True)
class Plan:
    """What will be fed: visual items in order, their exact token total, and the budget it was made for."""

    items: list[PlannedImage | PlannedVideo]
    budget: int
    pixel_cap: int  # max_pixels given to smart_resize for every item (pass it to a processor to reproduce sizes)
    skipped: int = 0  # inputs (pages / frames) dropped to fit the budget
    downsample: int = 1  # k x k visual compression of the merged tokens; item tokens are counted after it

    @property
    def total_tokens(self) -> int:
        return sum(item.tokens for item in self.items)


def _largest_fitting_cap(cost: Callable[[int], int], budget: int, low: int, high: int) -> int | None:
    """Largest per-item pixel cap in [low, high] whose total token cost fits `budget` (cost is monotone)."""
    if cost(low) > budget:
        return None
    while low < high:
        mid = (low + high + 1) // 2
        if cost(mid) <= budget:
            low = mid
        else:
            high = mid - 1
    return low


def plan_images(sizes: Sequence[tuple[int, int]], budget: int, spec: VisionSpec, *,
                min_tokens_per_image: int = 64, max_pixels: int | None = None,
                order: Sequence[int] | None = None, downsample: int = 1) -> Plan:
    """Plan pages/images of the given (height, width) sizes into `budget` visual tokens.

    All kept items share one pixel cap, the largest that fits (capped by `max_pixels` or the spec's). If even
    `min_tokens_per_image` each would not fit, items are dropped: evenly spread ones are kept, or the first ones
    of `order` (a priority ranking of indices) when given. Items stay in document order.

    With `downsample` k > 1 the tokens are counted after a k x k visual compressor (k^2 fewer) and sizes are
    multiples of `spec.factor * k`; `min_tokens_per_image` stays a resolution floor counted before compression.
    """
    _check_downsample(downsample)
    if budget <= 0:
        raise BudgetError(f"visual token budget must be positive, got {budget}")
    if not sizes:
        raise BudgetError("nothing to plan: zero pages/images")
    factor_area = spec.factor ** 2
    floor_cap = max(spec.min_pixels, min_tokens_per_image * factor_area)
    top_cap = max(floor_cap, spec.max_pixels if max_pixels is None else max_pixels)

    def tokens(i: int, cap: int) -> int:
        h, w = spec.resized(*sizes[i], max_pixels=cap, downsample=downsample)
        return spec.tokens(h, w, downsample=downsample)

    keep = list(range(len(sizes)))
    while True:
        cap = _largest_fitting_cap(lambda c: sum(tokens(i, c) for i in keep), budget, floor_cap, top_cap)
        if cap is not None:
            break
        # Drop to the number of items that fit at the floor resolution, then retry (aspect ratios can need more).
        floor_costs = sum(tokens(i, floor_cap) for i in keep) / len(keep)
        target = min(len(keep) - 1, int(budget // floor_costs))
        if target <= 0:
            raise BudgetError(
                f"a budget of {budget} visual tokens cannot hold even one image at the minimum resolution "
                f"({int(floor_costs)} tokens); raise --max-visual-tokens")
        if order is not None:
            ranked = [i for i in order if i in set(keep)]
            keep = sorted(ranked[:target])
        else:
            keep = [keep[j] for j in sampling.indices_by_count(len(keep), target)]
    items = []
    for i in keep:
        h, w = spec.resized(*sizes[i], max_pixels=cap, downsample=downsample)
        items.append(PlannedImage(i, h, w, spec.tokens(h, w, downsample=downsample)))
    return Plan(items, budget, cap, skipped=len(sizes) - len(keep), downsample=downsample)


def plan_video(num_frames: int, video_fps: float, height: int, width: int, budget: int, spec: VisionSpec, *,
               sample_fps: float = 1.0, max_frames: int | None = None, min_tokens_per_frame: int = 16,
               max_pixels: int | None = None, downsample: int = 1) -> Plan:
    """Plan one video into `budget` visual tokens: frames sampled at `sample_fps` (at most `max_frames`),
    thinned evenly if even `min_tokens_per_frame` per temporal patch would not fit, at the largest common
    resolution that fits. The frame count is a multiple of the temporal patch size (no padded frames).

    `downsample` k: tokens counted after a k x k visual compressor (see `plan_images`)."""
    _check_downsample(downsample)
    if budget <= 0:
        raise BudgetError(f"visual token budget must be positive, got {budget}")
    tp = spec.temporal_patch_size
    requested = sampling.indices_by_fps(num_frames, video_fps, sample_fps, max_frames)
    indices = requested
    floor_cap = max(spec.min_pixels, min_tokens_per_frame * spec.factor ** 2)
    floor_tokens = spec.tokens(*spec.resized(height, width, max_pixels=floor_cap, downsample=downsample),
                               downsample=downsample)
    max_pairs = budget // floor_tokens
    if max_pairs <= 0:
        raise BudgetError(
            f"a budget of {budget} visual tokens cannot hold one {tp}-frame step of this video at the minimum "
            f"resolution ({floor_tokens} tokens); raise --max-visual-tokens")
    wanted_pairs = max(1, len(indices) // tp)
    if wanted_pairs > max_pairs or len(indices) % tp:
        count = min(wanted_pairs, max_pairs) * tp
        indices = sampling.indices_by_count(num_frames, count) if count <= num_frames else indices
    if len(indices) % tp:  # very short video: fewer frames than one temporal patch -> repeat the last frame
        indices = indices + [indices[-1]] * (-len(indices) % tp)
    pairs = len(indices) // tp
    top_cap = max(floor_cap, spec.max_pixels if max_pixels is None else max_pixels)
    cap = _largest_fitting_cap(
        lambda c: pairs * spec.tokens(*spec.resized(height, width, max_pixels=c, downsample=downsample),
                                      downsample=downsample), budget, floor_cap, top_cap)
    assert cap is not None  # guaranteed by max_pairs
    h, w = spec.resized(height, width, max_pixels=cap, downsample=downsample)
    return Plan([PlannedVideo(indices, h, w, spec.tokens(h, w, len(indices), downsample=downsample))], budget, cap,
                skipped=max(0, len(requested) - len(set(indices))), downsample=downsample)


# Video at least this long gets 16x visual compression (k=4) from `auto_downsample`, shorter video 4x (k=2).
LONG_VIDEO_SECONDS = 1800.0


def auto_downsample(kind: str, duration_s: float | None = None) -> int:
    """Visual compression factor k (k^2 fewer tokens) chosen per input: documents and images 1 (native
    resolution, small text must stay legible); video shorter than `LONG_VIDEO_SECONDS` 2 (4x); longer 4 (16x)."""
    if kind in ("pdf", "images", "image"):
        return 1
    if kind != "video":
        raise ConfigError(f"unknown input kind {kind!r}; expected 'pdf', 'images' or 'video'")
    return 4 if duration_s is not None and duration_s >= LONG_VIDEO_SECONDS else 2


def _check_downsample(downsample: int) -> None:
    if not isinstance(downsample, int) or isinstance(downsample, bool) or downsample < 1:
        raise ConfigError(f"downsample must be a positive integer (1, 2 or 4), got {downsample!r}")

"""Token budget planner: choose per-page resolution, and for video the frame count and resolution,
so that the visual tokens fed to the model fit a budget. Its counts are exact (what the model receives)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from longvlm.datasets import sampling
from longvlm.encoders.spec import VisionSpec
from longvlm.errors import BudgetError


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
    low_pixel_cap: int | None = None  # ranked plans: the cap of the low-resolution items (pixel_cap: native ones)

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
                order: Sequence[int] | None = None) -> Plan:
    """Plan pages/images of the given (height, width) sizes into `budget` visual tokens.

    All kept items share one pixel cap, the largest that fits (capped by `max_pixels` or the spec's). If even
    `min_tokens_per_image` each would not fit, items are dropped: evenly spread ones are kept, or the first ones
    of `order` (a priority ranking of indices) when given. Items stay in document order.
    """
    if budget <= 0:
        raise BudgetError(f"visual token budget must be positive, got {budget}")
    if not sizes:
        raise BudgetError("nothing to plan: zero pages/images")
    factor_area = spec.factor ** 2
    floor_cap = max(spec.min_pixels, min_tokens_per_image * factor_area)
    top_cap = max(floor_cap, spec.max_pixels if max_pixels is None else max_pixels)

    def tokens(i: int, cap: int) -> int:
        h, w = spec.resized(*sizes[i], max_pixels=cap)
        return spec.tokens(h, w)

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
        h, w = spec.resized(*sizes[i], max_pixels=cap)
        items.append(PlannedImage(i, h, w, spec.tokens(h, w)))
    return Plan(items, budget, cap, skipped=len(sizes) - len(keep))


def plan_ranked_images(sizes: Sequence[tuple[int, int]], budget: int, spec: VisionSpec, order: Sequence[int], *,
                       native: int, low_max_pixels: int | None = None, min_tokens_per_image: int = 64,
                       max_pixels: int | None = None) -> Plan:
    """Plan by a ranking (`order`: indices, best first; unranked indices follow in document order): the first
    `native` items at native resolution (capped by `max_pixels` or the spec's), then the others at low
    resolution (a common cap of at most `low_max_pixels`, default 4x the minimum) in the budget left, dropping
    the lowest-ranked when even the minimum does not fit. If not even one item fits at native resolution,
    this is `plan_images` by the same order. Items stay in document order.
    """
    if budget <= 0:
        raise BudgetError(f"visual token budget must be positive, got {budget}")
    if not sizes:
        raise BudgetError("nothing to plan: zero pages/images")
    if native < 0:
        raise BudgetError(f"native must be >= 0, got {native}")
    ranked = list(dict.fromkeys(i for i in order if 0 <= i < len(sizes)))
    ranked += [i for i in range(len(sizes)) if i not in set(ranked)]
    factor_area = spec.factor ** 2
    floor_cap = max(spec.min_pixels, min_tokens_per_image * factor_area)
    top_cap = max(floor_cap, spec.max_pixels if max_pixels is None else max_pixels)
    low_cap = min(top_cap, max(floor_cap, 4 * floor_cap if low_max_pixels is None else low_max_pixels))

    def tokens(i: int, cap: int) -> int:
        return spec.tokens(*spec.resized(*sizes[i], max_pixels=cap))

    top = ranked[:native]
    while top and sum(tokens(i, top_cap) for i in top) > budget:
        top.pop()
    if not top:
        return plan_images(sizes, budget, spec, min_tokens_per_image=min_tokens_per_image, max_pixels=max_pixels,
                           order=ranked)
    items = [PlannedImage(i, *spec.resized(*sizes[i], max_pixels=top_cap), tokens(i, top_cap)) for i in top]
    rest = ranked[len(top):]
    left = budget - sum(item.tokens for item in items)
    low_plan = None
    if rest and left > 0:
        try:
            low_plan = plan_images([sizes[i] for i in rest], left, spec, min_tokens_per_image=min_tokens_per_image,
                                   max_pixels=low_cap, order=range(len(rest)))
        except BudgetError:  # not even one more item fits at the minimum resolution
            low_plan = None
    if low_plan is not None:
        items += [PlannedImage(rest[item.source_index], item.height, item.width, item.tokens)
                  for item in low_plan.items]
    items.sort(key=lambda item: item.source_index)
    return Plan(items, budget, top_cap, skipped=len(sizes) - len(items),
                low_pixel_cap=low_plan.pixel_cap if low_plan is not None else None)


def plan_native_frames(ranked_frames: Sequence[int], height: int, width: int, budget: int, spec: VisionSpec, *,
                       count: int, max_share: float = 0.5) -> list[PlannedImage]:
    """Close-ups for a video: the first `count` of `ranked_frames` (frame indices, best first) as images at
    native resolution (the frame size, capped by the spec's max pixels), using at most `max_share` of
    `budget`; fewer when they do not fit. Returned in time order; `source_index` is the frame index."""
    h, w = spec.resized(height, width)
    tokens = spec.tokens(h, w)
    fit = min(count, int(budget * max_share) // tokens)
    chosen = list(dict.fromkeys(ranked_frames))[:max(0, fit)]
    return [PlannedImage(i, h, w, tokens) for i in sorted(chosen)]


def plan_video(num_frames: int, video_fps: float, height: int, width: int, budget: int, spec: VisionSpec, *,
               sample_fps: float = 1.0, max_frames: int | None = None, min_tokens_per_frame: int = 16,
               max_pixels: int | None = None, frame_order: Sequence[int] | None = None) -> Plan:
    """Plan one video into `budget` visual tokens: frames sampled at `sample_fps` (at most `max_frames`),
    thinned if even `min_tokens_per_frame` per temporal patch would not fit (evenly, or keeping the first
    frames of `frame_order`, a ranking of frame indices, best first), at the largest common resolution that
    fits. The frame count is a multiple of the temporal patch size (no padded frames)."""
    if budget <= 0:
        raise BudgetError(f"visual token budget must be positive, got {budget}")
    tp = spec.temporal_patch_size
    requested = sampling.indices_by_fps(num_frames, video_fps, sample_fps, max_frames)
    indices = requested
    floor_cap = max(spec.min_pixels, min_tokens_per_frame * spec.factor ** 2)
    floor_tokens = spec.tokens(*spec.resized(height, width, max_pixels=floor_cap))
    max_pairs = budget // floor_tokens
    if max_pairs <= 0:
        raise BudgetError(
            f"a budget of {budget} visual tokens cannot hold one {tp}-frame step of this video at the minimum "
            f"resolution ({floor_tokens} tokens); raise --max-visual-tokens")
    wanted_pairs = max(1, len(indices) // tp)
    if wanted_pairs > max_pairs or len(indices) % tp:
        count = min(wanted_pairs, max_pairs) * tp
        if frame_order is not None and count <= num_frames:
            ranked = list(dict.fromkeys(i for i in frame_order if 0 <= i < num_frames))
            ranked += [i for i in sampling.indices_by_count(num_frames, count) if i not in set(ranked)]
            indices = sorted(ranked[:count])
        else:
            indices = sampling.indices_by_count(num_frames, count) if count <= num_frames else indices
    if len(indices) % tp:  # very short video: fewer frames than one temporal patch -> repeat the last frame
        indices = indices + [indices[-1]] * (-len(indices) % tp)
    pairs = len(indices) // tp
    top_cap = max(floor_cap, spec.max_pixels if max_pixels is None else max_pixels)
    cap = _largest_fitting_cap(lambda c: pairs * spec.tokens(*spec.resized(height, width, max_pixels=c)),
                               budget, floor_cap, top_cap)
    assert cap is not None  # guaranteed by max_pairs
    h, w = spec.resized(height, width, max_pixels=cap)
    return Plan([PlannedVideo(indices, h, w, spec.tokens(h, w, len(indices)))], budget, cap,
                skipped=max(0, len(requested) - len(set(indices))))

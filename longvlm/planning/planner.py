"""Token budget planner: choose per-page resolution, and for video the frame count and resolution (uniform,
or hybrid: see `longvlm.planning.hybrid`), so that the visual tokens fed to the model fit a budget. Its counts
are exact (what the model receives)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from longvlm.ingest import sampling
from longvlm.planning.hybrid import HybridConfig, hybrid_segments, hybrid_sizes, hybrid_token_count, low_pixel_cap
from longvlm.processing.spec import VisionSpec
from longvlm.errors import BudgetError, ConfigError

RESOLUTIONS = ("uniform", "hybrid", "auto")


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
    resolution: str = "uniform"  # "hybrid": video items alternate high (pixel_cap) and low (low_pixel_cap) sizes
    # hybrid video: the low items' cap; ranked pages (`plan_ranked_images`): the low-resolution pages' cap
    low_pixel_cap: int | None = None
    hybrid: HybridConfig | None = None

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


def plan_ranked_images(sizes: Sequence[tuple[int, int]], budget: int, spec: VisionSpec, order: Sequence[int], *,
                       native: int, low_max_pixels: int | None = None, min_tokens_per_image: int = 64,
                       max_pixels: int | None = None, downsample: int = 1) -> Plan:
    """Plan by a ranking (`order`: indices, best first; unranked indices follow in document order): the first
    `native` items at native resolution (capped by `max_pixels` or the spec's), then the others at low
    resolution (a common cap of at most `low_max_pixels`, default 4x the minimum) in the budget left, dropping
    the lowest-ranked when even the minimum does not fit. If not even one item fits at native resolution,
    this is `plan_images` by the same order. Items stay in document order.

    `downsample` k: tokens counted after a k x k visual compressor, as in `plan_images` (the ranking composes
    with compression: it decides which pages get which resolution, the compressor then shrinks every item).
    """
    _check_downsample(downsample)
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

    def planned(i: int, cap: int) -> PlannedImage:
        h, w = spec.resized(*sizes[i], max_pixels=cap, downsample=downsample)
        return PlannedImage(i, h, w, spec.tokens(h, w, downsample=downsample))

    top = ranked[:native]
    while top and sum(planned(i, top_cap).tokens for i in top) > budget:
        top.pop()
    if not top:
        return plan_images(sizes, budget, spec, min_tokens_per_image=min_tokens_per_image, max_pixels=max_pixels,
                           order=ranked, downsample=downsample)
    items = [planned(i, top_cap) for i in top]
    rest = ranked[len(top):]
    left = budget - sum(item.tokens for item in items)
    low_plan = None
    if rest and left > 0:
        try:
            low_plan = plan_images([sizes[i] for i in rest], left, spec, min_tokens_per_image=min_tokens_per_image,
                                   max_pixels=low_cap, order=range(len(rest)), downsample=downsample)
        except BudgetError:  # not even one more item fits at the minimum resolution
            low_plan = None
    if low_plan is not None:
        items += [PlannedImage(rest[item.source_index], item.height, item.width, item.tokens)
                  for item in low_plan.items]
    items.sort(key=lambda item: item.source_index)
    return Plan(items, budget, top_cap, skipped=len(sizes) - len(items), downsample=downsample,
                low_pixel_cap=low_plan.pixel_cap if low_plan is not None else None)


def plan_native_frames(ranked_frames: Sequence[int], height: int, width: int, budget: int, spec: VisionSpec, *,
                       count: int, max_share: float = 0.5, downsample: int = 1) -> list[PlannedImage]:
    """Close-ups for a video: the first `count` of `ranked_frames` (frame indices, best first) as images at
    native resolution (the frame size, capped by the spec's max pixels), using at most `max_share` of
    `budget`; fewer when they do not fit. Returned in time order; `source_index` is the frame index.
    `downsample` k: tokens counted after a k x k visual compressor."""
    _check_downsample(downsample)
    h, w = spec.resized(height, width, downsample=downsample)
    tokens = spec.tokens(h, w, downsample=downsample)
    fit = min(count, int(budget * max_share) // tokens)
    chosen = list(dict.fromkeys(ranked_frames))[:max(0, fit)]
    return [PlannedImage(i, h, w, tokens) for i in sorted(chosen)]


def plan_video(num_frames: int, video_fps: float, height: int, width: int, budget: int, spec: VisionSpec, *,
               sample_fps: float = 1.0, max_frames: int | None = None, min_tokens_per_frame: int = 16,
               max_pixels: int | None = None, resolution: str = "uniform",
               hybrid: HybridConfig | None = None, downsample: int = 1,
               frame_order: Sequence[int] | None = None) -> Plan:
    """Plan one video into `budget` visual tokens: frames sampled at `sample_fps` (at most `max_frames`),
    thinned if even `min_tokens_per_frame` per temporal patch would not fit (evenly, or keeping the first
    frames of `frame_order`, a ranking of frame indices, best first), at the largest common resolution that
    fits. The frame count is a multiple of the temporal patch size (no padded frames).

    `resolution="hybrid"` plans the hybrid-resolution layout of `longvlm.planning.hybrid` instead (one item
    per run of same-size steps); `"auto"` plans uniform when every step can get `hybrid.high_tokens` tokens
    (the pixel cap of that many tokens) within the budget, hybrid otherwise.

    `downsample` k: tokens counted after a k x k visual compressor (see `plan_images`); uniform resolution
    only ("auto" then means uniform: the compressor is what reduces the tokens).
    """
    _check_downsample(downsample)
    if budget <= 0:
        raise BudgetError(f"visual token budget must be positive, got {budget}")
    if resolution not in RESOLUTIONS:
        raise BudgetError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")
    hybrid = hybrid or HybridConfig()
    tp = spec.temporal_patch_size
    requested = sampling.indices_by_fps(num_frames, video_fps, sample_fps, max_frames)
    floor_cap = max(spec.min_pixels, min_tokens_per_frame * spec.factor ** 2)
    top_cap = max(floor_cap, spec.max_pixels if max_pixels is None else max_pixels)
    if downsample > 1:
        if resolution == "hybrid":
            raise ConfigError("visual compression (downsample > 1) is not supported for hybrid-resolution "
                              "video; use resolution='uniform' or 'auto'")
        resolution = "uniform"
    if resolution == "auto":
        steps = max(1, len(requested) // tp)
        target_cap = min(top_cap, max(floor_cap, hybrid.high_tokens * spec.factor ** 2))
        uniform_fits = steps * spec.tokens(*spec.resized(height, width, max_pixels=target_cap)) <= budget
        resolution = "uniform" if uniform_fits else "hybrid"
    floor_tokens = spec.tokens(*spec.resized(height, width, max_pixels=floor_cap, downsample=downsample),
                               downsample=downsample)
    max_pairs = budget // floor_tokens
    if max_pairs <= 0:
        raise BudgetError(
            f"a budget of {budget} visual tokens cannot hold one {tp}-frame step of this video at the minimum "
            f"resolution ({floor_tokens} tokens); raise --max-visual-tokens")
    indices = _select_frames(num_frames, requested, max_pairs, tp, frame_order)
    skipped = max(0, len(requested) - len(set(indices)))
    if resolution == "hybrid":  # same frames as uniform (at the floor both layouts cost the same)
        return _plan_hybrid(indices, height, width, budget, spec, hybrid, floor_cap, top_cap, skipped)
    pairs = len(indices) // tp
    cap = _largest_fitting_cap(
        lambda c: pairs * spec.tokens(*spec.resized(height, width, max_pixels=c, downsample=downsample),
                                      downsample=downsample), budget, floor_cap, top_cap)
    assert cap is not None  # guaranteed by max_pairs
    h, w = spec.resized(height, width, max_pixels=cap, downsample=downsample)
    return Plan([PlannedVideo(indices, h, w, spec.tokens(h, w, len(indices), downsample=downsample))], budget, cap,
                skipped=skipped, downsample=downsample)


def _select_frames(num_frames: int, requested: list[int], max_steps: int, tp: int,
                   frame_order: Sequence[int] | None = None) -> list[int]:
    """The requested frames, thinned to at most `max_steps` temporal patches (evenly, or keeping the first of
    `frame_order`, a ranking of frame indices, best first), as a multiple of `tp` frames (a video shorter than
    one temporal patch repeats its last frame)."""
    indices = requested
    wanted_steps = max(1, len(indices) // tp)
    if wanted_steps > max_steps or len(indices) % tp:
        count = min(wanted_steps, max_steps) * tp
        if frame_order is not None and count <= num_frames:
            ranked = list(dict.fromkeys(i for i in frame_order if 0 <= i < num_frames))
            ranked += [i for i in sampling.indices_by_count(num_frames, count) if i not in set(ranked)]
            indices = sorted(ranked[:count])
        else:
            indices = sampling.indices_by_count(num_frames, count) if count <= num_frames else indices
    if len(indices) % tp:  # very short video: fewer frames than one temporal patch -> repeat the last frame
        indices = indices + [indices[-1]] * (-len(indices) % tp)
    return indices


def _plan_hybrid(indices: list[int], height: int, width: int, budget: int, spec: VisionSpec, hybrid: HybridConfig,
                 floor_cap: int, top_cap: int, skipped: int) -> Plan:
    """Hybrid layout of the chosen frames: the largest high pixel cap (at most `hybrid.high_tokens` tokens'
    worth) that fits, the low size following it at 1/s; consecutive items of equal size are merged."""
    tp = spec.temporal_patch_size
    steps = len(indices) // tp
    high_top = min(top_cap, max(floor_cap, hybrid.high_tokens * spec.factor ** 2))
    cap = _largest_fitting_cap(lambda c: hybrid_token_count(steps, height, width, spec, hybrid, c, floor_cap),
                               budget, floor_cap, high_top)
    assert cap is not None  # at the floor cap high and low sizes coincide: the uniform floor cost, which fits
    (hh, hw), (lh, lw) = hybrid_sizes(height, width, spec, cap, hybrid.ratio, floor_cap)
    items: list[PlannedVideo] = []
    for segment in hybrid_segments(steps, hybrid.group):
        frames = indices[segment.first_step * tp:(segment.first_step + segment.steps) * tp]
        h, w = (hh, hw) if segment.high else (lh, lw)
        if items and (items[-1].height, items[-1].width) == (h, w):  # sizes coincide (small video / budget)
            frames = items.pop().frame_indices + frames
        items.append(PlannedVideo(frames, h, w, spec.tokens(h, w, len(frames))))
    return Plan(items, budget, cap, skipped=skipped, resolution="hybrid",
                low_pixel_cap=low_pixel_cap((hh, hw), hybrid.ratio, floor_cap), hybrid=hybrid)


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

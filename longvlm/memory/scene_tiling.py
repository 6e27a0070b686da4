"""SceneTilling (VideoLLaMB, arXiv 2409.01071): split a video into scenes from per-frame features.

For frame features f_0..f_{n-1} (pooled vision-encoder features; in the streaming pipeline one per temporal
patch):

    s_i     = cos(f_i, f_{i+1})                                   i = 0..n-2
    depth_i = hl(i) + hr(i) - 2 s_i

hl(i) is reached by hill-climbing left from s_i (keep stepping to s_{j-1} while s_{j-1} >= the current value),
hr(i) likewise to the right. As recurrences: hl(i) = hl(i-1) if s_{i-1} >= s_i else s_i, and
hr(i) = hr(i+1) if s_{i+1} >= s_i else s_i. A boundary at i cuts between frames i and i+1; the last frame always
closes a segment. Boundaries (`TilingRule`) are one of:

* `alpha` (VideoLLaMB's rule, `segment()` in llava/model/multimodal_projector/self_segment.py:24-47): every
  depth > mean + alpha * std, std the *unbiased* (n - 1) standard deviation of `torch.std_mean` (`std="unbiased"`,
  the default; `std="population"` divides by n, what this module did before); when more than `max_cuts` depths
  pass (default 15, as VideoLLaMB's OOM guard), only the `max_cuts` deepest are kept (ties: the earlier
  boundary; `max_cuts=None`: no cap). With no rule given, `alpha=0.5` (`REFERENCE_ALPHA`, VideoLLaMB's default,
  used by its streaming demo llava/serve/inference.py:154);
* `top_k`: the k deepest (VideoLLaMB's `k=` path, no cap);
* `threshold`: every depth > an absolute value (ours; not capped).

`max_segment` caps a segment's length (a forced cut after that many frames, not counted in `max_cuts`), which
bounds the memory of streaming (ours; VideoLLaMB instead subsamples at most 8 frames per segment).

`OnlineSceneTiler` takes the features one at a time. hr(i) is known once the right climb breaks (a later s
drops) or the stream ends, so its depths equal the offline ones exactly and, with an absolute `threshold`
(and `max_segment`), so do its boundaries. Top-k, `max_cuts` and mean + alpha * std need all depths; online,
`alpha` uses the running mean/std of the depths known so far (causal, so not identical to the offline rule),
with the *population* std by default (the rule the shipped memory bridge streams with; `std="unbiased"` is the
option), and no `max_cuts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from longvlm.errors import ConfigError


@dataclass(frozen=True)
class Segment:
    """Frames `start`..`end` (inclusive, 0-based in the feature sequence) and their time span in seconds."""

    index: int
    start: int
    end: int
    start_s: float
    end_s: float

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def similarities(features: np.ndarray) -> np.ndarray:
    """Cosine similarity of each pair of consecutive rows of `features` [n, d] -> [n-1]."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ConfigError(f"expected per-frame features [n, d], got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1)
    norms[norms == 0] = 1.0
    x = x / norms[:, None]
    return np.einsum("nd,nd->n", x[:-1], x[1:])


def depth_scores(sims: Sequence[float]) -> np.ndarray:
    """depth_i = hl(i) + hr(i) - 2 s_i for a sequence of similarities (see the module docstring)."""
    s = np.asarray(sims, dtype=np.float64)
    n = len(s)
    left, right = s.copy(), s.copy()
    for i in range(1, n):
        if s[i - 1] >= s[i]:
            left[i] = left[i - 1]
    for i in range(n - 2, -1, -1):
        if s[i + 1] >= s[i]:
            right[i] = right[i + 1]
    return left + right - 2 * s


STD_MODES = ("unbiased", "population")
REFERENCE_ALPHA = 0.5
"""VideoLLaMB's default alpha (`segment(features, alpha=0.5)`), the rule when none is given."""
REFERENCE_MAX_CUTS = 15
"""VideoLLaMB keeps at most the 15 deepest alpha cuts (self_segment.py:38-39)."""


@dataclass(frozen=True)
class TilingRule:
    """How depths become boundaries: at most one of `top_k`, `alpha`, `threshold` (none: `alpha=0.5`, the
    reference's default); optional `max_segment`. `std`: the alpha rule's standard deviation, "unbiased" (n - 1,
    VideoLLaMB's `torch.std_mean`) or "population" (n); `max_cuts`: the alpha rule keeps at most that many cuts,
    the deepest (VideoLLaMB: 15; None: all). See the module docstring."""

    top_k: int | None = None
    alpha: float | None = None
    threshold: float | None = None
    max_segment: int | None = None
    std: str = "unbiased"
    max_cuts: int | None = REFERENCE_MAX_CUTS

    def __post_init__(self) -> None:
        given = sum(x is not None for x in (self.top_k, self.alpha, self.threshold))
        if given > 1:
            raise ConfigError("scene tiling: give at most one of top_k=, alpha= or threshold= (none: alpha=0.5)")
        if given == 0:
            object.__setattr__(self, "alpha", REFERENCE_ALPHA)
        if self.top_k is not None and self.top_k < 0:
            raise ConfigError(f"scene tiling: top_k must be >= 0, got {self.top_k}")
        if self.max_segment is not None and self.max_segment < 1:
            raise ConfigError(f"scene tiling: max_segment must be >= 1, got {self.max_segment}")
        if self.std not in STD_MODES:
            raise ConfigError(f"scene tiling: std must be one of {STD_MODES}, got {self.std!r}")
        if self.max_cuts is not None and (not isinstance(self.max_cuts, int) or isinstance(self.max_cuts, bool)
                                          or self.max_cuts < 0):
            raise ConfigError(f"scene tiling: max_cuts must be an integer >= 0 or None, got {self.max_cuts!r}")


def _deepest(depths: np.ndarray, k: int) -> set[int]:
    """The k largest depths (ties: the earlier index)."""
    return {int(i) for i in np.argsort(-depths, kind="stable")[:k]}


def _cuts(depths: np.ndarray, rule: TilingRule) -> set[int]:
    if rule.top_k is not None:
        return _deepest(depths, rule.top_k)
    if rule.threshold is not None:
        return {int(i) for i in np.nonzero(depths > rule.threshold)[0]}
    ddof = 1 if rule.std == "unbiased" else 0
    if len(depths) <= ddof:  # no depth, or the unbiased std of one value (NaN in torch): no cut
        return set()
    cuts = {int(i) for i in np.nonzero(depths > depths.mean() + rule.alpha * depths.std(ddof=ddof))[0]}
    if rule.max_cuts is not None and len(cuts) > rule.max_cuts:
        cuts = _deepest(depths, rule.max_cuts)  # the deepest ones all pass the threshold
    return cuts


def segment_ends(num_frames: int, cuts: set[int], max_segment: int | None = None) -> list[int]:
    """Last frame of each segment: the cuts in order (with forced cuts every `max_segment` frames), then the
    last frame."""
    ends, start = [], 0
    for i in range(num_frames):
        if i == num_frames - 1 or i in cuts or (max_segment is not None and i - start + 1 >= max_segment):
            ends.append(i)
            start = i + 1
    return ends


def make_segments(ends: Sequence[int], timestamps: Sequence[float], frame_seconds: float | None = None) -> list[Segment]:
    """Segments from their last frames; a segment ends where the next one starts (the last one a frame step
    after its last frame: `frame_seconds`, default the mean step)."""
    stamps = list(timestamps)
    if frame_seconds is None:
        frame_seconds = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else 0.0
    out, start = [], 0
    for k, end in enumerate(ends):
        stop = stamps[end + 1] if end + 1 < len(stamps) else stamps[end] + frame_seconds
        out.append(Segment(k, start, end, stamps[start], stop))
        start = end + 1
    return out


def scene_tiling(features: np.ndarray, timestamps: Sequence[float] | None = None, *, top_k: int | None = None,
                 alpha: float | None = None, threshold: float | None = None, max_segment: int | None = None,
                 std: str = "unbiased", max_cuts: int | None = REFERENCE_MAX_CUTS) -> list[Segment]:
    """Split frames with features [n, d] into scenes (offline). `timestamps` default to 0, 1, 2, ... s. The rule
    (`TilingRule`): one of `top_k`, `alpha`, `threshold` (none: alpha 0.5), `std` and `max_cuts` for alpha."""
    rule = TilingRule(top_k, alpha, threshold, max_segment, std, max_cuts)
    n = len(features)
    if n == 0:
        raise ConfigError("scene tiling needs at least one frame")
    stamps = list(range(n)) if timestamps is None else list(timestamps)
    if len(stamps) != n:
        raise ConfigError(f"{n} frames but {len(stamps)} timestamps")
    depths = depth_scores(similarities(features)) if n > 1 else np.zeros(0)
    return make_segments(segment_ends(n, _cuts(depths, rule), max_segment), stamps)


class OnlineSceneTiler:
    """Streaming SceneTilling: `push(feature, timestamp)` returns the segments closed so far; `finish()` closes
    the rest. Keeps the last feature, the left-climb peak and the frames whose right climb is still rising. The
    alpha rule uses the running mean and std (`std`: "population" by default, the rule the shipped memory bridge
    streams with; "unbiased" divides by n - 1) of the depths settled so far, from the `warmup`-th on; no cap."""

    def __init__(self, *, threshold: float | None = None, alpha: float | None = None, max_segment: int | None = None,
                 warmup: int = 8, record_depths: bool = False, std: str = "population") -> None:
        self.rule = TilingRule(None, alpha, threshold, max_segment, std, max_cuts=None)
        self.warmup = warmup
        self._last: np.ndarray | None = None
        self._frames = 0
        self._sims: list[float] = []  # similarities of the pending (still rising) run
        self._pending: list[tuple[int, float]] = []  # (i, hl(i)) whose hr(i) is not known yet
        self._prev_sim: float | None = None
        self._prev_left = 0.0
        self._stamps: dict[int, float] = {}
        self._seg_start = 0
        self._segments = 0
        self._stats = [0, 0.0, 0.0]  # Welford count, mean, M2 of the finished depths
        self._first_stamp: float | None = None
        self.depths: list[float] | None = [] if record_depths else None  # every finished depth, in order

    def push(self, feature: np.ndarray, timestamp: float) -> list[Segment]:
        """Add one frame's feature; returns the segments this frame made final (possibly none)."""
        x = np.asarray(feature, dtype=np.float64).reshape(-1)
        i = self._frames
        self._frames += 1
        self._stamps[i] = float(timestamp)
        if self._first_stamp is None:
            self._first_stamp = float(timestamp)
        out: list[Segment] = []
        if self._last is not None:
            s = float(similarities(np.stack([self._last, x]))[0])
            j = i - 1  # similarity index
            left = self._prev_left if self._prev_sim is not None and self._prev_sim >= s else s
            if self._pending and self._sims[-1] > s:  # the right climb of every pending index breaks here
                peak = self._sims[-1]
                out += self._finish_pending(peak)
            self._pending.append((j, left))
            self._sims.append(s)
            self._prev_sim, self._prev_left = s, left
        self._last = x
        return out

    def finish(self) -> list[Segment]:
        """End of stream: settle the pending depths and close the last segment."""
        out = self._finish_pending(self._sims[-1]) if self._pending else []
        if self._frames > self._seg_start:
            out.append(self._close(self._frames - 1, final=True))
        return out

    def _finish_pending(self, right_peak: float) -> list[Segment]:
        out = []
        for (j, left), s in zip(self._pending, self._sims):
            out += self._decide(j, left + right_peak - 2 * s)
        self._pending, self._sims = [], []
        return out

    def _decide(self, j: int, depth: float) -> list[Segment]:
        if self.depths is not None:
            self.depths.append(depth)
        if self.rule.threshold is not None:
            cut = depth > self.rule.threshold
        else:
            count, mean, m2 = self._stats
            denominator = count - 1 if self.rule.std == "unbiased" else count
            cut = count >= self.warmup and denominator > 0 and \
                depth > mean + self.rule.alpha * (m2 / denominator) ** 0.5
        count, mean, m2 = self._stats
        count += 1
        delta = depth - mean
        mean += delta / count
        self._stats = [count, mean, m2 + delta * (depth - mean)]
        forced = self.rule.max_segment is not None and j - self._seg_start + 1 >= self.rule.max_segment
        return [self._close(j)] if cut or forced else []

    def _close(self, end: int, final: bool = False) -> Segment:
        start = self._seg_start
        if final:
            step = (self._stamps[end] - self._first_stamp) / end if end > 0 else 0.0
            stop = self._stamps[end] + step
        else:
            stop = self._stamps[end + 1]
        segment = Segment(self._segments, start, end, self._stamps[start], stop)
        self._segments += 1
        self._seg_start = end + 1
        for k in [k for k in self._stamps if k < start]:
            del self._stamps[k]
        return segment

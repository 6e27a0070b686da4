"""Which frame indices to read from a video: by count, by frame rate, or at given timestamps."""

from __future__ import annotations

import math

from longvlm.errors import ConfigError, InputError


def indices_by_count(num_frames: int, count: int) -> list[int]:
    """`count` frame indices spread evenly over the video (centre of each of `count` equal segments)."""
    if num_frames <= 0:
        raise InputError("cannot sample from a video with zero frames")
    if count <= 0:
        raise ConfigError(f"frame count must be positive, got {count}")
    count = min(count, num_frames)
    step = num_frames / count
    return [min(num_frames - 1, int((i + 0.5) * step)) for i in range(count)]


def indices_by_fps(num_frames: int, video_fps: float, fps: float, max_frames: int | None = None) -> list[int]:
    """Indices sampled at `fps` frames per second of video time; evenly thinned to `max_frames` if given."""
    if num_frames <= 0:
        raise InputError("cannot sample from a video with zero frames")
    if fps <= 0 or video_fps <= 0:
        raise ConfigError(f"sampling fps and video fps must be positive, got {fps} and {video_fps}")
    duration = num_frames / video_fps
    count = max(1, math.floor(duration * fps + 1e-9))
    if max_frames is not None and count > max_frames:
        return indices_by_count(num_frames, max_frames)
    step = video_fps / fps
    return [min(num_frames - 1, int(round(k * step))) for k in range(count)]


def indices_at_timestamps(num_frames: int, video_fps: float, timestamps: list[float]) -> list[int]:
    """The frame shown at each timestamp (seconds). Timestamps outside the video are an error."""
    if num_frames <= 0:
        raise InputError("cannot sample from a video with zero frames")
    duration = num_frames / video_fps
    out = []
    for t in timestamps:
        if not 0 <= t <= duration:
            raise ConfigError(f"timestamp {t:.3f}s is outside the video (0..{duration:.3f}s)")
        out.append(min(num_frames - 1, int(math.floor(t * video_fps + 1e-6))))
    return out


def spread_order(n: int) -> list[int]:
    """0..n-1 ordered so that every prefix is spread evenly over the range (bit-reversal like order)."""
    order, seen = [], set()
    count = 1
    while len(order) < n:
        for j in range(count):
            i = min(n - 1, int((j + 0.5) * n / count))
            if i not in seen:
                seen.add(i)
                order.append(i)
        count *= 2
    return order

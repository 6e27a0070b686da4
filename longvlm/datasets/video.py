"""Video ingestion with decord: metadata, frame sampling, and bounded-memory chunked reading."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from longvlm.datasets import sampling
from longvlm.errors import InputError, LongVLMError, short_reason


@dataclass(frozen=True)
class VideoMetadata:
    """Basic facts about a video file."""

    path: str
    fps: float
    num_frames: int
    width: int
    height: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_frames / self.fps


@dataclass
class FrameChunk:
    """A run of decoded frames with their indices and timestamps (seconds, start of each frame)."""

    frames: np.ndarray  # [n, H, W, 3] uint8 RGB
    indices: list[int]
    timestamps: list[float]


class VideoReader:
    """Reads frames from a video file through decord.

    Frames are only ever decoded in chunks of `chunk_size`, so memory stays bounded by the chunk, not by
    the video length. `width`/`height`, if given, make decord scale frames while decoding.
    """

    def __init__(self, path: str | os.PathLike, *, width: int = -1, height: int = -1, num_threads: int = 1) -> None:
        self.path = str(path)
        if not os.path.isfile(self.path):
            raise InputError(self.path, "video file not found")
        if os.path.getsize(self.path) == 0:
            raise InputError(self.path, "video file is empty (0 bytes)")
        import decord

        try:
            self._reader = decord.VideoReader(self.path, ctx=decord.cpu(0), width=width, height=height,
                                              num_threads=num_threads)
            num_frames = len(self._reader)
            fps = float(self._reader.get_avg_fps())
        except (decord.DECORDError, RuntimeError) as exc:
            raise InputError(self.path, f"unreadable video ({short_reason(exc)})") from None
        if num_frames <= 0:
            raise InputError(self.path, "video has zero frames")
        if not fps > 0:
            raise InputError(self.path, f"video reports an invalid frame rate ({fps})")
        try:
            first = self._reader[0].shape
        except (decord.DECORDError, RuntimeError) as exc:
            raise InputError(self.path, f"unreadable video: first frame does not decode ({short_reason(exc)})") from None
        self.metadata = VideoMetadata(self.path, fps, num_frames, int(first[1]), int(first[0]))

    # -- sampling ---------------------------------------------------------------------------------------
    def indices(self, *, count: int | None = None, fps: float | None = None, max_frames: int | None = None,
                timestamps: list[float] | None = None) -> list[int]:
        """Frame indices by exactly one of: `count`, `fps` (optionally capped by `max_frames`), `timestamps`."""
        chosen = [x is not None for x in (count, fps, timestamps)]
        if sum(chosen) != 1:
            raise LongVLMError("give exactly one of count=, fps= or timestamps=")
        meta = self.metadata
        try:
            if count is not None:
                return sampling.indices_by_count(meta.num_frames, count)
            if fps is not None:
                return sampling.indices_by_fps(meta.num_frames, meta.fps, fps, max_frames)
            return sampling.indices_at_timestamps(meta.num_frames, meta.fps, list(timestamps or []))
        except LongVLMError as exc:
            raise InputError(self.path, str(exc)) from None

    def timestamps(self, indices: list[int]) -> list[float]:
        """Start time (seconds) of each frame index, from the container's timestamps."""
        if not indices:
            return []
        stamps = self._reader.get_frame_timestamp(list(indices))
        return [float(s) for s in np.asarray(stamps).reshape(len(indices), -1)[:, 0]]

    # -- decoding ---------------------------------------------------------------------------------------
    def iter_chunks(self, indices: list[int], chunk_size: int = 16) -> Iterator[FrameChunk]:
        """Decode `indices` (non-decreasing; repeats allowed) `chunk_size` frames at a time, in that order."""
        if not indices:
            raise InputError(self.path, "zero frames requested")
        if chunk_size <= 0:
            raise LongVLMError(f"chunk_size must be positive, got {chunk_size}")
        ordered = [int(i) for i in indices]
        if any(b < a for a, b in zip(ordered, ordered[1:])):
            raise LongVLMError("frame indices must be in non-decreasing order")
        if ordered[0] < 0 or ordered[-1] >= self.metadata.num_frames:
            raise InputError(self.path, f"frame index out of range 0..{self.metadata.num_frames - 1}")
        import decord

        for start in range(0, len(ordered), chunk_size):
            part = ordered[start:start + chunk_size]
            try:
                frames = self._reader.get_batch(part).asnumpy()
            except (decord.DECORDError, RuntimeError) as exc:
                raise InputError(self.path, f"frames {part[0]}..{part[-1]} do not decode ({short_reason(exc)})") from None
            yield FrameChunk(frames, part, self.timestamps(part))

    def read(self, indices: list[int]) -> FrameChunk:
        """Decode all `indices` at once (for short selections; use `iter_chunks` for long ones)."""
        chunks = list(self.iter_chunks(indices))
        return FrameChunk(np.concatenate([c.frames for c in chunks]),
                          [i for c in chunks for i in c.indices], [t for c in chunks for t in c.timestamps])


def read_video_metadata(path: str | os.PathLike) -> VideoMetadata:
    """Metadata of a video file (raises `InputError` if it cannot be read)."""
    return VideoReader(path).metadata


"""Frame decoding with PyAV: exact frames by index with the fewest decoded pictures, and key-frame scans.

`FrameTable` lists a video stream's frames in presentation order (their pts and which are key frames) from
the container's packets, without decoding. `FrameDecoder` decodes frames by index: it runs forward
through the file and seeks only when a key frame lies between its position and the next frame asked for,
so a dense request costs one sequential decode and a sparse one about half a GOP per frame.
`scan_key_frames` decodes key frames only (FFmpeg skips every other picture), the cheapest view of a
whole video: a timeline of thumbnails in seconds, not minutes.
"""

from __future__ import annotations

import os
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from longvlm.errors import InputError, short_reason
from longvlm.ingest import sampling

DECODER_THREADS = 0
"""FFmpeg decoder threads (0: one per core, frame and slice threading as the codec allows)."""


@dataclass(frozen=True)
class FrameTable:
    """A video stream's frames in presentation order: pts (stream time base) and key-frame positions."""

    pts: list[int]
    keys: list[int]  # sorted frame positions of the key frames ([0] when none is flagged)
    time_base: float
    start_pts: int

    @classmethod
    def read(cls, path: str | os.PathLike) -> FrameTable:
        """Demux (no decoding) the first video stream of `path`: ~0.4 s for a 1-hour 1 GB file in the page
        cache. Raises `InputError` when the file has no readable video stream."""
        import av

        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                frames = sorted((p.pts, bool(p.is_keyframe)) for p in container.demux(stream)
                                if p.pts is not None and p.size > 0)
                base = float(stream.time_base)
                start = stream.start_time if stream.start_time is not None else (frames[0][0] if frames else 0)
        except (av.FFmpegError, IndexError, OSError) as exc:
            raise InputError(str(path), f"unreadable video ({short_reason(exc)})") from exc
        keys = [i for i, (_, key) in enumerate(frames) if key] or [0]
        return cls([p for p, _ in frames], keys, base, int(start))

    def index_of(self, pts: int) -> int | None:
        """The frame position with exactly this pts (None when no frame has it)."""
        i = bisect_left(self.pts, pts)
        return i if i < len(self.pts) and self.pts[i] == pts else None

    def key_before(self, index: int) -> int:
        """The last key frame at or before frame `index` (the first key frame when none is)."""
        return self.keys[max(0, bisect_right(self.keys, index) - 1)]

    def seconds(self, index: int) -> float:
        """Start time of frame `index` relative to the stream's start (as decord reports it)."""
        return (self.pts[index] - self.start_pts) * self.time_base


class _NotDecoded(Exception):
    """The running decode did not produce the frame asked for (the file ended, or skipped past it)."""


class FrameDecoder:
    """Decodes frames of one video file by their positions in a `FrameTable`.

    Holds one open container and decoder between calls, so requests in increasing order continue where the
    last one stopped (no seek unless a key frame lies in between); an earlier frame costs a seek back. `size` (width, height) scales each kept
    frame while converting it to RGB; other pictures are decoded but never converted.
    """

    def __init__(self, path: str | os.PathLike, table: FrameTable, *, size: tuple[int, int] | None = None,
                 threads: int = DECODER_THREADS) -> None:
        self.path, self.table, self.size, self.threads = str(path), table, size, threads
        self._container = None
        self._frames: Iterator | None = None
        self._next = 0  # position of the next frame the running decode will return (when _frames is set)
        self._seeked = False  # no frame placed since the last seek
        self.decoded = 0  # pictures decoded so far (a cost counter for benchmarks and tests)

    def _open(self) -> None:
        import av

        if self._container is None:
            self._container = av.open(self.path)
            stream = self._container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = self.threads
        self._stream = self._container.streams.video[0]

    def _seek(self, index: int, back: int = 0) -> None:
        """Restart decoding at the key frame at or before frame `index` (`back` key frames earlier still)."""
        self._open()
        keys = self.table.keys
        key = keys[max(0, bisect_right(keys, index) - 1 - back)]
        self._container.seek(self.table.pts[key], stream=self._stream, backward=True, any_frame=False)
        self._frames, self._next, self._seeked = self._container.decode(self._stream), key, True

    def _rgb(self, frame) -> np.ndarray:
        if self.size is None:
            return frame.to_ndarray(format="rgb24")
        width, height = self.size
        return frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="BICUBIC")

    def frames(self, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
        """(index, RGB frame) for each of `indices` (any order, increasing is cheapest; a repeat of the
        previous index yields the same array again).
        Raises `InputError` naming the file when a frame does not decode."""
        import av

        last: tuple[int, np.ndarray] | None = None
        for target in indices:
            if last is not None and last[0] == target:
                yield last
                continue
            if self._frames is None or target < self._next or self.table.key_before(target) > self._next:
                self._seek(target)
            try:
                last = (target, self._decode_with_retries(target))
            except (av.FFmpegError, _NotDecoded) as exc:
                self.close()
                raise InputError(self.path, f"frame {target} does not decode ({short_reason(exc)})") from exc
            yield last

    def _decode_with_retries(self, target: int) -> np.ndarray:
        """Frame `target` from the running decode. Some containers' seeks land past the key frame asked for
        or give frames without usable timestamps (MPEG-PS): then seek 1 and 4 key frames further back, and
        at last decode from the start of the file."""
        for back in (1, 4, None):
            try:
                return self._decode_up_to(target)
            except _NotDecoded:
                if not self._seeked:  # the decode had placed frames since its seek: the frame is missing
                    raise
            if back is None:
                self.close()
                self._open()
                self._frames, self._next, self._seeked = self._container.decode(self._stream), 0, True
            else:
                self._seek(target, back)
        return self._decode_up_to(target)

    def _decode_up_to(self, target: int) -> np.ndarray:
        for frame in self._frames:
            self.decoded += 1
            position = self.table.index_of(frame.pts) if frame.pts is not None else None
            if position is None or position < target:
                if position is not None:
                    self._next, self._seeked = position + 1, False
                continue
            if position > target:
                raise _NotDecoded(f"decoding went from frame {self._next - 1} to {position}")
            self._next, self._seeked = position + 1, False
            return self._rgb(frame)
        raise _NotDecoded("the file ends before it")

    def close(self) -> None:
        """Release the container and decoder (a later request reopens them)."""
        if self._container is not None:
            self._container.close()
        self._container, self._frames = None, None


def spread_keys(keys: list[int], limit: int | None) -> list[int]:
    """`keys`, or `limit` of them spread evenly over the video when there are more."""
    if limit is None or len(keys) <= limit:
        return keys
    return [keys[i] for i in sampling.indices_by_count(len(keys), limit)]


def scaled_height(width: int, height: int, new_width: int) -> int:
    """The even height of a `width` x `height` picture scaled to `new_width` pixels wide (aspect kept)."""
    return max(2, round(height * new_width / width / 2) * 2)


@dataclass
class KeyFrame:
    """One key frame of a scan: its position, start time (seconds) and picture at the scan's size."""

    index: int
    timestamp: float
    picture: np.ndarray


def scan_key_frames(path: str | os.PathLike, table: FrameTable, *, width: int = 320, gray: bool = False,
                    limit: int | None = None) -> Iterator[KeyFrame]:
    """Decode the key frames only (FFmpeg skips every other picture: ~20x less work than a sequential decode
    of a 5 s GOP video), each scaled to `width` pixels wide (aspect kept), grey when `gray`. At most `limit`
    key frames, spread evenly when the video has more (each then found by a seek)."""
    import av

    keys = spread_keys(table.keys, limit)
    wanted = set(keys)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.codec_context.skip_frame = "NONKEY"
            height = scaled_height(stream.width, stream.height, width) if stream.width else width
            fmt = "gray" if gray else "rgb24"
            sparse = len(keys) < len(table.keys)
            for key in (keys if sparse else [None]):
                if key is not None:
                    container.seek(table.pts[key], stream=stream, backward=True, any_frame=False)
                for frame in container.decode(stream):
                    position = table.index_of(frame.pts) if frame.pts is not None else None
                    if position is None or position not in wanted:
                        continue
                    yield KeyFrame(position, table.seconds(position),
                                   frame.to_ndarray(format=fmt, width=width, height=height))
                    if key is not None:
                        break
    except av.FFmpegError as exc:
        raise InputError(str(path), f"key frames do not decode ({short_reason(exc)})") from exc

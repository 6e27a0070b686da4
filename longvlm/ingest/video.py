"""Video ingestion: metadata and truncation (decord), frame sampling, and bounded-memory decoding (PyAV)."""

from __future__ import annotations

import os
import struct
import warnings
from functools import lru_cache
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from longvlm.ingest import sampling
from longvlm.ingest.decoding import FrameDecoder, FrameTable, KeyFrame, scaled_height, scan_key_frames, spread_keys
from longvlm.ingest.images import check_aspect
from longvlm.errors import ConfigError, InputError, InputWarning, LongVLMError, short_reason


@dataclass(frozen=True)
class VideoMetadata:
    """Basic facts about a video file."""

    path: str
    fps: float
    num_frames: int
    width: int
    height: int
    # A truncated file (`VideoReader`): the length its header declares (None when not truncated or unknown);
    # `num_frames` then counts only the frames that decode.
    declared_duration_s: float | None = None
    truncated: bool = False

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
    """Reads frames from a video file: decord indexes it, PyAV decodes it.

    decord opens the file (frame count, frame rate, container timestamps, key frames) and finds the last
    decodable frame of a truncated file. Frames are decoded with PyAV (FFmpeg's decoder, frame threads): one
    decoder per reader that runs forward through the file and seeks only when a key frame lies between
    its position and the next frame asked for, so dense sampling (1 fps and up) costs one sequential decode
    of the video (the physical limit for exact frames) and sparse sampling costs about half a GOP per
    frame. Measured on 720p H.264 (bench/ingest.py, bench/RESULTS.md): 1 fps over an hour takes 0.99x
    the time of a plain sequential PyAV decode within 210 MB, where decord's `get_batch` took 1.5x and
    1 GB (its reader keeps decoding ahead without bound after any read); this reader holds the decoder's
    few reference frames plus one chunk.

    Frames are only ever decoded in chunks of `chunk_size` (`iter_chunks`) or one at a time (`read_frame`), so
    memory stays bounded by the chunk, not by the video length. `width`/`height`, if given, scale frames while
    decoding (FFmpeg's swscale, bicubic).

    Frames with an aspect ratio above `longvlm.ingest.images.MAX_ASPECT_RATIO` are refused (`InputError`).
    A truncated file (a download cut short: the last indexed frame does not decode, or the header declares a
    longer video) is used up to its last decodable frame (found by a binary search of single-frame probes,
    only when the last frame fails): `metadata.num_frames` counts those, `metadata.truncated` is set, and an
    `InputWarning` ("<file>: truncated: frames readable up to t s of T s") is issued and kept in `notes`.
    """

    def __init__(self, path: str | os.PathLike, *, width: int = -1, height: int = -1, num_threads: int = 1) -> None:
        self.path = str(path)
        self._keys: list[int] | None = None  # `key_frames`, read when first needed
        self._size = (width, height) if width > 0 and height > 0 else None
        self._decoder: FrameDecoder | None = None  # PyAV, opened at the first decode (`_pyav`)
        self._pyav_checked = False
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
            cut = mp4_cut_short(self.path)
            raise InputError(self.path, f"{cut}, and no frame can be indexed" if cut else
                             f"unreadable video ({short_reason(exc)})") from exc
        if num_frames <= 0:
            raise InputError(self.path, "video has zero frames")
        if not fps > 0:
            raise InputError(self.path, f"video reports an invalid frame rate ({fps})")
        try:
            first = self._reader[0].shape
        except (decord.DECORDError, RuntimeError) as exc:
            raise InputError(self.path, f"unreadable video: first frame does not decode ({short_reason(exc)})") from exc
        check_aspect(self.path, int(first[1]), int(first[0]), "video frames")
        self.notes: list[str] = []  # problems the file was used despite (the InputWarnings issued)
        readable, declared = self._readable_frames(num_frames, fps, dict(ctx=decord.cpu(0), width=width,
                                                                          height=height, num_threads=num_threads))
        truncated = readable < num_frames or declared is not None
        self.metadata = VideoMetadata(self.path, fps, readable, int(first[1]), int(first[0]),
                                      declared_duration_s=declared if declared is not None else (
                                          num_frames / fps if truncated else None), truncated=truncated)
        if truncated:
            # ffmpeg logs every read-ahead into the cut data (decord's decoder threads read past the frames
            # asked for); the warning below says it once. Process-wide; decode failures still raise.
            decord.logging.set_level(decord.logging.QUIET)
            total = self.metadata.declared_duration_s
            note = f"truncated: frames readable up to {readable / fps:.1f} s of {total:.1f} s"
            self.notes.append(f"{self.path}: {note}")
            warnings.warn(InputWarning(self.path, note), stacklevel=2)
        self._park(0)  # after the probes (frame 0, and the last frame unless remembered)

    # -- read-ahead ---------------------------------------------------------------------------------------
    def _park(self, last: int) -> None:
        """Stop decord's background read-ahead (see the class docstring) by a seek to the key frame at or
        before `last`, the last frame read: never the reader's current position (the frame after the last
        one read), where a seek is a no-op that stops nothing. The next read decodes from that key frame, so
        a chunk that starts inside the previous chunk's last GOP decodes up to one GOP again."""
        import decord

        try:
            self._reader.seek(self.key_frame_before(last))
        except (decord.DECORDError, RuntimeError):
            pass

    # -- truncation ---------------------------------------------------------------------------------------
    _probe_cache: dict[tuple, tuple[int, float | None]] = {}

    def _readable_frames(self, num_frames: int, fps: float, options: dict) -> tuple[int, float | None]:
        """(frames that decode, declared duration when the header says the video is longer than them, else
        None). Probes the last frame; only when it fails, binary-searches the last decodable one (frame 0 is
        known to decode), then reopens the reader (a failed decode can leave decord's state behind).
        Remembered per file (path, size, mtime)."""
        import decord

        stat = os.stat(self.path)
        key = (os.path.abspath(self.path), stat.st_size, stat.st_mtime_ns, num_frames)
        if key not in self._probe_cache:
            decord.logging.set_level(decord.logging.QUIET)  # ffmpeg's complaints about the cut packets
            try:
                readable = num_frames
                if num_frames > 1 and not self._decodes(num_frames - 1):
                    good, bad = 0, num_frames - 1
                    while bad - good > 1:
                        mid = (good + bad) // 2
                        good, bad = (mid, bad) if self._decodes(mid) else (good, mid)
                    readable = good + 1
            finally:
                decord.logging.set_level(decord.logging.ERROR)  # decord's default
            declared = mp4_video_duration_s(self.path)
            longer = declared is not None and declared > readable / fps + max(1.0, 0.02 * declared)
            self._probe_cache[key] = (readable, declared if longer else None)
            if readable < num_frames:
                self._reader = decord.VideoReader(self.path, **options)
        return self._probe_cache[key]

    def _decodes(self, index: int) -> bool:
        import decord

        try:
            self._reader[index].asnumpy()
            return True
        except (decord.DECORDError, RuntimeError):
            return False

    # -- sampling ---------------------------------------------------------------------------------------
    def indices(self, *, count: int | None = None, fps: float | None = None, max_frames: int | None = None,
                timestamps: list[float] | None = None) -> list[int]:
        """Frame indices by exactly one of: `count`, `fps` (optionally capped by `max_frames`), `timestamps`."""
        chosen = [x is not None for x in (count, fps, timestamps)]
        if sum(chosen) != 1:
            raise ConfigError("give exactly one of count=, fps= or timestamps=")
        meta = self.metadata
        try:
            if count is not None:
                return sampling.indices_by_count(meta.num_frames, count)
            if fps is not None:
                return sampling.indices_by_fps(meta.num_frames, meta.fps, fps, max_frames)
            return sampling.indices_at_timestamps(meta.num_frames, meta.fps, list(timestamps or []))
        except LongVLMError as exc:
            raise InputError(self.path, str(exc)) from exc

    def timestamps(self, indices: list[int]) -> list[float]:
        """Start time (seconds) of each frame index, from the container's timestamps."""
        if not indices:
            return []
        decoder = self._pyav()
        if decoder is not None:
            return [decoder.table.seconds(i) for i in indices]
        stamps = self._reader.get_frame_timestamp(list(indices))
        return [float(s) for s in np.asarray(stamps).reshape(len(indices), -1)[:, 0]]

    # -- key frames ------------------------------------------------------------------------------------
    @property
    def key_frames(self) -> list[int]:
        """Sorted indices of the key frames below `metadata.num_frames` ([0] when the container lists none)."""
        if self._keys is None:
            decoder = self._pyav()
            if decoder is not None:
                keys = decoder.table.keys
            else:
                import decord

                try:
                    keys = sorted({int(k) for k in self._reader.get_key_indices()})
                except (decord.DECORDError, RuntimeError):
                    keys = []
            self._keys = [k for k in keys if k < self.metadata.num_frames] or [0]
        return self._keys

    def key_frame_before(self, index: int) -> int:
        """The last key frame at or before `index` (the first key frame when none is)."""
        keys = self.key_frames
        return keys[max(0, bisect_right(keys, index) - 1)]

    def snap_to_key_frame(self, index: int, tolerance: int) -> int:
        """`index`, or the key frame before it when that is at most `tolerance` frames earlier: a sample of a
        long video that `read_frame` reads with a seek and one decoded picture instead of a GOP's worth."""
        key = self.key_frame_before(index)
        return key if index - key <= tolerance else index

    # -- decoding ---------------------------------------------------------------------------------------
    def _pyav(self) -> FrameDecoder | None:
        """The PyAV decoder, or None when PyAV's frame list does not match decord's index (then decord
        decodes: its frame positions are the ones `metadata` and `indices` speak of). Once PyAV's list is
        checked, timestamps and key frames come from it and decord's reader is released."""
        if not self._pyav_checked:
            self._pyav_checked = True
            table = _frame_table(self.path)
            last = self.metadata.num_frames - 1
            if table is not None and len(table.pts) > last:
                ends = np.asarray(self._reader.get_frame_timestamp([0, last])).reshape(2, -1)[:, 0]
                tolerance = 0.5 / self.metadata.fps
                agree = all(abs(table.seconds(i) - float(t)) <= tolerance for i, t in zip((0, last), ends))
                # decord reports nonsense times for some containers (MPEG-PS: -1e14 s); then the same
                # frame count is enough, and the times become PyAV's
                broken = not (np.isfinite(ends).all() and 0 <= ends[0] <= ends[1])
                if agree or (broken and len(table.pts) == last + 1 and not self.metadata.truncated):
                    self._decoder = FrameDecoder(self.path, table, size=self._size)
                    self._reader = None  # decord's reader (~85 MB on a 1-hour 720p video) is no longer needed
        return self._decoder

    @property
    def decoded_pictures(self) -> int | None:
        """Pictures PyAV has decoded for this reader so far (None when decord decodes)."""
        return self._decoder.decoded if self._decoder is not None else None

    def read_frame(self, index: int) -> np.ndarray:
        """Frame `index` alone ([H, W, 3] uint8 RGB): a key frame costs one decoded picture, any other frame
        is decoded exactly from the key frame before it (or from where the last read stopped, when no key
        frame lies between). Raises `InputError` when it does not decode."""
        if not 0 <= index < self.metadata.num_frames:
            raise InputError(self.path, f"frame index out of range 0..{self.metadata.num_frames - 1}")
        decoder = self._pyav()
        if decoder is not None:
            return next(decoder.frames([index]))[1]
        import decord

        try:
            if self.key_frame_before(index) == index:
                self._reader.seek(index)
            else:
                self._reader.seek_accurate(index)
            return self._reader.next().asnumpy()
        except (decord.DECORDError, RuntimeError, StopIteration) as exc:
            raise InputError(self.path, f"frame {index} does not decode ({short_reason(exc)})") from exc
        finally:
            self._park(index)

    def iter_chunks(self, indices: list[int], chunk_size: int = 16) -> Iterator[FrameChunk]:
        """Decode `indices` (non-decreasing; repeats allowed) `chunk_size` frames at a time, in that order."""
        if not indices:
            raise InputError(self.path, "zero frames requested")
        if chunk_size <= 0:
            raise ConfigError(f"chunk_size must be positive, got {chunk_size}")
        ordered = [int(i) for i in indices]
        if any(b < a for a, b in zip(ordered, ordered[1:])):
            raise ConfigError("frame indices must be in non-decreasing order")
        if ordered[0] < 0 or ordered[-1] >= self.metadata.num_frames:
            raise InputError(self.path, f"frame index out of range 0..{self.metadata.num_frames - 1}")
        decoder = self._pyav()
        for start in range(0, len(ordered), chunk_size):
            part = ordered[start:start + chunk_size]
            if decoder is not None:
                frames = None
                for n, (_, frame) in enumerate(decoder.frames(part)):  # filled in place: one chunk in memory
                    if frames is None:
                        frames = np.empty((len(part), *frame.shape), frame.dtype)
                    frames[n] = frame
            else:
                frames = self._decord_batch(part)
            yield FrameChunk(frames, part, self.timestamps(part))

    def _decord_batch(self, part: list[int]) -> np.ndarray:
        import decord

        try:
            return self._reader.get_batch(part).asnumpy()
        except (decord.DECORDError, RuntimeError) as exc:
            raise InputError(self.path, f"frames {part[0]}..{part[-1]} do not decode ({short_reason(exc)})") from exc
        finally:
            self._park(part[-1])  # before the caller gets the chunk: it may take long with it

    def scan_key_frames(self, *, width: int = 320, gray: bool = False, limit: int | None = None) -> list[KeyFrame]:
        """The video's key frames as `width`-wide pictures (`longvlm.ingest.decoding.scan_key_frames`): the
        coarse timeline of a long video at a small fraction of a full decode. At most `limit`, spread evenly."""
        decoder = self._pyav()
        if decoder is None:  # decord's index: read the key frames one by one
            keys = spread_keys(self.key_frames, limit)
            out = []
            for key, stamp in zip(keys, self.timestamps(keys)):
                picture = Image.fromarray(self.read_frame(key))
                size = (width, scaled_height(picture.width, picture.height, width))
                picture = picture.resize(size, Image.BILINEAR).convert("L" if gray else "RGB")
                out.append(KeyFrame(key, stamp, np.asarray(picture)))
            return out
        last = self.metadata.num_frames
        return [k for k in scan_key_frames(self.path, decoder.table, width=width, gray=gray, limit=limit)
                if k.index < last]

    def read(self, indices: list[int]) -> FrameChunk:
        """Decode all `indices` at once (for short selections; use `iter_chunks` for long ones)."""
        chunks = list(self.iter_chunks(indices))
        return FrameChunk(np.concatenate([c.frames for c in chunks]),
                          [i for c in chunks for i in c.indices], [t for c in chunks for t in c.timestamps])


@lru_cache(maxsize=8)
def _frame_table_cached(path: str, size: int, mtime_ns: int) -> FrameTable | None:
    try:
        return FrameTable.read(path)
    except InputError:
        return None


def _frame_table(path: str) -> FrameTable | None:
    """PyAV's frame table of `path`, remembered for the last few files (None when PyAV cannot read it)."""
    stat = os.stat(path)
    return _frame_table_cached(os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


def read_video_metadata(path: str | os.PathLike) -> VideoMetadata:
    """Metadata of a video file (raises `InputError` if it cannot be read)."""
    return VideoReader(path).metadata


_FIRST_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot"}  # an MP4/MOV file starts so
_MAX_BOXES = 10_000  # boxes looked at per level when reading an MP4 header (a corrupt file cannot loop long)


def _boxes(fh, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, declared box end) of the ISO-BMFF boxes between byte offsets `start` and `end`
    (a box of size 0 runs to `end`; a declared end past `end` is a cut file)."""
    offset = start
    for _ in range(_MAX_BOXES):
        if offset + 8 > end:
            return
        fh.seek(offset)
        size, kind = struct.unpack(">I4s", fh.read(8))
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", fh.read(8))[0], 16
        elif size == 0:
            size = end - offset
        if size < header:
            return
        yield kind, offset + header, offset + size
        offset += size


def mp4_cut_short(path: str | os.PathLike) -> str:
    """'truncated: ...' when an MP4/MOV file ends inside one of its top-level boxes (a download cut short),
    else ''."""
    try:
        with open(path, "rb") as fh:
            end = os.fstat(fh.fileno()).st_size
            for n, (kind, start, stop) in enumerate(_boxes(fh, 0, end)):
                if n == 0 and kind not in _FIRST_BOXES:  # not an MP4/MOV file
                    break
                if stop > end:
                    return (f"truncated: the file ends at byte {end:,} inside its "
                            f"'{kind.decode('latin-1')}' box, which runs to byte {stop:,}")
    except (OSError, struct.error, ValueError, IndexError):
        return ""
    return ""


def mp4_video_duration_s(path: str | os.PathLike) -> float | None:
    """Duration in seconds of the first video track as an MP4/MOV header declares it (its media header),
    or None for other containers or an unreadable header. Reads only the header boxes, not the media."""
    try:
        with open(path, "rb") as fh:
            end = os.fstat(fh.fileno()).st_size
            for kind, start, stop in _boxes(fh, 0, end):
                if kind != b"moov":
                    continue
                for trak_kind, trak_start, trak_stop in _boxes(fh, start, min(stop, end)):
                    if trak_kind != b"trak":
                        continue
                    for mdia_kind, mdia_start, mdia_stop in _boxes(fh, trak_start, min(trak_stop, end)):
                        if mdia_kind == b"mdia":
                            duration = _media_duration(fh, mdia_start, min(mdia_stop, end))
                            if duration is not None:
                                return duration
                return None
    except (OSError, struct.error, ValueError, IndexError):
        return None
    return None


def _media_duration(fh, start: int, stop: int) -> float | None:
    """Seconds declared by an 'mdia' box's media header when its handler is video ('vide'), else None."""
    handler, duration = None, None
    for kind, payload, _ in list(_boxes(fh, start, stop)):
        fh.seek(payload)
        if kind == b"hdlr":
            handler = fh.read(12)[8:12]
        elif kind == b"mdhd":
            version = fh.read(4)[0]
            if version == 1:
                _, _, timescale, length = struct.unpack(">QQIQ", fh.read(28))
            else:
                _, _, timescale, length = struct.unpack(">IIII", fh.read(16))
            duration = length / timescale if timescale else None
    return duration if handler == b"vide" else None


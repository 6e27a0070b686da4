import time

import av
import numpy as np
import psutil
import pytest

from longvlm.testing import read_barcode, write_barcode_video
from longvlm.ingest.video import VideoReader, read_video_metadata
from longvlm.errors import InputError


def test_metadata(short_video):
    meta = read_video_metadata(short_video)
    assert (meta.fps, meta.num_frames, meta.width, meta.height) == (10.0, 300, 64, 64)
    assert meta.duration == pytest.approx(30.0)


def test_every_sampled_frame_shows_its_timestamp(short_video):
    reader = VideoReader(short_video)
    for kwargs in ({"fps": 1.0}, {"count": 7}, {"timestamps": [0.0, 4.5, 29.9]}):
        chunk = reader.read(reader.indices(**kwargs))
        assert len(chunk.frames) == len(chunk.indices) == len(chunk.timestamps)
        for frame, index, stamp in zip(chunk.frames, chunk.indices, chunk.timestamps):
            assert stamp == pytest.approx(index / 10.0, abs=1e-3)
            assert read_barcode(frame) == int(stamp + 1e-6)


def test_chunks_are_bounded_and_ordered(short_video):
    reader = VideoReader(short_video)
    indices = reader.indices(fps=2.0)
    chunks = list(reader.iter_chunks(indices, chunk_size=8))
    assert all(len(c.indices) <= 8 for c in chunks)
    assert [i for c in chunks for i in c.indices] == indices
    with pytest.raises(InputError, match="zero frames requested"):
        next(reader.iter_chunks([]))


def test_single_frames_and_key_frames(short_video):
    reader = VideoReader(short_video)
    keys = reader.key_frames
    assert keys[0] == 0 and len(keys) >= 3 and keys == sorted(keys)  # a key frame every 10 s
    key = keys[1]
    assert reader.key_frame_before(key) == reader.key_frame_before(key + 7) == key
    assert reader.key_frame_before(key - 1) == keys[0]
    assert reader.snap_to_key_frame(key + 7, tolerance=7) == key
    assert reader.snap_to_key_frame(key + 8, tolerance=7) == key + 8
    for index in (0, 37, key, key + 7, 299, key, 3):  # key frames by a seek, others exactly; any order
        frame = reader.read_frame(index)
        assert read_barcode(frame) == index // 10
        assert np.array_equal(frame, reader.read([index]).frames[0])
    with pytest.raises(InputError, match="out of range"):
        reader.read_frame(300)


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def test_reader_is_parked_after_reading(shared_media, tmp_path):
    """decord keeps decoding ahead after any read (+400 MB/s on 720p) until it seeks: the reader parks it
    after the constructor's probes, each chunk and each single frame, so RSS stays flat while it idles."""
    from longvlm.testing import loop_video

    video = loop_video(shared_media / "dc_demo.mp4", tmp_path / "loop.mp4", 100)  # 1280x720, ~2 min
    VideoReader(video)  # probes the last frame once (remembered): later readers read only frame 0
    reads = {"open": lambda r: None, "chunk": lambda r: next(r.iter_chunks(r.indices(count=8))),
             "frame": lambda r: r.read_frame(r.key_frames[3] + 5)}
    for name, read in reads.items():
        reader = VideoReader(video)
        read(reader)
        before = rss_mb()
        time.sleep(1.0)
        assert rss_mb() - before < 100, name
        del reader


def test_decode_scaling(short_video):
    chunk = VideoReader(short_video, width=32, height=32).read([0, 50])
    assert chunk.frames.shape == (2, 32, 32, 3)


@pytest.mark.parametrize("content,problem", [(None, "not found"), (b"", "empty"),
                                             (b"definitely not a video" * 50, "unreadable video")])
def test_bad_video_files(tmp_path, content, problem):
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=problem) as err:
        VideoReader(path)
    assert str(path) in str(err.value)


def test_video_without_frames(tmp_path):
    path = tmp_path / "noframes.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width = stream.height = 64
    with pytest.raises(InputError) as err:
        VideoReader(path)
    assert str(path) in str(err.value)


def test_timestamp_outside_video_is_input_error(short_video):
    with pytest.raises(InputError, match="outside the video"):
        VideoReader(short_video).indices(timestamps=[31.0])


def test_real_clips(shared_media):
    expected = {"dc_demo.mp4": (20.0, 216, 1280, 720), "jobs.mp4": (30.0, 524, 576, 1024)}
    for name, (fps, frames, width, height) in expected.items():
        reader = VideoReader(shared_media / name)
        meta = reader.metadata
        assert (meta.fps, meta.num_frames, meta.width, meta.height) == (fps, frames, width, height)
        chunk = reader.read(reader.indices(fps=1.0))
        assert len(chunk.indices) == int(meta.duration)
        assert chunk.frames.shape[1:] == (height, width, 3)
        assert np.diff(chunk.timestamps).min() > 0.9  # monotone, ~1 s apart
        assert chunk.frames.std() > 10  # real picture content, not blank frames


def test_long_video_fixture_is_cheap(tmp_path):
    path = write_barcode_video(tmp_path / "long.mp4", 1200, fps=4, height=32, width=32)
    reader = VideoReader(path)
    assert reader.metadata.duration == pytest.approx(1200)
    chunk = reader.read(reader.indices(timestamps=[1199.5]))
    assert read_barcode(chunk.frames[0]) == 1199


def test_extreme_aspect_ratio_is_refused(tmp_path):
    from bad_input_files import write_frames

    path = write_frames(tmp_path / "wide.mp4", [np.full((16, 4000, 3), 25 * i, np.uint8) for i in range(4)])
    with pytest.raises(InputError, match="aspect ratio 250:1") as err:
        VideoReader(path)
    assert str(err.value).startswith(f"{path}: ")


def _noise_mp4(tmp_path, frames=40):
    from bad_input_files import write_frames, write_truncated_mp4

    rng = np.random.default_rng(0)
    full = write_frames(tmp_path / "noise.mp4", [rng.integers(0, 255, (64, 64, 3), np.uint8) for _ in range(frames)])
    whole = write_truncated_mp4(full, tmp_path / "faststart.mp4", keep=1.0)  # index first, as the cut ones
    with av.open(str(whole)) as container:
        packets = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]
    return whole, packets


def test_truncated_file_is_used_up_to_its_last_decodable_frame(tmp_path):
    import warnings

    from longvlm.ingest.video import mp4_video_duration_s
    from longvlm.errors import InputWarning

    whole, packets = _noise_mp4(tmp_path)
    assert mp4_video_duration_s(whole) == pytest.approx(4.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a whole file: no warning
        assert not VideoReader(whole).metadata.truncated
    data = whole.read_bytes()
    pos, size = packets[20]
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:pos + size])  # a download that stopped after 21 frames
    with pytest.warns(InputWarning, match=r"cut.mp4: truncated: frames readable up to 2.1 s of 4.0 s"):
        reader = VideoReader(cut)
    meta = reader.metadata
    assert meta.truncated and meta.declared_duration_s == pytest.approx(4.0) and meta.num_frames == 21
    assert reader.notes == [f"{cut}: truncated: frames readable up to 2.1 s of 4.0 s"]
    assert len(reader.read(list(range(meta.num_frames))).frames) == 21  # every frame it reports decodes
    cut.write_bytes(data[:pos + size // 2])  # inside a packet: decord cannot index the file
    with pytest.raises(InputError, match=r"truncated: the file ends at byte [0-9,]+ inside its 'mdat' box"):
        VideoReader(cut)


def test_frames_that_fail_late_are_found_by_bisection(short_video, monkeypatch):
    from longvlm.errors import InputWarning

    monkeypatch.setattr(VideoReader, "_probe_cache", {})
    probes = []

    def decodes(self, index):
        probes.append(index)
        return index < 123

    monkeypatch.setattr(VideoReader, "_decodes", decodes)
    with pytest.warns(InputWarning, match=r"truncated: frames readable up to 12.3 s of 30.0 s"):
        reader = VideoReader(short_video)
    assert reader.metadata.num_frames == 123 and len(probes) <= 10  # log2(300) probes
    count = len(probes)
    with pytest.warns(InputWarning):
        VideoReader(short_video)
    assert len(probes) == count  # remembered per file


def test_mp4_duration_of_other_files(tmp_path):
    from longvlm.ingest.video import mp4_video_duration_s

    from longvlm.ingest.video import mp4_cut_short

    (tmp_path / "x.mp4").write_bytes(b"\x00\x00\x00\x08free" * 3 + b"garbage")
    assert mp4_video_duration_s(tmp_path / "x.mp4") is None
    assert mp4_video_duration_s(tmp_path / "missing.mp4") is None
    (tmp_path / "png.mp4").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR")
    assert mp4_cut_short(tmp_path / "png.mp4") == mp4_cut_short(tmp_path / "x.mp4") == ""

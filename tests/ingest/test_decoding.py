"""PyAV decoding (`longvlm.ingest.decoding`) against decord's frames, and the fewest-pictures seek rule."""

import decord
import numpy as np
import pytest

from longvlm.ingest import video as video_module
from longvlm.ingest.decoding import FrameDecoder, FrameTable
from longvlm.ingest.video import VideoReader
from longvlm.testing import loop_video, read_barcode, write_barcode_video


@pytest.fixture(scope="module")
def real_clip(shared_media, tmp_path_factory):
    """1280x720 H.264 with B frames, ~43 s (dc_demo looped 4 times by stream copy)."""
    return str(loop_video(shared_media / "dc_demo.mp4", tmp_path_factory.mktemp("clip") / "clip.mp4", 40))


def test_frame_table_matches_decord(real_clip):
    table = FrameTable.read(real_clip)
    reference = decord.VideoReader(real_clip)
    assert len(table.pts) == len(reference)
    assert table.keys == sorted(int(k) for k in reference.get_key_indices())
    stamps = reference.get_frame_timestamp(list(range(len(reference))))[:, 0]
    assert np.allclose([table.seconds(i) for i in range(len(table.pts))], stamps, atol=1e-3)


def test_frames_equal_decords_bit_for_bit(real_clip):
    """Any order, repeats, key frames, B frames and the last frame: the same pixels as decord's decoder."""
    reader = VideoReader(real_clip)
    reference = decord.VideoReader(real_clip)
    last = reader.metadata.num_frames - 1
    key = reader.key_frames[2]
    wanted = [0, 1, 2, key - 1, key, key, key + 3, 400, last]
    chunk = reader.read(wanted)
    assert np.array_equal(chunk.frames, reference.get_batch(wanted).asnumpy())
    for index in (last, 5, key + 1):  # backwards: the decoder seeks back
        assert np.array_equal(reader.read_frame(index), reference[index].asnumpy())


def test_decoder_seeks_only_across_key_frames(real_clip):
    table = FrameTable.read(real_clip)
    key = table.keys[3]
    decoder = FrameDecoder(real_clip, table)
    list(decoder.frames([key + 10]))  # from the key frame before it: 11 pictures (+ decoder reorder delay)
    first = decoder.decoded
    assert 11 <= first <= 11 + 4
    list(decoder.frames([key + 20]))  # no key frame in between: continues, 10 more pictures
    assert decoder.decoded - first <= 10
    far = table.keys[-1] + 2
    before = decoder.decoded
    list(decoder.frames([far]))  # a key frame in between: seeks there instead of decoding the gap
    assert decoder.decoded - before <= 3 + 4
    dense = FrameDecoder(real_clip, table)
    every_second = list(range(0, len(table.pts), 20))
    assert [i for i, _ in dense.frames(every_second)] == every_second
    assert dense.decoded <= len(table.pts)  # at most one sequential decode


def test_barcode_frames_show_their_second(tmp_path):
    path = write_barcode_video(tmp_path / "b.mp4", 120, fps=5, height=64, width=128, gop_seconds=10)
    reader = VideoReader(path)
    indices = reader.indices(fps=0.2)  # one frame every 5 s: a seek across every key frame
    for chunk in reader.iter_chunks(indices, chunk_size=5):
        assert [read_barcode(f) for f in chunk.frames] == [int(t + 1e-6) for t in chunk.timestamps]
    assert reader.decoded_pictures < 0.6 * reader.metadata.num_frames


def test_key_frame_scan(tmp_path):
    path = write_barcode_video(tmp_path / "b.mp4", 60, fps=5, height=64, width=128, gop_seconds=10)
    reader = VideoReader(path)
    scan = reader.scan_key_frames(width=128)
    assert [k.index for k in scan] == reader.key_frames
    assert [k.timestamp for k in scan] == pytest.approx(reader.timestamps(reader.key_frames), abs=1e-3)
    for key in scan:
        assert key.picture.shape == (64, 128, 3)
        assert read_barcode(key.picture) == int(key.timestamp + 1e-6)
    some = reader.scan_key_frames(width=64, gray=True, limit=3)
    assert len(some) == 3 and some[0].picture.shape == (32, 64)
    assert {k.index for k in some} <= set(reader.key_frames)


def test_decord_decodes_when_pyav_disagrees(short_video, monkeypatch):
    """A file whose PyAV frame list does not match decord's index is decoded by decord (same frames)."""
    expected = VideoReader(short_video).read([0, 37, 299]).frames
    monkeypatch.setattr(video_module, "_frame_table", lambda path: None)
    reader = VideoReader(short_video)
    assert np.array_equal(reader.read([0, 37, 299]).frames, expected)
    assert reader.decoded_pictures is None
    assert [k.index for k in reader.scan_key_frames(width=32)] == reader.key_frames


def test_mpeg_program_stream_frames_and_times(tmp_path):
    """MPEG-PS (.mpg): decord reports times of -1e14 s for it and its seeks land past the key frame; the
    reader gives PyAV's times and the right frames (seeking further back when a seek lands too late)."""
    from longvlm.testing import barcode_frame, write_video

    frames = (barcode_frame(int(i / 10), 64, 128) for i in range(120))
    path = write_video(tmp_path / "clip.mpg", frames, fps=10, codec="mpeg2video", gop_seconds=1.2)
    reader = VideoReader(path)
    chunk = reader.read(reader.indices(fps=1.0))
    assert reader.decoded_pictures is not None  # PyAV decodes it
    assert chunk.timestamps == pytest.approx(list(range(12)), abs=1e-3)
    assert [read_barcode(f) for f in chunk.frames] == list(range(12))
    assert read_barcode(reader.read_frame(110)) == 11 and read_barcode(reader.read_frame(5)) == 0

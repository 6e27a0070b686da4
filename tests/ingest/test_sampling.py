import pytest

from longvlm.ingest import sampling
from longvlm.errors import LongVLMError


def test_by_count_is_even_and_in_range():
    assert sampling.indices_by_count(100, 4) == [12, 37, 62, 87]
    assert sampling.indices_by_count(3, 10) == [0, 1, 2]  # never more frames than the video has


def test_by_fps_steps_in_video_time():
    assert sampling.indices_by_fps(100, 10.0, 1.0) == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert sampling.indices_by_fps(100, 10.0, 2.0)[:3] == [0, 5, 10]
    assert sampling.indices_by_fps(90, 29.97, 1.0) == [0, 30, 60]


def test_by_fps_respects_max_frames():
    idx = sampling.indices_by_fps(36000, 10.0, 1.0, max_frames=8)
    assert len(idx) == 8 and idx == sorted(idx) and idx[-1] < 36000


def test_timestamps_map_to_frame_shown():
    assert sampling.indices_at_timestamps(100, 10.0, [0.0, 0.95, 5.0, 10.0]) == [0, 9, 50, 99]
    with pytest.raises(LongVLMError, match="outside the video"):
        sampling.indices_at_timestamps(100, 10.0, [10.5])


@pytest.mark.parametrize("fn,args", [(sampling.indices_by_count, (0, 3)), (sampling.indices_by_fps, (0, 10.0, 1.0)),
                                     (sampling.indices_by_count, (10, 0))])
def test_bad_requests_raise(fn, args):
    with pytest.raises(LongVLMError):
        fn(*args)

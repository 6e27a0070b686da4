"""Hour-long inputs: memory must not grow with video length (slow: run with `pytest -m slow`)."""

import pytest

from longvlm.testing import write_barcode_video
from longvlm.profiling import RssSampler
from longvlm.options import Options
from longvlm.pipeline.encode import encode_video
from longvlm.vlm.loading import load_vlm


@pytest.mark.slow
def test_encoding_memory_is_flat_in_video_length(tmp_path):
    vlm = load_vlm("tiny")
    growth = {}
    for minutes in (10, 60):
        path = write_barcode_video(tmp_path / f"{minutes}.mp4", minutes * 60, fps=4, height=64, width=64)
        encode_video(vlm, path, Options(max_visual_tokens=512))  # warm-up: allocator pools, decoder threads
        with RssSampler() as rss:
            encoded = encode_video(vlm, path, Options(max_visual_tokens=2048, sample_fps=1.0))
        # 1 fps, capped by the budget: 56x56 frames cost 4 tokens per 2-frame step -> at most 1024 frames
        assert encoded.stats["frames_sampled"] == min(minutes * 60, 1024)
        assert encoded.visual_tokens <= 2048
        growth[minutes] = rss.growth_mb
    assert growth[60] < growth[10] + 32, growth

"""A 1-hour 1280x720 real-content video (dc_demo looped by stream copy): decoding stays within 300 MB.

Each check runs in its own process so its peak RSS is its own (sampled every 5 ms by `RssSampler`).
"""

import json
import os
import subprocess
import sys

import pytest

from longvlm.testing import loop_video

DENSE = """
import json, sys
from longvlm.ingest.video import VideoReader
from longvlm.profiling import RssSampler
with RssSampler() as rss:
    reader = VideoReader(sys.argv[1])
    indices = reader.indices(fps=1.0)
    kept = sum(len(chunk.indices) for chunk in reader.iter_chunks(indices, chunk_size=16))
print(json.dumps({"kept": kept, "wanted": len(indices), "decoded": reader.decoded_pictures,
                  "frames": reader.metadata.num_frames, "peak_mb": rss.peak_mb}))
"""

PIPELINE = """
import json, sys
from longvlm import ask, load
from longvlm.profiling import RssSampler
from longvlm.vlm.loading import default_model
vlm = load(default_model())  # the default model, as `longvlm ask` loads it (the shipped small model)
with RssSampler() as rss:
    result = ask(vlm, "What is on the screen at 30:00?", sys.argv[1])
stamps = [e.timestamp for e in result.evidence]
print(json.dumps({"model": vlm.name, "growth_mb": rss.growth_mb, "stamps": stamps,
                  "decode_s": result.stats["time_decode_s"], "text": result.text}))
"""


def _run(code: str, video: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code, video], capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def hour_video(shared_media, tmp_path_factory):
    return str(loop_video(shared_media / "dc_demo.mp4", tmp_path_factory.mktemp("hour") / "hour.mp4", 3600))


@pytest.mark.slow
def test_every_second_of_an_hour_of_720p_decodes_within_300_mb(hour_video):
    out = _run(DENSE, hour_video)
    assert out["kept"] == out["wanted"] >= 3590
    assert out["decoded"] <= out["frames"]  # never more than one sequential decode
    assert out["peak_mb"] < 300, out


@pytest.mark.slow
def test_the_default_pipeline_on_an_hour_of_720p(hour_video):
    """`ask` with the default model and options: the question's time is decoded densely, the rest not at all;
    memory while decoding and encoding grows by less than 300 MB over the loaded model."""
    out = _run(PIPELINE, hour_video)
    assert out["model"] == "small"
    assert out["growth_mb"] < 300, out
    assert out["stamps"] and all(abs(t - 1800) <= len(out["stamps"]) for t in out["stamps"]), out
    assert out["decode_s"] < 60, out

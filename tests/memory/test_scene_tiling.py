"""SceneTilling: depth scores against a direct reference, online == offline, planted and real scene cuts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from longvlm.testing import write_barcode_video
from longvlm.ingest.video import VideoReader
from longvlm.memory.scene_tiling import OnlineSceneTiler, depth_scores, scene_tiling, similarities
from longvlm.errors import ConfigError


def reference_depths(sims: list[float]) -> list[float]:
    """The issue's definition, written out: climb left / right while the score does not drop."""
    out = []
    for i, s in enumerate(sims):
        left = s
        for j in range(i - 1, -1, -1):
            if sims[j] >= left:
                left = sims[j]
            else:
                break
        right = s
        for j in range(i + 1, len(sims)):
            if sims[j] >= right:
                right = sims[j]
            else:
                break
        out.append(left + right - 2 * s)
    return out


def reference_ends(depths: list[float], rule: str, value: float) -> list[int]:
    n = len(depths) + 1
    if rule == "top_k":
        cuts = sorted(range(len(depths)), key=lambda i: (-depths[i], i))[:int(value)]
    else:
        limit = value if rule == "threshold" else np.mean(depths) + value * np.std(depths)
        cuts = [i for i, d in enumerate(depths) if d > limit]
    return sorted(set(cuts) | {n - 1})


def random_features(rng, n: int) -> np.ndarray:
    # few distinct values make ties (equal similarities), which the climbing rule must treat as in the reference
    return rng.integers(0, 3, size=(n, 4)).astype(float) + 0.1


def test_depths_equal_reference_on_random_inputs():
    rng = np.random.default_rng(0)
    for _ in range(200):
        sims = list(np.round(rng.uniform(-1, 1, size=int(rng.integers(1, 30))), 1))  # rounded: many ties
        np.testing.assert_allclose(depth_scores(sims), reference_depths(sims), atol=1e-12)


@pytest.mark.parametrize("rule,value", [("top_k", 3), ("alpha", 0.5), ("threshold", 0.3)])
def test_offline_boundaries_equal_reference(rule, value):
    rng = np.random.default_rng(1)
    for _ in range(50):
        feats = random_features(rng, int(rng.integers(2, 40)))
        depths = reference_depths(list(similarities(feats)))
        segments = scene_tiling(feats, **{rule: value})
        assert [s.end for s in segments] == reference_ends(depths, rule, value)
        assert segments[0].start == 0 and segments[-1].end == len(feats) - 1  # the last frame closes a segment
        assert all(a.end + 1 == b.start for a, b in zip(segments, segments[1:]))


@pytest.mark.parametrize("max_segment", [None, 5])
def test_online_equals_offline(max_segment):
    rng = np.random.default_rng(2)
    for _ in range(100):
        n = int(rng.integers(1, 50))
        feats = random_features(rng, n)
        stamps = list(np.cumsum(rng.uniform(0.5, 1.5, size=n)))
        tiler = OnlineSceneTiler(threshold=0.2, max_segment=max_segment, record_depths=True)
        online = [seg for k in range(n) for seg in tiler.push(feats[k], stamps[k])] + tiler.finish()
        offline = scene_tiling(feats, stamps, threshold=0.2, max_segment=max_segment)
        assert online == offline
        if n > 1:
            np.testing.assert_allclose(tiler.depths, depth_scores(similarities(feats)), atol=1e-12)


def test_online_adaptive_rule_is_causal_and_covers_the_stream():
    rng = np.random.default_rng(3)
    feats = np.repeat(np.eye(8)[:6], 10, axis=0) + rng.uniform(0, 0.01, size=(60, 8))  # 6 equally distinct scenes
    tiler = OnlineSceneTiler(alpha=3.0)
    segments = [s for k in range(60) for s in tiler.push(feats[k], float(k))] + tiler.finish()
    assert [s.end for s in segments] == [9, 19, 29, 39, 49, 59]


def test_bad_rules():
    with pytest.raises(ConfigError, match="exactly one"):
        scene_tiling(np.ones((3, 2)), top_k=1, alpha=1.0)
    with pytest.raises(ConfigError, match="max_segment"):
        OnlineSceneTiler(threshold=0.1, max_segment=0)


@pytest.fixture(scope="module")
def vlm():
    from longvlm.vlm.loading import load_vlm

    return load_vlm("tiny")


def frame_features(vlm, path: str, fps: float):
    """Per-frame features: the tiny model's vision tower, mean-pooled over each frame's merged tokens."""
    from longvlm.pipeline.encode import _encode_images

    reader = VideoReader(path)
    chunk = reader.read(reader.indices(fps=fps))
    h, w = vlm.vision.resized(*chunk.frames.shape[1:3], max_pixels=28 * 28 * 16)
    tokens = _encode_images(vlm, list(chunk.frames), [(h, w)] * len(chunk.frames))
    return torch.stack([t.mean(dim=0) for t in tokens]).numpy(), chunk.timestamps


def test_planted_scene_cuts_in_synthetic_video(vlm, tmp_path):
    path = write_barcode_video(tmp_path / "scenes.mp4", 60, fps=4, scene_seconds=12)  # cuts at 12, 24, 36, 48 s
    feats, stamps = frame_features(vlm, path, fps=1.0)
    segments = scene_tiling(feats, stamps, top_k=4)
    assert [round(s.start_s) for s in segments] == [0, 12, 24, 36, 48]
    assert segments[-1].end_s == pytest.approx(60.0)


def test_real_clip_cuts(vlm, shared_media):
    """jobs.mp4 has one hard cut, from the wide stage shot to a close-up, between frames 454 and 455
    (15.13 s / 15.17 s; checked by eye on extracted frames). dc_demo.mp4 is one continuous shot."""
    feats, stamps = frame_features(vlm, str(shared_media / "jobs.mp4"), fps=4.0)
    cuts = scene_tiling(feats, stamps, alpha=3.0)
    assert len(cuts) == 2
    assert cuts[0].end_s == pytest.approx(15.27, abs=0.01) and stamps[cuts[0].end] == pytest.approx(15.0)
    feats, stamps = frame_features(vlm, str(shared_media / "dc_demo.mp4"), fps=4.0)
    assert len(scene_tiling(feats, stamps, alpha=3.0)) == 1

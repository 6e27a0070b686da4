"""Hybrid-resolution video: layout, planning (exact counts, budget, auto choice) and end to end through the
tiny models (token counts the model receives, positions, equality with one-pass encoding and with uniform)."""

import json

import itertools

import pytest
import torch

from longvlm.cli import main
from longvlm.testing import MROPE_PRESETS, write_barcode_video
from longvlm.ingest.video import VideoReader
from longvlm.planning.hybrid import HybridConfig, ResolutionRun, hybrid_segments
from longvlm.processing.patches import video_patches
from longvlm.planning.planner import PlannedVideo, plan_video
from longvlm.processing.spec import VisionSpec
from longvlm.errors import BudgetError, ConfigError
from longvlm.options import Options
from longvlm.pipeline.encode import encode_video
from longvlm.vlm.loading import load_vlm
from longvlm.pipeline.answer import answer, model_inputs
from longvlm.vlm.positions import mrope_position_ids
from longvlm.vlm.vision import video_tokens

SPEC = VisionSpec()
HOUR_720P = dict(num_frames=3600 * 30, video_fps=30.0, height=720, width=1280)
SMALL = HybridConfig(group=4, high_tokens=64, ratio=4.0)


@pytest.fixture(scope="module", params=MROPE_PRESETS)  # 2-frame temporal patches
def vlm(request):
    return load_vlm(request.param)


@pytest.fixture(scope="module")
def wide_video(fixture_dir):
    """24 s, 4 fps, 224x320: large enough for distinct high and low sizes with the tiny vision spec."""
    return write_barcode_video(fixture_dir / "wide.mp4", 24, fps=4, height=224, width=320, scene_seconds=6)


def test_segments_layout():
    assert hybrid_segments(10, 4) == [ResolutionRun(0, 1, True), ResolutionRun(1, 3, False), ResolutionRun(4, 1, True),
                                      ResolutionRun(5, 3, False), ResolutionRun(8, 1, True), ResolutionRun(9, 1, False)]
    assert hybrid_segments(5, 1) == [ResolutionRun(k, 1, True) for k in range(5)]
    assert hybrid_segments(1, 4) == [ResolutionRun(0, 1, True)]


def check_hybrid_plan(plan, budget, config):
    """Exact token counts, budget, time order, alternating sizes, low ~ high / s."""
    assert plan.resolution == "hybrid" and plan.total_tokens <= budget
    for item in plan.items:
        assert item.tokens == SPEC.tokens(item.height, item.width, item.num_frames)
        assert item.num_frames % SPEC.temporal_patch_size == 0
    frames = [i for item in plan.items for i in item.frame_indices]
    assert frames == sorted(frames) and len(set(frames)) == len(frames)
    high, low = plan.items[0], plan.items[1]
    assert high.num_frames == 2 and low.num_frames == 2 * (config.group - 1)
    high_step, low_step = high.tokens, low.tokens // (config.group - 1)
    assert high_step <= config.high_tokens and low_step < high_step
    assert high_step / config.ratio * 0.5 <= low_step <= high_step / config.ratio * 1.6  # smart_resize rounding
    sizes = [(it.height, it.width) for it in plan.items]
    assert all(a != b for a, b in zip(sizes, sizes[1:]))  # adjacent items alternate sizes


@pytest.mark.parametrize("budget,minutes", [(16384, 10), (60000, 60), (8000, 10)])
def test_hybrid_plan_exact_and_within_budget(budget, minutes):
    config = HybridConfig()
    plan = plan_video(int(minutes * 60 * 30), 30.0, 720, 1280, budget, SPEC, resolution="hybrid", hybrid=config)
    check_hybrid_plan(plan, budget, config)
    uniform = plan_video(int(minutes * 60 * 30), 30.0, 720, 1280, budget, SPEC)
    assert plan.skipped == uniform.skipped  # hybrid never keeps fewer frames than uniform
    uniform_step = uniform.items[0].tokens // (uniform.items[0].num_frames // 2)
    assert plan.items[0].tokens > uniform_step  # sharper key frames than uniform at the same budget


def test_tight_budget_thins_frames_and_merges_equal_sizes():
    plan = plan_video(**HOUR_720P, budget=16384, spec=SPEC, resolution="hybrid")
    uniform = plan_video(**HOUR_720P, budget=16384, spec=SPEC)
    assert plan.skipped == uniform.skipped > 0 and plan.total_tokens <= 16384
    frames = [i for it in plan.items for i in it.frame_indices]
    assert frames == uniform.items[0].frame_indices
    sizes = [(it.height, it.width) for it in plan.items]
    assert all(a != b for a, b in zip(sizes, sizes[1:]))  # consecutive items of one size are merged


def test_auto_chooses_uniform_when_it_fits_else_hybrid():
    config = HybridConfig()
    roomy = plan_video(600 * 30, 30.0, 720, 1280, 100_000, SPEC, resolution="auto", hybrid=config)
    assert roomy.resolution == "uniform" and len(roomy.items) == 1
    assert roomy.items[0].tokens // 300 >= config.high_tokens
    tight = plan_video(600 * 30, 30.0, 720, 1280, 16384, SPEC, resolution="auto", hybrid=config)
    assert tight.resolution == "hybrid" and tight == plan_video(600 * 30, 30.0, 720, 1280, 16384, SPEC,
                                                                resolution="hybrid", hybrid=config)


def test_default_is_unchanged_uniform_and_bad_options():
    assert plan_video(**HOUR_720P, budget=16384, spec=SPEC) == plan_video(**HOUR_720P, budget=16384, spec=SPEC,
                                                                          resolution="uniform")
    with pytest.raises(BudgetError, match="resolution must be one of"):
        plan_video(**HOUR_720P, budget=16384, spec=SPEC, resolution="mixed")
    with pytest.raises(BudgetError, match="raise --max-visual-tokens"):
        plan_video(**HOUR_720P, budget=5, spec=SPEC, resolution="hybrid")
    for bad in (dict(group=0), dict(high_tokens=0), dict(ratio=0.5)):
        with pytest.raises(ConfigError):
            HybridConfig(**bad)


@torch.no_grad()
def test_hybrid_video_end_to_end(vlm, wide_video):
    """Planned counts == embeddings == placeholders; each item equals its one-pass encoding; positions follow
    time; generation runs."""
    encoded = encode_video(vlm, wide_video, Options(max_visual_tokens=2000, sample_fps=1.0, video_resolution="hybrid",
                                                    hybrid=SMALL), frames_per_chunk=6)
    plan = encoded.plan
    assert encoded.stats["resolution"] == "hybrid" and len(plan.items) == 6
    assert [e.shape[0] for e in encoded.video_embeds] == [it.tokens for it in plan.items]
    assert encoded.stats["high_size"] != encoded.stats["low_size"]
    kwargs = model_inputs(vlm, encoded, "which second?")
    video_token = vlm.config.video_token_id
    assert int((kwargs["input_ids"] == video_token).sum()) == plan.total_tokens == encoded.visual_tokens
    assert kwargs["video_grid_thw"].shape == (6, 3)
    # chunks of 6 frames cut items apart; the result equals encoding each item in one pass
    reader = VideoReader(wide_video)
    for k in (0, 1):
        item: PlannedVideo = plan.items[k]
        pixels, grid = video_patches(list(reader.read(item.frame_indices).frames), (item.height, item.width),
                                     vlm.vision)
        alone = video_tokens(vlm, pixels, grid)[0]
        torch.testing.assert_close(encoded.video_embeds[k], alone, atol=1e-5, rtol=1e-4)
    if vlm.family_spec.timestamped_frames:  # a block per temporal patch after its time; transformers' positions
        assert "position_ids" not in kwargs and encoded.position_blocks is None
        runs = [len(list(group)) for key, group in itertools.groupby(kwargs["mm_token_type_ids"][0].tolist()) if key]
        assert runs == [item.tokens // (item.num_frames // 2) for item in plan.items for _ in range(item.num_frames // 2)]
        assert len(runs) == 12
        assert torch.isfinite(vlm.model(**kwargs).logits).all()
        return
    # temporal ids: one per step, floor(k * interval), over all items in time order
    positions = kwargs["position_ids"][1:, 0]
    video = kwargs["input_ids"][0] == video_token
    temporal = positions[0, video]
    interval = encoded.position_blocks[0].time_interval
    step_ids, k = [], 0
    for item in plan.items:
        per_step = item.tokens // (item.num_frames // 2)
        for _ in range(item.num_frames // 2):
            step_ids += [int(k * interval)] * per_step
            k += 1
    start = int(temporal[0])
    assert (temporal - start).tolist() == step_ids and k == 12
    if vlm.family == "qwen2_5_vl":  # absolute time: 2 ids per second, 2 s per temporal patch at 1 fps
        assert interval == pytest.approx(4.0)
    mine, _ = mrope_position_ids(kwargs["mm_token_type_ids"], encoded.position_blocks, 2)
    assert torch.equal(kwargs["position_ids"][1:], mine)
    assert torch.equal(kwargs["position_ids"][0, 0], torch.arange(kwargs["input_ids"].shape[1]))
    out = vlm.model(**kwargs)
    assert torch.isfinite(out.logits).all()
    result = answer(vlm, encoded, "which second?", max_new_tokens=3)
    assert result.stats["visual_tokens"] == plan.total_tokens and result.stats["video_items"] == 6


@torch.no_grad()
def test_hybrid_with_equal_sizes_equals_uniform(vlm, short_video):
    """On a 64x64 video high and low sizes coincide: the hybrid input (own position ids, items merged) gives
    exactly the logits of the uniform input (transformers' get_rope_index)."""
    hybrid = encode_video(vlm, short_video, Options(max_visual_tokens=400, sample_fps=1.0, video_resolution="hybrid",
                                                    hybrid=SMALL))
    uniform = encode_video(vlm, short_video, Options(max_visual_tokens=400, sample_fps=1.0))
    assert [it.frame_indices for it in hybrid.plan.items] == [it.frame_indices for it in uniform.plan.items]
    a, b = model_inputs(vlm, hybrid, "q?"), model_inputs(vlm, uniform, "q?")
    assert ("position_ids" in a) == (not vlm.family_spec.timestamped_frames) and "position_ids" not in b
    torch.testing.assert_close(vlm.model(**a).logits, vlm.model(**b).logits, atol=1e-6, rtol=0)


def test_cli_video_resolution(capsys, wide_video):
    assert main(["ask", "--video", wide_video, "-q", "when?", "--max-visual-tokens", "600", "--max-new-tokens", "2",
                 "--video-resolution", "hybrid", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)["stats"]
    assert stats["resolution"] == "hybrid" and stats["visual_tokens"] == stats["planned_visual_tokens"] <= 600

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from longvlm.planning.planner import plan_images, plan_video
from longvlm.processing.spec import VisionSpec
from longvlm.errors import BudgetError
from longvlm.options import Options
from longvlm.pipeline.encode import encode_images, encode_video
from longvlm.vlm.loading import load_vlm
from longvlm.vlm.prompt import build_chat_inputs
from longvlm.vlm.vision import model_features
from longvlm.testing import FAMILY_PRESETS

SPEC = VisionSpec()
A4_144DPI = (1684, 1190)


@pytest.mark.parametrize("pages,budget", [(1, 100), (10, 2048), (60, 4096), (120, 16384), (300, 8192)])
def test_page_plans_fit_budget_and_use_it(pages, budget):
    plan = plan_images([A4_144DPI] * pages, budget, SPEC)
    assert plan.total_tokens <= budget
    assert len(plan.items) + plan.skipped == pages
    if plan.skipped == 0 and plan.pixel_cap < SPEC.max_pixels:
        # the next larger resolution would not have fitted
        bigger = sum(SPEC.tokens(*SPEC.resized(*A4_144DPI, max_pixels=plan.pixel_cap + 28 * 28)) for _ in range(pages))
        assert bigger > budget or plan.total_tokens == budget


def test_dropping_keeps_ranked_pages_in_document_order():
    plan = plan_images([A4_144DPI] * 100, 64 * 10, SPEC, order=[90, 5, 50, 7, 3, 99, 1, 2, 4, 6, 8, 9])
    kept = [it.source_index for it in plan.items]
    assert kept == sorted(kept) and plan.skipped == 100 - len(kept)
    assert set(kept) <= {90, 5, 50, 7, 3, 99, 1, 2, 4, 6, 8, 9} and {90, 5} <= set(kept)


def test_impossible_budget_is_a_clear_error():
    with pytest.raises(BudgetError, match="raise --max-visual-tokens"):
        plan_images([A4_144DPI], 10, SPEC)
    with pytest.raises(BudgetError, match="positive"):
        plan_video(100, 10, 720, 1280, 0, SPEC)


def test_plan_sizes_equal_transformers_processor():
    """The transformers processor, given the plan's pixel cap, produces exactly the planned grids."""
    rng = np.random.default_rng(0)
    sizes = [(842, 595), (600, 900), (1200, 400), (300, 300), (1684, 1190)]
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]
    plan = plan_images(sizes, 1500, SPEC)
    processor = Qwen2VLImageProcessorPil(min_pixels=SPEC.min_pixels, max_pixels=plan.pixel_cap)
    grids = processor(images, return_tensors="pt")["image_grid_thw"]
    assert int(grids.prod(-1).sum()) // SPEC.merge_size ** 2 == plan.total_tokens
    assert [[1, it.height // 14, it.width // 14] for it in plan.items] == grids.tolist()


@pytest.mark.parametrize("frames,fps,h,w,budget", [(36000, 10, 64, 64, 8192), (6000, 10, 720, 1280, 8192),
                                                   (5, 10, 720, 1280, 2048), (1800, 30, 1024, 576, 1000)])
def test_video_plans(frames, fps, h, w, budget):
    plan = plan_video(frames, fps, h, w, budget, SPEC)
    (item,) = plan.items
    assert plan.total_tokens == item.tokens <= budget
    assert item.num_frames % SPEC.temporal_patch_size == 0
    assert item.frame_indices == sorted(item.frame_indices) and item.frame_indices[-1] < frames


@pytest.mark.parametrize("preset", FAMILY_PRESETS)
def test_planned_tokens_are_what_the_model_receives(preset, short_video):
    vlm = load_vlm(preset)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(400, 300), (90, 700)]]
    for encoded in (encode_images(vlm, images, Options(max_visual_tokens=300)),
                    encode_video(vlm, short_video, Options(max_visual_tokens=500, sample_fps=2.0))):
        inputs = build_chat_inputs(vlm.tokenizer, vlm.config, encoded.user_parts + ["q"])
        pad_ids = torch.tensor([vlm.config.image_token_id, vlm.config.video_token_id])
        assert int(torch.isin(inputs["input_ids"], pad_ids).sum()) == encoded.plan.total_tokens
        assert encoded.visual_tokens == encoded.plan.total_tokens <= encoded.plan.budget
        # the model itself checks placeholders against features
        kwargs = dict(inputs)
        if encoded.image_embeds:
            kwargs.update(pixel_values=None, image_grid_thw=encoded.image_grid_thw)
        else:
            kwargs.update(video_grid_thw=encoded.video_grid_thw)
        key = "image" if encoded.image_embeds else "video"
        embeds = encoded.image_embeds or encoded.video_embeds
        with torch.no_grad():
            out = vlm.model(**kwargs, mm_encoder_outputs={key: model_features(vlm, embeds, "cpu")})
        assert out.logits.shape[1] == inputs["input_ids"].shape[1]

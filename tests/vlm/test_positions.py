"""3D M-RoPE position ids: golden values pinning transformers 5.x, equality with get_rope_index on random
sequences, and generate() with explicit position ids."""

import random

import pytest
import torch

from longvlm.options import Options
from longvlm.pipeline.encode import encode_video
from longvlm.vlm.loading import load_vlm
from longvlm.pipeline.answer import model_inputs
from longvlm.vlm.positions import (VisualBlock, blocks_for_items, generation_position_ids, mrope_position_ids,
                                   video_time_interval)

T, I, V = 0, 1, 2
# text(3) + image grid (1, 4, 6) + text(2) + video grid (4, 2, 2) + text(2); spatial merge 2
GOLDEN_TYPES = [T] * 3 + [I] * 6 + [T] * 2 + [V] * 4 + [T] * 2
GOLDEN_IMAGE, GOLDEN_VIDEO = [[1, 4, 6]], [[4, 2, 2]]
IMAGE_IDS = [[3] * 6, [3, 3, 3, 4, 4, 4], [3, 4, 5, 3, 4, 5]]  # t, h, w of the 2 x 3 merged image tokens
GOLDEN = {
    # Qwen2-VL, transformers 5.x: video temporal ids 8..11, but the text after it restarts at 8 + max(1, 1) = 9
    ("qwen2_vl", "transformers"): [[0, 1, 2, *IMAGE_IDS[0], 6, 7, 8, 9, 10, 11, 9, 10],
                                   [0, 1, 2, *IMAGE_IDS[1], 6, 7, 8, 8, 8, 8, 9, 10],
                                   [0, 1, 2, *IMAGE_IDS[2], 6, 7, 8, 8, 8, 8, 9, 10]],
    # transformers 4.x / original Qwen rule: text continues after the largest id (11) of the video
    ("qwen2_vl", "after_max"): [[0, 1, 2, *IMAGE_IDS[0], 6, 7, 8, 9, 10, 11, 12, 13],
                                [0, 1, 2, *IMAGE_IDS[1], 6, 7, 8, 8, 8, 8, 12, 13],
                                [0, 1, 2, *IMAGE_IDS[2], 6, 7, 8, 8, 8, 8, 12, 13]],
    # Qwen2.5-VL, 0.75 s per temporal patch, 2 ids per second: temporal ids 8 + floor(k * 1.5) = 8, 9, 11, 12
    ("qwen2_5_vl", "transformers"): [[0, 1, 2, *IMAGE_IDS[0], 6, 7, 8, 9, 11, 12, 9, 10],
                                     [0, 1, 2, *IMAGE_IDS[1], 6, 7, 8, 8, 8, 8, 9, 10],
                                     [0, 1, 2, *IMAGE_IDS[2], 6, 7, 8, 8, 8, 8, 9, 10]],
    ("qwen2_5_vl", "after_max"): [[0, 1, 2, *IMAGE_IDS[0], 6, 7, 8, 9, 11, 12, 13, 14],
                                  [0, 1, 2, *IMAGE_IDS[1], 6, 7, 8, 8, 8, 8, 13, 14],
                                  [0, 1, 2, *IMAGE_IDS[2], 6, 7, 8, 8, 8, 8, 13, 14]],
}


@pytest.fixture(scope="module")
def models():
    return {"qwen2_vl": load_vlm("tiny-qwen2-vl"), "qwen2_5_vl": load_vlm("tiny-qwen2.5-vl"),
            "qwen3_vl": load_vlm("tiny-qwen3-vl"), "qwen3_5": load_vlm("tiny-qwen3.5")}


def rope_index(vlm, types, image_grid, video_grid, seconds=None):
    """transformers' own get_rope_index for a sequence described by its token types."""
    c = vlm.config
    pad = {T: 5, I: c.image_token_id, V: c.video_token_id}
    ids = torch.tensor([[pad[t] for t in types]])
    extra = {"second_per_grid_ts": seconds} if vlm.family == "qwen2_5_vl" else {}
    return vlm.model.model.get_rope_index(ids, torch.tensor([types]), image_grid_thw=image_grid,
                                          video_grid_thw=video_grid, **extra)


def ours(vlm, types, image_grid, video_grid, seconds=None, rule="transformers"):
    tps = vlm.config.vision_config.tokens_per_second if vlm.family == "qwen2_5_vl" else None
    blocks = blocks_for_items(image_grid, video_grid, torch.tensor(types), tokens_per_second=tps,
                              second_per_grid_ts=seconds, timestamped_frames=vlm.family_spec.timestamped_frames)
    return mrope_position_ids(torch.tensor(types), blocks, vlm.config.vision_config.spatial_merge_size,
                              text_after_vision=rule)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_golden_positions(models, family):
    """Hand-computed ids for text + image + video + text: transformers 5.23 and longvlm both give them."""
    vlm = models[family]
    image, video, seconds = torch.tensor(GOLDEN_IMAGE), torch.tensor(GOLDEN_VIDEO), torch.tensor([0.75])
    positions, delta = rope_index(vlm, GOLDEN_TYPES, image, video, seconds)
    assert positions[:, 0].tolist() == GOLDEN[family, "transformers"]
    mine, my_delta = ours(vlm, GOLDEN_TYPES, image, video, seconds)
    assert mine[:, 0].tolist() == GOLDEN[family, "transformers"] and my_delta == int(delta)
    after_max, _ = ours(vlm, GOLDEN_TYPES, image, video, seconds, rule="after_max")
    assert after_max[:, 0].tolist() == GOLDEN[family, "after_max"]


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_random_sequences_match_get_rope_index(models, family):
    vlm = models[family]
    rng = random.Random(0)
    for _ in range(40):
        types, images, videos, seconds = [], [], [], []
        for _ in range(rng.randint(1, 5)):
            types += [T] * rng.randint(1, 6)
            kind = I if rng.random() < 0.4 else V
            grid = [1 if kind == I else rng.randint(1, 9), 2 * rng.randint(1, 5), 2 * rng.randint(1, 5)]
            (images if kind == I else videos).append(grid)
            if kind == V:
                seconds.append(rng.choice([0.5, 0.75, 1.0, 2.0, 3.3]))
            types += [kind] * (grid[0] * grid[1] * grid[2] // 4)
        types += [T] * rng.randint(0, 4)
        image = torch.tensor(images) if images else None
        video = torch.tensor(videos) if videos else None
        sec = torch.tensor(seconds) if seconds else None
        expected, delta = rope_index(vlm, types, image, video, sec)
        mine, my_delta = ours(vlm, types, image, video, sec)
        assert torch.equal(mine, expected) and my_delta == int(delta)


# Qwen3-VL / Qwen3.5: text(3) + image (1, 4, 6) + text(2) + video (2, 2, 2) written as two blocks, each after a
# 2-token time text, + text(2). Each temporal patch is placed like an image: its temporal id is the block start.
TIMESTAMPED_TYPES = [T] * 3 + [I] * 6 + [T] * 2 + [T] * 2 + [V] + [T] * 2 + [V] + [T] * 2
TIMESTAMPED_GOLDEN = [[0, 1, 2, *IMAGE_IDS[0], 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
                      [0, 1, 2, *IMAGE_IDS[1], 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
                      [0, 1, 2, *IMAGE_IDS[2], 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]]


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen3_5"])
def test_timestamped_frames_positions_match_get_rope_index(models, family):
    """Golden ids, then random layouts: each temporal patch of a video is its own block (after its time text),
    as the family's get_rope_index splits video grids; longvlm's blocks give the same ids."""
    vlm = models[family]
    image, video = torch.tensor(GOLDEN_IMAGE), torch.tensor([[2, 2, 2]])
    expected, delta = rope_index(vlm, TIMESTAMPED_TYPES, image, video)
    assert expected[:, 0].tolist() == TIMESTAMPED_GOLDEN
    mine, my_delta = ours(vlm, TIMESTAMPED_TYPES, image, video)
    assert torch.equal(mine, expected) and my_delta == int(delta)
    rng = random.Random(1)
    for _ in range(40):
        types, images, videos = [], [], []
        for _ in range(rng.randint(1, 4)):
            types += [T] * rng.randint(1, 6)
            kind = I if rng.random() < 0.4 else V
            grid = [1 if kind == I else rng.randint(1, 5), 2 * rng.randint(1, 5), 2 * rng.randint(1, 5)]
            (images if kind == I else videos).append(grid)
            for patch in range(grid[0]):
                types += ([T] * rng.randint(1, 4) if kind == V else []) + [kind] * (grid[1] * grid[2] // 4)
        types += [T] * rng.randint(0, 4)
        image = torch.tensor(images) if images else None
        video = torch.tensor(videos) if videos else None
        expected, delta = rope_index(vlm, types, image, video)
        mine, my_delta = ours(vlm, types, image, video)
        assert torch.equal(mine, expected) and my_delta == int(delta)


def test_multi_grid_block_is_monotone_in_time():
    """A block of several grids (a hybrid video): temporal ids continue across grids, floor(k * interval)."""
    grids = ((1, 8, 8), (3, 4, 4), (1, 8, 8), (2, 4, 4))
    block = VisualBlock(grids, time_interval=1.5)
    tokens = block.tokens(2)
    types = torch.tensor([T] * 4 + [V] * tokens + [T] * 3)
    positions, _ = mrope_position_ids(types, [block], 2)
    start, k, per_step = 4, 0, []
    for t, h, w in grids:
        for _ in range(t):
            ids = positions[:, 0, start:start + h * w // 4]
            assert torch.all(ids[0] == 4 + int(k * 1.5))  # one temporal id per step, proportional to time
            assert ids[1].min() == ids[2].min() == 4  # each grid spans its own rows and columns
            assert ids[1].max() == 4 + h // 2 - 1 and ids[2].max() == 4 + w // 2 - 1
            per_step.append(int(ids[0, 0]))
            start, k = start + h * w // 4, k + 1
    assert per_step == [4, 5, 7, 8, 10, 11, 13] and start == 4 + tokens
    assert positions[0, 0, 4 + tokens:].tolist() == [8, 9, 10]  # 5.x rule: block start + max rows/cols (4)


def test_block_and_placeholder_mismatch_is_an_error():
    with pytest.raises(Exception, match="placeholders"):
        mrope_position_ids(torch.tensor([T, V, V, T]), [VisualBlock(((1, 4, 4),))], 2)
    with pytest.raises(Exception, match="more visual blocks"):
        mrope_position_ids(torch.tensor([T, T]), [VisualBlock(((1, 4, 4),))], 2)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
@torch.no_grad()
def test_generate_with_explicit_positions_equals_builtin(models, family, short_video):
    """generate() given longvlm's [4, 1, L] position ids decodes exactly like generate() computing them."""
    vlm = models[family]
    encoded = encode_video(vlm, short_video, Options(max_visual_tokens=300, sample_fps=1.0))
    kwargs = model_inputs(vlm, encoded, "what happens?")
    assert "position_ids" not in kwargs
    tps = vlm.config.vision_config.tokens_per_second if family == "qwen2_5_vl" else None
    blocks = blocks_for_items(None, encoded.video_grid_thw, kwargs["mm_token_type_ids"], tokens_per_second=tps,
                              second_per_grid_ts=encoded.second_per_grid_ts)
    if family == "qwen2_5_vl":
        assert blocks[0].time_interval == video_time_interval(vlm.config, encoded.second_per_grid_ts[0])
    explicit = generation_position_ids(kwargs["mm_token_type_ids"], blocks, 2)
    settings = dict(max_new_tokens=5, do_sample=False, output_logits=True, return_dict_in_generate=True)
    builtin = vlm.model.generate(**kwargs, **settings)
    given = vlm.model.generate(**kwargs, position_ids=explicit, **settings)
    assert torch.equal(builtin.sequences, given.sequences)
    for a, b in zip(builtin.logits, given.logits, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@torch.no_grad()
def test_decode_positions_continue_from_last_prompt_position(models, short_video):
    """transformers 5.23 generate(): new tokens get the last prompt position + 1 on every row, not
    max(prompt ids) + 1 (the 4.x rope_deltas rule); pinned because a video's temporal ids can exceed it."""
    vlm = models["qwen2_5_vl"]
    encoded = encode_video(vlm, short_video, Options(max_visual_tokens=300, sample_fps=1.0))
    kwargs = model_inputs(vlm, encoded, "what happens?")
    seen = []
    hook = vlm.model.model.language_model.register_forward_pre_hook(
        lambda module, args, kw: seen.append(kw["position_ids"].clone()), with_kwargs=True)
    try:
        vlm.model.generate(**kwargs, max_new_tokens=3, do_sample=False)
    finally:
        hook.remove()
    prompt, first_new = seen[0], seen[1]
    assert prompt.shape[-1] == kwargs["input_ids"].shape[1] and first_new.shape[-1] == 1
    assert torch.equal(first_new[..., 0], prompt[..., -1] + 1)
    assert int(prompt[1:].max()) + 1 > int(first_new[1:].max())  # the video reaches beyond the decode position

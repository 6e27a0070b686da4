"""Visual compressors: numerics against plain references, Qwen2-VL token order and M-RoPE positions, and the
planner / encoder / pipeline integration on the tiny models."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from longvlm.compression import AvgPoolCompressor, BilinearCompressor, OryxCompressor, OryxConfig
from longvlm.options import Compression, Options
from longvlm.presses import LookMPress
from longvlm.compression.visual import compress_item, compressed_grid
from longvlm.planning.planner import LONG_VIDEO_SECONDS, auto_downsample, plan_images, plan_video
from longvlm.processing.spec import VisionSpec
from longvlm.errors import ConfigError
from longvlm.pipeline.encode import encode_images, encode_pdf, encode_video
from longvlm.vlm.loading import load_vlm
from longvlm.pipeline.answer import answer
from longvlm.vlm.prompt import VIDEO, build_chat_inputs, video_slot
from longvlm.testing import FAMILY_PRESETS, MROPE_PRESETS


def region(grid, t, i, j, k):
    return grid[t, i * k:(i + 1) * k, j * k:(j + 1) * k].reshape(k * k, -1)


@pytest.mark.parametrize("k", [2, 4])
def test_pooling_matches_reference(k):
    grid = torch.randn(2, 8, 12, 5, generator=torch.Generator().manual_seed(0))
    avg, bil = AvgPoolCompressor()(grid, k), BilinearCompressor()(grid, k)
    assert avg.shape == bil.shape == (2, 8 // k, 12 // k, 5)
    for t in range(2):
        for i in range(8 // k):
            for j in range(12 // k):
                torch.testing.assert_close(avg[t, i, j], region(grid, t, i, j, k).mean(0))
                c = k // 2  # bilinear at the region centre: mean of the central 2 x 2
                centre = grid[t, i * k + c - 1:i * k + c + 1, j * k + c - 1:j * k + c + 1].reshape(4, -1).mean(0)
                torch.testing.assert_close(bil[t, i, j], centre)
    assert torch.equal(AvgPoolCompressor()(grid, 1), grid)


def reference_oryx(module, grid, k):
    """The Oryx formula cell by cell: q = mean, a = softmax(<Wq q + bq, Wk f_i + bk>/sqrt(d)),
    out = q + g sum a_i f_i."""
    t_, h, w, c = grid.shape
    out = torch.empty(t_, h // k, w // k, c)
    wq, wk, gate = module.query_proj.weight, module.key_proj.weight, module.gate
    bq = module.query_proj.bias if module.config.bias else torch.zeros(wq.shape[0])
    bk = module.key_proj.bias if module.config.bias else torch.zeros(wk.shape[0])
    for t in range(t_):
        for i in range(h // k):
            for j in range(w // k):
                feats = region(grid, t, i, j, k)
                q = feats.mean(0)
                logits = torch.stack([(wq @ q + bq) @ (wk @ f + bk) for f in feats]) / math.sqrt(module.config.attn_dim)
                a = torch.softmax(logits, 0)
                out[t, i, j] = q + gate * (a[:, None] * feats).sum(0)
    return out


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("k", [2, 4])
def test_oryx_matches_reference(k, bias):
    torch.manual_seed(0)
    module = OryxCompressor(OryxConfig(hidden_size=6, attn_dim=4, gate_init=1.0, bias=bias))
    grid = torch.randn(3, 8, 4, 6) * 3
    with torch.no_grad():
        torch.testing.assert_close(module(grid, k), reference_oryx(module, grid, k), atol=1e-5, rtol=1e-5)
        assert torch.equal(module(grid, 1), grid)


def test_oryx_default_starts_as_pooling_and_trains(tmp_path):
    torch.manual_seed(1)
    module = OryxCompressor(OryxConfig(hidden_size=8))
    grid = torch.randn(1, 4, 4, 8)
    torch.testing.assert_close(module(grid, 2), AvgPoolCompressor()(grid, 2))
    module(grid, 2).pow(2).sum().backward()
    assert module.gate.grad is not None and module.gate.grad.abs() > 0  # training can open the gate
    with torch.no_grad():
        module.gate.fill_(0.7)
    module.save_pretrained(tmp_path)
    loaded = OryxCompressor.from_pretrained(tmp_path)
    assert loaded.config == module.config
    for name, value in module.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value)
    with pytest.raises(ConfigError):
        OryxCompressor.from_pretrained(tmp_path / "missing")
    with pytest.raises(ConfigError, match="divide"):
        module(torch.randn(1, 6, 4, 8), 4)


@pytest.mark.parametrize("preset", MROPE_PRESETS)
@pytest.mark.parametrize("k", [2, 4])
def test_compressed_tokens_keep_mrope_positions_consistent(preset, k):
    """Use each video token's own 3D M-RoPE position (from transformers' get_rope_index) as its feature.
    After average pooling, compressed token n carries the mean original position of its region; the positions
    transformers assigns to the compressed item (via the reported grid) must be those of a k-times smaller
    grid in the same order: temporal equal, spatial (mean - s - (k-1)/2) / k + s, s the start of the token's
    block. Qwen2-VL / Qwen2.5-VL: one block for the video. Qwen3-VL / Qwen3.5: a block per temporal patch,
    each starting after the previous one's (smaller) extent, so positions hold relative to the block start."""
    vlm = load_vlm(preset)
    model, config = vlm.model.model, vlm.config
    grid = (4, 16, 8)  # 4 temporal patches, 8 x 4 merged tokens each

    def positions(video_grid):
        """[tokens, 3] position ids of the video tokens and [tokens] the height id of each one's block start."""
        tokens = video_grid[0] * video_grid[1] * video_grid[2] // 4
        slot = video_slot(tokens, [0.5 * i for i in range(2 * video_grid[0])])
        inputs = build_chat_inputs(vlm.tokenizer, config, ["clip", slot, "question"])
        extra = {"second_per_grid_ts": torch.tensor([1.5])} if vlm.family == "qwen2_5_vl" else {}
        pos, _ = model.get_rope_index(inputs["input_ids"], mm_token_type_ids=inputs["mm_token_type_ids"],
                                      video_grid_thw=torch.tensor([video_grid]), **extra)
        video = inputs["mm_token_type_ids"][0] == VIDEO
        first = video & ~torch.cat([torch.tensor([False]), video[:-1]])
        block_start = pos[1, 0, first][torch.cumsum(first.long(), 0)[video] - 1]
        return pos[:, 0, video].T.float(), block_start.float()

    original, start = positions(grid)
    pooled, new_grid = compress_item(original, grid, AvgPoolCompressor(), k)
    pooled_start, _ = compress_item(start[:, None], grid, AvgPoolCompressor(), k)
    assert new_grid == (4, 16 // k, 8 // k) == compressed_grid(grid, k)
    compressed, new_start = positions(new_grid)
    assert pooled.shape == compressed.shape == (original.shape[0] // k ** 2, 3)
    assert (len(set(start.tolist())) > 1) == vlm.family_spec.timestamped_frames
    # temporal ids: unchanged relative to the block start (absolute for one block)
    torch.testing.assert_close(pooled[:, 0] - pooled_start[:, 0], compressed[:, 0] - new_start)
    torch.testing.assert_close((pooled[:, 1:] - pooled_start - (k - 1) / 2) / k, compressed[:, 1:] - new_start[:, None])


def test_planner_downsample():
    spec = VisionSpec()
    for k in (1, 2, 4):
        plan = plan_images([(1684, 1190)] * 5, 2000, spec, downsample=k)
        assert plan.total_tokens <= 2000 and plan.downsample == k
        for item in plan.items:
            assert item.height % (28 * k) == 0 and item.width % (28 * k) == 0
            assert item.tokens == item.height * item.width // (28 * 28 * k * k)
        video = plan_video(3600, 10, 720, 1280, 4096, spec, downsample=k).items[0]
        assert video.height % (28 * k) == 0 and video.width % (28 * k) == 0
        assert video.tokens == video.num_frames // 2 * video.height * video.width // (28 * 28 * k * k) <= 4096
    assert auto_downsample("pdf") == auto_downsample("images") == 1
    assert auto_downsample("video", 300) == 2 and auto_downsample("video", LONG_VIDEO_SECONDS) == 4
    with pytest.raises(ConfigError):
        plan_images([(100, 100)], 100, spec, downsample=0)
    with pytest.raises(ConfigError):
        Compression(downsample=3.0)


@pytest.fixture(scope="module", params=FAMILY_PRESETS)
def vlm(request):
    return load_vlm(request.param)


def test_encoded_image_equals_pooled_uncompressed(vlm):
    """Through the real vision tower: the compressed encoding is the average pool of the uncompressed one."""
    f = vlm.vision.factor
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (4 * f, 8 * f, 3), dtype=np.uint8))
    full = encode_images(vlm, [image], Options(max_visual_tokens=1000))
    small = encode_images(vlm, [image], Options(max_visual_tokens=1000, compression=Compression(downsample=2)))
    assert full.image_grid_thw.tolist() == [[1, 8, 16]] and small.image_grid_thw.tolist() == [[1, 4, 8]]
    assert small.visual_tokens == small.plan.total_tokens == full.visual_tokens // 4 == 8
    expected = full.image_embeds[0].view(1, 4, 8, -1)
    expected = expected.view(1, 2, 2, 4, 2, -1).permute(0, 1, 3, 2, 4, 5).reshape(1, 2, 4, 4, -1).mean(3)
    torch.testing.assert_close(small.image_embeds[0], expected.reshape(8, -1), atol=1e-5, rtol=1e-5)
    assert small.stats["visual_downsample"] == 2 and small.stats["visual_compressor"] == "avgpool"


def test_compressed_pdf_and_video_answer(vlm, sixty_page_pdf, short_video):
    oryx = OryxCompressor(OryxConfig(vlm.config.text_config.hidden_size, gate_init=1.0))
    pdf = encode_pdf(vlm, sixty_page_pdf, Options(max_visual_tokens=300, max_pages=6,
                                                  compression=Compression(oryx, downsample=2)))
    grid_tokens = int((pdf.image_grid_thw.prod(-1) // 4).sum())
    assert pdf.visual_tokens == pdf.plan.total_tokens == grid_tokens <= 300
    video = encode_video(vlm, short_video, Options(max_visual_tokens=200, sample_fps=2.0, compression=Compression(
        BilinearCompressor(), downsample="auto")))
    assert video.stats["visual_downsample"] == 2  # a 30 s video
    assert video.visual_tokens == video.plan.total_tokens == int(video.video_grid_thw.prod(-1).sum()) // 4
    for encoded in (pdf, video):
        result = answer(vlm, encoded, "What is shown?", max_new_tokens=3, kv_press=LookMPress(0.5))
        stats = result.stats
        assert stats["context_length"] == stats["visual_tokens"] + stats["text_tokens"]
        assert stats["kv_tokens_kept"] == math.floor(stats["context_length"] * 0.5 + 0.5)
        assert 0 < stats["new_tokens"] <= 3


def test_cli_compression_flags(capsys, sixty_page_pdf):
    import json

    from longvlm.cli import main

    assert main(["ask", "--pdf", sixty_page_pdf, "-q", "code?", "--max-pages", "4", "--max-new-tokens", "2",
                 "--downsample", "2", "--kv-press", "lookm", "--kv-budget", "0.5", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)["stats"]
    assert stats["visual_downsample"] == 2 and stats["visual_tokens"] == stats["planned_visual_tokens"]
    assert stats["kv_tokens_kept"] == math.floor(stats["context_length"] * 0.5 + 0.5)
    assert main(["ask", "--pdf", sixty_page_pdf, "-q", "code?", "--max-pages", "2", "--max-new-tokens", "2",
                 "--kv-press", "streaming", "--kv-budget", "64", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stats"]["kv_tokens_kept"] == 64


def test_the_shipped_oryx_compressor_loads_for_the_small_model_only():
    from longvlm.compression import SHIPPED_COMPRESSORS, build_compressor
    from longvlm.errors import ConfigError as Refused

    assert (SHIPPED_COMPRESSORS["small"] / "oryx_compressor.safetensors").is_file()
    oryx = build_compressor("oryx", 128, "small")  # the small model's hidden size
    assert oryx.config.hidden_size == 128 and float(oryx.gate) > 0  # trained: the gate opened
    with pytest.raises(Refused, match="hidden size 128"):
        build_compressor("oryx", 64, "small")

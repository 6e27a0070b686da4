"""End to end: file -> planner -> tiny model (real transformers classes) -> answer with evidence and stats."""

import json

import pytest
import torch

from longvlm.cli import main
from longvlm.ingest.video import VideoReader
from longvlm.errors import BudgetError, ConfigError, LongVLMError
from longvlm.pipeline.encode import encode_pdf, encode_video
from longvlm.vlm.loading import default_model, load_vlm
from longvlm.pipeline.answer import answer
from longvlm.options import Options
from longvlm.pipeline.ask import ask
from longvlm.vlm.prompt import build_chat_inputs
from longvlm.testing import FAMILY_PRESETS
from longvlm.vlm.room import fit_room, prompt_tokens
from longvlm.vlm.vision import model_features, video_pixels


@pytest.fixture(scope="module", params=FAMILY_PRESETS)
def vlm(request):
    return load_vlm(request.param)


def test_ten_minute_video_end_to_end(vlm, ten_minute_video):
    result = ask(vlm, "At what time does the counter show 300?", ten_minute_video,
                 Options(max_visual_tokens=2048, max_new_tokens=6))
    stats = result.stats
    assert stats["visual_tokens"] == stats["planned_visual_tokens"] <= 2048
    assert stats["visual_tokens"] > 0.9 * 2048  # the budget is used, not wasted
    assert stats["context_length"] == stats["visual_tokens"] + stats["text_tokens"]
    assert stats["video_duration_s"] == pytest.approx(600)
    assert len(result.evidence) == stats["frames_sampled"]
    stamps = [e.timestamp for e in result.evidence]
    assert stamps == sorted(stamps) and stamps[0] < 10 and stamps[-1] > 590
    assert stats["new_tokens"] <= 6 and result.route == "vlm"
    for stage in ("time_plan_s", "time_decode_s", "time_encode_s", "time_generate_s"):
        assert stats[stage] >= 0


def test_sixty_page_pdf_end_to_end(vlm, sixty_page_pdf):
    result = ask(vlm, "What is the secret code of page 42?", sixty_page_pdf,
                 Options(max_visual_tokens=6000, max_new_tokens=6))
    stats = result.stats
    assert stats["visual_tokens"] == stats["planned_visual_tokens"] <= 6000
    assert stats["pages_in_document"] == 60 and stats["visual_items"] == 60 and stats["skipped"] == 0
    assert [e.index for e in result.evidence] == list(range(1, 61))
    assert result.evidence_summary().startswith("p.1, p.2")


def test_over_budget_pdf_keeps_spread_pages(vlm, sixty_page_pdf):
    encoded = encode_pdf(vlm, sixty_page_pdf, Options(max_visual_tokens=64 * 20))
    pages = [e.index for e in encoded.evidence]
    assert encoded.stats["skipped"] == 60 - len(pages) > 0
    assert pages[0] <= 3 and pages[-1] >= 57  # spread over the whole document


def test_chunked_video_features_equal_one_pass(vlm, short_video):
    """Encoding frames chunk by chunk gives the model the same logits as feeding all pixels at once."""
    encoded = encode_video(vlm, short_video, Options(max_visual_tokens=400, sample_fps=2.0))
    inputs = build_chat_inputs(vlm.tokenizer, vlm.config, encoded.user_parts + ["question"])
    extra = {"second_per_grid_ts": encoded.second_per_grid_ts} if vlm.family == "qwen2_5_vl" else {}
    assert len(encoded.plan.items[0].frame_indices) > 16  # more than one chunk of 16 frames
    reader = VideoReader(short_video)
    frames = reader.read(encoded.plan.items[0].frame_indices).frames
    item = encoded.plan.items[0]
    pixels, grid = video_pixels(vlm, frames, (item.height, item.width))
    with torch.no_grad():
        direct = vlm.model(**inputs, pixel_values_videos=pixels, video_grid_thw=grid, **extra).logits
        chunked = vlm.model(**inputs, video_grid_thw=encoded.video_grid_thw, **extra, mm_encoder_outputs={
            "video": model_features(vlm, encoded.video_embeds, "cpu")}).logits
    torch.testing.assert_close(chunked, direct, atol=1e-5, rtol=1e-4)


def test_follow_up_reuses_encoding(vlm, sixty_page_pdf):
    encoded = encode_pdf(vlm, sixty_page_pdf, Options(max_visual_tokens=1000, max_pages=10))
    first = answer(vlm, encoded, "first question", max_new_tokens=4)
    second = answer(vlm, encoded, "first question", follow_ups=[(first.text, "and a follow-up?")], max_new_tokens=4)
    assert second.stats["context_length"] > first.stats["context_length"]
    assert second.stats["visual_tokens"] == first.stats["visual_tokens"]


def test_context_over_model_limit_is_budget_error(vlm, sixty_page_pdf):
    encoded = encode_pdf(vlm, sixty_page_pdf, Options(max_visual_tokens=3000, max_pages=20))
    with pytest.raises(BudgetError, match="leaves 0 of the model's 1000 tokens for the answer"):
        answer(vlm, encoded, "q", max_context=1000)
    prompt = int(build_chat_inputs(vlm.tokenizer, vlm.config, encoded.user_parts + ["q"])["input_ids"].shape[1])
    context = prompt + 30  # room for the prompt and a few new tokens, not for 64
    lowered = answer(vlm, encoded, "q", max_context=context, max_new_tokens=64)
    assert lowered.stats["context_length"] + lowered.stats["new_tokens"] <= context
    assert any("max new tokens lowered from 64" in note for note in lowered.stats["notes"])


def test_default_budgets_follow_the_model(vlm, sixty_page_pdf, short_video):
    """No budget given: what fits the model's context after the prompt and the answer; a larger one is
    lowered with a note, never an error (here a 512-token context, like the shipped small model)."""
    small = load_vlm(vlm.name)
    small.model.config.text_config.max_position_embeddings = 512
    for source in (sixty_page_pdf, short_video):
        for budget in (None, 4096):
            result = ask(small, "What is the secret code on page 7?", source, Options(max_visual_tokens=budget))
            assert result.stats["context_length"] + result.stats["new_tokens"] <= 512
            if source == sixty_page_pdf:  # 60 pages: most of the room is used
                assert result.stats["visual_tokens"] > 0.5 * (512 - 64 - 100)
            notes = " ".join(result.stats.get("notes", []))
            assert ("lowered from 4096" in notes) == (budget == 4096)
    room = fit_room(small, question="q")
    assert room.new_tokens == 64 and room.visual_tokens == 512 - 64 - prompt_tokens(small.tokenizer, small.config, "q")


def test_bad_requests(vlm, sixty_page_pdf):
    with pytest.raises(LongVLMError, match="question is empty"):
        ask(vlm, "   ", sixty_page_pdf)
    with pytest.raises(ConfigError, match="max_visual_tokens"):
        ask(vlm, "q", sixty_page_pdf, Options(max_visual_tokens=0))


@pytest.mark.parametrize("preset,family", [("tiny-qwen2-vl", "qwen2_vl"), ("tiny-qwen2.5-vl", "qwen2_5_vl"),
                                           ("tiny-qwen3-vl", "qwen3_vl"), ("tiny-qwen3.5", "qwen3_5"),
                                           ("tiny-kimi-k2.5", "kimi_k25")])
def test_model_directory_uses_same_path(tmp_path, sixty_page_pdf, preset, family):
    """A saved checkpoint directory loads through from_pretrained and answers exactly like the preset."""
    tiny = load_vlm(preset)
    tiny.save_pretrained(tmp_path / "model")
    loaded = load_vlm(tmp_path / "model")
    assert not loaded.is_random and loaded.vision == tiny.vision and loaded.family == family
    encoded = [encode_pdf(m, sixty_page_pdf, Options(max_visual_tokens=800, max_pages=5)) for m in (tiny, loaded)]
    for ea, eb in zip(encoded[0].image_embeds, encoded[1].image_embeds, strict=True):
        assert torch.equal(ea, eb)
    inputs = build_chat_inputs(tiny.tokenizer, tiny.config, encoded[0].user_parts + ["code?"])
    assert torch.equal(inputs["input_ids"], build_chat_inputs(loaded.tokenizer, loaded.config,
                                                              encoded[1].user_parts + ["code?"])["input_ids"])
    a, b = (answer(m, e, "code?", max_new_tokens=5) for m, e in zip((tiny, loaded), encoded))
    assert a.text == b.text and a.stats["context_length"] == b.stats["context_length"]


def test_bad_model_directories(tmp_path):
    with pytest.raises(ConfigError, match="not a model directory"):
        load_vlm(tmp_path / "missing")
    with pytest.raises(ConfigError, match="no config.json"):
        load_vlm(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ConfigError, match="not supported"):
        load_vlm(tmp_path)


def test_cli(capsys, sixty_page_pdf, short_video, tmp_path):
    assert main(["info", sixty_page_pdf]) == 0
    assert json.loads(capsys.readouterr().out)["pages"] == 60
    assert main(["info", short_video]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 300
    assert main(["ask", "--route", "vlm", "--video", short_video, "-q", "what?", "--max-visual-tokens", "256",
                 "--max-new-tokens", "3", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["stats"]["visual_tokens"] <= 256
    assert record["random_weights"] is (default_model() == "tiny")  # the shipped small model when installed
    assert main(["ask", "--route", "vlm", "--pdf", sixty_page_pdf, "-q", "code?", "--max-pages", "3",
                 "--max-new-tokens", "2"]) == 0
    assert "evidence: p.1, p.2, p.3" in capsys.readouterr().out
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"not a pdf at all")
    assert main(["ask", "--route", "vlm", "--pdf", str(bad), "-q", "x"]) == 2
    err = capsys.readouterr().err
    assert "broken.pdf" in err and "corrupt" in err and "Traceback" not in err


def test_video_question_naming_times_focuses_the_frames(ten_minute_video):
    from longvlm.pipeline.encode import encode, focus_order
    from longvlm.testing import read_barcode

    assert focus_order([0, 5, 10, 15, 20], 5.0, [2.0, 3.9]) == [10, 20, 15, 5, 0]
    vlm = load_vlm("tiny")
    encoded = encode(vlm, ten_minute_video, Options(max_visual_tokens=256), question="What happens at 2:30 and at 8:00?")
    assert encoded.stats["focus_times_s"] == [150.0, 480.0]
    stamps = [e.timestamp for e in encoded.evidence]
    near = [min(abs(t - 150), abs(t - 480)) for t in stamps]
    assert max(near) <= len(stamps) and any(abs(t - 150) < 2 for t in stamps) and any(abs(t - 480) < 2 for t in stamps)
    frames = VideoReader(ten_minute_video).read([e.index for e in encoded.evidence]).frames
    assert [read_barcode(f) for f in frames] == [int(t + 1e-6) for t in stamps]
    outside = encode(vlm, ten_minute_video, Options(max_visual_tokens=256), question="What happens at 2:00:00?")
    assert outside.stats["focus_times_s"] == [] and max(e.timestamp for e in outside.evidence) > 500

"""The demo's parts without a server: citations, thumbnails, KV memory, settings, features, and the session
(encode once, streamed answers, follow-ups that reuse the encoding)."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import DynamicCache

from longvlm.testing import FAMILY_PRESETS, read_barcode, write_synthetic_pdf
from longvlm.demo import features
from longvlm.demo.app import DemoConfig, resolve_input
from longvlm.demo.citations import evidence_citations, parse_citations, parse_target
from longvlm.demo.media import format_time, frame_thumbnails, input_kind, page_thumbnails, spread
from longvlm.demo.session import SessionFiles, StageTracker, check_upload, ingest, public_message, stream_answer
from longvlm.demo.settings import DemoSettings
from longvlm.demo.models import ModelKey, ModelPool
from longvlm.demo.stats import format_bytes, kv_cache_bytes, recurrent_state_bytes, stats_rows
from longvlm.presses.decode import cache_nbytes, recurrent_state_nbytes
from longvlm.errors import BudgetError, ConfigError, InputError, LongVLMError
from longvlm.vlm import loading
from longvlm.encoded import Evidence
from longvlm.vlm.loading import load_vlm
from longvlm.pipeline.answer import answer


@pytest.fixture(scope="module")
def vlm():
    return load_vlm("tiny")


@pytest.fixture(scope="module")
def small_pdf(fixture_dir):
    return write_synthetic_pdf(fixture_dir / "demo_small.pdf", 4)


# -- citations --------------------------------------------------------------------------------------------
def test_parse_page_citations():
    text = "See page 3 and pp. 5-7; also p.2, Page 9, pages 1 and 4, page 99 (absent) and p. 3 again."
    got = [c.label for c in parse_citations(text, page_count=10)]
    assert got == ["p.3", "p.5", "p.6", "p.7", "p.2", "p.9", "p.1", "p.4"]
    assert parse_citations("page 3", page_count=None) == []  # a video has no pages


def test_parse_time_citations():
    text = "It shows 300 at 5:00, again at 1:02:03 and around 75.5 s; 12 seconds in; not 99:99 or 7200 s."
    got = parse_citations(text, duration_s=3800)
    assert [c.value for c in got] == [300, 3723, 75.5, 12]
    assert [c.label for c in got] == ["5:00", "1:02:03", "1:15", "0:12"]
    assert [c.target for c in got][:2] == ["t:300.000", "t:3723.000"]
    assert parse_citations("at 5:00", duration_s=100) == []  # past the end
    assert parse_citations("at 5:00", page_count=3) == []  # a PDF has no times


def test_targets_round_trip_and_reject_garbage():
    for citation in parse_citations("p. 4 at 0:42", page_count=5, duration_s=60):
        assert parse_target(citation.target) == citation
    for bad in ("", "p:0", "p:x", "t:-1", "t:inf", "x:3", "t:"):
        with pytest.raises(ValueError):
            parse_target(bad)


def test_evidence_citations_spread_over_what_was_seen():
    frames = [Evidence("frame", i, timestamp=float(i)) for i in range(100)]
    seen = evidence_citations(frames, limit=5)
    assert [c.value for c in seen] == [0, 25, 50, 74, 99]
    pages = [Evidence("page", p, str(p)) for p in (2, 5, 9)]
    assert [c.label for c in evidence_citations(pages)] == ["p.2", "p.5", "p.9"]


def test_spread_and_format_time():
    assert spread(list(range(10)), 3) == [0, 4, 9] and spread([1, 2], 5) == [1, 2] and spread([], 3) == []
    assert spread(list(range(10)), 1) == [0]
    assert [format_time(s) for s in (0, 59.9, 61, 3599, 3600, 3723)] == ["0:00", "0:59", "1:01", "59:59",
                                                                         "1:00:00", "1:02:03"]


# -- media ------------------------------------------------------------------------------------------------
def test_input_kind(tmp_path, small_pdf, short_video):
    assert input_kind(small_pdf) == "pdf" and input_kind(short_video) == "video"
    unnamed_pdf = tmp_path / "upload_no_suffix"
    unnamed_pdf.write_bytes(open(small_pdf, "rb").read())
    assert input_kind(str(unnamed_pdf)) == "pdf"
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(InputError, match="not a PDF or a video"):
        input_kind(str(text))


def test_frame_thumbnails_show_the_frames_at_their_timestamps(short_video):
    thumbs = frame_thumbnails(short_video, [0, 55, 120, 299])
    assert [t.caption for t in thumbs] == ["0:00", "0:05", "0:12", "0:29"]
    # the barcode in each thumbnail is the second its timestamp names
    assert [read_barcode(np.asarray(t.image)) for t in thumbs] == [0, 5, 12, 29]
    assert thumbs[2].target == "t:12.000"


def test_page_thumbnails(small_pdf):
    thumbs = page_thumbnails(small_pdf, [1, 4], max_side=120)
    assert [t.caption for t in thumbs] == ["p.1", "p.4"] and [t.target for t in thumbs] == ["p:1", "p:4"]
    assert all(max(t.image.size) <= 120 for t in thumbs)


# -- stats ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", FAMILY_PRESETS)
def test_kv_cache_bytes_matches_a_real_cache(preset):
    """The formula against the tensors transformers actually keeps after a forward pass."""
    model = load_vlm(preset).model
    tokens = 37
    cache = DynamicCache(config=model.config)
    ids = torch.randint(0, 200, (1, tokens))
    with torch.no_grad():
        model(input_ids=ids, cache=cache, use_cache=True)
    real = cache_nbytes(cache)
    assert real == sum(layer.keys.numel() * layer.keys.element_size() + layer.values.numel() * layer.values.element_size()
                       for layer in cache.layers if hasattr(layer, "keys"))
    assert kv_cache_bytes(model.config.text_config, tokens, torch.float32) == real
    assert kv_cache_bytes(model.config.text_config, tokens, torch.bfloat16) == real // 2
    # Qwen3.5's linear-attention layers: a fixed-size state instead of KV
    state = recurrent_state_nbytes(cache)
    assert recurrent_state_bytes(model.config.text_config, torch.float32) == state
    assert (state > 0) == (preset == "tiny-qwen3.5")
    assert format_bytes(real) == f"{real / 1024:.1f} KiB" and format_bytes(12) == "12 B"


# -- settings and features --------------------------------------------------------------------------------
def test_settings_validation():
    assert DemoSettings().validated().compression() is None
    for bad in (dict(max_visual_tokens=10), dict(sample_fps=0), dict(max_frames=1), dict(max_new_tokens=0),
                dict(downsample="3"), dict(kv_budget=0.0), dict(kv_budget=1.5)):
        with pytest.raises(ConfigError):
            DemoSettings(**bad).validated()


def test_settings_choices_come_from_the_registries():
    from longvlm.compression import VISUAL_COMPRESSORS
    from longvlm.presses import PRESSES
    from longvlm.vlm.rope import METHODS

    assert features.COMPRESSOR_CHOICES == ("none", *VISUAL_COMPRESSORS)
    assert features.PRESS_CHOICES == ("none", *PRESSES) and features.ROPE_CHOICES == ("none", *METHODS)


def test_default_model_and_labels(vlm):
    assert features.default_model_name() == loading.default_model() in ("small", "tiny")
    badge, text = features.model_label(vlm)
    assert "random weights" in badge and "meaningless" in text
    trained = dataclasses.replace(vlm, name="small", is_random=False)  # how the shipped model is labelled
    badge, text = features.model_label(trained)
    assert "small model" in badge and "far less accurate" in text
    checkpoint = dataclasses.replace(vlm, name="/models/Qwen2-VL-7B-Instruct", is_random=False)
    assert features.model_label(checkpoint)[0].startswith("Qwen2-VL")


# -- local paths ------------------------------------------------------------------------------------------
def test_resolve_input_keeps_to_allowed_folders(tmp_path, small_pdf):
    inside = tmp_path / "doc.pdf"
    inside.write_bytes(open(small_pdf, "rb").read())
    config = DemoConfig(media_dirs=(str(tmp_path),))
    assert resolve_input(None, str(inside), config) == str(inside.resolve())
    assert resolve_input("/uploads/x.pdf", " ", config) == "/uploads/x.pdf"
    assert resolve_input("/uploads/x.pdf", str(inside), config) == str(inside.resolve())  # typed path wins
    with pytest.raises(InputError, match="outside the folders"):
        resolve_input(None, small_pdf, DemoConfig(media_dirs=(str(tmp_path / "sub"),)))
    with pytest.raises(InputError, match="outside the folders"):
        resolve_input(None, str(tmp_path / ".." / "elsewhere.pdf"), config)
    with pytest.raises(InputError, match="file not found"):
        resolve_input(None, str(tmp_path / "missing.pdf"), config)
    with pytest.raises(InputError, match="no file"):
        resolve_input(None, "  ", config)
    with pytest.raises(InputError, match="turned off"):
        resolve_input(None, str(inside), DemoConfig(allow_local_paths=False))


def test_upload_cap(tmp_path):
    big = tmp_path / "big.pdf"
    big.write_bytes(b"%PDF-" + bytes(2 * 1024 * 1024))
    check_upload(str(big), max_upload_mb=3)
    with pytest.raises(InputError, match="over this app's 1 MB limit"):
        check_upload(str(big), max_upload_mb=1)


# -- the session ------------------------------------------------------------------------------------------
def test_stage_tracker_names_the_stages():
    seen = []
    tracker = StageTracker("video", lambda *args: seen.append(args))
    tracker.start()
    tracker("plan", 120, 3600)
    tracker("decode+encode", 16, 120)
    tracker("decode+encode", 120, 120)
    assert [s[0] for s in seen] == ["decode", "plan", "decode", "encode", "decode", "encode"]
    assert seen[1][3] == "plan: 120 of 3,600 frames fit the budget" and seen[-1][4] == "frames"
    assert tracker.summary() == [("decode", "120/120 frames"), ("plan", "120/3,600 frames"),
                                 ("encode", "120/120 frames"), ("compress", "off")]


@pytest.fixture
def vision_calls(vlm):
    """How often the vision tower runs (a forward hook on it)."""
    calls = []
    handle = vlm.model.model.visual.register_forward_hook(lambda *args: calls.append(1))
    yield calls
    handle.remove()


def test_session_streams_and_reuses_the_encoding(vlm, small_pdf, vision_calls):
    stages = []
    session = ingest(vlm, small_pdf, DemoSettings(max_visual_tokens=256), report=lambda *a: stages.append(a[0]))
    assert stages[:2] == ["decode", "plan"] and "encode" in stages and stages[-1] == "preview"
    assert session.kind == "pdf" and session.page_count == 4
    assert [t.caption for t in session.thumbnails] == ["p.1", "p.2", "p.3", "p.4"]
    assert session.encoded.stats["visual_tokens"] <= 256 and session.encoded.stats["time_thumbnails_s"] >= 0

    assert len(vision_calls) == 1  # one chunk of 4 pages
    first = list(stream_answer(vlm, session, "  What is the code of page 2? ", max_new_tokens=12))
    partial, final = first[:-1], first[-1]
    assert final[1] is not None and all(result is None for _, result in partial)
    assert all(final[0].startswith(text.strip()) for text, _ in partial)
    # exactly what answer() gives for the same encoded input
    direct = answer(vlm, session.encoded, "What is the code of page 2?", max_new_tokens=12)
    assert final[1].text == direct.text and final[1].route == "vlm"

    *_, (text2, second) = stream_answer(vlm, session, "And page 3?", max_new_tokens=6)
    follow = answer(vlm, session.encoded, "What is the code of page 2?",
                    follow_ups=[(direct.text, "And page 3?")], max_new_tokens=6)
    assert text2 == follow.text and second.stats["context_length"] == follow.stats["context_length"]
    assert second.stats["context_length"] > final[1].stats["context_length"]
    assert [q for q, _ in session.history] == ["What is the code of page 2?", "And page 3?"]
    assert len(vision_calls) == 1  # neither the answers nor the follow-up ran the vision tower again


def test_session_video_and_errors(vlm, short_video, tmp_path):
    session = ingest(vlm, short_video, DemoSettings(max_visual_tokens=128, sample_fps=0.5), max_thumbnails=4)
    assert session.kind == "video" and session.duration_s == pytest.approx(30)
    chosen = spread(session.encoded.evidence, 4)
    assert [t.caption for t in session.thumbnails] == [format_time(e.timestamp) for e in chosen]
    assert chosen[0] == session.encoded.evidence[0] and chosen[-1] == session.encoded.evidence[-1]
    assert session.citations("at 0:12 and 1:00") == [parse_target("t:12")]  # 1:00 is past the end
    with pytest.raises(LongVLMError, match="question is empty"):
        next(stream_answer(vlm, session, "   "))
    tight = load_vlm("tiny")
    tight.model.config.text_config.max_position_embeddings = session.encoded.visual_tokens + 20
    with pytest.raises(BudgetError, match="of the model's"):
        list(stream_answer(tight, session, "what is shown?", max_new_tokens=8))
    assert session.history == []  # a failed turn is not recorded
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 4096)
    with pytest.raises(InputError, match="broken.mp4"):
        ingest(vlm, str(broken), DemoSettings())


# -- compression and position extension from the settings panel ----------------------------------------------
def test_compression_settings_reach_the_pipeline(vlm, small_pdf):
    settings = DemoSettings(max_visual_tokens=256, compressor="avgpool", downsample="2", kv_press="snapkv",
                            kv_budget=0.5)
    compression = settings.compression()
    stages = []
    session = ingest(vlm, small_pdf, settings, report=lambda *a: stages.append(a[0]))
    assert session.encoded.stats["visual_downsample"] == 2 and "compress" in stages
    *_, (_, result) = stream_answer(vlm, session, "code?", max_new_tokens=4, kv_press=compression.kv_press)
    assert result.stats["kv_tokens_kept"] < result.stats["kv_tokens_full"]
    rows = dict(stats_rows(result.stats, max_context=vlm.max_context, text_config=vlm.config.text_config,
                           dtype=torch.float32, compression_note=""))
    tokens = session.encoded.visual_tokens
    assert rows["visual tokens before compression"] == f"{4 * tokens:,}"
    assert rows["visual tokens after compression"].startswith(f"{tokens:,} (avgpool, 2x2)")
    assert "after pruning" in rows["KV cache"]


def test_position_extension_from_the_settings():
    pool = ModelPool("tiny")
    before = pool.vlm.max_context
    key = pool.key("tiny", rope_method="mrope++", rope_scale=2.0)
    extended = pool.get(key)
    assert extended.max_context == 2 * before and key.extension == "mrope++ x2"
    assert pool.vlm.max_context == before and pool.get(key) is extended  # the launch model is untouched


def test_model_pool_offers_only_its_choices(tmp_path):
    load_vlm("tiny-qwen2.5-vl").save_pretrained(tmp_path / "models" / "qwen25")
    (tmp_path / "models" / "not-a-model").mkdir()
    pool = ModelPool("tiny", models_dirs=[str(tmp_path / "models")], max_loaded=1)
    assert pool.choices[0] == "tiny" and "qwen25" in pool.choices and "small" in pool.choices
    assert "not-a-model" not in pool.choices
    for bad in (str(tmp_path / "models" / "qwen25"), "/etc", "../models/qwen25", "tiny-qwen9-vl"):
        with pytest.raises(ConfigError, match="unknown model"):  # no folder can be named or probed
            pool.key(bad)
    other = pool.get(pool.key("qwen25"))
    assert other.family == "qwen2_5_vl" and other.name == "qwen25" and pool.vlm.name == "tiny"
    pool.get(pool.key("small"))  # past max_loaded: qwen25 is dropped, the launch model stays
    assert ModelKey("qwen25") not in pool._loaded and pool.default in pool._loaded


def test_session_files_are_the_sessions_own_and_are_removed(tmp_path, small_pdf):
    files = SessionFiles(tmp_path / "uploads")
    copy = files.add(small_pdf, "../../report (final).pdf")
    assert Path(copy).parent == files.folder and Path(copy).name == "report _final_.pdf"
    assert Path(copy).read_bytes() == Path(small_pdf).read_bytes()
    files.remove()
    assert not files.folder.exists() and Path(small_pdf).is_file()
    stale, fresh = SessionFiles(tmp_path / "uploads"), SessionFiles(tmp_path / "uploads")
    stale.add(small_pdf, "a.pdf")
    fresh.add(small_pdf, "b.pdf")
    old = time.time() - 7200
    os.utime(stale.folder, (old, old))
    assert SessionFiles.sweep(tmp_path / "uploads", 3600) == 1
    assert not stale.folder.exists() and fresh.folder.exists()


def test_errors_name_the_file_as_given(vlm, tmp_path):
    message = public_message(ValueError("cannot read /tmp/gradio/abc123/x.pdf: bad xref"), "/tmp/gradio/abc123/x.pdf",
                             "x.pdf")
    assert message == "cannot read x.pdf: bad xref"
    assert "/home" not in public_message(OSError("/home/someone/secret/model.bin is missing"), "", "m")
    assert public_message(ValueError("not a model directory"), "", "m") == "not a model directory"  # no path
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 broken")
    files = SessionFiles(tmp_path / "uploads")
    with pytest.raises(InputError) as info:
        ingest(vlm, str(broken), DemoSettings(), name="My Report.pdf", files=files)
    assert str(info.value).startswith("My Report.pdf:") and str(tmp_path) not in str(info.value)
    assert not files.folder.exists()  # a failed load leaves nothing behind


def test_budget_follows_the_model(small_pdf, short_video):
    """A 512-token model (like the shipped small one) gets a budget that fits, whatever was asked for."""
    small = load_vlm("tiny")
    small.model.config.text_config.max_position_embeddings = 512
    for path in (small_pdf, short_video):
        session = ingest(small, path, DemoSettings(max_visual_tokens=4096))
        assert session.encoded.visual_tokens < 512 and any("lowered from 4096" in n for n in session.stats["notes"])
        *_, (_, result) = stream_answer(small, session, "What is the secret code of page 2?")
        assert result.stats["context_length"] + result.stats["new_tokens"] <= 512
        *_, (_, follow) = stream_answer(small, session, "And which page mentions the number 1111 exactly?")
        assert follow.stats["context_length"] + follow.stats["new_tokens"] <= 512


def test_text_route_session_cites_retrieved_pages(small_pdf):
    stages = []
    session = ingest(None, small_pdf, DemoSettings(), route="text", report=lambda *a: stages.append(a[0]))
    assert session.route == "text" and session.encoded is None and session.read_count == 4
    assert stages[0] == "read" and [t.caption for t in session.thumbnails] == ["p.1", "p.2", "p.3", "p.4"]
    *_, (text, result) = stream_answer(None, session, "What is the secret code of page 2?", max_new_tokens=16)
    assert result.route == "text" and text == result.text and result.passages
    assert result.evidence[0].kind == "page" and 1 <= result.evidence[0].index <= 4


def test_cli_demo_arguments(capsys, tmp_path):
    from longvlm.cli import build_parser, main

    args = build_parser().parse_args(["demo"])
    assert (args.host, args.port, args.max_upload_mb, args.media_dir) == ("127.0.0.1", 7860, 2048, None)
    args = build_parser().parse_args(["demo", "--model", "/m", "--port", "0", "--media-dir", "a", "--media-dir", "b"])
    assert args.model == "/m" and args.media_dir == ["a", "b"]
    assert main(["demo", "--max-upload-mb", "0"]) == 2
    assert "--max-upload-mb must be positive" in capsys.readouterr().err
    assert main(["demo", "--media-dir", str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("context", [512, 8192, 32768, 131072])
def test_budget_slider_is_consistent_for_every_context(context):
    """The budget slider's bounds and value fit the model (the shipped small model has 512 tokens, a 32K or
    128K checkpoint far more), and Gradio accepts them."""
    import gradio as gr

    from longvlm.demo.app import budget_maximum, new_tokens_maximum
    from longvlm.vlm.room import default_new_tokens

    model = load_vlm("tiny")
    model.model.config.text_config.max_position_embeddings = context
    top = budget_maximum(model)
    assert 64 <= top < context - default_new_tokens(context)
    gr.Slider(min(64, top), top, value=top, step=1)  # raises when value > maximum
    assert default_new_tokens(context) <= new_tokens_maximum(model) <= context // 2


def test_a_question_naming_a_time_is_answered_from_frames_around_it(vlm, ten_minute_video, vision_calls):
    """Coarse to fine: the session's encoding spreads frames over the 10 minutes; a question naming 5:00 is
    answered from a re-encoding focused there (remembered: asking it again runs no vision tower)."""
    session = ingest(vlm, ten_minute_video, DemoSettings(max_visual_tokens=128, sample_fps=1.0), max_thumbnails=4)
    coarse = [e.timestamp for e in session.encoded.evidence]
    assert coarse[-1] - coarse[0] > 400
    *_, (_, result) = stream_answer(vlm, session, "What does the counter show at 5:00?", max_new_tokens=4)
    stamps = [e.timestamp for e in result.evidence]
    assert len(stamps) == len(coarse) and all(abs(t - 300) <= len(stamps) for t in stamps)
    calls = len(vision_calls)
    *_, (_, again) = stream_answer(vlm, session, "And at minute 5?", max_new_tokens=4)
    assert len(vision_calls) == calls and [e.timestamp for e in again.evidence] == stamps
    *_, (_, plain) = stream_answer(vlm, session, "What is shown?", max_new_tokens=4)
    assert [e.timestamp for e in plain.evidence] == coarse  # no time named: the session's own encoding

"""Every text-route input ends bounded: the question limit (both routes), the reader prompt cut to the small
LM's context, OCR budgets for PDF pages and video frames (reported, continued from the cache), decord parked
between frames, and OCR that never raises on an image. Fast tests use fake OCR engines and a fake LM; the
hour-long video runs the CLI (slow)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from longvlm.retrieval import page_text
from longvlm.retrieval.page_text import TextItem, number_ranges, pdf_page_texts, video_frame_texts
from longvlm.testing import write_video
from longvlm.errors import BudgetError, ConfigError, LongVLMError
from longvlm.limits import MAX_QUESTION_CHARS, check_question

LONG_QUESTION = "why " * 30_000
USER_CACHE = os.environ.get("LONGVLM_CACHE")  # before `own_cache` points it at a test folder


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LONGVLM_CACHE", str(tmp_path / "cache"))


# -- the question limit ------------------------------------------------------------------------------------
def test_check_question_strips_and_refuses_empty_or_long():
    assert check_question("  What is it?\n") == "What is it?"
    assert check_question("x" * MAX_QUESTION_CHARS) == "x" * MAX_QUESTION_CHARS
    for bad in ("", "   ", None):
        with pytest.raises(LongVLMError, match="question is empty"):
            check_question(bad)
    with pytest.raises(LongVLMError) as info:
        check_question("y" * (MAX_QUESTION_CHARS + 1))
    assert "question" in str(info.value) and f"{MAX_QUESTION_CHARS:,}" in str(info.value)


def test_long_question_refused_before_any_work_on_both_routes():
    from longvlm.pipeline.answer import model_inputs
    from longvlm.pipeline.ask import ask
    from longvlm.retrieval.text_route import answer_from_items, ask_text

    class Untouchable:
        def __getattr__(self, name):
            pytest.fail(f"{name} was used for a question over the limit")

    started = time.perf_counter()
    for call in (lambda: ask_text(LONG_QUESTION, pdf="missing.pdf"),
                 lambda: answer_from_items(LONG_QUESTION, [], lm=Untouchable(), selector=Untouchable()),
                 lambda: ask(Untouchable(), LONG_QUESTION, "missing.pdf"),
                 lambda: model_inputs(Untouchable(), Untouchable(), LONG_QUESTION)):
        with pytest.raises(LongVLMError, match="question is 119,999 characters long; the limit is 2,000"):
            call()
    assert time.perf_counter() - started < 1.0


# -- the reader prompt fits the small LM's context -----------------------------------------------------------
class WordTokenizer:
    """One token per whitespace-separated word (so the chat template's words count too)."""

    eos_token_id = 0

    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=False):
        return "\n".join(f"<{m['role']}> {m['content']}" for m in messages) + " <assistant>"

    def __call__(self, text, return_tensors="pt", add_special_tokens=False):
        return {"input_ids": torch.arange(1, len(text.split()) + 1)[None]}

    def decode(self, ids, skip_special_tokens=True):
        return "forty-two"


class FakeModel:
    device = torch.device("cpu")

    def __init__(self, context: int) -> None:
        self.config = type("Config", (), {"max_position_embeddings": context})()
        self.prefilled: list[int] = []

    def generate(self, ids, **kwargs):
        self.prefilled.append(int(ids.shape[1]))
        return torch.cat([ids, torch.tensor([[7, 0]])], dim=1)


def fake_lm(context: int):
    from longvlm.retrieval.small_lm import SmallLM

    return SmallLM(FakeModel(context), WordTokenizer(), "fake-lm")


def test_reader_prompt_is_cut_to_the_context_keeping_the_best_passages():
    from longvlm.retrieval.text_route import Passage, fit_reader_prompt

    lm = fake_lm(200)
    passages = [Passage(TextItem("page", i, "", "layer"), " ".join(f"w{i}_{k}" for k in range(100)), 1.0 - i / 10)
                for i in range(3)]
    messages, kept = fit_reader_prompt(lm, "What is the answer?", passages, max_new_tokens=20)
    assert int(lm.chat_ids(messages).shape[1]) <= 200 - 20
    assert kept[0].text == passages[0].text  # the best passage whole
    assert len(kept) == 2 and kept[1].text.endswith(" ...") and kept[1].text.startswith("w1_0 w1_1")
    assert "[p.1]" in messages[1]["content"] and "[p.2]" in messages[1]["content"]
    assert "[p.3]" not in messages[1]["content"]
    # everything fits: nothing changes
    messages, kept = fit_reader_prompt(fake_lm(1000), "What?", passages, max_new_tokens=20)
    assert [p.text for p in kept] == [p.text for p in passages]
    with pytest.raises(ConfigError):
        fit_reader_prompt(lm, "What?", passages, max_new_tokens=200)
    with pytest.raises(BudgetError, match="question does not fit"):
        fit_reader_prompt(fake_lm(40), "why " * 100, passages, max_new_tokens=10)


def test_answer_from_items_never_prefills_past_the_context(monkeypatch):
    pytest.importorskip("bm25s")
    from longvlm.retrieval import text_route
    from longvlm.retrieval.answering import AbstentionRule
    from longvlm.retrieval.ranking import QuestionSelector
    from longvlm.retrieval.text_route import answer_from_items

    lm = fake_lm(300)

    def copy(lm, messages, source, **kwargs):  # the reader's decoding, as the prompt it is given
        lm.model.prefilled.append(int(lm.chat_ids(messages).shape[1]))
        return "Revenue grew"

    monkeypatch.setattr(text_route, "generate_copy", copy)
    monkeypatch.setattr(text_route, "candidate_logprobs", lambda lm, messages, cands: [-1.0] * len(cands))
    items = [TextItem("page", i, " ".join(["revenue grew"] * 400), "layer") for i in range(4)]
    always = AbstentionRule({"bias": 5.0}, threshold=0.5)
    result = answer_from_items("How did revenue change?", items, lm=lm, selector=QuestionSelector(False),
                               max_new_tokens=30, rule=always)
    assert lm.model.prefilled and max(lm.model.prefilled) <= 300 - 30
    assert result.stats["prompt_tokens"] <= 270 and "passages_cut_to_fit" in result.stats
    assert len(result.evidence) == 3 and result.text == "revenue grew"  # every retrieved citation kept
    assert result.stats["abstained"] is False and result.passages[0]["span"] == [0, len("revenue grew")]
    never = AbstentionRule({"bias": -5.0}, threshold=0.5)
    result = answer_from_items("How did revenue change?", items, lm=lm, selector=QuestionSelector(False),
                               max_new_tokens=30, rule=never)
    assert result.text == "Not answerable" and result.stats["abstained"] is True
    assert result.stats["abstain_reason"].startswith("P(right)")  # the CLI and demo say "not found in the document"
    assert result.stats["candidate_answer"] == "revenue grew"
    assert {"cite", "score", "text", "source", "span"} <= set(result.passages[0])


def test_small_lm_refuses_a_prompt_over_its_context():
    lm = fake_lm(50)
    with pytest.raises(BudgetError, match="50-token context"):
        lm.generate([{"role": "user", "content": "word " * 60}], max_new_tokens=8)
    assert lm.model.prefilled == []
    assert lm.generate([{"role": "user", "content": "word " * 10}], max_new_tokens=8) == "forty-two"


# -- OCR budgets: PDF pages ---------------------------------------------------------------------------------
class FakeOcr:
    """Stands in for OcrEngine: records calls, optionally slow, returns a line of text."""

    min_score = 0.5

    def __init__(self, seconds: float = 0.0, text=None) -> None:
        self.calls: list[tuple] = []
        self.seconds = seconds
        self.make_text = text or (lambda image: "Quarterly revenue grew in every region.")

    def text(self, image) -> str:
        self.calls.append(np.asarray(image).shape)
        time.sleep(self.seconds)
        return self.make_text(np.asarray(image))


@pytest.fixture(scope="module")
def scanned_pdf(tmp_path_factory) -> Path:
    from bad_input_files import write_scanned_pdf

    return write_scanned_pdf(tmp_path_factory.mktemp("scan") / "scanned.pdf", 12)


def ocr_pages(items) -> list[int]:
    return [it.index for it in items if it.source == "ocr"]


def test_pdf_ocr_page_budget_spreads_reports_and_continues(scanned_pdf):
    engine, seen = FakeOcr(), []
    items = pdf_page_texts(scanned_pdf, engine=engine, ocr_max_pages=3, ocr_budget_s=None,
                           progress=lambda *a: seen.append(a))
    assert len(items) == 12 and sorted(ocr_pages(items)) == [3, 6, 9]  # an even spread, not pages 1-3
    assert all(it.source == "none" and it.text == "" for it in items if it.index not in (3, 6, 9))
    stats = items.stats
    assert (stats["ocr_pages_wanted"], stats["ocr_pages_read"], stats["ocr_pages_cached"],
            stats["ocr_pages_skipped"]) == (12, 3, 0, 9)
    assert "page budget 3" in stats["ocr_note"] and "9 pages were not OCR'd" in stats["ocr_note"]
    assert "pages 1-3, 5-6, 8-9, 11-12" in stats["ocr_note"]
    assert ("read", 12, 12) in seen and [a for a in seen if a[0] == "ocr"] == [("ocr", n, 12) for n in (1, 2, 3)]
    # the next call continues: cached pages are free, three new ones in the spread, a named page first
    engine = FakeOcr()
    items = pdf_page_texts(scanned_pdf, engine=engine, ocr_max_pages=3, ocr_budget_s=None, priority=[11])
    assert len(engine.calls) == 3 and sorted(ocr_pages(items)) == [1, 3, 4, 6, 9, 11]  # 11, then the spread goes on
    assert items.stats["ocr_pages_cached"] == 3 and items.stats["ocr_pages_skipped"] == 6
    items = pdf_page_texts(scanned_pdf, engine=FakeOcr(), ocr_max_pages=None, ocr_budget_s=None)
    assert len(ocr_pages(items)) == 12 and items.stats["ocr_pages_skipped"] == 0 and "ocr_note" not in items.stats


def test_pdf_ocr_time_budget(scanned_pdf):
    engine = FakeOcr(seconds=0.3)
    started = time.perf_counter()
    items = pdf_page_texts(scanned_pdf, engine=engine, ocr_max_pages=None, ocr_budget_s=0.5)
    assert time.perf_counter() - started < 0.5 + 0.3 + 1.0  # a page already started is finished
    assert 1 <= len(engine.calls) <= 3 and items.stats["ocr_pages_skipped"] == 12 - len(engine.calls)
    assert "time budget 0.5 s" in items.stats["ocr_note"]
    # a zero budget still reads one page per call, so asking again always makes progress
    engine = FakeOcr()
    items = pdf_page_texts(scanned_pdf, engine=engine, ocr_max_pages=None, ocr_budget_s=0)
    assert len(engine.calls) == 1
    for bad in ({"ocr_budget_s": -1}, {"ocr_max_pages": -2}, {"ocr_budget_s": float("nan")}):
        with pytest.raises(ConfigError):
            pdf_page_texts(scanned_pdf, engine=FakeOcr(), **bad)


def test_number_ranges():
    assert number_ranges([5, 1, 2, 3, 9, 10]) == "1-3, 5, 9-10"
    assert number_ranges(range(1, 20, 2), limit=2) == "1, 3, ... (10 ranges)"


# -- OCR budgets: video frames ------------------------------------------------------------------------------
def scene_frame(scene: int) -> np.ndarray:
    """64x96 black frame with a white 8-pixel-wide stripe at x = 8 * scene (scenes 0-11)."""
    frame = np.zeros((64, 96, 3), np.uint8)
    frame[:, 8 * scene:8 * scene + 8] = 255
    return frame


def scene_video(path: Path, *, seconds: int = 60, scene_s: int = 10, fps: int = 2, gop_s: float = 2.0) -> str:
    """A video showing scene k (`scene_frame`) from k * `scene_s` seconds on."""
    frames = (scene_frame(i // (scene_s * fps)) for i in range(seconds * fps))
    return write_video(path, frames, fps=fps, gop_seconds=gop_s)


def scene_text(image: np.ndarray) -> str:
    return f"scene {int(np.argmax(image.mean(axis=(0, 2)))) // 8}"


@pytest.mark.parametrize("gop_s", [2.0, 30.0])  # key frames at every sample / samples decoded exactly
def test_video_frames_read_once_per_scene(tmp_path, gop_s):
    video = scene_video(tmp_path / "scenes.mp4", gop_s=gop_s)
    engine = FakeOcr(text=scene_text)
    frames = video_frame_texts(video, every_s=2.0, engine=engine, budget_s=None)
    assert len(frames) == 30 and len(engine.calls) == 6
    assert [f.text for f in frames[::5]] == [f"scene {k}" for k in range(6)]
    assert all(abs(f.timestamp - 2 * n) <= 1.5 for n, f in enumerate(frames))
    assert frames.stats["frames_skipped"] == 0 and "ocr_note" not in frames.stats
    # the default frame cap applies when max_frames is None
    frames = video_frame_texts(video, every_s=2.0, engine=FakeOcr(text=scene_text), max_frames=4, budget_s=None)
    assert frames.stats["frames_sampled"] <= 4


def test_video_frame_budget_reports_skips_and_continues(tmp_path, monkeypatch):
    video = scene_video(tmp_path / "scenes.mp4", seconds=120)  # 12 scenes
    engine = FakeOcr(seconds=0.25, text=scene_text)
    seen = []
    frames = video_frame_texts(video, every_s=2.0, engine=engine, budget_s=0.6, progress=lambda *a: seen.append(a))
    stats = frames.stats
    assert 1 <= len(engine.calls) < 12 and stats["frames_ocr_read"] == len(engine.calls)
    skipped = [f for f in frames if f.source == "skipped"]
    assert skipped and all(f.text == "" for f in skipped)
    assert stats["frames_skipped"] == stats["frames_sampled"] - sum(f.source != "skipped" for f in frames)
    assert "not OCR'd within the 0.6 s time budget" in stats["ocr_note"] and "asking again" in stats["ocr_note"]
    assert any(a[0] == "read" for a in seen) and any(a[0] == "ocr" for a in seen)
    # later calls continue from the cache: thumbnails are not decoded again, OCR'd scenes are not read again
    decoded = []
    real = page_text._FrameGrabber.frame
    monkeypatch.setattr(page_text._FrameGrabber, "frame", lambda self, i: decoded.append(i) or real(self, i))
    all_read = frames.stats["frames_read"] == frames.stats["frames_sampled"]
    for _ in range(80):  # a zero budget: one new frame read (until all are) and one scene OCR'd per call
        engine = FakeOcr(text=scene_text)
        decoded.clear()
        frames = video_frame_texts(video, every_s=2.0, engine=engine, budget_s=0.0)
        assert len(engine.calls) <= 1
        if all_read:
            assert len(decoded) == len(engine.calls) == 1
        all_read = frames.stats["frames_read"] == frames.stats["frames_sampled"]
        if frames.stats["frames_skipped"] == 0:
            break
    assert frames.stats["frames_skipped"] == 0 and {f.text for f in frames} == {f"scene {k}" for k in range(12)}


def test_video_frame_texts_validates_settings(tmp_path):
    video = scene_video(tmp_path / "scenes.mp4", seconds=4)
    for bad in ({"every_s": 0}, {"every_s": float("nan")}, {"budget_s": -1}, {"max_frames": 0}):
        with pytest.raises(ConfigError):
            video_frame_texts(video, engine=FakeOcr(), **bad)


def rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


def test_decoder_is_parked_between_frames(shared_media, tmp_path):
    """decord keeps decoding ahead after a read (+400 MB/s on 720p) unless parked: RSS stays flat."""
    from longvlm.testing import loop_video

    video = loop_video(shared_media / "dc_demo.mp4", tmp_path / "loop.mp4", 120)
    grab = page_text._FrameGrabber(str(video))
    assert grab.keys[:3] == [0, 112, 216]
    frame = grab.frame(grab.keys[5])
    assert frame.shape == (720, 1280, 3)
    assert grab.frame(grab.keys[5] + 30).shape == (720, 1280, 3)  # exact decode of a non-key frame
    before = rss_mb()
    time.sleep(1.5)
    assert rss_mb() - before < 100


# -- OCR never raises on an image ----------------------------------------------------------------------------
def test_fold_maps_boxes_back():
    from longvlm.retrieval.ocr import fold

    for height, width in ((16, 4000), (3000, 12), (10, 41)):
        image = np.zeros((height, width, 3), np.uint8)
        ys, xs = np.mgrid[0:height, 0:width]
        image[..., 0], image[..., 1], image[..., 2] = xs % 251, ys % 251, (xs // 251 + ys // 251 * 7) % 251
        folded, unfold = fold(image)
        fh, fw = folded.shape[:2]
        assert max(fh, fw) <= 4 * min(fh, fw) and fh * fw <= 2 * height * width
        rng = np.random.default_rng(0)
        for _ in range(200):
            y, x = int(rng.integers(fh)), int(rng.integers(fw))
            x0, y0, _, _ = unfold((x, y, x + 1, y + 1))
            if (folded[y, x] != np.median(np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]),
                                          axis=0).astype(np.uint8)).any():
                assert (folded[y, x] == image[int(y0), int(x0)]).all()


@pytest.fixture(scope="module")
def ocr():
    pytest.importorskip("rapidocr")
    from longvlm.retrieval.ocr import OcrEngine

    return OcrEngine(threads=1)


def test_ocr_never_raises_on_odd_images(ocr):
    from PIL import Image

    for shape in ((16, 4000, 3), (4000, 16, 3), (2, 5000, 3), (0, 10, 3), (20000, 20, 3), (64, 64), (40, 40, 4)):
        assert ocr.read(np.full(shape, 255, np.uint8)) == []
    assert "too small" in (ocr.read(np.zeros((2, 5000, 3), np.uint8)) or ocr.last_skip)
    assert ocr.read(Image.new("RGB", (4000, 16), "white")) == []
    with pytest.raises(ValueError):
        ocr.read(np.zeros((4, 4, 4, 3), np.uint8))


def test_ocr_reads_a_long_banner(ocr):
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 18)
    except OSError:
        font = ImageFont.load_default(size=18)
    banner = Image.new("RGB", (2400, 24), "white")
    ImageDraw.Draw(banner).text((4, 2), "Annual report " + " ".join(f"item{i}" for i in range(40)), fill="black",
                                font=font)
    lines = ocr.read(banner)
    text = " ".join(line.text for line in lines).lower()
    assert "annual report" in text and "item3" in text
    assert all(0 <= line.box[0] <= line.box[2] <= 2400 and 0 <= line.box[1] <= line.box[3] <= 24 for line in lines)


# -- the hour-long video, through the CLI --------------------------------------------------------------------
@pytest.mark.slow
def test_hour_long_video_on_the_text_route_is_bounded(shared_media, tmp_path, monkeypatch):
    """A 1-hour 1280x720 real video (dc_demo looped by stream copy), asked through the CLI with nothing of it
    cached: answered within the frame/time budget, well under 2 GiB (before: still running after 5 minutes at
    12 GB). The user cache is the real one (converted models), minus this video's OCR entries."""
    from longvlm.testing import loop_video
    from test_bad_inputs import run_cli

    from longvlm.ingest.cache import cache_dir, file_sha256
    from longvlm.limits import VIDEO_TEXT_BUDGET_S, VIDEO_TEXT_MAX_FRAMES

    if USER_CACHE is None:
        monkeypatch.delenv("LONGVLM_CACHE")
    else:
        monkeypatch.setenv("LONGVLM_CACHE", USER_CACHE)
    video = loop_video(shared_media / "dc_demo.mp4", tmp_path / "hour.mp4", 3600)
    for old in cache_dir("ocr").glob(f"{file_sha256(video)}-*"):
        old.unlink()
    code, stdout, stderr, wall, rss = run_cli(["ask", "--video", "hour.mp4", "--json", "-q", "What is on the slide?"],
                                              tmp_path, timeout_s=240)
    report = f"exit {code}, {wall:.1f} s, {rss:.0f} MiB\n{stdout[-1500:]}\n{stderr[-1500:]}"
    assert code == 0 and "Traceback" not in stderr, report
    stats = json.loads(stdout)["stats"]
    assert stats["frames_sampled"] <= VIDEO_TEXT_MAX_FRAMES, report
    assert stats["time_frame_text_s"] < VIDEO_TEXT_BUDGET_S + 10, report  # + the frame/page under way
    assert wall < 120 and rss < 2048, report

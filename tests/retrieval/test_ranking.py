"""Question-aware selection without model weights: references, tie order, BM25 against its formula, the
ranked planner (native top pages, low-resolution rest), frame priority in video plans."""

import math
import random

import numpy as np
import pytest
import torch

from longvlm.retrieval.page_text import TextItem, needs_ocr
from longvlm.planning.planner import plan_images, plan_ranked_images, plan_video
from longvlm.ingest.sampling import spread_order
from longvlm.references import page_references, time_references
from longvlm.retrieval.ranking import Bm25Index, QuestionSelector, chunk_words, minmax
from longvlm.processing.spec import VisionSpec
from longvlm.retrieval.embeddings import mean_pool
from longvlm.errors import BudgetError, ConfigError

pytest.importorskip("bm25s")

SPEC = VisionSpec()
A4_144DPI = (1684, 1190)


def pages(texts, labels=None):
    return [TextItem("page", i, t, "layer", label=(labels or {}).get(i, str(i + 1))) for i, t in enumerate(texts)]


def test_references_in_questions():
    assert page_references("In the cartoon in page 25, what does the hippo represent?") == {25}
    assert page_references("How many people are in Pages 30-35?") == {30, 31, 32, 33, 34, 35}
    assert page_references("the legend on slide 4 and page 9") == {4, 9}
    assert page_references("What is the revenue?") == set()
    assert page_references("the words in the first rectangle on the top of the page two") == {2}
    assert page_references("How many people are in the images on the cover?", 40) == {1}
    assert page_references("In the figure at Page at the second last, how many people?", 40) == {39}
    assert page_references("the last slide", 12) == {12} and page_references("the third page", 12) == {3}
    assert page_references("What does the policy cover?", 40) == set()
    assert time_references("what happens at 1:02:03 and at 2:30?") == [3723, 150]
    assert time_references("after 90 seconds, then 3 minutes in") == [90.0, 180.0]


def test_spread_order_prefixes_are_even():
    for n in (1, 2, 7, 10, 33, 100):
        order = spread_order(n)
        assert sorted(order) == list(range(n))
    order = spread_order(100)
    assert order[:3] == [50, 25, 75] and sorted(order[3:7]) == [12, 37, 62, 87]


def test_chunks_cover_every_word():
    words = [f"w{i}" for i in range(1000)]
    chunks = chunk_words(" ".join(words), size=150, overlap=30)
    assert all(len(c.split()) <= 150 for c in chunks)
    assert set(" ".join(chunks).split()) == set(words)
    assert chunk_words("") == [] and chunk_words("a b") == ["a b"]


def bm25_reference(docs, query, k1=1.5, b=0.75):
    """Lucene BM25 (as in Lucene >= 8: no (k1 + 1) factor, which does not change the ranking) written out."""
    n = len(docs)
    avgdl = sum(len(d) for d in docs) / n
    scores = []
    for d in docs:
        s = 0.0
        for term in set(query):
            df = sum(1 for x in docs if term in x)
            if df == 0:
                continue
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            tf = d.count(term)
            s += idf * tf / (tf + k1 * (1 - b + b * len(d) / avgdl))
        scores.append(s)
    return np.array(scores)


def test_bm25_matches_its_formula_on_random_documents():
    rng = random.Random(0)
    vocab = [f"zq{c}{d}" for c in "bcdfghjklm" for d in "xyz"]  # not English words: no stop words, stems unchanged
    for _ in range(5):
        docs = [[rng.choice(vocab) for _ in range(rng.randint(1, 40))] for _ in range(rng.randint(2, 12))]
        query = [rng.choice(vocab) for _ in range(4)]
        index = Bm25Index([" ".join(d) for d in docs])
        got = index.scores(" ".join(query))
        want = bm25_reference(docs, [t for t in query])
        # repeated query terms count once in bm25s as in the reference above
        assert np.allclose(got, want, rtol=1e-5, atol=1e-5), (got, want)


def test_lexical_ranking_and_even_ties():
    texts = ["Filler text about nothing in particular."] * 20
    texts[13] = "The zebra budget for 2024 was approved by the board."
    texts[4] = ""
    selector = QuestionSelector(False)
    ranking = selector.rank("What was the zebra budget?", pages(texts))
    assert ranking.order[0] == 13
    # no signal at all: the order is an even spread (uniform sampling)
    flat = selector.rank("Completely unrelated question", pages(["same words"] * 16))
    assert flat.order == spread_order(16)


def test_page_reference_uses_number_and_printed_label():
    texts = [f"Page content number {i}." for i in range(12)]
    selector = QuestionSelector(False)
    assert selector.rank("What is the title of the diagram on page 9?", pages(texts)).order[0] == 8
    labels = {i: str(i + 7) for i in range(12)}  # printed labels start at 7
    assert selector.rank("What is written in the box on page 17?", pages(texts, labels)).order[0] == 10


def test_selector_validates_inputs():
    with pytest.raises(ConfigError):
        QuestionSelector(False).rank("q", [])
    with pytest.raises(ConfigError):
        QuestionSelector(False, lexical_weight=-1)
    assert minmax(np.array([3.0, 3.0])).tolist() == [0.0, 0.0]
    assert minmax(np.array([1.0, 3.0, 2.0])).tolist() == [0.0, 1.0, 0.5]


def test_ocr_policy():
    assert needs_ocr(0, 0.0) and needs_ocr(12, 1.0) and not needs_ocr(12, 0.1) and not needs_ocr(300, 1.0)
    assert needs_ocr(300, 0.0, "always") and not needs_ocr(0, 1.0, "never")
    with pytest.raises(ConfigError):
        needs_ocr(0, 0, "sometimes")


def test_mean_pool_matches_a_loop():
    torch.manual_seed(0)
    hidden = torch.randn(3, 7, 5)
    mask = torch.tensor([[1] * 7, [1] * 3 + [0] * 4, [1] + [0] * 6])
    got = mean_pool(hidden, mask)
    for row in range(3):
        n = int(mask[row].sum())
        ref = hidden[row, :n].mean(0)
        assert torch.allclose(got[row], ref / ref.norm(), atol=1e-6)


# -- ranked planner ---------------------------------------------------------------------------------------

def test_ranked_plan_gives_top_pages_native_resolution():
    sizes = [A4_144DPI] * 60
    order = [41, 7, 23, 0] + [i for i in range(60) if i not in (41, 7, 23, 0)]
    plan = plan_ranked_images(sizes, 8192, SPEC, order, native=3)
    native_tokens = SPEC.tokens(*SPEC.resized(*A4_144DPI))
    by_index = {it.source_index: it for it in plan.items}
    for page in (41, 7, 23):
        assert by_index[page].tokens == native_tokens
        assert (by_index[page].height, by_index[page].width) == SPEC.resized(*A4_144DPI)
    low = [it for it in plan.items if it.source_index not in (41, 7, 23)]
    assert low and all(it.tokens < native_tokens for it in low)
    assert plan.total_tokens <= 8192
    assert [it.source_index for it in plan.items] == sorted(it.source_index for it in plan.items)
    assert len(plan.items) + plan.skipped == 60
    # the low-resolution pages are exactly what plan_images gives the rest in the budget left
    rest = [i for i in order if i not in (41, 7, 23)]
    sub = plan_images([sizes[i] for i in rest], 8192 - 3 * native_tokens, SPEC, max_pixels=plan.low_pixel_cap,
                      order=range(len(rest)))
    assert sorted(rest[it.source_index] for it in sub.items) == [it.source_index for it in low]


def test_ranked_plan_drops_lowest_ranked_and_falls_back():
    sizes = [A4_144DPI] * 100
    order = list(range(99, -1, -1))  # last pages are best
    native_tokens = SPEC.tokens(*SPEC.resized(*A4_144DPI))
    plan = plan_ranked_images(sizes, native_tokens * 2 + 64 * 5, SPEC, order, native=2)
    kept = [it.source_index for it in plan.items]
    assert {98, 99} <= set(kept) and plan.skipped > 0
    assert set(kept) - {98, 99} == set(range(98 - len(kept) + 2, 98))  # the next best ones, at low resolution
    # budget smaller than one native page: a common-cap plan by the same order
    small = plan_ranked_images(sizes, 300, SPEC, order, native=4)
    assert small.items and all(it.source_index >= 90 for it in small.items) and small.total_tokens <= 300
    with pytest.raises(BudgetError):
        plan_ranked_images(sizes, 10, SPEC, order, native=1)


def test_ranked_plan_composes_with_visual_compression():
    sizes = [A4_144DPI] * 60
    order = [41, 7, 23] + [i for i in range(60) if i not in (41, 7, 23)]
    plan = plan_ranked_images(sizes, 2048, SPEC, order, native=3, downsample=2)
    h, w = SPEC.resized(*A4_144DPI, downsample=2)
    native_tokens = SPEC.tokens(h, w, downsample=2)
    assert native_tokens * 4 == SPEC.tokens(h, w)  # 2 x 2 pooling: 4x fewer tokens per native page
    by_index = {it.source_index: it for it in plan.items}
    assert all(by_index[p].tokens == native_tokens for p in (41, 7, 23))
    assert all(it.tokens < native_tokens for it in plan.items if it.source_index not in (41, 7, 23))
    assert plan.downsample == 2 and plan.total_tokens <= 2048
    # the same budget holds more pages than without compression
    assert len(plan.items) > len(plan_ranked_images(sizes, 2048, SPEC, order, native=3).items)


def test_video_plan_keeps_ranked_frames_when_thinning():
    spec = VisionSpec()
    wanted = [100, 101, 500, 501, 900, 901]
    plan = plan_video(1000, 10.0, 224, 224, 16 * 6 // 2 * 4, spec, sample_fps=1.0, frame_order=wanted,
                      min_tokens_per_frame=16)
    frames = plan.items[0].frame_indices
    assert set(wanted) <= set(frames) and frames == sorted(frames) and len(frames) % 2 == 0
    even = plan_video(1000, 10.0, 224, 224, 16 * 6 // 2 * 4, spec, sample_fps=1.0, min_tokens_per_frame=16)
    assert len(even.items[0].frame_indices) == len(frames)


def test_frame_change_detection_ignores_noise_not_captions():
    from PIL import Image, ImageDraw, ImageFont

    from longvlm.retrieval.page_text import _thumbnail, frame_changed

    font = ImageFont.load_default(size=20)  # a 20-pixel caption on a 640x360 frame
    base = Image.new("RGB", (640, 360), "white")
    ImageDraw.Draw(base).text((20, 170), "Chapter 2: zebra budget", fill="black", font=font)
    other = Image.new("RGB", (640, 360), "white")
    ImageDraw.Draw(other).text((20, 170), "Thank you for watching", fill="black", font=font)
    rng = np.random.default_rng(0)
    noisy = np.clip(np.asarray(base, dtype=np.int16) + rng.integers(-12, 13, (360, 640, 3)), 0, 255).astype(np.uint8)
    a = _thumbnail(np.asarray(base))
    assert not frame_changed(a, _thumbnail(noisy))
    assert frame_changed(a, _thumbnail(np.asarray(other)))

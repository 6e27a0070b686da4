"""One user's conversation about one input: encode it once, then answer any number of questions about it.

`ingest` decodes, plans and encodes a video or PDF (reporting named stages), and makes thumbnails of what
the model saw. `stream_answer` asks a question (the first one, or a follow-up) about the stored
`EncodedInput`, streaming the answer text as it is generated; nothing is decoded or encoded again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from transformers import TextIteratorStreamer

from longvlm.demo.citations import Citation, evidence_citations, parse_citations
from longvlm.demo.media import Thumbnail, file_size_mb, frame_thumbnails, input_kind, page_thumbnails, spread
from longvlm.demo.settings import DemoSettings
from longvlm.errors import InputError, LongVLMError
from longvlm.vlm.inputs import EncodedInput, encode_pdf, encode_video
from longvlm.vlm.loading import VLM
from longvlm.vlm.pipeline import Answer, answer

STAGES = ("decode", "plan", "encode", "compress")
StageFn = Callable[[str, int | None, int | None, str, str], None]  # (stage, done, total, description, unit)


class StageTracker:
    """Turns the encoders' progress callbacks into the demo's named stages (decode, plan, encode, compress).

    Decoding and encoding run interleaved, chunk by chunk (a few frames or pages are decoded, then encoded,
    then dropped), so after planning the two stages advance together; visual compression, when on, runs
    on each chunk right after the vision tower.
    """

    def __init__(self, kind: str, report: StageFn | None = None, compression: str = "off") -> None:
        self.kind = kind
        self.unit = "frames" if kind == "video" else "pages"
        self.report = report
        self.compression = compression
        self.counts: dict[str, tuple[int, int]] = {}

    def _emit(self, stage: str, done: int | None, total: int | None, text: str) -> None:
        if done is not None and total is not None:
            self.counts[stage] = (done, total)
        if self.report is not None:
            self.report(stage, done, total, text, self.unit)

    def start(self) -> None:
        what = "reading the video container" if self.kind == "video" else "opening the PDF"
        self._emit("decode", None, None, f"decode: {what}")

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage == "plan":
            self._emit("plan", done, total, f"plan: {done:,} of {total:,} {self.unit} fit the budget")
            return
        # "decode+encode" (video) or "encode" (PDF pages are rendered, i.e. decoded, in the same chunks)
        self._emit("decode", done, total, f"decode: {done:,}/{total:,} {self.unit}")
        self._emit("encode", done, total, f"decode + encode: {done:,}/{total:,} {self.unit}")
        if self.compression != "off":
            self._emit("compress", done, total, f"compress ({self.compression}): {done:,}/{total:,} {self.unit}")

    def summary(self) -> list[tuple[str, str]]:
        """(stage, result) for the status panel."""
        rows = []
        for stage in STAGES:
            if stage == "compress" and self.compression == "off":
                rows.append((stage, "off"))
            elif stage in self.counts:
                done, total = self.counts[stage]
                rows.append((stage, f"{done:,}/{total:,} {self.unit}"))
            else:
                rows.append((stage, "done" if stage == "decode" else "-"))
        return rows


@dataclass
class DemoSession:
    """An encoded input and the conversation about it: (question, Answer) pairs, oldest first."""

    path: str
    kind: str  # "video" | "pdf"
    encoded: EncodedInput
    model_version: int
    thumbnails: list[Thumbnail]
    stages: list[tuple[str, str]]
    page_count: int | None = None
    duration_s: float | None = None
    history: list[tuple[str, Answer]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def citations(self, text: str) -> list[Citation]:
        """Pages / times the answer `text` mentions that exist in this input."""
        return parse_citations(text, page_count=self.page_count, duration_s=self.duration_s)

    def seen(self, limit: int = 12) -> list[Citation]:
        """Jump targets for what the model was given."""
        return evidence_citations(self.encoded.evidence, limit)


def check_upload(path: str, max_upload_mb: float) -> None:
    """`InputError` if the file is missing or larger than the configured cap."""
    size = file_size_mb(path)
    if size > max_upload_mb:
        raise InputError(path, f"file is {size:,.1f} MB, over this app's {max_upload_mb:,.0f} MB limit "
                               f"(start the demo with a larger --max-upload-mb)")


def ingest(vlm: VLM, path: str, settings: DemoSettings, *, model_version: int = 0, max_upload_mb: float = 4096,
           max_thumbnails: int = 24, compression=None, report: StageFn | None = None) -> DemoSession:
    """Decode, plan and encode a video or PDF once, and make thumbnails of what the model saw."""
    settings = settings.validated()
    check_upload(path, max_upload_mb)
    kind = input_kind(path)
    note = "off"
    if compression is not None and getattr(compression, "visual", None) is not None:
        note = f"{compression.visual.name} k={compression.downsample}"
    tracker = StageTracker(kind, report, note)
    tracker.start()
    extra = {"compression": compression} if compression is not None else {}
    if kind == "video":
        encoded = encode_video(vlm, path, max_visual_tokens=settings.max_visual_tokens,
                               sample_fps=settings.sample_fps, max_frames=settings.max_frames,
                               progress=tracker, memory=settings.memory(vlm), **extra)
    else:
        encoded = encode_pdf(vlm, path, max_visual_tokens=settings.max_visual_tokens, progress=tracker, **extra)
    started = time.perf_counter()
    chosen = spread(encoded.evidence, max_thumbnails)
    if report is not None:
        report("preview", 0, len(chosen), f"preview: {len(chosen)} thumbnails", "thumbnails")
    if kind == "video":
        thumbnails = frame_thumbnails(path, [e.index for e in chosen])
    else:
        thumbnails = page_thumbnails(path, [e.index for e in chosen])
    encoded.stats["time_thumbnails_s"] = time.perf_counter() - started
    return DemoSession(path, kind, encoded, model_version, thumbnails, tracker.summary(),
                       page_count=encoded.stats.get("pages_in_document"),
                       duration_s=encoded.stats.get("video_duration_s"))


def stream_answer(vlm: VLM, session: DemoSession, question: str, *, max_new_tokens: int = 128,
                  kv_press=None, timeout_s: float = 600.0) -> Iterator[tuple[str, Answer | None]]:
    """Yield (text so far, None) while the model generates, then (final text, Answer) once; the turn is then
    added to the session. Earlier turns are passed as follow-ups, with the same encoded input."""
    if not question or not question.strip():
        raise LongVLMError("the question is empty: type a question first")
    question = question.strip()
    turns = session.history
    if turns:
        first = turns[0][0]
        pairs = [(turns[i][1].text, turns[i + 1][0]) for i in range(len(turns) - 1)]
        follow_ups = [*pairs, (turns[-1][1].text, question)]
    else:
        first, follow_ups = question, []
    streamer = TextIteratorStreamer(vlm.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=timeout_s)
    outcome: dict = {}
    extra = {"kv_press": kv_press} if kv_press is not None else {}

    def run() -> None:
        try:
            outcome["answer"] = answer(vlm, session.encoded, first, follow_ups=follow_ups,
                                       max_new_tokens=max_new_tokens, streamer=streamer, **extra)
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc
            streamer.end()

    worker = threading.Thread(target=run, name="longvlm-generate", daemon=True)
    worker.start()
    text = ""
    for piece in streamer:
        if piece:
            text += piece
            yield text, None
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    result: Answer = outcome["answer"]
    session.history.append((question, result))
    yield result.text, result

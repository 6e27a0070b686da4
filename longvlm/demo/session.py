"""One user's conversation about one input: read it once, then answer any number of questions about it.

`ingest` prepares a video or PDF for its route: the VLM route decodes, plans and encodes it (named stages);
the text route extracts the page/frame text (text layer, OCR) for retrieval. Either way it makes thumbnails
of what the model saw. `stream_answer` asks a question (the first one, or a follow-up), streaming the VLM's
answer as it is generated; nothing is decoded, encoded or OCR'd again.

Each session works on its own copy of the file (a hard link when possible) in its own folder under the app's
upload folder (`SessionFiles`): the only media the app serves are those copies and what it renders, and the
folder is deleted when the session loads something else, ends, or expires.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TextIteratorStreamer

from longvlm.retrieval.page_text import TextItem
from longvlm.demo.citations import Citation, evidence_citations, parse_citations
from longvlm.demo.media import Thumbnail, file_size_mb, frame_thumbnails, input_kind, page_thumbnails, spread
from longvlm.demo.settings import DemoSettings
from longvlm.errors import InputError, LongVLMError
from longvlm.encoded import Answer, EncodedInput, Evidence
from longvlm.vlm.loading import VLM
from longvlm.pipeline.answer import answer
from longvlm.pipeline.encode import encode
from longvlm.references import time_references
from longvlm.vlm.room import add_notes, fit_room
from longvlm.ingest.pdf import PdfDocument
from longvlm.ingest.video import read_video_metadata
from longvlm.retrieval.text_route import answer_from_items
from longvlm.retrieval.text_route import read_texts

STAGES = ("decode", "plan", "encode", "compress")
TEXT_STAGES = ("read", "ocr")
StageFn = Callable[[str, int | None, int | None, str, str], None]  # (stage, done, total, description, unit)


class StageTracker:
    """Turns the encoders' progress callbacks into the demo's named stages (decode, plan, encode, compress;
    on the text route: read, ocr).

    Decoding and encoding run interleaved, chunk by chunk (a few frames or pages are decoded, then encoded,
    then dropped), so after planning the two stages advance together; visual compression, when on, runs
    on each chunk right after the vision tower.
    """

    def __init__(self, kind: str, report: StageFn | None = None, compression: str = "off",
                 route: str = "vlm") -> None:
        self.kind = kind
        self.unit = "frames" if kind == "video" else "pages"
        self.report = report
        self.compression = compression
        self.route = route
        self.counts: dict[str, tuple[int, int]] = {}

    def _emit(self, stage: str, done: int | None, total: int | None, text: str) -> None:
        if done is not None and total is not None:
            self.counts[stage] = (done, total)
        if self.report is not None:
            self.report(stage, done, total, text, self.unit)

    def start(self) -> None:
        what = "reading the video container" if self.kind == "video" else "opening the PDF"
        self._emit("read" if self.route == "text" else "decode", None, None, f"{what}")

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage == "plan":
            self._emit("plan", done, total, f"plan: {done:,} of {total:,} {self.unit} fit the budget")
            return
        if stage == "ocr":
            self._emit("ocr", done, total, f"OCR: {done:,}/{total:,} {self.unit} without a text layer")
            return
        if self.route == "text":
            self._emit("read", done, total, f"reading text: {done:,}/{total:,} {self.unit}")
            return
        # "decode+encode" (video) or "encode" (PDF pages are rendered, i.e. decoded, in the same chunks)
        self._emit("decode", done, total, f"decode: {done:,}/{total:,} {self.unit}")
        self._emit("encode", done, total, f"decode + encode: {done:,}/{total:,} {self.unit}")
        if self.compression != "off":
            self._emit("compress", done, total, f"compress ({self.compression}): {done:,}/{total:,} {self.unit}")

    def summary(self) -> list[tuple[str, str]]:
        """(stage, result) for the status panel."""
        rows = []
        for stage in TEXT_STAGES if self.route == "text" else STAGES:
            if stage == "compress" and self.compression == "off":
                rows.append((stage, "off"))
            elif stage in self.counts:
                done, total = self.counts[stage]
                rows.append((stage, f"{done:,}/{total:,} {self.unit}"))
            else:
                rows.append((stage, "done" if stage in ("decode", "read") else "-"))
        return rows


class SessionFiles:
    """A session's own folder under `root` (the app's upload folder) holding its copy of the loaded file.

    Hard links cost nothing on the same file system; elsewhere the file is copied. `sweep` removes folders
    of sessions idle for longer than a time-to-live (sessions that ended without saying so).
    """

    PREFIX = "longvlm-session-"

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.folder = self.root / (self.PREFIX + secrets.token_hex(16))

    def add(self, source: str, name: str) -> str:
        """Place `source` in the session folder as `name` (its base name made safe); return the new path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^\w.\- ]", "_", Path(name).name).strip(" .") or "input"
        target = self.folder / safe
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        return str(target)

    def remove(self) -> None:
        """Delete the folder and what is in it."""
        shutil.rmtree(self.folder, ignore_errors=True)

    @classmethod
    def sweep(cls, root: str | os.PathLike, max_age_s: float) -> int:
        """Delete session folders under `root` not touched for `max_age_s` seconds; returns how many."""
        removed = 0
        now = time.time()
        for folder in Path(root).glob(cls.PREFIX + "*"):
            try:
                if now - folder.stat().st_mtime > max_age_s:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed += 1
            except OSError:
                continue
        return removed


@dataclass
class DemoSession:
    """A loaded input and the conversation about it: (question, Answer) pairs, oldest first.

    VLM route: `encoded` holds the visual features and `model` the session's model key. Text route: `items`
    holds the text of every page/frame (`text_key` keys the retrieval caches)."""

    path: str  # the session's own copy of the file
    name: str  # the file as the user gave it (upload name or typed path): the name shown and used in errors
    kind: str  # "video" | "pdf"
    route: str  # "vlm" | "text"
    stats: dict
    thumbnails: list[Thumbnail]
    stages: list[tuple[str, str]]
    encoded: EncodedInput | None = None
    model: object = None  # the `ModelKey` the input was encoded for (VLM route)
    items: list[TextItem] = field(default_factory=list)
    text_key: str | None = None
    page_count: int | None = None
    duration_s: float | None = None
    files: SessionFiles | None = None
    history: list[tuple[str, Answer]] = field(default_factory=list)
    focused: dict[tuple[float, ...], EncodedInput] = field(default_factory=dict)  # video: per named times

    @property
    def read_count(self) -> int:
        """Pages/frames the answers draw on (VLM: given to the model; text: whose text is indexed)."""
        return len(self.encoded.evidence) if self.encoded is not None else len(self.items)

    def citations(self, text: str) -> list[Citation]:
        """Pages / times the answer `text` mentions that exist in this input."""
        return parse_citations(text, page_count=self.page_count, duration_s=self.duration_s)

    def seen(self, limit: int = 12) -> list[Citation]:
        """Jump targets for what the model was given (text route: the pages/frames that were indexed)."""
        if self.encoded is not None:
            return evidence_citations(self.encoded.evidence, limit)
        evidence = [Evidence("page", it.index + 1) if it.kind == "page" else
                    Evidence("frame", it.index, timestamp=it.timestamp) for it in self.items]
        return evidence_citations(evidence, limit)

    def close(self) -> None:
        """Delete the session's files."""
        if self.files is not None:
            self.files.remove()


def check_upload(path: str, max_upload_mb: float, name: str | None = None) -> None:
    """`InputError` (naming the file as `name`) if the file is missing or larger than the configured cap."""
    try:
        size = file_size_mb(path)
    except InputError:
        raise InputError(name or path, "file not found") from None
    if size > max_upload_mb:
        raise InputError(name or path, f"file is {size:,.1f} MB, over this app's {max_upload_mb:,.0f} MB limit "
                                       f"(start the demo with a larger --max-upload-mb)")


def public_message(exc: BaseException, path: str, name: str) -> str:
    """The message of `exc` as the user may see it: the file as they gave it, never a server path."""
    message = str(exc)
    reals = {path, os.path.abspath(path), os.path.realpath(path)} if path else set()  # "" is no path
    for real in sorted(reals, key=len, reverse=True):
        message = message.replace(real, name)
    return re.sub(r"(?<![\w.])/(?:[^\s/:'\"]+/)+([^\s/:'\"]+)", r"\1", message)  # any other absolute path


def _rename(exc: LongVLMError, path: str, name: str) -> LongVLMError:
    if isinstance(exc, InputError):
        return InputError(name, public_message(Exception(exc.problem), path, name))
    return type(exc)(public_message(exc, path, name))


def ingest(vlm: VLM | None, path: str, settings: DemoSettings, *, name: str | None = None, route: str = "vlm",
           model=None, files: SessionFiles | None = None, max_upload_mb: float = 4096, max_thumbnails: int = 24,
           report: StageFn | None = None) -> DemoSession:
    """Read a video or PDF once for `route` ('vlm': decode, plan and encode with `vlm`; 'text': extract page /
    frame text), and make thumbnails of what the model saw. With `files`, the session works on its own copy
    of `path`. Errors name the file as `name` (default: `path`)."""
    name = name or path
    settings = settings.validated()
    check_upload(path, max_upload_mb, name)
    try:
        kind = input_kind(path)
        if files is not None:
            path = files.add(path, name)
        if route == "text":
            session = _ingest_text(path, name, kind, settings, report)
        else:
            session = _ingest_vlm(vlm, path, name, kind, settings, report)
        session.model, session.files = model, files
        started = time.perf_counter()
        chosen = [it.index for it in spread(_thumbnail_sources(session), max_thumbnails)]
        if report is not None:
            report("preview", 0, len(chosen), f"preview: {len(chosen)} thumbnails", "thumbnails")
        session.thumbnails = (frame_thumbnails(path, chosen) if kind == "video" else page_thumbnails(path, chosen))
        session.stats["time_thumbnails_s"] = time.perf_counter() - started
    except LongVLMError as exc:
        if files is not None:
            files.remove()
        raise _rename(exc, path, name) from exc
    except BaseException:
        if files is not None:
            files.remove()
        raise
    return session


def _thumbnail_sources(session: DemoSession) -> list:
    """What the thumbnails show: the pages/frames given to the model, or (text route) every page/frame; each
    with `.index` (1-based page number, or frame index)."""
    if session.encoded is not None:
        return list(session.encoded.evidence)
    return [Evidence("page", it.index + 1) if it.kind == "page" else Evidence("frame", it.index)
            for it in session.items]


def _ingest_vlm(vlm: VLM, path: str, name: str, kind: str, settings: DemoSettings,
                report: StageFn | None) -> DemoSession:
    options = settings.options(vlm)
    compression = options.compression
    note = "off"
    if compression is not None and compression.downsample != 1:
        note = f"{compression.visual_compressor().name} k={compression.downsample}"
    tracker = StageTracker(kind, report, note)
    tracker.start()
    room = fit_room(vlm, max_visual_tokens=settings.max_visual_tokens)
    encoded = encode(vlm, path, options.replace(max_visual_tokens=room.visual_tokens), progress=tracker,
                     context_room=room.context)
    add_notes(encoded.stats, room.notes)
    return DemoSession(path, name, kind, "vlm", encoded.stats, [], tracker.summary(), encoded=encoded,
                       page_count=encoded.stats.get("pages_in_document"),
                       duration_s=encoded.stats.get("video_duration_s"))


def _ingest_text(path: str, name: str, kind: str, settings: DemoSettings, report: StageFn | None) -> DemoSession:

    tracker = StageTracker(kind, report, route="text")
    tracker.start()
    if kind == "video":

        meta = read_video_metadata(path)
        items, key, stats = read_texts(video=path, frame_every_s=1.0 / settings.sample_fps,
                                       max_frames=settings.max_frames, progress=tracker)
        stats.update(video_duration_s=meta.duration, video_fps=meta.fps)
    else:

        items, key, stats = read_texts(pdf=path, progress=tracker)
        with PdfDocument(path) as doc:
            stats["pages_in_document"] = doc.page_count
    add_notes(stats, [stats["ocr_note"]] if stats.get("ocr_note") else [])
    stats.update(items=len(items), items_with_text=sum(1 for it in items if it.text.strip()))
    return DemoSession(path, name, kind, "text", stats, [], tracker.summary(), items=items, text_key=key,
                       page_count=stats.get("pages_in_document"), duration_s=stats.get("video_duration_s"))


def _turns(session: DemoSession, question: str) -> tuple[str, list[tuple[str, str]]]:
    """The first question and the (answer, next question) pairs that follow it, ending with `question`."""
    turns = session.history
    if not turns:
        return question, []
    pairs = [(turns[i][1].text, turns[i + 1][0]) for i in range(len(turns) - 1)]
    return turns[0][0], [*pairs, (turns[-1][1].text, question)]


def _focused(vlm: VLM, session: DemoSession, question: str) -> EncodedInput:
    """The encoded input a VLM-route question is answered from: for a video question that names times (coarse
    to fine), the video re-encoded with its frames focused on them (`longvlm.pipeline.encode`: only those
    stretches are decoded; remembered per set of times), else the session's own."""
    times = tuple(time_references(question, session.duration_s)) if session.kind == "video" else ()
    if not times or session.encoded.options.memory is not None:
        return session.encoded
    if times not in session.focused:
        if len(session.focused) >= 4:  # bounded: the oldest focus goes
            session.focused.pop(next(iter(session.focused)))
        session.focused[times] = encode(vlm, session.path, session.encoded.options, question=question,
                                        kind="video")
    return session.focused[times]


def stream_answer(vlm: VLM | None, session: DemoSession, question: str, *, max_new_tokens: int | None = None,
                  kv_press=None, timeout_s: float = 600.0) -> Iterator[tuple[str, Answer | None]]:
    """Yield (text so far, None) while the model generates, then (final text, Answer) once; the turn is then
    added to the session. VLM route: earlier turns are passed as follow-ups, with the same encoded input.
    Text route: each question retrieves its own passages (earlier turns are shown, not re-read)."""
    if not question or not question.strip():
        raise InputError("the question is empty: type a question first")
    question = question.strip()
    if session.route == "text":

        extra = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
        result = answer_from_items(question, session.items, key=session.text_key, **extra)
        session.history.append((question, result))
        yield result.text, result
        return
    first, follow_ups = _turns(session, question)
    encoded = _focused(vlm, session, question)
    streamer = TextIteratorStreamer(vlm.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=timeout_s)
    outcome: dict = {}
    extra = {"kv_press": kv_press} if kv_press is not None else {}

    def run() -> None:
        try:
            outcome["answer"] = answer(vlm, encoded, first, follow_ups=follow_ups,
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

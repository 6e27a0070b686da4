"""Text of PDF pages (text layer, OCR for pages without one) and of video frames (on-screen text by OCR).

These are the items that question-aware selection ranks and the text route reads. OCR results are cached in
the user cache (`~/.cache/longvlm/ocr/`), per page or frame, keyed by the file's SHA-256 and the OCR settings,
so a document is read once. OCR is bounded per call (`longvlm.limits`: pages, frames and seconds); what a call
had to skip is in the `stats` of the `TextItems` it returns, and the next call continues from the cache.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from longvlm.ingest.cache import cache_dir, file_sha256, read_json, write_json
from longvlm.retrieval.ocr import OcrEngine
from longvlm.ingest.pdf import PdfDocument
from longvlm.ingest.sampling import spread_order
from longvlm.ingest.video import VideoReader
from longvlm.errors import ConfigError, InputError
from longvlm.limits import OCR_BUDGET_S, OCR_MAX_PAGES, VIDEO_TEXT_BUDGET_S, VIDEO_TEXT_MAX_FRAMES

OCR_POLICIES = ("auto", "always", "never")
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TextItem:
    """The text of one page or video frame, and where it came from."""

    kind: str  # "page" | "frame" | "image"
    index: int  # 0-based page index, frame index in the video, or 0-based image index
    text: str
    source: str  # "layer" (PDF text layer), "ocr", "layer+ocr", or "none" (no text found)
    label: str = ""  # printed page label
    timestamp: float | None = None  # frames: seconds from the start
    extra: str = ""  # retrieval-only text (e.g. the section heading a page continues), ranked, not read
    printed: tuple[int, ...] = ()  # page numbers printed on the page (`printed_page_numbers`), e.g. (16, 17)

    @property
    def number(self) -> int:
        """1-based page number (pages) or the frame index (frames)."""
        return self.index + 1 if self.kind == "page" else self.index

    def cite(self) -> str:
        """'p.3' for pages, '12.0s' for frames, 'image 0' for images."""
        if self.kind == "frame":
            return f"{self.timestamp:.1f}s"
        return f"p.{self.index + 1}" if self.kind == "page" else f"image {self.index}"


def table_text(tables: Sequence[Sequence[Sequence[str | None]]]) -> str:
    """Tables (lists of rows of cells, as PyMuPDF's `Table.extract()` gives them) as text: one line per row,
    cells joined by ' | ', each row led by its table's header cells when the header is not the row itself."""
    lines = []
    for table in tables:
        rows = [[" ".join((c or "").split()) for c in row] for row in table]
        rows = [r for r in rows if any(r)]
        if not rows:
            continue
        header = rows[0]
        for row in rows:
            cells = [c for c in row if c]
            if row is not header and any(header):
                cells = [f"{h}: {c}" if h and c else c for h, c in zip(header, row) if c]
            lines.append(" | ".join(cells))
    return "\n".join(lines)


def body_font_size(pages_lines: Iterable[Iterable[tuple[str, float]]]) -> float:
    """The most common font size, weighted by characters, over (text, size) lines of a document."""
    weight: dict[float, int] = {}
    for lines in pages_lines:
        for text, size in lines:
            weight[round(size, 1)] = weight.get(round(size, 1), 0) + len(text)
    return max(weight, key=weight.get) if weight else 0.0


def page_headings(lines: Sequence[tuple[str, float]], body_size: float, ratio: float = 1.15,
                  max_words: int = 14) -> list[str]:
    """Lines set in a font at least `ratio` times the body size, of at most `max_words` words (headings)."""
    return [t for t, size in lines if body_size and size >= ratio * body_size and 0 < len(t.split()) <= max_words]


def carried_headings(headings: Sequence[Sequence[str]]) -> list[str]:
    """Per page, the last heading of the pages before it when the page has none of its own (the section it
    continues), else ''."""
    out, last = [], ""
    for own in headings:
        out.append("" if own else last)
        if own:
            last = own[-1]
    return out


PAGE_EXTRAS = ("headings", "tables")


def pdf_page_extras(path: str | os.PathLike, count: int, extras: Sequence[str] = ("headings",)) -> list[str]:
    """Retrieval-only text of the first `count` pages (`TextItem.extra`): "headings", the heading a page
    continues (`carried_headings`, from font sizes of the text layer: ~4 ms a page), and "tables", the rows of
    the tables PyMuPDF finds (`table_text`; slow: ~0.4 s a page, so cached per file in the user cache)."""
    unknown = set(extras) - set(PAGE_EXTRAS)
    if unknown:
        raise ConfigError(f"unknown page extras {sorted(unknown)}; choose from {PAGE_EXTRAS}")
    out = [[] for _ in range(count)]
    if not extras or not count:
        return ["" for _ in range(count)]
    import pymupdf

    with pymupdf.open(path) as doc:
        if "tables" in extras:
            cache_file = cache_dir("tables") / f"{file_sha256(path)}.json"
            loaded = read_json(cache_file)
            tables: dict[str, str] = loaded if isinstance(loaded, dict) else {}
            todo = [i for i in range(count) if str(i) not in tables]
            for i in todo:
                try:
                    tables[str(i)] = table_text([t.extract() for t in doc[i].find_tables().tables])
                except Exception:  # noqa: BLE001 - a page whose tables cannot be parsed just has none
                    tables[str(i)] = ""
            if todo:
                write_json(cache_file, tables)
            for i in range(count):
                out[i].append(tables[str(i)])
        if "headings" in extras:
            lines = []
            for i in range(count):
                page_lines = []
                try:
                    blocks = doc[i].get_text("dict")["blocks"]
                except Exception:  # noqa: BLE001
                    blocks = []
                for block in blocks:
                    for line in block.get("lines", ()):
                        text = "".join(span["text"] for span in line["spans"]).strip()
                        if text:
                            page_lines.append((text, max(span["size"] for span in line["spans"])))
                lines.append(page_lines)
            body = body_font_size(lines)
            for i, heading in enumerate(carried_headings([page_headings(x, body) for x in lines])):
                out[i].append(heading)
    return ["\n".join(t for t in parts if t) for parts in out]


_EDGE_NUMBER = re.compile(r"^(?:page\s+)?(\d{1,4})(?:\s{2,}|\s*[|•·]\s*|$)|(?:\s{2,}|\s*[|•·]\s*|^)(\d{1,4})$",
                          re.I)


def edge_numbers(text: str, lines: int = 3) -> set[int]:
    """Numbers standing alone, or set apart by two blanks or a bar, at either end of one of the first or last
    `lines` short lines of a page's text: where headers and footers print page numbers ('17',
    'Page 4', '16  Graduate Studies', 'Annual Report | 5')."""
    kept = [line.strip() for line in text.split("\n") if line.strip()]
    found = set()
    for line in kept[:lines] + kept[-lines:]:
        match = _EDGE_NUMBER.search(line) if len(line.split()) <= 10 else None
        if match and int(match.group(1) or match.group(2)) > 0:
            found.add(int(match.group(1) or match.group(2)))
    return found


def printed_page_numbers(texts: Sequence[str], window: int = 3) -> list[tuple[int, ...]]:
    """The page numbers printed on each page: `edge_numbers` that agree with a page within `window` pages
    (its number differs by the page distance, or by twice it for two printed pages a sheet), so a stray
    number in a footer is not taken for one. Questions name pages by what is printed ('page 9' of a report
    whose cover and contents come first is the 12th PDF page); `QuestionSelector` uses these."""
    candidates = [edge_numbers(t) for t in texts]
    printed = []
    for i, numbers in enumerate(candidates):
        near = range(max(0, i - window), min(len(texts), i + window + 1))
        printed.append(tuple(sorted(n for n in numbers if any(
            other - n in (j - i, 2 * (j - i)) for j in near if j != i for other in candidates[j]))))
    return printed


def needs_ocr(words: int, image_coverage: float, policy: str = "auto") -> bool:
    """Whether a page should be OCR'd: 'auto' does it when the text layer is (nearly) empty, or short while
    images cover most of the page (scans with a stamped header, slides exported as pictures)."""
    if policy not in OCR_POLICIES:
        raise ConfigError(f"unknown OCR policy {policy!r}; choose one of {OCR_POLICIES}")
    if policy != "auto":
        return policy == "always"
    return words < 5 or (words < 50 and image_coverage > 0.5)


class TextItems(list):
    """A list of `TextItem`s plus `stats`: what text extraction read, took from the cache and skipped because of
    its budgets (e.g. `ocr_pages_skipped` and an `ocr_note` saying which pages were not OCR'd)."""

    def __init__(self, items: Iterable[TextItem] = (), stats: dict | None = None) -> None:
        super().__init__(items)
        self.stats: dict = dict(stats or {})


def _check_budget(name: str, value: float | None) -> None:
    if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ConfigError(f"{name} must be a number >= 0 or None (no limit), got {value!r}")


def number_ranges(numbers: Iterable[int], limit: int = 4) -> str:
    """'2-24, 26, 30-31, ... (12 ranges)': sorted numbers as ranges, the first `limit` of them."""
    runs: list[list[int]] = []
    for n in sorted(set(numbers)):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    shown = ", ".join(f"{a:,}" if a == b else f"{a:,}-{b:,}" for a, b in runs[:limit])
    return shown + (f", ... ({len(runs):,} ranges)" if len(runs) > limit else "")


def clock(seconds: float) -> str:
    """'1:02:03' or '2:05' (minutes:seconds) for a time in seconds."""
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def pdf_page_texts(path: str | os.PathLike, *, ocr: str = "auto", engine: OcrEngine | None = None,
                   ocr_dpi: float = 144.0, ocr_max_pixels: int = 1_000_000, max_pages: int | None = None,
                   progress: ProgressFn | None = None, ocr_max_pages: int | None = OCR_MAX_PAGES,
                   ocr_budget_s: float | None = OCR_BUDGET_S, priority: Sequence[int] = (),
                   extras: Sequence[str] = ("headings",)) -> TextItems:
    """The text of every page (the first `max_pages` if given), OCR'ing pages per the `ocr` policy.

    OCR renders the page at `ocr_dpi`, bounded to `ocr_max_pixels`; results are cached per page, file and
    settings. One call OCRs at most `ocr_max_pages` pages not yet cached and stops starting new ones after
    `ocr_budget_s` seconds (None: no limit; at least one page is read when any is due): first the 0-based
    pages in `priority` (e.g. pages the question names), then the others in an even spread over the document
    (`spread_order`), so a budget-cut read still covers all of it and the next call continues where this one
    stopped. `extras`: retrieval-only text per page in `TextItem.extra` (`pdf_page_extras`; default the section
    heading a page continues). `stats` of the result say what was read, cached and skipped. Progress: ("read", pages, pages)
    once the text layer is read, then ("ocr", pages with OCR text so far, pages that need OCR).
    """
    if ocr not in OCR_POLICIES:
        raise ConfigError(f"unknown OCR policy {ocr!r}; choose one of {OCR_POLICIES}")
    _check_budget("ocr_max_pages", ocr_max_pages)
    _check_budget("ocr_budget_s", ocr_budget_s)
    started = time.perf_counter()
    with PdfDocument(path) as doc:
        count = doc.page_count if max_pages is None else min(doc.page_count, max_pages)
        layers = [doc.page_text(i) for i in range(count)]
        wanted = [i for i in doc.usable_pages(range(count))  # pages no model/OCR can read: InputError if all
                  if ocr != "never" and needs_ocr(len(layers[i].split()), doc.image_coverage(i), ocr)]
        if progress is not None:
            progress("read", count, count)
        cached: dict[str, str] = {}
        cache_file = None
        if wanted:
            engine = engine or OcrEngine()
            cache_file = cache_dir("ocr") / f"{file_sha256(path)}-pdf-{ocr_dpi:g}-{ocr_max_pixels}-{engine.min_score:g}.json"
            loaded = read_json(cache_file)
            cached = loaded if isinstance(loaded, dict) else {}

        wanted_set = set(wanted)
        first = [i for i in dict.fromkeys(priority) if i in wanted_set and str(i) not in cached]
        spread = [wanted[j] for j in spread_order(len(wanted))]  # the same order every call: later calls continue it
        firsts = set(first)
        order = first + [i for i in spread if str(i) not in cached and i not in firsts]
        from_cache = len(wanted) - len(order)
        read_now = 0
        for i in order:
            elapsed = time.perf_counter() - started
            if (ocr_max_pages is not None and read_now >= ocr_max_pages) or \
                    (ocr_budget_s is not None and read_now > 0 and elapsed >= ocr_budget_s):
                break
            cached[str(i)] = engine.text(doc.render(i, dpi=ocr_dpi, max_pixels=ocr_max_pixels))
            write_json(cache_file, cached)  # after every page: an interrupted run keeps its work
            read_now += 1
            if progress is not None:
                progress("ocr", from_cache + read_now, len(wanted))
        items = TextItems()
        extra_text = pdf_page_extras(path, count, extras)
        texts, sources = [], []
        for i in range(count):
            ocr_text = cached.get(str(i), "").strip() if i in wanted_set else ""
            layer = layers[i].strip()
            texts.append("\n".join(t for t in (layer, ocr_text) if t))
            sources.append("layer+ocr" if layer and ocr_text else "ocr" if ocr_text else "layer" if layer else "none")
        for i, printed in enumerate(printed_page_numbers(texts)):
            items.append(TextItem("page", i, texts[i], sources[i], label=doc.page_label(i), printed=printed,
                                  extra=extra_text[i]))
    skipped = [i for i in wanted if str(i) not in cached]
    items.stats = {"pages": count, "ocr_pages_wanted": len(wanted), "ocr_pages_read": read_now,
                   "ocr_pages_cached": from_cache, "ocr_pages_skipped": len(skipped),
                   "time_page_text_s": time.perf_counter() - started}
    if skipped:
        reason = (f"page budget {ocr_max_pages:,}" if ocr_max_pages is not None and read_now >= ocr_max_pages
                  else f"time budget {ocr_budget_s:g} s")
        items.stats["ocr_note"] = (
            f"OCR read {len(wanted) - len(skipped):,} of the {len(wanted):,} pages that need it (no usable text layer) "
            f"({read_now:,} now, {reason}; {from_cache:,} from the cache); {len(skipped):,} pages were not OCR'd "
            f"and were searched without their text: pages {number_ranges(i + 1 for i in skipped)}. Asking again "
            "continues with them (OCR results are cached).")
    return items


def _thumbnail(frame: np.ndarray, width: int = 320) -> np.ndarray:
    """Grey thumbnail `width` pixels wide (aspect kept), int16 for differencing."""
    image = Image.fromarray(frame).convert("L")
    height = max(1, round(image.height * width / image.width))
    return np.asarray(image.resize((width, height), Image.BILINEAR), dtype=np.int16)


def frame_changed(a: np.ndarray, b: np.ndarray, change_fraction: float = 0.002, level: int = 32) -> bool:
    """Whether two thumbnails differ: more than `change_fraction` of pixels changed by more than `level`
    grey levels (compression noise stays below it; a new caption or slide does not)."""
    return float((np.abs(a - b) > level).mean()) > change_fraction


class _FrameGrabber:
    """The text route's frame reads: single frames of a `VideoReader` (`read_frame`: a seek, the decoder parked
    after every read), sampled near key frames (`VideoReader.snap_to_key_frame`). A frame that does not decode
    (a damaged stretch of the file) comes back as None, its reason kept in `errors`: it is skipped now and
    tried again by the next call."""

    def __init__(self, video: VideoReader | str | os.PathLike) -> None:
        self.video = video if isinstance(video, VideoReader) else VideoReader(video)
        self.errors: list[str] = []  # why frames did not decode

    @property
    def keys(self) -> list[int]:
        """The video's key frames (`VideoReader.key_frames`)."""
        return self.video.key_frames

    def frame(self, index: int) -> np.ndarray | None:
        """The RGB frame `index` (None when it does not decode)."""
        try:
            return self.video.read_frame(index)
        except InputError as exc:
            self.errors.append(exc.problem)
            return None


def _ocr_input(frame: np.ndarray, max_pixels: int) -> np.ndarray:
    """`frame` scaled down (aspect kept) to at most `max_pixels` for OCR (a 4K frame is read at ~1 Mpx)."""
    height, width = frame.shape[:2]
    if height * width <= max_pixels:
        return frame
    scale = math.sqrt(max_pixels / (height * width))
    size = (max(1, int(width * scale)), max(1, int(height * scale)))
    return np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR))


READ_SHARE = 0.5
"""Share of a video's text budget that reading frames (seek + decode + thumbnail) may take; OCR gets the rest."""


def _load_thumbs(path) -> dict[int, np.ndarray]:
    """Cached frame thumbnails: {frame index: uint8 grey thumbnail}."""
    try:
        with np.load(path) as data:
            return dict(zip(data["indices"].tolist(), data["thumbs"]))
    except (OSError, ValueError, KeyError):
        return {}


def _save_thumbs(path, thumbs: dict[int, np.ndarray]) -> None:
    """Write the thumbnail cache atomically (all thumbnails of a video have one shape)."""
    import tempfile

    order = sorted(thumbs)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    with os.fdopen(fd, "wb") as fh:
        np.savez(fh, indices=np.asarray(order, dtype=np.int64),
                 thumbs=np.stack([thumbs[i] for i in order]) if order else np.zeros((0, 1, 1), np.uint8))
    os.replace(tmp, path)


def video_frame_texts(path: str | os.PathLike, *, every_s: float = 2.0, engine: OcrEngine | None = None,
                      change_fraction: float = 0.002, max_frames: int | None = None,
                      progress: ProgressFn | None = None, budget_s: float | None = VIDEO_TEXT_BUDGET_S,
                      ocr_max_pixels: int = 1_000_000) -> TextItems:
    """On-screen text of frames sampled every `every_s` seconds (at most `max_frames`, spread evenly; None:
    `VIDEO_TEXT_MAX_FRAMES`), within `budget_s` seconds (None: no limit).

    A sample is the key frame before its time when that is less than 3/4 of the sampling interval earlier
    (cheap: a seek and one decoded picture), else the exact frame. Two passes, each coarse to fine
    (`spread_order`), so a budget-cut pass still covers the whole video: (1) read frames as 320-pixel-wide
    grey thumbnails (for at most `READ_SHARE` of the budget) and group runs of consecutive frames that have not
    changed since the run's first one (`frame_changed`); (2) OCR each run's first frame (scaled to
    `ocr_max_pixels`) until the budget is spent. Static slides and captions are read once. Thumbnails and OCR
    text are cached per frame, so a later call continues where this one stopped. Frames not read in time are
    left out; runs not OCR'd in time come back with source "skipped" and no text; `stats` count both
    (`frames_skipped`) and `ocr_note` says what was skipped. Progress: ("read", done, to read), ("ocr", done,
    runs). At least one frame is read and one run OCR'd per call.
    """
    if not (isinstance(every_s, (int, float)) and math.isfinite(every_s) and every_s > 0):
        raise ConfigError(f"every_s must be a positive number of seconds, got {every_s}")
    _check_budget("budget_s", budget_s)
    if max_frames is not None and max_frames < 1:
        raise ConfigError(f"max_frames must be at least 1, got {max_frames}")
    started = time.perf_counter()
    cap = max_frames or VIDEO_TEXT_MAX_FRAMES
    reader = VideoReader(path)  # checks the file (InputError), warns when it is truncated
    meta = reader.metadata
    targets = reader.indices(fps=1.0 / every_s, max_frames=cap)
    engine = engine or OcrEngine()
    grab = _FrameGrabber(reader)
    interval = (targets[-1] - targets[0]) / (len(targets) - 1) if len(targets) > 1 else every_s * meta.fps
    chosen = sorted({reader.snap_to_key_frame(i, int(0.75 * interval)) for i in targets})
    stem = cache_dir("ocr") / f"{file_sha256(path)}-frames"
    thumb_file = stem.with_name(stem.name + "-thumbs.npz")
    text_file = stem.with_name(stem.name + f"-{ocr_max_pixels}-{engine.min_score:g}.json")

    # pass 1: thumbnails, coarse to fine, for at most READ_SHARE of the budget
    thumbs, bad = _load_thumbs(thumb_file), set()  # frames that do not decode are tried again next time
    todo = [chosen[j] for j in spread_order(len(chosen)) if chosen[j] not in thumbs]
    known = len(chosen) - len(todo)
    read_deadline = None if budget_s is None else started + READ_SHARE * budget_s
    read_now = 0
    for index in todo:
        if read_now and read_deadline is not None and time.perf_counter() >= read_deadline:
            break
        frame = grab.frame(index)
        if frame is None:
            bad.add(index)
        else:
            thumbs[index] = _thumbnail(frame).astype(np.uint8)
        read_now += 1
        if progress is not None:
            progress("read", known + read_now, len(chosen))
    if len(bad) < read_now:  # some new thumbnails
        _save_thumbs(thumb_file, thumbs)
    frames = [i for i in chosen if i in thumbs]
    runs: list[list[int]] = []
    for i in frames:
        if not runs or frame_changed(thumbs[i].astype(np.int16), thumbs[runs[-1][0]].astype(np.int16),
                                     change_fraction):
            runs.append([i])
        else:
            runs[-1].append(i)
    del thumbs
    # pass 2: OCR each run's first frame (any frame of a run with cached text stands for it), coarse to fine
    loaded = read_json(text_file)
    texts: dict[str, str] = loaded if isinstance(loaded, dict) else {}
    pending = [r for r, run in enumerate(runs) if not any(str(i) in texts for i in run)]
    deadline = None if budget_s is None else started + budget_s
    ocr_now = 0
    for j in spread_order(len(pending)):
        if ocr_now and deadline is not None and time.perf_counter() >= deadline:
            break
        first = runs[pending[j]][0]
        frame = grab.frame(first)
        if frame is None:  # read as a thumbnail, but not now: left for the next call
            continue
        texts[str(first)] = engine.text(_ocr_input(frame, ocr_max_pixels))
        write_json(text_file, texts)  # after every frame: an interrupted run keeps its work
        ocr_now += 1
        if progress is not None:
            progress("ocr", len(runs) - len(pending) + ocr_now, len(runs))
    items = TextItems()
    stamps = dict(zip(frames, reader.timestamps(frames)))
    skipped: list[int] = []
    spans: list[list[float]] = []  # time spans of the runs not OCR'd (adjacent ones merged)
    previous_skipped = False
    for run in runs:
        text = next((texts[str(i)] for i in run if str(i) in texts), None)
        for i in run:
            items.append(TextItem("frame", i, text or "", "skipped" if text is None else "ocr" if text else "none",
                                  timestamp=stamps[i]))
        if text is None:
            skipped += run
            if previous_skipped:
                spans[-1][1] = stamps[run[-1]]
            else:
                spans.append([stamps[run[0]], stamps[run[-1]]])
        previous_skipped = text is None
    unreadable = len(bad)
    unread = len(chosen) - len(frames) - unreadable
    ocr_read = len(runs) - len(pending) + ocr_now
    items.stats = {"frames_sampled": len(chosen), "frames_read": len(frames), "frames_unreadable": unreadable,
                   "frame_runs": len(runs), "frames_ocr_read": ocr_now, "frames_ocr_cached": ocr_read - ocr_now,
                   "frames_skipped": unread + unreadable + len(skipped),
                   "time_frame_text_s": time.perf_counter() - started}
    if unread or unreadable or skipped:
        spacing = max(every_s, interval / meta.fps)
        parts = [f"{len(chosen):,} frames sampled (every {spacing:.3g} s, at most {cap:,})"]
        if unreadable:
            parts.append(f"{unreadable:,} did not decode ({grab.errors[0]})")
        if unread:
            parts.append(f"{unread:,} were not read yet (reading may take {READ_SHARE:.0%} of the {budget_s:g} s "
                         "time budget)")
        parts.append(f"OCR read {ocr_read:,} of {len(runs):,} distinct scenes ({ocr_now:,} now, "
                     f"{ocr_read - ocr_now:,} from the cache)")
        if skipped:
            where = ", ".join(clock(a) if a == b else f"{clock(a)}-{clock(b)}" for a, b in spans[:4])
            where += f", ... ({len(spans):,} stretches)" if len(spans) > 4 else ""
            parts.append(f"{len(skipped):,} frames (at {where}) were not OCR'd within the {budget_s:g} s time "
                         "budget and were searched without their text")
        if unread or skipped:
            parts.append("asking again continues with them (thumbnails and OCR results are cached)")
        items.stats["ocr_note"] = "; ".join(parts) + "."
    return items

"""Text of PDF pages (text layer, OCR for pages without one) and of video frames (on-screen text by OCR).

These are the items that question-aware selection ranks and the text route reads. OCR results are cached in
the user cache (`~/.cache/longvlm/ocr/`), keyed by the file's SHA-256 and the OCR settings, so a document
is read once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from longvlm.datasets.cache import cache_dir, file_sha256, read_json, write_json
from longvlm.datasets.ocr import OcrEngine
from longvlm.datasets.pdf import PdfDocument
from longvlm.datasets.video import VideoReader
from longvlm.errors import ConfigError

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

    @property
    def number(self) -> int:
        """1-based page number (pages) or the frame index (frames)."""
        return self.index + 1 if self.kind == "page" else self.index

    def cite(self) -> str:
        """'p.3' for pages, '12.0s' for frames, 'image 0' for images."""
        if self.kind == "frame":
            return f"{self.timestamp:.1f}s"
        return f"p.{self.index + 1}" if self.kind == "page" else f"image {self.index}"


def needs_ocr(words: int, image_coverage: float, policy: str = "auto") -> bool:
    """Whether a page should be OCR'd: 'auto' does it when the text layer is (nearly) empty, or short while
    images cover most of the page (scans with a stamped header, slides exported as pictures)."""
    if policy not in OCR_POLICIES:
        raise ConfigError(f"unknown OCR policy {policy!r}; choose one of {OCR_POLICIES}")
    if policy != "auto":
        return policy == "always"
    return words < 5 or (words < 50 and image_coverage > 0.5)


def pdf_page_texts(path: str | os.PathLike, *, ocr: str = "auto", engine: OcrEngine | None = None,
                   ocr_dpi: float = 144.0, ocr_max_pixels: int = 1_000_000, max_pages: int | None = None,
                   progress: ProgressFn | None = None) -> list[TextItem]:
    """The text of every page (the first `max_pages` if given), OCR'ing pages per the `ocr` policy.

    OCR renders the page at `ocr_dpi`, bounded to `ocr_max_pixels`. Results are cached per file and settings.
    """
    if ocr not in OCR_POLICIES:
        raise ConfigError(f"unknown OCR policy {ocr!r}; choose one of {OCR_POLICIES}")
    with PdfDocument(path) as doc:
        count = doc.page_count if max_pages is None else min(doc.page_count, max_pages)
        layers = [doc.page_text(i) for i in range(count)]
        wanted = [i for i in range(count)
                  if ocr != "never" and needs_ocr(len(layers[i].split()), doc.image_coverage(i), ocr)]
        cached: dict[str, str] = {}
        cache_file = None
        if wanted:
            engine = engine or OcrEngine()
            cache_file = cache_dir("ocr") / f"{file_sha256(path)}-pdf-{ocr_dpi:g}-{ocr_max_pixels}-{engine.min_score:g}.json"
            cached = read_json(cache_file) or {}
        done = 0
        for i in wanted:
            if str(i) not in cached:
                cached[str(i)] = engine.text(doc.render(i, dpi=ocr_dpi, max_pixels=ocr_max_pixels))
                write_json(cache_file, cached)  # after every page: an interrupted run keeps its work
            done += 1
            if progress is not None:
                progress("ocr", done, len(wanted))
        items = []
        for i in range(count):
            layer, extra = layers[i].strip(), cached.get(str(i), "").strip() if i in wanted else ""
            text = "\n".join(t for t in (layer, extra) if t)
            source = "layer+ocr" if layer and extra else "ocr" if extra else "layer" if layer else "none"
            items.append(TextItem("page", i, text, source, label=doc.page_label(i)))
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


def video_frame_texts(path: str | os.PathLike, *, every_s: float = 2.0, engine: OcrEngine | None = None,
                      change_fraction: float = 0.002, max_frames: int | None = None,
                      progress: ProgressFn | None = None) -> list[TextItem]:
    """On-screen text of frames sampled every `every_s` seconds (at most `max_frames`, spread evenly).

    A frame that has not changed since the last OCR'd frame (`frame_changed` on 320-pixel-wide grey
    thumbnails) reuses its text: static slides and captions are read once.
    """
    if every_s <= 0:
        raise ConfigError(f"every_s must be positive, got {every_s}")
    reader = VideoReader(path)
    indices = reader.indices(fps=1.0 / every_s, max_frames=max_frames)
    engine = engine or OcrEngine()
    cache_file = cache_dir("ocr") / f"{file_sha256(path)}-video-{every_s:g}-{max_frames}-{change_fraction:g}-{engine.min_score:g}.json"
    cached = read_json(cache_file)
    if isinstance(cached, list) and len(cached) == len(indices):
        return [TextItem("frame", r["index"], r["text"], r["source"], timestamp=r["timestamp"]) for r in cached]
    items: list[TextItem] = []
    last_thumb, last_text = None, ""
    for chunk in reader.iter_chunks(indices, 16):
        for frame, index, stamp in zip(chunk.frames, chunk.indices, chunk.timestamps):
            thumb = _thumbnail(frame)
            if last_thumb is None or frame_changed(thumb, last_thumb, change_fraction):
                last_thumb, last_text = thumb, engine.text(frame)
            items.append(TextItem("frame", index, last_text, "ocr" if last_text else "none", timestamp=stamp))
            if progress is not None:
                progress("ocr", len(items), len(indices))
    write_json(cache_file, [{"index": it.index, "text": it.text, "source": it.source, "timestamp": it.timestamp}
                            for it in items])
    return items

"""Pictures of what the model saw: page thumbnails, frames at timestamps, a page at reading size.

Only a handful of frames/pages are decoded for display (evenly spread over what the model was given), so
an hour-long video or a 300-page PDF costs a few dozen decodes here, not thousands.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from longvlm.ingest.pdf import PdfDocument
from longvlm.ingest.video import VideoReader
from longvlm.errors import InputError
from longvlm.ingest.kinds import SUFFIXES, detect_kind

PDF_SUFFIXES = SUFFIXES["pdf"]
VIDEO_SUFFIXES = SUFFIXES["video"]


@dataclass(frozen=True)
class Thumbnail:
    """A small picture of one thing the model saw, with its caption and jump target ('p:3' or 't:12.5')."""

    image: Image.Image
    caption: str
    target: str


def format_time(seconds: float) -> str:
    """'m:ss' below an hour, 'h:mm:ss' from an hour on (seconds rounded down)."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def spread(items: Sequence, count: int) -> list:
    """At most `count` items evenly spread over `items`, always including the first and the last."""
    n = len(items)
    if count <= 0 or n == 0:
        return []
    if n <= count:
        return list(items)
    if count == 1:
        return [items[0]]
    return [items[round(i * (n - 1) / (count - 1))] for i in range(count)]


def input_kind(path: str) -> str:
    """'pdf' or 'video' (`longvlm.ingest.kinds.detect_kind`); `InputError` for anything else."""
    return detect_kind(path, allowed=("pdf", "video"))


def _fit(image: Image.Image, max_side: int) -> Image.Image:
    scale = max_side / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


def page_thumbnails(path: str, pages: Sequence[int], *, max_side: int = 240) -> list[Thumbnail]:
    """Thumbnails of 1-based `pages` of a PDF, captioned with page number (and printed label if different)."""
    thumbs = []
    with PdfDocument(path) as doc:
        for number in pages:
            image = doc.render(number - 1, dpi=72, max_pixels=max_side * max_side * 2)
            label = doc.page_label(number - 1)
            caption = f"p.{number}" if label == str(number) else f"p.{number} ({label})"
            thumbs.append(Thumbnail(_fit(image, max_side), caption, f"p:{number}"))
    return thumbs


def render_page(path: str, page: int, *, max_pixels: int = 1600 * 1200) -> Image.Image:
    """Page `page` (1-based) at reading size (144 dpi, at most `max_pixels`)."""
    with PdfDocument(path) as doc:
        if not 1 <= page <= doc.page_count:
            raise InputError(path, f"page {page} does not exist (the document has {doc.page_count} pages)")
        return doc.render(page - 1, dpi=144, max_pixels=max_pixels)


def frame_thumbnails(path: str, frame_indices: Sequence[int], *, max_side: int = 240) -> list[Thumbnail]:
    """Thumbnails of the given frames (non-decreasing indices) captioned with their timestamps."""
    if not frame_indices:
        return []
    chunk = VideoReader(path).read(list(frame_indices))
    return [Thumbnail(_fit(Image.fromarray(frame), max_side), format_time(t), f"t:{t:.3f}")
            for frame, t in zip(chunk.frames, chunk.timestamps)]


def file_size_mb(path: str) -> float:
    """Size of a file in MiB (`InputError` if it is missing)."""
    try:
        return os.path.getsize(path) / (1024 * 1024)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None

"""PDF ingestion with PyMuPDF: page count, page rendering, text layer and page labels."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator

from PIL import Image

from longvlm.ingest.images import aspect_problem
from longvlm.errors import InputError, short_reason


class PdfDocument:
    """An opened PDF. Use as a context manager or call `close()`.

    Raises `InputError` (naming the file) for missing, empty, corrupt, encrypted or zero-page files, and for
    other files under a .pdf name (PyMuPDF also opens images: `is_pdf` tells them apart).
    Pages are addressed by 0-based index; `page_number` in outputs elsewhere is 1-based. Pages whose aspect
    ratio is above `MAX_ASPECT_RATIO` cannot be rendered for a model or OCR: `usable_pages` leaves them out
    and records them in `skipped_pages`.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        import pymupdf

        self.path = str(path)
        if not os.path.isfile(self.path):
            raise InputError(self.path, "PDF file not found")
        if os.path.getsize(self.path) == 0:
            raise InputError(self.path, "PDF file is empty (0 bytes)")
        try:
            doc = pymupdf.open(self.path, filetype="pdf")
        except Exception as exc:  # pymupdf raises FileDataError / RuntimeError variants for broken files
            raise InputError(self.path, f"corrupt or not a PDF ({short_reason(exc)})") from exc
        if not doc.is_pdf:
            kind = (doc.metadata or {}).get("format") or "another format"
            doc.close()
            what = "an image" if kind.lower() == "image" else f"a {kind} document"
            raise InputError(self.path, f"not a PDF: the file holds {what}, only its name ends in .pdf")
        if doc.needs_pass or doc.is_encrypted:
            doc.close()
            raise InputError(self.path, "PDF is encrypted (password protected); decrypt it first")
        try:
            count = doc.page_count
        except Exception as exc:
            doc.close()
            raise InputError(self.path, f"corrupt PDF, pages cannot be counted ({short_reason(exc)})") from exc
        if count == 0:
            doc.close()
            raise InputError(self.path, "PDF has zero pages")
        self._doc = doc
        self.page_count = count
        self.skipped_pages: dict[int, str] = {}  # 1-based page number -> why `usable_pages` left it out

    def __enter__(self) -> PdfDocument:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the file."""
        self._doc.close()

    def __len__(self) -> int:
        return self.page_count

    def _page(self, index: int):
        if not 0 <= index < self.page_count:
            raise InputError(self.path, f"page index {index} out of range 0..{self.page_count - 1}")
        try:
            return self._doc[index]
        except Exception as exc:
            raise InputError(self.path, f"page {index + 1} cannot be loaded ({short_reason(exc)})") from exc

    def page_size(self, index: int, dpi: float = 72.0) -> tuple[int, int]:
        """(height, width) in pixels of page `index` rendered at `dpi`, without rendering it."""
        rect = self._page(index).rect
        scale = dpi / 72.0
        return max(1, math.ceil(rect.height * scale)), max(1, math.ceil(rect.width * scale))

    def page_problem(self, index: int) -> str:
        """Why page `index` cannot be rendered for a model or OCR ('' when it can): a zero-size page or an
        aspect ratio above `MAX_ASPECT_RATIO` (`longvlm.ingest.images.aspect_problem`). No page is loaded."""
        if not 0 <= index < self.page_count:
            raise InputError(self.path, f"page index {index} out of range 0..{self.page_count - 1}")
        try:
            rect = self._doc.page_cropbox(index)
        except Exception as exc:
            return f"page box cannot be read ({short_reason(exc)})"
        problem = aspect_problem(rect.width, rect.height)
        return f"{rect.width:g}x{rect.height:g} pt: {problem}" if problem else ""

    def page_usable(self, index: int) -> bool:
        """Whether page `index` can be rendered for a model or OCR (see `page_problem`)."""
        return not self.page_problem(index)

    def usable_pages(self, indices: Iterable[int]) -> list[int]:
        """The pages of `indices` (0-based) that can be rendered; the others are recorded in `skipped_pages`.
        Raises `InputError` when `indices` is not empty and none of them is usable."""
        wanted = list(indices)
        usable = []
        for index in wanted:
            problem = self.page_problem(index)
            if problem:
                self.skipped_pages[index + 1] = problem
            else:
                usable.append(index)
        if wanted and not usable:
            first = min(self.skipped_pages)
            more = f" (and {len(wanted) - 1} more)" if len(wanted) > 1 else ""
            raise InputError(self.path, f"no usable page: page {first} is {self.skipped_pages[first]}{more}")
        return usable

    def page_label(self, index: int) -> str:
        """The printed page label (e.g. 'iv', 'A-3'), or the 1-based page number when the PDF defines none."""
        label = self._page(index).get_label()
        return label or str(index + 1)

    def page_text(self, index: int) -> str:
        """The page's text layer ('' for scanned/image-only pages)."""
        try:
            return self._page(index).get_text("text")
        except Exception as exc:
            raise InputError(self.path, f"text of page {index + 1} cannot be read ({short_reason(exc)})") from exc

    def image_coverage(self, index: int) -> float:
        """Fraction of page `index` covered by images (clipped to the page, overlaps counted twice, max 1)."""
        import pymupdf

        page = self._page(index)
        area = abs(page.rect) or 1.0
        covered = sum(abs(pymupdf.Rect(info["bbox"]) & page.rect) for info in page.get_image_info())
        return min(1.0, covered / area)

    def render(self, index: int, *, dpi: float = 144.0, max_pixels: int | None = None) -> Image.Image:
        """Render page `index` to an RGB PIL image at `dpi`, scaled down so that h*w <= `max_pixels` if given."""
        import pymupdf

        problem = self.page_problem(index)
        if problem:
            raise InputError(self.path, f"page {index + 1} cannot be rendered ({problem})")
        page = self._page(index)
        scale = dpi / 72.0
        if max_pixels is not None:
            width, height = page.rect.width, page.rect.height
            if (width * scale + 1) * (height * scale + 1) > max_pixels:  # +1: pixmap sides round outward
                # largest s with (w*s + 1) * (h*s + 1) <= max_pixels
                b = width + height
                scale = (-b + math.sqrt(b * b - 4 * width * height * (1 - max_pixels))) / (2 * width * height)
        try:
            pix = page.get_pixmap(matrix=pymupdf.Matrix(scale, scale), alpha=False, colorspace=pymupdf.csRGB)
        except Exception as exc:
            raise InputError(self.path, f"page {index + 1} cannot be rendered ({short_reason(exc)})") from exc
        return Image.frombytes("RGB", (pix.width, pix.height), pix.samples)

    def iter_render(self, indices: list[int] | None = None, **render_kwargs) -> Iterator[tuple[int, Image.Image]]:
        """Render pages one at a time (only one page image alive at once)."""
        for index in range(self.page_count) if indices is None else indices:
            yield index, self.render(index, **render_kwargs)


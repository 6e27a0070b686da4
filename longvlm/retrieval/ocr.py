"""Read text in images (scanned pages, slides, video frames) with RapidOCR.

RapidOCR ships PP-OCR detection and recognition ONNX models inside its wheel (Apache-2.0) and runs them with
onnxruntime, so nothing is downloaded. It is an optional dependency (`pip install "longvlm[text]"`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from longvlm.errors import ConfigError, short_reason

OCR_MIN_SIDE_PX = 8
"""Shortest image side OCR looks at: 8 px. Nothing narrower holds a readable line of text (recognition works on
lines scaled to 48 px high); `OcrEngine.read` returns [] for it and says so in `last_skip`."""

OCR_FOLD_ASPECT = 4.0
"""Images longer than 4:1 are folded before OCR: cut into pieces along the long side, laid out as rows (wide
images) or columns (tall ones) of a ~2:1 picture, and the boxes mapped back. RapidOCR scales the short side of
the detection input up to 736 px, so a 50:1 strip became a 37,000x736 input (a time and memory bomb), and below
~16 px after its 2,000 px long-side cap its resize failed outright (a 4000x16 banner raised ResizeImgError)."""

OCR_MAX_INPUT_PIXELS = 4096 * 4096
"""Larger images are subsampled to at most 16.8 Mpx before OCR (RapidOCR reads at most 2,000 px a side, so no
readable detail is lost; this bounds the BGR copy made for it)."""


@dataclass(frozen=True)
class OcrLine:
    """One detected text line: its text, recognition confidence and bounding box (x0, y0, x1, y1) in pixels."""

    text: str
    score: float
    box: tuple[float, float, float, float]


def reading_order(lines: list[OcrLine]) -> str:
    """Join OCR lines into text: rows top to bottom (boxes whose vertical centres are within half a line
    height share a row), left to right within a row."""
    rows: list[list[OcrLine]] = []
    for line in sorted(lines, key=lambda ln: (ln.box[1] + ln.box[3]) / 2):
        centre = (line.box[1] + line.box[3]) / 2
        if rows:
            last = rows[-1][-1]
            height = max(1.0, last.box[3] - last.box[1])
            if abs(centre - (last.box[1] + last.box[3]) / 2) <= height / 2:
                rows[-1].append(line)
                continue
        rows.append([line])
    return "\n".join(" ".join(ln.text for ln in sorted(row, key=lambda ln: ln.box[0])) for row in rows)


class OcrEngine:
    """A RapidOCR instance, loaded on first use, running on `threads` CPU threads (default: $OMP_NUM_THREADS,
    else up to 2; on a CPU shared with other busy processes, 1 thread is much faster than 2).

    `min_score` drops lines recognised with lower confidence. The angle classifier is off: pages and frames
    are upright, and it costs time.
    """

    def __init__(self, threads: int | None = None, min_score: float = 0.5) -> None:
        self.threads = threads or int(os.environ.get("OMP_NUM_THREADS") or min(2, os.cpu_count() or 1))
        self.min_score = min_score
        self._engine = None
        self.last_skip: str | None = None  # why the last `read` returned nothing without reading (None: it read)

    @property
    def engine(self):
        if self._engine is None:
            try:
                from rapidocr import RapidOCR
            except ImportError as exc:
                raise ConfigError(f"OCR needs the rapidocr package ({exc}); install it with "
                                  "`pip install \"longvlm[text]\"`") from exc
            self._engine = RapidOCR(params={
                "Global.log_level": "error", "Global.use_cls": False, "Global.text_score": self.min_score,
                "EngineConfig.onnxruntime.intra_op_num_threads": self.threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1})
        return self._engine

    def read(self, image: Image.Image | np.ndarray) -> list[OcrLine]:
        """Text lines found in an RGB image (PIL, or an HxWx3 uint8 array; grey HxW and RGBA are accepted).

        Never raises on an image: one with a side under `OCR_MIN_SIDE_PX` gives [] (and `last_skip` says why);
        one longer than `OCR_FOLD_ASPECT` is folded (see there); a failure inside RapidOCR gives [] with the
        reason in `last_skip`. Raises ValueError only for arrays that are not images at all."""
        self.last_skip = None
        pixels = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[..., None], 3, axis=2)
        elif pixels.ndim == 3 and pixels.shape[2] == 4:
            pixels = pixels[..., :3]
        if pixels.ndim != 3 or pixels.shape[2] != 3:
            raise ValueError(f"expected an RGB image, got an array of shape {pixels.shape}")
        height, width = pixels.shape[:2]
        if min(height, width) < OCR_MIN_SIDE_PX:
            self.last_skip = (f"image of {width}x{height} px is too small to read (OCR needs at least "
                              f"{OCR_MIN_SIDE_PX} px a side)")
            return []
        if height * width > OCR_MAX_INPUT_PIXELS:
            step = math.ceil(math.sqrt(height * width / OCR_MAX_INPUT_PIXELS))
            pixels = pixels[::step, ::step]
        scale = (width / pixels.shape[1], height / pixels.shape[0])
        unfold = None
        if max(pixels.shape[:2]) > OCR_FOLD_ASPECT * min(pixels.shape[:2]):
            pixels, unfold = fold(pixels)
        engine = self.engine  # a missing package is a ConfigError, not an unreadable image
        try:
            # RapidOCR treats arrays as OpenCV images (BGR); give it BGR so colours are what it expects.
            out = engine(np.ascontiguousarray(pixels[..., ::-1]))
        except Exception as exc:  # noqa: BLE001 (any RapidOCR/OpenCV failure on an odd image: nothing read)
            self.last_skip = (f"OCR failed on an image of {width}x{height} px "
                              f"({type(exc).__name__}: {short_reason(exc)})")
            return []
        if out.txts is None or out.boxes is None:
            return []
        lines = []
        for text, score, box in zip(out.txts, out.scores, out.boxes):
            pts = np.asarray(box, dtype=np.float64).reshape(-1, 2)
            if text.strip() and score >= self.min_score:
                found = (pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())
                x0, y0, x1, y1 = unfold(found) if unfold is not None else found
                lines.append(OcrLine(text.strip(), float(score),
                                     (x0 * scale[0], y0 * scale[1], x1 * scale[0], y1 * scale[1])))
        return lines

    def text(self, image: Image.Image | np.ndarray) -> str:
        """All text in the image, in reading order (rows joined by newlines)."""
        return reading_order(self.read(image))


Box = tuple[float, float, float, float]


def fold(pixels: np.ndarray) -> tuple[np.ndarray, Callable[[Box], Box]]:
    """Fold an elongated HxWx3 image into a ~2:1 one for OCR: a wide image is cut into `n` pieces laid out
    as rows (a tall one: as columns side by side), separated by half a short side of its border colour.
    Returns the folded image and a function mapping a box (x0, y0, x1, y1) found in it back to the original.
    Reading order is kept: `reading_order` runs on the mapped-back boxes. A word cut by a fold may be split."""
    height, width = pixels.shape[:2]
    wide = width >= height
    long_side, short = (width, height) if wide else (height, width)
    pieces = max(2, math.ceil(math.sqrt(long_side / (3.0 * short))))  # ~2:1 after folding, gaps included
    piece = math.ceil(long_side / pieces)
    gap = max(2, short // 2)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    fill = np.median(border, axis=0).astype(pixels.dtype)
    across = pieces * short + (pieces - 1) * gap
    folded = np.empty((across, piece, 3) if wide else (piece, across, 3), pixels.dtype)
    folded[:] = fill
    for i in range(pieces):
        at = i * (short + gap)
        if wide:
            part = pixels[:, i * piece:(i + 1) * piece]
            folded[at:at + short, :part.shape[1]] = part
        else:
            part = pixels[i * piece:(i + 1) * piece]
            folded[:part.shape[0], at:at + short] = part

    def unfold(box: Box) -> Box:
        x0, y0, x1, y1 = box
        centre = (y0 + y1) / 2 if wide else (x0 + x1) / 2
        i = min(pieces - 1, max(0, int(centre // (short + gap))))
        shift, along = i * (short + gap), i * piece
        if wide:
            return (min(width, x0 + along), max(0.0, y0 - shift), min(width, x1 + along), min(height, y1 - shift))
        return (max(0.0, x0 - shift), min(height, y0 + along), min(width, x1 - shift), min(height, y1 + along))

    return folded, unfold

"""Read text in images (scanned pages, slides, video frames) with RapidOCR.

RapidOCR ships PP-OCR detection and recognition ONNX models inside its wheel (Apache-2.0) and runs them with
onnxruntime, so nothing is downloaded. It is an optional dependency (`pip install "longvlm[text]"`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from longvlm.errors import ConfigError


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

    @property
    def engine(self):
        if self._engine is None:
            try:
                from rapidocr import RapidOCR
            except ImportError as exc:
                raise ConfigError(f"OCR needs the rapidocr package ({exc}); install it with "
                                  "`pip install \"longvlm[text]\"`") from None
            self._engine = RapidOCR(params={
                "Global.log_level": "error", "Global.use_cls": False, "Global.text_score": self.min_score,
                "EngineConfig.onnxruntime.intra_op_num_threads": self.threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1})
        return self._engine

    def read(self, image: Image.Image | np.ndarray) -> list[OcrLine]:
        """Text lines found in an RGB image (PIL or HxWx3 uint8 array)."""
        pixels = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
        if pixels.ndim != 3 or pixels.shape[2] != 3:
            raise ValueError(f"expected an RGB image, got an array of shape {pixels.shape}")
        # RapidOCR treats arrays as OpenCV images (BGR); give it BGR so colours are what it expects.
        out = self.engine(np.ascontiguousarray(pixels[..., ::-1]))
        if out.txts is None or out.boxes is None:
            return []
        lines = []
        for text, score, box in zip(out.txts, out.scores, out.boxes):
            pts = np.asarray(box, dtype=np.float64).reshape(-1, 2)
            if text.strip() and score >= self.min_score:
                lines.append(OcrLine(text.strip(), float(score),
                                     (pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())))
        return lines

    def text(self, image: Image.Image | np.ndarray) -> str:
        """All text in the image, in reading order (rows joined by newlines)."""
        return reading_order(self.read(image))

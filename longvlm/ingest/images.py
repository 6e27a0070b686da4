"""Opening image files safely: size from the header first, limits checked before any pixel is decoded, and
decoding bounded to a pixel cap (JPEG draft mode, block-averaging in the image's own mode).

Every route opens images here (the VLM route's `encode_images`, the text route's OCR of images); the aspect
ratio limit also applies to video frames (`longvlm.ingest.video`) and PDF pages (`longvlm.ingest.pdf`).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image

from longvlm.errors import InputError, short_reason
from longvlm.limits import DECODE_MAX_PIXELS, MAX_ASPECT_RATIO, MAX_IMAGE_PIXELS

_STRIP_PIXELS = 4_000_000  # pixels per strip converted/averaged at a time when reducing (bounds the copies)
_PILLOW_CHECK = threading.Lock()


def aspect_problem(width: float, height: float) -> str:
    """Why a `width` x `height` picture cannot be used ('' when it can): a zero side, or an aspect ratio
    above `MAX_ASPECT_RATIO`."""
    if not (width > 0 and height > 0):
        return "zero size"
    ratio = max(width, height) / min(width, height)
    if ratio <= MAX_ASPECT_RATIO:
        return ""
    return f"aspect ratio {ratio:.4g}:1 is above the limit of {MAX_ASPECT_RATIO:g}:1"


def check_aspect(path: object, width: float, height: float, what: str = "image") -> None:
    """Raise `InputError` naming `path` when `what` ('image', 'video frames', ...) of `width` x `height` has
    an `aspect_problem`."""
    problem = aspect_problem(width, height)
    if problem:
        raise InputError(path, f"{what} of {width:g}x{height:g}: {problem} (nothing a model can read at that "
                               "shape)")


@contextmanager
def _header(path: str | os.PathLike) -> Iterator[Image.Image]:
    """The file opened lazily by Pillow (header read, no pixel decoded), its size checked against
    `MAX_IMAGE_PIXELS` and `MAX_ASPECT_RATIO`. Raises `InputError` naming `path` as given."""
    name = str(path)
    if not os.path.isfile(name):
        raise InputError(name, "image file not found" if not os.path.exists(name) else "not a file")
    if os.path.getsize(name) == 0:
        raise InputError(name, "image file is empty (0 bytes)")
    try:
        with _PILLOW_CHECK:  # our pixel limit replaces Pillow's bomb check, which fires while opening
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                image = Image.open(name)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except OSError as exc:  # UnidentifiedImageError, permission errors, broken headers
        raise InputError(name, f"unreadable image ({short_reason(exc)})") from exc
    with image:
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            raise InputError(name, f"image is {width}x{height} = {width * height:,} pixels, above the limit of "
                                   f"{MAX_IMAGE_PIXELS:,} pixels (a decompression bomb or an extreme scan); "
                                   "downscale it first")
        check_aspect(name, width, height)
        yield image


def image_size(image: str | os.PathLike | Image.Image) -> tuple[int, int]:
    """(height, width) of an image file from its header alone (nothing decoded), or of a PIL image; raises
    `InputError` for a missing or unreadable file, more than `MAX_IMAGE_PIXELS`, or an aspect ratio above
    `MAX_ASPECT_RATIO`."""
    if isinstance(image, Image.Image):
        check_aspect("image", image.width, image.height)
        return image.height, image.width
    with _header(image) as im:
        return im.height, im.width


def open_image(image: str | os.PathLike | Image.Image, max_pixels: int = DECODE_MAX_PIXELS) -> Image.Image:
    """An image file (or PIL image) as RGB of at most about `max_pixels` (capped at `DECODE_MAX_PIXELS`),
    aspect kept. The header is checked first (`image_size`); a JPEG decodes straight at a reduced scale
    (draft mode), other formats are block-averaged in their own mode, strip by strip, before the RGB
    conversion. Raises `InputError` naming the file as given."""
    cap = max(1, min(max_pixels, DECODE_MAX_PIXELS))
    if isinstance(image, Image.Image):
        check_aspect("image", image.width, image.height)
        return _bounded(image, cap).convert("RGB")
    with _header(image) as im:
        try:
            width, height = im.size
            if width * height > cap and im.format == "JPEG":
                scale = math.sqrt(cap / (width * height))
                im.draft(None, (max(1, int(width * scale)), max(1, int(height * scale))))
            im.load()
            return _bounded(im, cap).convert("RGB")
        except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt pixel data
            raise InputError(str(image), f"corrupt image data ({short_reason(exc)})") from exc


def _bounded(im: Image.Image, cap: int) -> Image.Image:
    """`im` (loaded) shrunk to at most about `cap` pixels: averaged over k x k blocks in strips (each strip
    converted to a mode that averages: '1' -> 'L', palette -> RGB(A)), then resampled to the exact size."""
    width, height = im.size
    if width * height <= cap:
        return im
    scale = math.sqrt(cap / (width * height))
    target = (max(1, int(width * scale)), max(1, int(height * scale)))
    factor = max(1, int(1 / scale / 2))  # block-average to within 2x of the target, then resample (Pillow's
    if factor > 1:                       # reducing_gap=2 rule)
        rows = max(factor, _STRIP_PIXELS // width // factor * factor)
        out = None
        for top in range(0, height, rows):
            strip = _averageable(im.crop((0, top, width, min(height, top + rows)))).reduce(factor)
            if out is None:
                out = Image.new(strip.mode, (-(-width // factor), -(-height // factor)))
            out.paste(strip, (0, top // factor))
        im = out
    return _averageable(im).resize(target, Image.Resampling.LANCZOS)


def _averageable(im: Image.Image) -> Image.Image:
    """`im` in a mode whose pixels can be averaged (Pillow's reduce/resize in other modes pick, not mix)."""
    if im.mode == "1":
        return im.convert("L")
    if im.mode in ("P", "PA"):
        return im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
    if im.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
        return im.convert("RGB")
    return im

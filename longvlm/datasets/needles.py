"""Synthetic long-context tasks with exact answers, generated on the fly from a seeded RNG.

- video needles: procedural haystack frames; one or more frames carry a saturated coloured shape
  (what colour / what shape / how many times / which came first);
- document needles: pages with grey 'text lines'; one page carries a coloured shape (which page, what colour),
  or one page's text carries a code (interleaved image-text, text needle);
- image-grid needles (MMNeedle protocol): M images of N x N sub-images, the needle described by a caption,
  answer 'index, row, column' (1-based) or '-1' when absent;
- text passkey: a number hidden in filler text.

Haystack pixels are kept desaturated, so a saturated shape is unambiguous; every answer is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from longvlm.datasets.examples import Example, ImageItem, VideoItem

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30), "green": (30, 200, 40), "blue": (40, 60, 235),
    "yellow": (240, 220, 20), "magenta": (220, 40, 220), "cyan": (30, 220, 220),
}
SHAPES = ("circle", "square", "triangle", "cross")
SATURATION_THRESHOLD = 100  # channel spread: haystack pixels stay below it, every needle colour is above
FILLER = ("The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ")


def haystack_frame(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A desaturated procedural texture: smooth gradient plus noise, in grey/brown tones."""
    base = rng.uniform(40, 200)
    tint = rng.uniform(-15, 15, size=3)
    gy, gx = rng.uniform(-60, 60, size=2)
    yy = np.linspace(-0.5, 0.5, height)[:, None, None]
    xx = np.linspace(-0.5, 0.5, width)[None, :, None]
    img = base + tint + gy * yy + gx * xx + rng.normal(0, 12, size=(height, width, 1))
    return np.clip(img, 0, 255).astype(np.uint8)


def shape_mask(shape: str, height: int, width: int, cy: float, cx: float, radius: float) -> np.ndarray:
    """Boolean mask of a shape centred at (cy, cx)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    if shape == "circle":
        return dy * dy + dx * dx <= radius * radius
    if shape == "square":
        return (np.abs(dy) <= radius * 0.85) & (np.abs(dx) <= radius * 0.85)
    if shape == "triangle":
        return (dy >= -radius) & (dy <= radius) & (np.abs(dx) <= (dy + radius) / 2)
    if shape == "cross":
        bar = radius / 3
        return ((np.abs(dx) <= bar) & (np.abs(dy) <= radius)) | ((np.abs(dy) <= bar) & (np.abs(dx) <= radius))
    raise ValueError(f"unknown shape {shape!r}")


def draw_shape(image: np.ndarray, rng: np.random.Generator, shape: str, color: str,
               scale: float = 0.3) -> np.ndarray:
    """Copy of `image` with a saturated `color` `shape` of radius `scale` * min side at a random place."""
    height, width = image.shape[:2]
    radius = scale * min(height, width)
    cy = rng.uniform(radius, height - radius)
    cx = rng.uniform(radius, width - radius)
    out = image.copy()
    out[shape_mask(shape, height, width, cy, cx, radius)] = COLORS[color]
    return out


@dataclass
class NeedleFramePairs:
    """Temporal patches of a needle video: frame pairs (one haystack frame, one with a saturated shape)."""

    frames: np.ndarray  # [2 * count, H, W, 3]; frames 2i and 2i + 1 form pair i
    shapes: np.ndarray  # [count] index into SHAPES
    colors: np.ndarray  # [count] index into COLORS
    needle_index: np.ndarray  # [count] which frame of the pair (0 or 1) carries the shape

    def needle_frames(self) -> np.ndarray:
        """The frame of each pair that carries the shape: [count, H, W, 3]."""
        return self.frames[2 * np.arange(len(self.shapes)) + self.needle_index]


def saturated_pixels(images: np.ndarray) -> np.ndarray:
    """Boolean mask [..., H, W] of the needle pixels of RGB `images`: saturated beyond any haystack pixel."""
    images = images.astype(np.int16)
    return (images.max(-1) - images.min(-1)) > SATURATION_THRESHOLD


def needle_frame_pairs(rng: np.random.Generator, count: int, size: int = 56) -> NeedleFramePairs:
    """`count` frame pairs as the video needle tasks make them, with the needle's shape and colour as labels."""
    names = list(COLORS)
    frames, shapes, colors, needle_index = [], [], [], []
    for _ in range(count):
        shape, color = int(rng.integers(len(SHAPES))), int(rng.integers(len(names)))
        needle = draw_shape(haystack_frame(rng, size, size), rng, SHAPES[shape], names[color])
        other = haystack_frame(rng, size, size)
        first = rng.uniform() < 0.5
        frames += [needle, other] if first else [other, needle]
        shapes.append(shape)
        colors.append(color)
        needle_index.append(0 if first else 1)
    return NeedleFramePairs(np.stack(frames), np.array(shapes), np.array(colors), np.array(needle_index))


def _pick(rng: np.random.Generator, options, k: int = 1):
    chosen = rng.choice(len(options), size=k, replace=False)
    return [options[i] for i in chosen] if k > 1 else options[chosen[0]]


def random_timing(rng: np.random.Generator, fps: float | None, start_s: float | None) -> tuple[float, float]:
    """(fps, start) with the None ones drawn: fps log-uniform in [1/30, 2] (a frame every 0.5 s to 30 s, as
    when an hour is sampled into a few hundred frames), start a whole second in [0, 3600) half of the time,
    else 0 (a video from its beginning, or a later segment of a long one)."""
    if fps is None:
        fps = float(np.exp(rng.uniform(np.log(1 / 30), np.log(2.0))))
    if start_s is None:
        start_s = float(rng.integers(0, 3600)) if rng.uniform() < 0.5 else 0.0
    return fps, start_s


def video_needle(rng: np.random.Generator, num_frames: int, *, question: str = "color", size: int = 56,
                 depth: float | None = None, fps: float | None = 1.0, start_s: float | None = 0.0) -> Example:
    """A video of `num_frames` haystack frames with planted needle frame(s), sampled at `fps` from `start_s`.

    question: 'color' | 'shape' (one needle at `depth` in [0, 1]), 'count' (1-4 needles of one kind),
    'order' (two needles of different colours; which came first). `fps` / `start_s` None: drawn at random
    (`random_timing`), so that a model trained on these sees the timings of real sampled videos in the header.
    """
    if num_frames < 2:
        raise ValueError("a needle video needs at least 2 frames")
    frames = np.stack([haystack_frame(rng, size, size) for _ in range(num_frames)])
    shape, color = _pick(rng, SHAPES), _pick(rng, list(COLORS))
    meta: dict = {"num_frames": num_frames}
    if question in ("color", "shape"):
        depth = float(rng.uniform()) if depth is None else depth
        index = int(round(depth * (num_frames - 1)))
        frames[index] = draw_shape(frames[index], rng, shape, color)
        text = ("What color is the shape that appears in the video?" if question == "color"
                else "What shape appears in the video?")
        answer = color if question == "color" else shape
        meta.update(depth=depth, needle_frames=[index])
    elif question == "count":
        count = int(rng.integers(1, 5))
        steps = rng.choice(num_frames // 2, size=min(count, num_frames // 2), replace=False)
        indices = sorted(int(2 * s + rng.integers(0, 2)) for s in steps)
        for index in indices:
            frames[index] = draw_shape(frames[index], rng, shape, color)
        text, answer = f"How many times does a {color} {shape} appear in the video?", str(len(indices))
        meta.update(needle_frames=indices)
    elif question == "order":
        first, second = _pick(rng, list(COLORS), 2)
        a, b = sorted(int(s) for s in rng.choice(num_frames // 2, size=2, replace=False))
        ia, ib = 2 * a + int(rng.integers(0, 2)), 2 * b + int(rng.integers(0, 2))
        frames[ia] = draw_shape(frames[ia], rng, shape, first)
        frames[ib] = draw_shape(frames[ib], rng, _pick(rng, SHAPES), second)
        options = [first, second] if rng.uniform() < 0.5 else [second, first]
        text, answer = f"Which color appears first, {options[0]} or {options[1]}?", first
        meta.update(needle_frames=[ia, ib])
    else:
        raise ValueError(f"unknown video question {question!r}")
    fps, start_s = random_timing(rng, fps, start_s)
    timestamps = [start_s + i / fps for i in range(num_frames)]
    meta.update(fps=fps, start_s=start_s)
    return Example([VideoItem(frames, timestamps), text], answer, f"video_needle/{question}", meta)


def document_page(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A light page with grey horizontal bars standing for lines of text."""
    page = np.full((height, width, 3), int(rng.integers(225, 250)), dtype=np.uint8)
    y = int(rng.integers(3, 7))
    while y < height - 4:
        length = int(rng.integers(width // 3, width - 6))
        shade = int(rng.integers(60, 140))
        page[y:y + 2, 3:3 + length] = shade
        y += int(rng.integers(5, 9))
    return page


DOCUMENT_QUESTIONS = ("page", "color", "code", "count", "order")
"""What a document needle asks (see `document_needle`)."""


def document_needle(rng: np.random.Generator, num_pages: int, *, question: str = "page",
                    page_size: tuple[int, int] = (84, 56), depth: float | None = None) -> Example:
    """A multi-page document (page images with 'Page n:' labels) with planted facts.

    question: 'page' (on which page is the coloured shape), 'color' (colour of the shape in the document),
    'code' (a code in one page's interleaved text: a text needle among images), and the MM-NIAH-style
    'count' (how many pages show the shape, 1-4) and 'order' (which of two colours comes first).
    """
    if question not in DOCUMENT_QUESTIONS:
        raise ValueError(f"unknown document question {question!r}; known: {', '.join(DOCUMENT_QUESTIONS)}")
    height, width = page_size
    depth = float(rng.uniform()) if depth is None else depth
    target = int(round(depth * (num_pages - 1)))
    shape, color = _pick(rng, SHAPES), _pick(rng, list(COLORS))
    code = str(int(rng.integers(1000, 10000)))
    marked: dict[int, str] = {}
    if question in ("page", "color"):
        marked[target] = color
    elif question == "count":
        for index in rng.choice(num_pages, size=min(num_pages, int(rng.integers(1, 5))), replace=False):
            marked[int(index)] = color
    elif question == "order":
        first, second = _pick(rng, list(COLORS), 2)
        a, b = sorted(int(i) for i in rng.choice(num_pages, size=2, replace=False)) if num_pages > 1 else (0, 0)
        marked[a], marked[b] = first, second
    parts: list = []
    for index in range(num_pages):
        page = document_page(rng, height, width)
        if index in marked:
            page = draw_shape(page, rng, shape, marked[index], scale=0.28)
        parts += [f"Page {index + 1}:", ImageItem(page)]
        if question == "code":
            parts.append(f"The secret code is {code}.\n" if index == target else "Nothing to note here.\n")
        else:
            parts.append("\n")
    meta = {"num_pages": num_pages, "depth": depth, "needle_page": target + 1}
    if question == "page":
        text, answer = f"On which page is the {color} {shape}?", str(target + 1)
    elif question == "color":
        text, answer = f"What color is the {shape} in the document?", color
    elif question == "code":
        text, answer = "What is the secret code?", code
    elif question == "count":
        text, answer = f"On how many pages is there a {color} {shape}?", str(len(marked))
        meta["needle_pages"] = sorted(i + 1 for i in marked)
    elif question == "order":
        options = [first, second] if rng.uniform() < 0.5 else [second, first]
        text, answer = f"Which color appears on an earlier page, {options[0]} or {options[1]}?", first
        meta["needle_pages"] = sorted(i + 1 for i in marked)
    else:
        raise ValueError(f"unknown document question {question!r}")
    return Example(parts + [text], answer, f"document_needle/{question}", meta)


def image_grid_needle(rng: np.random.Generator, num_images: int, *, grid: int = 2, cell: int = 56,
                      negative: bool | None = None) -> Example:
    """MMNeedle-style: `num_images` images of grid x grid sub-images; answer 'index, row, column' or '-1'."""
    negative = bool(rng.uniform() < 0.5) if negative is None else negative
    shape, color = _pick(rng, SHAPES), _pick(rng, list(COLORS))
    where = (int(rng.integers(num_images)), int(rng.integers(grid)), int(rng.integers(grid)))
    parts: list = []
    for index in range(num_images):
        image = np.concatenate([np.concatenate([haystack_frame(rng, cell, cell) for _ in range(grid)], axis=1)
                                for _ in range(grid)], axis=0)
        if not negative and index == where[0]:
            r, c = where[1], where[2]
            image[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = draw_shape(
                image[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell], rng, shape, color)
        parts += [f"Image {index + 1}:", ImageItem(image), "\n"]
    text = (f"Which image, row and column contain a {color} {shape}? Answer 'index, row, column', "
            f"or -1 if there is none.")
    answer = "-1" if negative else f"{where[0] + 1}, {where[1] + 1}, {where[2] + 1}"
    return Example(parts + [text], answer, "image_grid_needle",
                   {"num_images": num_images, "grid": grid, "negative": negative,
                    "needle": None if negative else [where[0] + 1, where[1] + 1, where[2] + 1]})


def text_passkey(rng: np.random.Generator, filler_repeats: int, *, depth: float | None = None) -> Example:
    """Passkey retrieval: a 5-digit key hidden at `depth` in `filler_repeats` copies of the filler text."""
    depth = float(rng.uniform()) if depth is None else depth
    key = str(int(rng.integers(10000, 100000)))
    before = int(round(depth * filler_repeats))
    text = (FILLER * before + f"The pass key is {key}. Remember it. {key} is the pass key. "
            + FILLER * (filler_repeats - before))
    return Example([text, "What is the pass key?"], key, "text_passkey",
                   {"filler_repeats": filler_repeats, "depth": depth})

"""The JSONL sample format for conversations over images, videos, PDF pages and text.

One JSON object per line:

    {"id": "q1",
     "media": [{"type": "video", "path": "clip.mp4", "fps": 1.0, "max_frames": 32},
               {"type": "pdf", "path": "report.pdf", "pages": [1, 2, 3], "dpi": 72},
               {"type": "image", "path": "chart.png"}],
     "messages": [{"role": "user", "content": "<video>\\n<pdf>\\n<image>\\nWhat changed?"},
                  {"role": "assistant", "content": "The price."}]}

`<video>`, `<pdf>` and `<image>` in the user message mark where each media entry goes, in order. Video
sampling takes one of `fps` (+ optional `max_frames`), `num_frames` or `timestamps`; PDF `pages` are 1-based
(default: all) and each page becomes an image preceded by 'Page n:'. Relative paths are resolved against the
JSONL file's folder. A record without media is a text-only sample.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from longvlm.datasets.examples import Example, ImageItem, VideoItem
from longvlm.errors import InputError
from longvlm.ingest.pdf import PdfDocument
from longvlm.ingest.video import VideoReader

PLACEHOLDER = re.compile(r"<(video|pdf|image)>")


def read_records(path: str | os.PathLike) -> list[dict]:
    """Parse a JSONL file (blank lines skipped); errors name the file and line."""
    records = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(path, f"line {number}: invalid JSON ({exc.msg})") from exc
            if not isinstance(record, dict) or "messages" not in record:
                raise InputError(path, f"line {number}: a record needs a 'messages' list")
            record.setdefault("_source", os.path.abspath(path))
            records.append(record)
    if not records:
        raise InputError(path, "no records")
    return records


def record_to_example(record: dict, base_dir: str | None = None) -> Example:
    """Load a record's media and build an `Example` (first user turn -> parts, first assistant turn -> answer)."""
    source = record.get("_source", "<record>")
    base_dir = base_dir or os.path.dirname(source)
    messages = record["messages"]
    try:
        user = next(m["content"] for m in messages if m.get("role") == "user")
        answer = next(m["content"] for m in messages if m.get("role") == "assistant")
    except StopIteration:
        raise InputError(source, f"record {record.get('id', '?')}: needs a user and an assistant message") from None
    media = list(record.get("media", []))
    parts: list = []
    cursor = 0
    for match in PLACEHOLDER.finditer(user):
        if match.start() > cursor:
            parts.append(user[cursor:match.start()])
        cursor = match.end()
        if not media:
            raise InputError(source, f"record {record.get('id', '?')}: more placeholders than media entries")
        entry = media.pop(0)
        if entry.get("type") != match.group(1):
            raise InputError(source, f"record {record.get('id', '?')}: placeholder <{match.group(1)}> but media "
                                     f"entry of type {entry.get('type')!r}")
        parts.extend(_load_media(entry, base_dir))
    if cursor < len(user):
        parts.append(user[cursor:])
    if media:
        raise InputError(source, f"record {record.get('id', '?')}: {len(media)} media entries without placeholder")
    return Example(parts, answer, record.get("task", "jsonl"), {"id": record.get("id")})


def _load_media(entry: dict, base_dir: str) -> list:
    path = entry.get("path", "")
    path = path if os.path.isabs(path) else os.path.join(base_dir, path)
    kind = entry["type"]
    if kind == "image":
        from PIL import Image

        try:
            with Image.open(path) as image:
                return [ImageItem(np.asarray(image.convert("RGB")))]
        except OSError as exc:
            raise InputError(path, f"unreadable image ({exc})") from exc
    if kind == "video":

        reader = VideoReader(path)
        if "timestamps" in entry:
            indices = reader.indices(timestamps=entry["timestamps"])
        elif "num_frames" in entry:
            indices = reader.indices(count=int(entry["num_frames"]))
        else:
            indices = reader.indices(fps=float(entry.get("fps", 1.0)), max_frames=entry.get("max_frames"))
        chunk = reader.read(indices)
        return [VideoItem(chunk.frames, chunk.timestamps)]
    if kind == "pdf":

        out: list = []
        with PdfDocument(path) as doc:
            pages = entry.get("pages") or list(range(1, doc.page_count + 1))
            for number in pages:
                image = doc.render(int(number) - 1, dpi=float(entry.get("dpi", 72)))
                out += [f"Page {number}:", ImageItem(np.asarray(image)), "\n"]
        return out
    raise InputError(path, f"unknown media type {kind!r} (use image, video or pdf)")

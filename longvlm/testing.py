"""Inputs with known content, made in code: barcode videos, text PDFs, and hour-long real-content videos
looped from a clip by stream copy (`loop_video`).

Every frame of a barcode video shows, as 16 black/white stripes, the whole second of video time it belongs
to, so any decoded frame can be checked against its timestamp. Scene colours change every `scene_seconds`,
which gives planted scene cuts. PDFs carry known text per page.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction

import numpy as np

FAMILY_PRESETS = ("tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-qwen3-vl", "tiny-qwen3.5", "tiny-kimi-k2.5")
"""One random tiny preset per model family (`longvlm.vlm.families`), for tests run on every family."""
MROPE_PRESETS = FAMILY_PRESETS[:4]
"""The presets of the families with 3D M-RoPE positions (all but Kimi K2.5, whose positions are 1D)."""

BARCODE_BITS = 16
SCENE_PALETTE = np.array(
    [[200, 40, 40], [40, 160, 60], [40, 70, 200], [220, 180, 30], [150, 50, 170], [30, 170, 170]], dtype=np.uint8
)


def barcode_frame(second: int, height: int, width: int, scene: int = 0) -> np.ndarray:
    """An RGB frame whose top half encodes `second` in 16 stripes and whose bottom half is the scene colour."""
    if width < BARCODE_BITS * 2 or height < 8:
        raise ValueError(f"frame {height}x{width} too small for a {BARCODE_BITS}-bit barcode")
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[height // 2:] = SCENE_PALETTE[scene % len(SCENE_PALETTE)]
    bits = [(second >> (BARCODE_BITS - 1 - b)) & 1 for b in range(BARCODE_BITS)]
    edges = np.linspace(0, width, BARCODE_BITS + 1).astype(int)
    for b, bit in enumerate(bits):
        frame[: height // 2, edges[b]:edges[b + 1]] = 255 if bit else 0
    return frame


def read_barcode(frame: np.ndarray) -> int:
    """Decode the second number from a (possibly compressed or resized) barcode frame."""
    height, width = frame.shape[:2]
    band = frame[height // 8: 3 * height // 8].astype(np.float32).mean(axis=(0, 2))
    edges = np.linspace(0, width, BARCODE_BITS + 1)
    value = 0
    for b in range(BARCODE_BITS):
        lo, hi = edges[b], edges[b + 1]
        margin = (hi - lo) / 4
        stripe = band[int(lo + margin): max(int(lo + margin) + 1, int(hi - margin))]
        value = (value << 1) | int(stripe.mean() > 127)
    return value


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], *, fps: float = 10.0,
                codec: str = "libx264", crf: int = 18, gop_seconds: float = 10.0, preset: str = "ultrafast") -> str:
    """Encode RGB uint8 frames [H, W, 3] (any iterable: frames are encoded one at a time) into a video file at
    `fps`; H.264 by default (x264 `preset`, quality `crf`; "ultrafast" has no B frames, "veryfast" and up
    do, as real recordings). Returns the path."""
    import av

    path = str(path)
    stream = None
    with av.open(path, mode="w") as container:
        for frame in frames:
            if stream is None:
                stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.gop_size = max(1, int(gop_seconds * fps))
                if codec == "libx264":
                    stream.options = {"preset": preset, "crf": str(crf)}
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        if stream is None:
            raise ValueError("a video needs at least one frame")
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_barcode_video(path: str | os.PathLike, duration_s: float, *, fps: float = 10.0, height: int = 64,
                        width: int = 64, scene_seconds: float | None = None, codec: str = "libx264",
                        gop_seconds: float = 10.0) -> str:
    """Write an H.264 (default) video whose frame at time t shows barcode(floor(t)); returns the path.

    Frames are generated and encoded one at a time, so hour-long videos are cheap to make.
    """
    num_frames = int(round(duration_s * fps))
    if num_frames <= 0:
        raise ValueError("duration_s * fps must give at least one frame")

    def frames() -> Iterator[np.ndarray]:
        cached_second, cached = -1, None
        for i in range(num_frames):
            second = int(i / fps)
            if second != cached_second:
                scene = int(i / fps / scene_seconds) if scene_seconds else 0
                cached, cached_second = barcode_frame(second, height, width, scene), second
            yield cached

    return write_video(path, frames(), fps=fps, codec=codec, gop_seconds=gop_seconds)


def loop_video(source: str | os.PathLike, target: str | os.PathLike, seconds: float = 3600.0) -> Path:
    """Write `target`: the video stream of `source` repeated until it lasts at least `seconds` (whole loops).

    Packets are remuxed, not decoded: each loop's pts/dts are shifted by the clip's duration (in the stream's
    time base), so the result plays continuously and seeks like a real long recording. Returns `target`.
    """
    import av

    target = Path(target)
    with av.open(str(source)) as src:
        stream = src.streams.video[0]
        packets = [p for p in src.demux(stream) if p.size > 0 and p.pts is not None]
        if not packets:
            raise ValueError(f"{source}: no video packets")
        step = max(p.pts + (p.duration or 0) for p in packets) - min(p.pts for p in packets)
        loops = max(1, math.ceil(seconds / float(step * stream.time_base)))
        tmp = target.with_name(target.name + ".tmp.mp4")
        with av.open(str(tmp), "w") as out:
            copy = out.add_stream_from_template(stream)
            for loop in range(loops):
                shift = loop * step
                for p in packets:
                    packet = av.Packet(bytes(p))
                    packet.pts, packet.dts = p.pts + shift, (p.dts if p.dts is not None else p.pts) + shift
                    packet.duration, packet.time_base = p.duration, p.time_base
                    packet.is_keyframe = p.is_keyframe
                    packet.stream = copy
                    out.mux(packet)
    os.replace(tmp, target)
    return target



def page_fact(page_number: int) -> str:
    """The default fact planted on a synthetic PDF page (1-based `page_number`)."""
    return f"The secret code of page {page_number} is {1000 + 37 * page_number}."


def write_text_pdf(path: str | os.PathLike, pages: Sequence[str], *, page_size: tuple[float, float] = (595, 842),
                   labels: Sequence[dict] | None = None) -> str:
    """Write a PDF with one page per string in `pages` (large, readable type); optional page label rules."""
    import pymupdf

    doc = pymupdf.open()
    for text in pages:
        page = doc.new_page(width=page_size[0], height=page_size[1])
        page.insert_textbox(pymupdf.Rect(40, 40, page_size[0] - 40, page_size[1] - 40), text, fontsize=20)
    if labels:
        doc.set_page_labels(list(labels))
    doc.save(str(path))
    doc.close()
    return str(path)


def write_synthetic_pdf(path: str | os.PathLike, num_pages: int, **kwargs) -> str:
    """A `num_pages` PDF whose page p (1-based) says `page_fact(p)`."""
    return write_text_pdf(path, [f"Page {p}\n\n{page_fact(p)}" for p in range(1, num_pages + 1)], **kwargs)


def write_encrypted_pdf(path: str | os.PathLike, password: str = "secret") -> str:
    """A one-page PDF that needs a password to open."""
    import pymupdf

    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "locked")
    doc.save(str(path), encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw=password, owner_pw=password + "-owner")
    doc.close()
    return str(path)


def write_zero_page_pdf(path: str | os.PathLike) -> str:
    """A syntactically valid PDF whose page tree is empty (PyMuPDF itself refuses to save one)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    with open(path, "wb") as fh:
        fh.write(bytes(out))
    return str(path)

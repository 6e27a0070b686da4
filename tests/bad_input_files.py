"""Writers of the awkward files the bad-input tests feed to the CLI (made in the test, seconds each)."""

from __future__ import annotations

import struct
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def write_blank_png(path: Path, width: int, height: int, *, bit_depth: int = 8) -> Path:
    """A valid grey PNG of any size, written row by row (nothing of its decoded size is held in memory):
    a 13000x13000 8-bit one is ~170 KB on disk and 169 Mpx decoded."""
    row = b"\x00" + b"\x00" * ((width * bit_depth + 7) // 8)  # filter byte + white-less zero row
    compressor = zlib.compressobj(9)
    rows_per_piece = max(1, (8 << 20) // len(row))
    parts = []
    for start in range(0, height, rows_per_piece):
        parts.append(compressor.compress(row * min(rows_per_piece, height - start)))
    parts.append(compressor.flush())

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)  # grey, no interlace
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts))
                     + chunk(b"IEND", b""))
    return path


def write_png_as_pdf(path: Path) -> Path:
    """A PNG image saved under a .pdf name."""
    Image.new("RGB", (64, 64), "white").save(path, format="PNG")
    return path


def write_wide_pdf(path: Path, width_pt: float = 14400, height_pt: float = 10) -> Path:
    """A one-page PDF whose blank page is `width_pt` x `height_pt` points (PDF's largest page is 14400 pt)."""
    import pymupdf

    doc = pymupdf.open()
    doc.new_page(width=width_pt, height=height_pt)
    doc.save(path)
    doc.close()
    return path


def write_scanned_pdf(path: Path, pages: int) -> Path:
    """An image-only PDF of `pages` pages (no text layer): every page shows the same scanned-looking picture
    with a line of text, stored once in the file, so 2,000 pages take a second to write."""
    import pymupdf

    picture = Image.new("RGB", (850, 1100), "white")
    draw = ImageDraw.Draw(picture)
    for line in range(12):
        draw.text((60, 80 + 70 * line), f"Quarterly report line {line}: revenue grew in every region.",
                  fill="black")
    png = Path(path).with_suffix(".page.png")
    picture.save(png)
    doc = pymupdf.open()
    xref = 0
    for _ in range(pages):
        page = doc.new_page(width=612, height=792)
        xref = page.insert_image(page.rect, filename=str(png), xref=xref)
    doc.save(path, garbage=0, deflate=True)
    doc.close()
    png.unlink()
    return path


def write_frames(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """An H.264 MP4 of the given RGB frames (even sizes)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_truncated_mp4(source: Path, path: Path, keep: float = 0.5) -> Path:
    """`source` remuxed with its index at the front (faststart, no re-encode), then cut to `keep` of its bytes:
    a download that stopped halfway."""
    import av

    full = path.with_suffix(".full.mp4")
    with av.open(str(source)) as src, av.open(str(full), "w", options={"movflags": "faststart"}) as dst:
        stream_in = src.streams.video[0]
        stream_out = dst.add_stream_from_template(stream_in)
        for packet in src.demux(stream_in):
            if packet.dts is None:
                continue
            packet.stream = stream_out
            dst.mux(packet)
    data = full.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    full.unlink()
    return path

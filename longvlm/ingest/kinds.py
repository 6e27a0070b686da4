"""What kind of input a file is (PDF, video or image): one suffix list, and content sniffing first.

Every caller (`longvlm.pipeline.encode.encode`, the CLI's `info`, the demo, the lmms-eval adapter) asks here,
so a `.mpg` or a video without a suffix is a video everywhere. The first bytes decide when they are a known
signature; the suffix decides otherwise (the reader then reports what the file really holds).
"""

from __future__ import annotations

import os

from longvlm.errors import InputError

KINDS = ("pdf", "video", "image")
SUFFIXES = {
    "pdf": (".pdf",),
    "video": (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".m2ts", ".flv", ".wmv",
              ".3gp", ".ogv"),
    "image": (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"),
}
"""File-name suffixes of each kind (lower case): the one list every caller uses."""

_HEAD_BYTES = 1024


def sniff_kind(head: bytes) -> str | None:
    """The kind the first bytes of a file announce, or None when they are no known signature."""
    if b"%PDF-" in head:
        return "pdf"
    if head.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")):
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video"
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "video"
    if head.startswith((b"\x1a\x45\xdf\xa3", b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3", b"FLV\x01",
                        b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", b"OggS")):
        return "video"
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:  # MPEG transport stream packets
        return "video"
    return None


def suffix_kind(name: str) -> str | None:
    """The kind a file name's suffix announces, or None."""
    lower = name.lower()
    for kind, suffixes in SUFFIXES.items():
        if lower.endswith(suffixes):
            return kind
    return None


_NAMES = {"pdf": "a PDF", "video": "a video", "image": "an image"}


def detect_kind(path: str | os.PathLike, allowed: tuple[str, ...] = KINDS) -> str:
    """'pdf', 'video' or 'image' for the file at `path`: its first bytes when they are a known signature,
    else its suffix. `InputError` (naming the file as given) when it cannot be read or is none of `allowed`."""
    shown = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEAD_BYTES)
    except FileNotFoundError:
        raise InputError(shown, "no such file") from None
    except IsADirectoryError:
        raise InputError(shown, "is a folder, not a file") from None
    except OSError as exc:
        raise InputError(shown, f"cannot be read ({exc.strerror or exc})") from exc
    kind = sniff_kind(head) or suffix_kind(shown)
    if kind not in allowed:
        names = [_NAMES[k] for k in allowed]
        wanted = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        examples = ", ".join(suffix for k in allowed for suffix in SUFFIXES[k][:4])
        raise InputError(shown, f"not {wanted} file (expected {examples}, ...)")
    return kind

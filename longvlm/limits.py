"""Limits on what one question may cost, as named constants with their reasons, and the checks that apply them.

Low layers (ingest, processing, routes) import this module; it imports nothing of longvlm but the errors.
"""

from __future__ import annotations

from longvlm.errors import InputError

MAX_QUESTION_CHARS = 2_000
"""Longest question accepted, in characters (~500 tokens of English). A real question is one to a few
sentences; a 120 KB one was 19,763 tokens: past the text route's 8,192-token reader (SmolLM2) and prefilled
for minutes at GBs of memory on the VLM route. 2,000 characters leave room for a pasted paragraph."""

OCR_MAX_PAGES = 200
"""Default most PDF pages OCR'd for one question (pages already in the OCR cache are free and not counted): a
machine-independent cap beside `OCR_BUDGET_S` (OCR takes 0.5-2 s a page on two CPU cores, so the time budget
usually stops first)."""

OCR_BUDGET_S = 15.0
"""Default seconds of PDF-page OCR for one question (rendering + recognition; a page already started is
finished). OCR of a 2,000-page scan took > 180 s for 375 pages; with this budget a question about it is
answered in under a minute (process start, model loads, OCR, retrieval, answer). Pages not read are reported
(`stats["ocr_pages_skipped"]`, `stats["ocr_note"]`), and later questions continue where this one stopped (OCR
is cached per page, pages are taken in an even spread over the document)."""

VIDEO_TEXT_MAX_FRAMES = 360
"""Default most video frames sampled for on-screen text on the text route: one every 10 s of an hour-long
video (at the CLI's 1 frame/s, every frame-second of videos up to 6 minutes). Each is a seek to the key frame
before its time (~60 ms for 720p H.264) and a thumbnail; only frames whose picture changed are OCR'd."""

VIDEO_TEXT_BUDGET_S = 30.0
"""Default seconds of frame reading + OCR for one question on the text route (reading takes at most half).
A 1-hour 720p video took > 5 minutes and 12 GB before (decord decoding ahead without bound, every frame
OCR'd at 1-2 s); with this budget the answer comes in about a minute at < 1 GB. Frames are visited coarse to
fine (an even spread first), so a budget-cut pass still covers the whole video; what was skipped is reported
(`stats["frames_skipped"]`, `stats["ocr_note"]`) and later questions continue from the cache."""


MAX_ASPECT_RATIO = 200.0
"""Largest long-side / short-side ratio of an image, a video frame or a PDF page: 200. The vision models'
resizer (Qwen2-VL `smart_resize`, `longvlm.processing.resize`) refuses anything thinner, and such a strip (e.g.
4000x16 pixels) has nothing OCR or a VLM can read at any token budget. Files over it are refused (pages of a
PDF are skipped) with a message naming the file."""

MAX_IMAGE_PIXELS = 180_000_000
"""Most pixels (width x height, read from the file's header) of an image that is decoded at all: 180 Mpx.
A 13000x13000 scan (169 Mpx) is accepted; a decompression bomb (e.g. a 110 KB PNG of 30000x30000 = 900 Mpx)
is refused before decoding. Decoding holds the whole image once in its own mode while it is reduced: 180 MB
for grey, 720 MB for RGB(A), the worst case (Pillow's own bomb check, which would refuse from 179 Mpx with a
less useful message, is replaced by this one)."""

DECODE_MAX_PIXELS = 4096 * 4096
"""Most pixels of a decoded image handed to a model or OCR: 16.8 Mpx (4096x4096). Above any vision model's
input (Qwen2-VL's largest `max_pixels` is 12.8 Mpx) and OCR's (RapidOCR scales to 2000 px a side), so no
detail a model could use is lost; larger images are block-averaged down to it while decoding."""


def check_question(question: object) -> str:
    """The question stripped of surrounding space; raises InputError when it is empty or longer than
    `MAX_QUESTION_CHARS` (checked before anything is loaded or prefilled)."""
    if not isinstance(question, str) or not question.strip():
        raise InputError("the question is empty")
    text = question.strip()
    if len(text) > MAX_QUESTION_CHARS:
        raise InputError(f"the question is {len(text):,} characters long; the limit is {MAX_QUESTION_CHARS:,} "
                           "characters (ask a shorter question)")
    return text

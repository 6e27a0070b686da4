"""Excerpts of retrieved passages around the span that answers, for the CLI and the demo to show why.

A leaf module: plain strings in, plain strings out (the caller marks the match up: `»...«` in a terminal,
`<mark>` in the demo)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Excerpt:
    """A passage cut to about `width` characters: the text before the match, the match, the text after (each
    with runs of whitespace collapsed); `match` is empty when the passage holds no answer span."""

    before: str
    match: str
    after: str
    cut_start: bool  # text was left out before `before`
    cut_end: bool  # text was left out after `after`


def _squash(text: str) -> str:
    return " ".join(text.split())


def excerpt(text: str, span: Sequence[int] | None = None, width: int = 240) -> Excerpt:
    """About `width` characters of `text`, centred on `span` ([start, end) character offsets of the answer in
    `text`) when it is given and valid, else from the start."""
    if span is None or len(span) != 2 or not 0 <= span[0] < span[1] <= len(text):
        squashed = _squash(text)
        return Excerpt(squashed[:width], "", "", False, len(squashed) > width)
    start, end = int(span[0]), int(span[1])
    room = max(0, width - (end - start)) // 2
    left, right = max(0, start - room), min(len(text), end + room)
    before, after = text[left:start], text[end:right]
    # keep one space where the match meets whitespace, so "was $1.17" does not become "was$1.17"
    return Excerpt(_squash(before) + (" " if before[-1:].isspace() else ""), _squash(text[start:end]),
                   (" " if after[:1].isspace() else "") + _squash(after), left > 0, right < len(text))


def plain(item: Excerpt, marks: tuple[str, str] = ("»", "«")) -> str:
    """The excerpt as one line, the match between `marks`, "..." where text was cut."""
    match = f"{marks[0]}{item.match}{marks[1]}" if item.match else ""
    return ("... " if item.cut_start else "") + f"{item.before}{match}{item.after}".strip() + \
        (" ..." if item.cut_end else "")

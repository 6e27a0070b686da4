"""Citations: pages and timestamps an answer mentions, and the pages/frames the model was given.

An answer cites a page as "page 4", "p. 4", "pp. 3-5" or "pages 2 and 7", and a time as "1:02:03", "12:05"
or "75 s" / "75.5 seconds". Each citation has a jump target the UI understands: 'p:<page>' (show that page)
or 't:<seconds>' (seek the video there).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from longvlm.demo.media import format_time, spread
from longvlm.encoded import Evidence

MAX_RANGE = 50  # "pp. 1-999" is not expanded beyond this many pages

_NUMBER_LIST = r"\d+(?:\s*[-\u2013]\s*\d+)?(?:\s*(?:,|and|&)\s*\d+(?:\s*[-\u2013]\s*\d+)?)*"
_PAGES = re.compile(r"\b(?:pages?|pp?\.)\s*(" + _NUMBER_LIST + ")", re.IGNORECASE)
_HMS = re.compile(r"(?<![\d:.])(\d{1,2}):([0-5]\d):([0-5]\d)(?![\d:])")
_MS = re.compile(r"(?<![\d:.])(\d{1,3}):([0-5]\d)(?![\d:])")
_SECONDS = re.compile(r"(?<![\d.:])(\d+(?:\.\d+)?)\s*(?:s|secs?|seconds?)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Citation:
    """A page (1-based) or a time (seconds) with its display label and jump target."""

    kind: str  # "page" | "time"
    value: float
    label: str

    @property
    def target(self) -> str:
        return f"p:{int(self.value)}" if self.kind == "page" else f"t:{self.value:.3f}"


def page_citation(page: int) -> Citation:
    return Citation("page", page, f"p.{page}")


def time_citation(seconds: float) -> Citation:
    return Citation("time", float(seconds), format_time(seconds))


def _expand(numbers: str) -> list[int]:
    pages: list[int] = []
    for piece in re.split(r"\s*(?:,|and|&)\s*", numbers):
        bounds = [int(x) for x in re.split(r"\s*[-\u2013]\s*", piece) if x]
        if len(bounds) == 2 and 0 <= bounds[1] - bounds[0] < MAX_RANGE:
            pages.extend(range(bounds[0], bounds[1] + 1))
        elif bounds:
            pages.append(bounds[0])
    return pages


def parse_citations(text: str, *, page_count: int | None = None,
                    duration_s: float | None = None) -> list[Citation]:
    """Pages and times mentioned in `text`, in order of appearance, without duplicates; pages outside
    1..`page_count` and times outside 0..`duration_s` are dropped (they cannot be jumped to)."""
    found: list[tuple[int, Citation]] = []
    if page_count is not None:
        for match in _PAGES.finditer(text):
            found += [(match.start(), page_citation(p)) for p in _expand(match.group(1)) if 1 <= p <= page_count]
    if duration_s is not None:
        masked = text
        for pattern, to_seconds in ((_HMS, lambda g: int(g[0]) * 3600 + int(g[1]) * 60 + int(g[2])),
                                    (_MS, lambda g: int(g[0]) * 60 + int(g[1])),
                                    (_SECONDS, lambda g: float(g[0]))):
            for match in pattern.finditer(masked):
                seconds = to_seconds(match.groups())
                if 0 <= seconds <= duration_s:
                    found.append((match.start(), time_citation(seconds)))
            masked = pattern.sub(lambda m: " " * len(m.group(0)), masked)  # a time is read by one pattern only
    seen: set[str] = set()
    ordered = []
    for _, citation in sorted(found, key=lambda item: item[0]):
        if citation.target not in seen:
            seen.add(citation.target)
            ordered.append(citation)
    return ordered


def evidence_citations(evidence: Sequence[Evidence], limit: int = 12) -> list[Citation]:
    """Jump targets for what the model was given: up to `limit` of its pages or frames, spread evenly."""
    pages = [page_citation(e.index) for e in evidence if e.kind == "page"]
    frames = [time_citation(e.timestamp) for e in evidence if e.kind == "frame" and e.timestamp is not None]
    return spread(pages, limit) if pages else spread(frames, limit)


def parse_target(target: str) -> Citation:
    """The citation a jump target ('p:3', 't:75.5') stands for; `ValueError` for anything else."""
    kind, _, value = (target or "").strip().partition(":")
    if kind == "p" and value.isdigit() and int(value) >= 1:
        return page_citation(int(value))
    if kind == "t":
        seconds = float(value)
        if math.isfinite(seconds) and seconds >= 0:
            return time_citation(seconds)
    raise ValueError(f"not a jump target: {target!r} (expected 'p:<page>' or 't:<seconds>')")

"""Citations: pages and timestamps an answer mentions, and the pages/frames the model was given.

An answer cites pages and times in the grammar of `longvlm.references` (the one the question selector and the
memory bridge read): a page as "page 4", "p. 4", "pp. 3-5", "pages 2 and 7", "the last page", a time as
"1:02:03", "12:05", "75.5 seconds", "minute 5" or "2 min 30 s". Each citation has a jump target the UI
understands: 'p:<page>' (show that page) or 't:<seconds>' (seek the video there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from longvlm.demo.media import format_time, spread
from longvlm.encoded import Evidence
from longvlm.references import find_pages, find_times


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


def parse_citations(text: str, *, page_count: int | None = None,
                    duration_s: float | None = None) -> list[Citation]:
    """Pages and times mentioned in `text`, in order of appearance, without duplicates; pages outside
    1..`page_count` and times outside 0..`duration_s` are dropped (they cannot be jumped to); no pages without
    `page_count`, no times without `duration_s`."""
    found: list[tuple[int, Citation]] = []
    if page_count is not None:
        found += [(ref.start, page_citation(int(ref.value))) for ref in find_pages(text, page_count)]
    if duration_s is not None:
        found += [(ref.start, time_citation(ref.value)) for ref in find_times(text, duration_s)]
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

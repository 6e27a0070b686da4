"""The one grammar for page and time references in questions and answers.

Pages (1-based): "page 3", "p. 3", "pp. 3-5, 7", "pages 2 and 4", "pages 3 to 5", "slide 7", "page three",
"the third page", "the 3rd slide", "last page", "second to last page", "penultimate page", "page at the last",
"cover" / "front cover" / "cover page" (page 1), "back cover" (the last page). A range names at most
`MAX_RANGE` pages; a longer or reversed one names its two ends. "last" and "back cover" need the page count.

Times (seconds): "1:02:03", "2:05", "300 s" / "300 seconds" / "300 secs", "5 min" / "5 minutes" /
"minute 5" / "1.5 minutes", "1 h" / "2 hours", and runs of these from hours down to seconds:
"1 hour 5 minutes", "2 min and 30 s".

The question selector, the demo's citation chips and the memory bridge's time selection all read this grammar.
"""

from __future__ import annotations

import re
from typing import NamedTuple

MAX_RANGE = 50  # "pp. 1-999" names pages 1 and 999, not every page in between

_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_ORDINALS = {w: i + 1 for i, w in enumerate(
    "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth".split())}

_DIGITS = r"\d{1,4}(?!\d)"
_WORDS = r"(?:" + "|".join(_NUMBER_WORDS) + r")\b"
_NUM = r"(?:" + _DIGITS + "|" + _WORDS + ")"
_TO = r"\s*(?:-|\u2013|\u2014|\bto\b)\s*"  # a range: "3-5", "3 to 5"
_AND = r"\s*(?:,\s*(?:and\s+)?|&|\band\b)\s*"  # a list: "3, 5", "3 and 5", "3, 4, and 7"
_ITEM = _NUM + r"(?:" + _TO + _NUM + r")?"


def _list(number: str) -> str:
    """A list of numbers and ranges of one kind: '3-5, 7' or 'two and four' (digits and words are not mixed, so
    'page 3 and one more' names page 3 only)."""
    item = number + r"(?:" + _TO + number + r")?"
    return item + r"(?:" + _AND + item + r")*"


_PAGES = re.compile(r"\b(?:pages?|slides?|pp?\.)\s*(" + _list(_DIGITS) + "|" + _list(_WORDS) + ")", re.I)
_SECOND_LAST = r"second[\s-]+(?:to[\s-]+)?last|penultimate"
_ORDINAL = re.compile(
    r"\b(?P<ord>" + _SECOND_LAST + r"|last|" + "|".join(_ORDINALS) + r"|\d{1,4}(?:st|nd|rd|th))"
    r"\s+(?:pages?|slides?)\b"
    r"|\b(?:page|slide)\s+at\s+the\s+(?P<at>" + _SECOND_LAST + r"|last)\b"
    r"|\b(?:the|(?P<side>front|back))\s+cover\b(?!\s+(?:of|for)\b)|\bcover\s+(?:page|slide)\b", re.I)

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_TIME = re.compile(
    r"(?<![\d:.])(?P<c1>\d{1,3})(?::(?P<c2>[0-5]\d))?:(?P<c3>[0-5]\d)(?![\d:])"
    r"|\bminute\s+(?P<minute>\d+(?:\.\d+)?)"
    r"|(?<![\w.:])(?P<value>\d+(?:\.\d+)?)\s*"
    r"(?P<unit>hours?|hrs?|h|minutes?|mins?|seconds?|secs?|(?<![12]\d{3})s)\b", re.I)  # "1990s" is no time
_JOIN = re.compile(r"\s*,?\s*(?:and\s+)?")  # between the parts of "1 hour, 5 minutes and 3 seconds"


class Reference(NamedTuple):
    """A page (1-based) or time (seconds) named in a text, and where its mention starts."""

    start: int
    value: float


def _number(token: str) -> int:
    return int(token) if token.isdigit() else _NUMBER_WORDS[token.lower()]


def _expand(numbers: str) -> list[int]:
    """'3-5, 7' -> [3, 4, 5, 7]; ranges longer than MAX_RANGE or reversed give their two ends."""
    pages: list[int] = []
    for item in re.finditer(_ITEM, numbers, re.I):
        bounds = [_number(t) for t in re.findall(_NUM, item.group(0), re.I)]
        first, last = bounds[0], bounds[-1]
        pages.extend(range(first, last + 1) if 0 <= last - first < MAX_RANGE else (first, last))
    return pages


def _ordinal(match: re.Match, page_count: int | None) -> int | None:
    word = (match.group("ord") or match.group("at") or "").lower()
    if not word:  # a cover
        if (match.group("side") or "").lower() == "back":
            return page_count
        return 1
    if word == "last":
        return page_count
    if word.endswith("last") or word == "penultimate":
        return max(1, page_count - 1) if page_count else None
    return _ORDINALS.get(word) or int(word[:-2])


def _by_position(text: str, page_count: int | None) -> list[Reference]:
    """References by position ('the cover', 'the third page', 'the last slide'), resolved with `page_count`."""
    return [Reference(m.start(), p) for m in _ORDINAL.finditer(text) if (p := _ordinal(m, page_count)) is not None]


def find_pages(text: str, page_count: int | None = None, *, bounded: bool = True) -> list[Reference]:
    """Pages `text` names, in order of appearance (a range in its order), duplicates kept. With `page_count`,
    "last page" and "back cover" resolve and pages past it are dropped (kept with `bounded=False`: they may be
    printed page labels)."""
    found = [Reference(m.start(), p) for m in _PAGES.finditer(text) for p in _expand(m.group(1))]
    found += _by_position(text, page_count)
    limit = page_count if page_count is not None and bounded else None
    return sorted((r for r in found if r.value >= 1 and (limit is None or r.value <= limit)), key=lambda r: r.start)


def find_times(text: str, duration_s: float | None = None) -> list[Reference]:
    """Times (seconds) `text` names, in order of appearance, duplicates kept; with `duration_s`, only those in
    0..duration_s."""
    found: list[Reference] = []
    previous: tuple[re.Match, float] | None = None  # the last unit part and its unit, to join "1 h 5 min"
    for match in _TIME.finditer(text):
        if match.group("c3") is not None:
            parts = [int(g) for g in match.group("c1", "c2", "c3") if g is not None]
            found.append(Reference(match.start(), float(sum(p * 60 ** i for i, p in enumerate(reversed(parts))))))
            previous = None
        elif match.group("minute") is not None:
            found.append(Reference(match.start(), 60 * float(match.group("minute"))))
            previous = None
        else:
            unit = _UNITS[match.group("unit")[0].lower()]
            seconds = float(match.group("value")) * unit
            if (previous is not None and unit < previous[1]
                    and _JOIN.fullmatch(text, previous[0].end(), match.start())):
                found[-1] = Reference(found[-1].start, found[-1].value + seconds)
            else:
                found.append(Reference(match.start(), seconds))
            previous = (match, unit)
    return [r for r in found if duration_s is None or 0 <= r.value <= duration_s]


def positional_pages(text: str, page_count: int | None = None) -> set[int]:
    """The pages `text` names by position rather than by number ('the cover', 'the third page', 'the last
    slide'): PDF positions, whatever numbers the pages print."""
    return {int(r.value) for r in _by_position(text, page_count)
            if r.value >= 1 and (page_count is None or r.value <= page_count)}


def page_references(text: str, page_count: int | None = None, *, bounded: bool = True) -> set[int]:
    """The pages `text` names (see `find_pages`): 'pages 30-35' -> {30..35}, 'the last slide' (12) -> {12}."""
    return {int(r.value) for r in find_pages(text, page_count, bounded=bounded)}


def time_references(text: str, duration_s: float | None = None) -> list[float]:
    """The times (seconds) `text` names, in order of appearance, without duplicates (see `find_times`)."""
    return list(dict.fromkeys(r.value for r in find_times(text, duration_s)))

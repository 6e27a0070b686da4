"""One grammar for page and time references: the question selector, the demo's citation chips and the memory
bridge's time selection read every phrase of one table alike."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest

import longvlm.references
from longvlm.demo.citations import parse_citations
from longvlm.memory.streaming import question_seconds
from longvlm.references import MAX_RANGE, find_pages, find_times, page_references, time_references
from longvlm.retrieval.page_text import TextItem
from longvlm.retrieval.ranking import QuestionSelector

PAGE_COUNT = 40
DURATION_S = 4000.0

# phrase -> pages it names (in order of appearance) and times (seconds, in order), for a 40-page PDF / 4000 s video
TABLE = [
    ("What is on page 3?", [3], []),
    ("see p. 3", [3], []),
    ("as shown on pp. 3-5, 7", [3, 4, 5, 7], []),
    ("compare pages 2 and 4", [2, 4], []),
    ("pages 1, 2, and 4", [1, 2, 4], []),
    ("In pages 30 to 32", [30, 31, 32], []),
    ("the chart on slide 7", [7], []),
    ("the top of the page three", [3], []),
    ("pages two and four", [2, 4], []),
    ("the table on the third page", [3], []),
    ("the 5th slide", [5], []),
    ("the last page", [40], []),
    ("the second to last page", [39], []),
    ("the penultimate slide", [39], []),
    ("In the figure at Page at the second last, how many people?", [39], []),
    ("the people on the cover", [1], []),
    ("the back cover", [40], []),
    ("What does the policy cover?", [], []),
    ("page 3 and one more", [3], []),
    ("what happens at 1:02:03", [], [3723]),
    ("at 2:05", [], [125]),
    ("after 300 s", [], [300]),
    ("after 300 seconds", [], [300]),
    ("What happens in minute 5?", [], [300]),
    ("at 5 min", [], [300]),
    ("after 5 minutes", [], [300]),
    ("1.5 minutes in", [], [90]),
    ("1 h in", [], [3600]),
    ("after 1 hour 5 minutes", [], [3900]),
    ("after 2 min and 30 s", [], [150]),
    ("what happens at 1:02:03 and at 2:30?", [], [3723, 150]),
    ("after 90 seconds, then 3 minutes in", [], [90, 180]),
    ("page 4 at 0:42", [4], [42]),
    ("not 99:99, nor the 1990s, nor 5 m away", [], []),
    ("What colour is the car?", [], []),
]


def selector_pages(phrase: str) -> set[int]:
    items = [TextItem("page", i, "", "none", label=str(i + 1)) for i in range(PAGE_COUNT)]
    scores = QuestionSelector(False).reference_scores(phrase, items)
    return {items[i].number for i in np.flatnonzero(scores == 1.0)}


def selector_times(phrase: str) -> set[float]:
    items = [TextItem("frame", t, "", "none", timestamp=float(t)) for t in range(int(DURATION_S) + 1)]
    scores = QuestionSelector(False).reference_scores(phrase, items)
    return {items[i].timestamp for i in np.flatnonzero(scores == 1.0)}


@pytest.mark.parametrize("phrase, pages, times", TABLE)
def test_every_reader_agrees(phrase, pages, times):
    assert sorted(page_references(phrase, PAGE_COUNT)) == sorted(set(pages))
    assert time_references(phrase, DURATION_S) == times
    assert selector_pages(phrase) == set(pages)
    assert selector_times(phrase) == set(times)
    cited = parse_citations(phrase, page_count=PAGE_COUNT, duration_s=DURATION_S)
    assert [c.value for c in cited if c.kind == "page"] == pages
    assert [c.value for c in cited if c.kind == "time"] == times
    assert question_seconds(phrase, DURATION_S) == (times[0] if times else None)


def test_minutes_in_citations_and_the_selector():
    cited = parse_citations("It starts in minute 5, and ends 2 min 30 s later, at 7.5 minutes.", duration_s=600)
    assert [c.label for c in cited] == ["5:00", "2:30", "7:30"]
    frames = [TextItem("frame", t, "", "none", timestamp=float(t)) for t in range(0, 600, 10)]
    ranking = QuestionSelector(False).rank("What happens in minute 5?", frames)
    assert frames[ranking.order[0]].timestamp == 300


def test_bounds_and_ranges():
    assert page_references("page 99", PAGE_COUNT) == set()
    assert page_references("page 99", PAGE_COUNT, bounded=False) == {99}  # the selector: maybe a printed label
    assert page_references("page 99") == {99} and page_references("the last page") == set()
    assert page_references("pp. 3-52") == set(range(3, 53)) and MAX_RANGE == 50
    assert page_references("pp. 3-53") == {3, 53} and page_references("pp. 5-3") == {3, 5}
    assert [r.value for r in find_pages("pp. 1-999", 10)] == [1]
    assert time_references("at 5:00", 100) == [] and time_references("at 5:00") == [300]
    assert [r.start for r in find_times("at 0:42, then 1 hour and 2 s")] == [3, 14]
    assert time_references("at 0:42, then 1 hour and 2 s") == [42, 3602]


def test_references_is_a_leaf():
    tree = ast.parse(Path(longvlm.references.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert all(name.split(".")[0] in sys.stdlib_module_names or name == "longvlm.errors" for name in imported)

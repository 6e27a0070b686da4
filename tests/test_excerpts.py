"""Showing why (issue 27): the passage excerpt around the answer's span, in the CLI and in the demo, and the
abstention shown as "not found in the document"."""

from __future__ import annotations

import argparse

from longvlm.cli import _print_answer
from longvlm.demo.app import _answer_markdown
from longvlm.demo.session import DemoSession
from longvlm.encoded import Answer, Evidence
from longvlm.excerpts import excerpt, plain

TEXT = "Revenue grew strongly.\n\nIn 2023 the  revenue was $1.17 billion, up 4%.  " + "More text follows. " * 30
SPAN = [TEXT.index("$1.17 billion"), TEXT.index("$1.17 billion") + len("$1.17 billion")]


def test_excerpt_centres_on_the_span_and_keeps_its_spaces():
    part = excerpt(TEXT, SPAN, 80)
    assert part.match == "$1.17 billion" and part.before.endswith("revenue was ") and part.after.startswith(", up 4%")
    assert part.cut_end and len(part.before + part.match + part.after) <= 82
    assert plain(part).count("»$1.17 billion«") == 1
    head = excerpt(TEXT, None, 40)  # no span: the start of the passage
    assert head.match == "" and head.before.startswith("Revenue grew") and head.cut_end
    for bad in ([5, 2], [0, 10_000], [1]):
        assert excerpt(TEXT, bad, 40).match == ""


def _answer(abstained: bool) -> Answer:
    stats = {"abstained": True, "abstain_reason": "best passage score 0.12 below 0.30"} if abstained else {}
    text = "Not answerable" if abstained else "$1.17 billion"
    passage = {"cite": "p.60", "score": 0.8, "text": TEXT, "source": "text layer", "span": None if abstained else SPAN}
    return Answer(text, "SmolLM2-135M-Instruct", "text", [Evidence("page", 60)], stats, [passage])


def test_cli_marks_the_span_and_says_when_nothing_was_found(capsys):
    args = argparse.Namespace(json=False)
    _print_answer(_answer(False), args)
    out = capsys.readouterr().out
    assert "»$1.17 billion«" in out and "[p.60]" in out
    _print_answer(_answer(True), args)
    out = capsys.readouterr().out
    assert "not found in the document: best passage score 0.12 below 0.30" in out and "«" not in out.split("):", 1)[1]


def test_demo_highlights_the_span_and_says_when_nothing_was_found():
    session = DemoSession("doc.pdf", "doc.pdf", "pdf", "text", {}, [], [])
    session.history.append(("What was the revenue?", _answer(False)))
    assert "<mark>$1.17 billion</mark>" in _answer_markdown(0, session)
    session.history.append(("And the dividend?", _answer(True)))
    shown = _answer_markdown(1, session)
    assert "not found in the document" in shown and "<mark>" not in shown

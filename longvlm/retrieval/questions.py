"""What a question asks, apart from how it wants the answer written.

Benchmark and user questions often end with formatting instructions ('Please write the answer in list format,
e.g., ["1","2"]', 'Return me an integer.', "Answer 'yes' or 'no'."). Their words match nothing in the document
and dilute retrieval; `split_format_instructions` separates them so the ranker sees only the question.
"""

from __future__ import annotations

import re

_INSTRUCTION = re.compile(
    r"(?:(?<=[.?!])|(?<=[.?!]\s)|,\s*|\s+)(?:please\s+)?(?:(?:write|give|list|put|return|represent|format|answer|"
    r"provide|express|round|sort)\b[^.?!]*?\b(?:answer|format|integer|float|list|string|order|decimals?|"
    r"numbers?|names?|like|nearest)\b|return me an? \w+|answer\s+['\"][^'\"]+['\"](?:\s+or\s+['\"][^'\"]+['\"])?|"
    r"(?:e\.g\.|for example)\s*,?\s*[\[(][^\])]*[\])]?)[^?]*?$", re.I)


def split_format_instructions(question: str) -> tuple[str, str]:
    """(question, instructions): a trailing instruction on the answer's form split off the question ('' when
    there is none, or when what would remain is under three words)."""
    match = _INSTRUCTION.search(question)
    if not match:
        return question.strip(), ""
    kept = question[:match.start()].strip()
    if len(kept.split()) < 3:
        return question.strip(), ""
    return kept, question[match.start():].strip(" ,")

"""Short-answer extraction for MMLongBench-Doc.

- `official_extract`: the benchmark's two-step protocol: a free answer, then an LLM (any local chat model the
  user gives) reads the benchmark's own extraction prompt and writes 'Extracted answer: ... Answer format: ...'.
- `rule_based_extract`: an offline heuristic, clearly NOT the official protocol (its scores are labelled so).
"""

from __future__ import annotations

import re
from collections.abc import Callable

NOT_ANSWERABLE = "Not answerable"
FAILED = "Failed to extract"
RULE_BASED_LABEL = "rule-based extractor (NOT the official protocol)"
_NUMBER = r"-?\d[\d,]*\.?\d*"


def parse_extraction(extracted: str) -> str:
    """The official parse of an extractor's output; FAILED when there is no 'Extracted answer:'."""
    try:
        return extracted.split("Answer format:")[0].split("Extracted answer:")[1].strip()
    except IndexError:
        return FAILED


def official_extract(question: str, response: str, prompt: str, chat: Callable[[list[dict]], str]) -> tuple[str, str]:
    """Two-step protocol: `chat(messages) -> text` is the extractor model. Returns (raw output, parsed answer).

    Messages are built as the benchmark builds them: the extraction prompt as the user turn, then
    '\\n\\nQuestion:{q}\\nAnalysis:{response}\\n' as an assistant turn; the model writes the next turn."""
    messages = [{"role": "user", "content": prompt},
                {"role": "assistant", "content": f"\n\nQuestion:{question}\nAnalysis:{response}\n"}]
    raw = chat(messages)
    return raw, parse_extraction(raw)


def rule_based_extract(response: str, answer_format: str) -> str:
    """Heuristic short answer from a free response, by the expected format (offline; not official)."""
    text = response.strip()
    lowered = text.lower()
    if not text or any(p in lowered for p in ("not answerable", "cannot be answered", "can't be answered",
                                                "not mentioned", "no information")):
        return NOT_ANSWERABLE
    if answer_format in ("Int", "Float"):
        match = re.search(_NUMBER, text)
        if not match:
            return NOT_ANSWERABLE if answer_format == "None" else text
        number = match.group(0).replace(",", "").rstrip(".")
        if answer_format == "Int":
            try:
                return str(int(float(number)))
            except ValueError:
                return number
        return number
    if answer_format == "List":
        items = [p.strip(" .'\"") for p in re.split(r",|;|\band\b|\n", text) if p.strip(" .'\"")]
        return repr(items)
    first = re.split(r"(?<=[.!?])\s|\n", text)[0].strip()
    return first.rstrip(".")

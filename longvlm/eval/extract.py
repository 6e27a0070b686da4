"""Short-answer extraction for MMLongBench-Doc.

- `official_extract`: the benchmark's two-step protocol: a free answer, then an LLM (any local chat model the
  user gives) reads the benchmark's own extraction prompt and writes 'Extracted answer: ... Answer format: ...'.
- `rule_based_extract`: an offline heuristic, clearly NOT the official protocol (its scores are labelled so).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from longvlm.retrieval.constrained import candidate_logprobs, generate_copy

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


CONSTRAINED_LABEL = "extractor: SmolLM2-135M-Instruct (constrained)"
_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_FORMAT_ASK = {
    "Int": "What is the answer, as an integer?",
    "Float": "What is the answer, as a number?",
    "Str": "Copy the shortest phrase of the response that answers the question.",
    "List": "Copy the part of the response that lists the answer items, separated by commas.",
}


# Words a short answer does not start with (with the question's own words: the response's restatement of the
# question is not the answer).
_STOP_WORDS = set("a an the of in on at to for from by with as and or but is are was were be been it its this that "
                  "these those there which who whom what when where why how according document report slide page "
                  "text response answer shows states mentions based provided".split())


def number_candidates(response: str, answer_format: str) -> list[str]:
    """Distinct numbers in the response, in order: integers (and number words up to twenty) for Int,
    decimals for Float ('1,234.5' -> '1234.5'; a trailing % is dropped)."""
    found = []
    for match in re.finditer(_NUMBER + r"|\b(" + "|".join(_NUMBER_WORDS) + r")\b", response, flags=re.I):
        text = match.group(0)
        if text.lower() in _NUMBER_WORDS:
            value = str(_NUMBER_WORDS[text.lower()])
        else:
            value = text.replace(",", "").rstrip(".")
            if answer_format == "Int":
                try:
                    value = str(int(float(value)))
                except ValueError:
                    continue
        if value not in found:
            found.append(value)
    return found


def constrained_extract(lm, question: str, response: str, answer_format: str) -> str:
    """Short answer from a free response by a small LM whose output is restricted to the answer's shape.

    - a response that declines (rule-based refusal phrases, or empty) gives 'Not answerable';
    - Int / Float: the LM chooses, by likelihood, among the numbers that occur in the response
      (none: 'Not answerable');
    - Str / List: the LM copies a span of the response (decoding restricted to substrings of it) that starts
      at a word which is neither a stop word nor a word of the question; a List span is split on commas,
      semicolons and 'and'.
    The 'None' format (the ground truth of unanswerable questions) is handled as 'Str', so the format never
    reveals that a question is unanswerable. `lm` is a `longvlm.retrieval.small_lm.SmallLM`.
    """

    if rule_based_extract(response, "Str") == NOT_ANSWERABLE:
        return NOT_ANSWERABLE
    fmt = answer_format if answer_format in _FORMAT_ASK else "Str"
    messages = [{"role": "user", "content": f"Question: {question.strip()}\nResponse: {response.strip()}\n\n"
                                            f"{_FORMAT_ASK[fmt]}"}]
    if fmt in ("Int", "Float"):
        candidates = number_candidates(response, fmt)
        if len(candidates) <= 1:
            return candidates[0] if candidates else NOT_ANSWERABLE
        scores = candidate_logprobs(lm, messages, candidates)
        return candidates[max(range(len(candidates)), key=scores.__getitem__)]
    avoid = _STOP_WORDS | set(re.findall(r"\w+", question.lower()))
    span = generate_copy(lm, messages, response, max_new_tokens=32 if fmt == "List" else 16,
                         avoid_words=avoid).strip(" .,;:'\"")
    if not span:
        return NOT_ANSWERABLE
    if fmt == "List":
        return repr([p.strip(" .'\"") for p in re.split(r",|;|\band\b|\n", span) if p.strip(" .'\"")])
    return span

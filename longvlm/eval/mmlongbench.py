"""MMLongBench-Doc: loading the question file and scoring exactly as the benchmark's public scorer.

Scoring per `answer_format` follows the benchmark's `eval/eval_score.py` (written here from its behaviour, with
the same results), including its quirks, each kept by default and documented:

1. `get_clean_string` means to strip trailing 'mile(s)'/'million' but discards the result, so those units
   are NOT removed ("5 miles" != "5"). Kept.
2. Lists written as Python literals are parsed with `eval` there; here with a bounded parser of Python
   literals (`parse_literal`: lists, tuples, strings, numbers, None/True/False, at most `MAX_LIST_DEPTH`
   levels; same result as `eval` for those, never executes code). A prediction that fails to parse scores 0
   (there the exception is caught by the runner and scored 0); so do sets and dicts, which answers never are.
3. Int: the prediction goes through `int(float(pred))`, so "3.9" scores as 3; anything unparsable scores 0.
4. Float: a match within 1% relative tolerance, or equal after rounding to the shorter precision (at least
   2 decimals); the ground truth may be read as a percentage (x/100, x, x*100 all accepted).
5. Str / None: lower-cased, parentheses removed, one leading/trailing quote, '$' and '%' stripped; exact match
   for URLs, file names, strings starting with 'page', phone numbers, times with a.m./p.m., dates and emails;
   otherwise ANLS with threshold 0.5 (a similarity <= 0.5 scores 0, above it scores the similarity itself).
6. List: lengths must match; after cleaning and sorting, numeric or exact-match lists must be identical,
   otherwise the score is the minimum ANLS over the pairs.
7. Generalized F1: recall = score mass on answerable questions / answerable questions; precision = the same
   mass / questions whose prediction is not 'Not answerable' (unanswerable questions answered count there).
8. Breakdowns: single-page = exactly one evidence page (unanswerable questions have none); cross-page = more
   than one page and answerable; unanswerable = ground truth 'Not answerable'.

Scoring is total and bounded: any prediction gets a score in [0, 1]. A prediction longer than
`MAX_PREDICTION_CHARS` is scored on its first `MAX_PREDICTION_CHARS` characters (`score_with_note` says so,
and the runners record it); ANLS skips the edit distance when the lengths alone put the similarity at or
below the threshold (exact: the distance is at least the length difference).
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable

NOT_ANSWERABLE = "Not answerable"
ANLS_THRESHOLD = 0.5
FLOAT_REL_TOL = 0.01

MAX_PREDICTION_CHARS = 10_000
"""Longest prediction scored as is: 10,000 characters (the benchmark's longest ground truth is 440; an
extracted answer is a phrase, a number or a short list). Longer ones (a runaway generation, a 10 MB paste)
are cut to this before cleaning, parsing and the edit distance, which would otherwise take seconds to
minutes; the record says so."""

MAX_LIST_DEPTH = 16
"""Most nested brackets `parse_literal` follows: 16 (answers are flat lists; deeper input is refused instead of
exhausting the parser's stack, as ~6 KB of brackets does with Python's own parser)."""


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions of one character)."""
    if len(a) > len(b):
        a, b = b, a
    previous = list(range(len(a) + 1))
    for j, cb in enumerate(b, start=1):
        current = [j]
        for i, ca in enumerate(a, start=1):
            current.append(previous[i - 1] if ca == cb else 1 + min(previous[i - 1], previous[i], current[-1]))
        previous = current
    return previous[-1]


def anls(ground_truth: str, prediction: str, threshold: float = ANLS_THRESHOLD) -> float:
    """1 - normalised edit distance, set to 0 when it is not above `threshold`. Like the public scorer, the
    normaliser is the length of the upper-cased strings (which differs for a few characters such as 'ß')."""
    length = max(len(ground_truth.upper()), len(prediction.upper()))
    if length and 1.0 - abs(len(ground_truth) - len(prediction)) / length <= threshold:
        return 0.0  # distance >= length difference: the similarity cannot pass (skips a long edit distance)
    value = 1.0 - (levenshtein(ground_truth, prediction) / length if length else 0.0)
    return 0.0 if value <= threshold else value


def clean_string(value: object) -> str:
    """The scorer's normalisation (see quirk 1: units are not stripped)."""
    s = str(value).lower().strip()
    s = re.sub(r"\s*\([^)]*\)", "", s).strip()
    s = re.sub(r"^['\"]|['\"]$", "", s).strip()
    s = s.lstrip("$").strip()
    return s.rstrip("%").strip()


def needs_exact_match(s: str) -> bool:
    """Strings the scorer compares exactly instead of by ANLS."""
    return bool(
        "https://" in s or s.endswith(".py") or s.endswith("ipynb") or s.startswith("page")
        or re.fullmatch(r"\b\d+(-\d+|\s\d+)?\b", s) or "a.m." in s or "p.m." in s
        or re.fullmatch(r"\b\d{4}[-\s]\d{2}[-\s]\d{2}\b", s) or re.fullmatch(r"\b\d{4}[-\s]\d{2}\b", s)
        or re.fullmatch(r"[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}", s))


def _precision(x: float) -> int:
    text = str(x)
    return len(text.split(".")[-1]) if "." in text else 3


def floats_equal(reference: float, prediction: float) -> bool:
    """Float rule: reference, reference/100 or reference*100 within 1% or equal at the shorter precision."""
    for candidate in (reference / 100, reference, reference * 100):
        if math.isclose(candidate, prediction, rel_tol=FLOAT_REL_TOL):
            return True
        digits = max(min(_precision(prediction), _precision(candidate)), 2)
        if round(prediction, digits) == round(candidate, digits):
            return True
    return False


def _as_float(value: object) -> float | None:
    try:
        return float(clean_string(value))
    except ValueError:
        return None


def _as_list(value: object) -> list | None:
    if isinstance(value, str) and value.startswith("["):
        try:
            value = parse_literal(value)
        except ValueError:
            return None
    return value if isinstance(value, list) else [value]


_STRING = re.compile(r"""[rRuUbB]{0,2}(?:'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")""")
_NUMBER = re.compile(r"[+-]?(?:\d(?:_?\d)*(?:\.(?:\d(?:_?\d)*)?)?|\.\d(?:_?\d)*)(?:[eE][+-]?\d(?:_?\d)*)?")
_NAMES = {"None": None, "True": True, "False": False}


def parse_literal(text: str) -> object:
    """The Python literal `text` holds: lists, tuples, strings (adjacent ones joined), ints, floats, None,
    True, False, nested at most `MAX_LIST_DEPTH` deep, with spaces and comments around. Raises ValueError for
    anything else; time and stack are linear in `len(text)` and bounded by the depth (nothing is evaluated)."""
    value, pos = _literal(text, _skip(text, 0), 0)
    if _skip(text, pos) != len(text):
        raise ValueError(f"unexpected text at offset {pos}")
    return value


def _skip(text: str, pos: int) -> int:
    """Position of the next character after spaces and comments."""
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
        elif text[pos] == "#":
            end = text.find("\n", pos)
            pos = len(text) if end < 0 else end
        else:
            break
    return pos


def _literal(text: str, pos: int, depth: int) -> tuple[object, int]:
    """(value, position after it) of the literal starting at `pos`."""
    if pos >= len(text):
        raise ValueError("unexpected end")
    opening = text[pos]
    if opening in "[(":
        if depth >= MAX_LIST_DEPTH:
            raise ValueError(f"nested deeper than {MAX_LIST_DEPTH} levels")
        closing = "]" if opening == "[" else ")"
        items: list = []
        comma = False
        pos = _skip(text, pos + 1)
        while pos >= len(text) or text[pos] != closing:
            item, pos = _literal(text, pos, depth + 1)
            items.append(item)
            pos = _skip(text, pos)
            if pos < len(text) and text[pos] == ",":
                comma, pos = True, _skip(text, pos + 1)
            elif pos >= len(text) or text[pos] != closing:
                raise ValueError(f"expected ',' or {closing!r} at offset {pos}")
        if opening == "[":
            return items, pos + 1
        return (items[0] if len(items) == 1 and not comma else tuple(items)), pos + 1
    match = _STRING.match(text, pos)
    if match:
        parts = []
        while match:  # 'a' 'b' is 'ab', as in Python
            try:
                parts.append(ast.literal_eval(match.group(0)))  # one string token: no nesting
            except (SyntaxError, ValueError) as exc:
                raise ValueError(f"bad string literal at offset {pos}") from exc
            pos = _skip(text, match.end())
            match = _STRING.match(text, pos)
        if len({type(p) for p in parts}) > 1:
            raise ValueError("cannot join bytes and str")
        return parts[0][:0].join(parts), pos
    match = _NUMBER.match(text, pos)
    if match and not text[match.end():match.end() + 1].isalnum():
        token = match.group(0)
        try:
            number = ast.literal_eval(token.lstrip("+-"))  # one number token
        except (SyntaxError, ValueError) as exc:  # '007', more than 4300 digits
            raise ValueError(f"bad number at offset {pos}") from exc
        return (-number if token.startswith("-") else number), match.end()
    for name, value in _NAMES.items():
        end = pos + len(name)
        if text.startswith(name, pos) and not text[end:end + 1].isalnum() and text[end:end + 1] != "_":
            return value, end
    raise ValueError(f"not a literal at offset {pos}")


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def score_answer(ground_truth: object, prediction: object, answer_format: str) -> float:
    """Score one extracted answer against the ground truth under the benchmark's rules: in [0, 1] for any
    prediction (see `score_with_note` for predictions longer than `MAX_PREDICTION_CHARS`)."""
    return score_with_note(ground_truth, prediction, answer_format)[0]


def prediction_note(prediction: object) -> str:
    """What scoring changes about `prediction` ('' for nothing): a cut to `MAX_PREDICTION_CHARS`."""
    if isinstance(prediction, str) and len(prediction) > MAX_PREDICTION_CHARS:
        return (f"prediction of {len(prediction):,} characters scored on its first {MAX_PREDICTION_CHARS:,} "
                "(MAX_PREDICTION_CHARS)")
    return ""


def score_with_note(ground_truth: object, prediction: object, answer_format: str) -> tuple[float, str]:
    """(score in [0, 1], `prediction_note`): a prediction longer than `MAX_PREDICTION_CHARS` is scored on its
    first `MAX_PREDICTION_CHARS` characters."""
    note = prediction_note(prediction)
    if note:
        prediction = prediction[:MAX_PREDICTION_CHARS]
    score = _score(ground_truth, prediction, answer_format)
    return (score if 0.0 <= score <= 1.0 else 0.0), note


def _score(ground_truth: object, prediction: object, answer_format: str) -> float:
    if answer_format == "Int":
        try:
            return float(int(ground_truth) == int(float(prediction)))
        except (TypeError, ValueError, OverflowError):
            return 0.0
    if answer_format == "Float":
        gt, pred = _as_float(ground_truth), _as_float(prediction)
        return float(gt is not None and pred is not None and floats_equal(gt, pred))
    if answer_format in ("Str", "None"):
        gt, pred = clean_string(ground_truth), clean_string(prediction)
        return float(gt == pred) if needs_exact_match(gt) else anls(gt, pred)
    gt_list, pred_list = _as_list(ground_truth), _as_list(prediction)
    if gt_list is None or pred_list is None or len(gt_list) != len(pred_list):
        return 0.0
    gt_clean = sorted(clean_string(a) for a in gt_list)
    pred_clean = sorted(clean_string(a) for a in pred_list)
    if not gt_clean:
        return 0.0  # the public scorer fails on an empty list and the runner scores that 0
    if _is_number(gt_clean[0]) or needs_exact_match(gt_clean[0]):
        return float("-".join(gt_clean) == "-".join(pred_clean))
    return min(anls(g, p) for g, p in zip(gt_clean, pred_clean))


def load_samples(path: str | os.PathLike) -> list[dict]:
    """The question file (samples.json) with `evidence_pages` / `evidence_sources` parsed into lists."""
    with open(path) as fh:
        samples = json.load(fh)
    for sample in samples:
        for key in ("evidence_pages", "evidence_sources"):
            if isinstance(sample.get(key), str):
                sample[key] = ast.literal_eval(sample[key])
    return samples


def accuracy_and_f1(records: Iterable[dict]) -> tuple[float, float]:
    """Accuracy and generalized F1 over records with 'score', 'answer' (ground truth) and 'pred'."""
    scored = [r for r in records if "score" in r]
    if not scored:
        return 0.0, 0.0
    accuracy = sum(r["score"] for r in scored) / len(scored)
    answerable = [r for r in scored if r["answer"] != NOT_ANSWERABLE]
    attempted = [r for r in scored if r["pred"] != NOT_ANSWERABLE]
    if not answerable or not attempted:
        return accuracy, 0.0
    mass = sum(r["score"] for r in answerable)
    recall, precision = mass / len(answerable), mass / len(attempted)
    return accuracy, (2 * recall * precision / (recall + precision) if recall + precision > 0 else 0.0)


def aggregate(records: list[dict]) -> dict:
    """Overall accuracy / generalized F1 and the benchmark's breakdowns (counts included)."""
    def block(subset: list[dict]) -> dict:
        acc, f1 = accuracy_and_f1(subset)
        return {"accuracy": acc, "f1": f1, "count": len(subset)}

    scored = [r for r in records if "score" in r]
    by_source: dict[str, list] = defaultdict(list)
    by_type: dict[str, list] = defaultdict(list)
    for r in scored:
        for source in r.get("evidence_sources", []):
            by_source[source].append(r)
        by_type[r.get("doc_type", "?")].append(r)
    return {
        "overall": block(scored),
        "single_page": block([r for r in scored if len(r["evidence_pages"]) == 1]),
        "cross_page": block([r for r in scored if len(r["evidence_pages"]) != 1 and r["answer"] != NOT_ANSWERABLE]),
        "unanswerable": block([r for r in scored if r["answer"] == NOT_ANSWERABLE]),
        "evidence_sources": {k: block(v) for k, v in sorted(by_source.items())},
        "doc_types": {k: block(v) for k, v in sorted(by_type.items())},
        "skipped": sum(1 for r in records if r.get("skipped")),
    }

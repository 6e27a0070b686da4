"""Short answers a 135M-parameter reader can give, and when to say "Not answerable" instead.

- `question_kind`: the shape of answer the question's own words ask for ('how many' -> an integer, 'what
  percentage' -> a percentage, 'which year' -> a year, 'what are' -> a list, else a phrase). Only the question
  text is used: never a benchmark's gold answer format.
- Normalisers: `normalize_number`, `normalize_percent`, `normalize_list`, `clean_span`.
- Candidates: `number_candidates` finds the numbers / percentages / years of the passages (with where they
  occur); the reader chooses among them by likelihood (`longvlm.retrieval.constrained`), or copies a span.
- `answer_span`: where the answer string occurs in a passage (character offsets, for highlighting).
- Abstention: `abstention_features` (retrieval score of the best passage, the reader's likelihood of its answer,
  whether and how close to the question's words the answer occurs in the passages) and `AbstentionRule`, a tiny
  logistic regression (`fit_logistic`, numpy only) with a threshold, fitted on one half of the MMLongBench-Doc
  dev questions (`longvlm.eval.mmlongbench_text`); below the threshold the answer is exactly
  `NOT_ANSWERABLE` and the reason says which evidence was weak.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from longvlm.retrieval.questions import split_format_instructions

NOT_ANSWERABLE = "Not answerable"  # the benchmark's string

NUMERIC_KINDS = ("int", "percent", "year", "number")  # `question_kind`s answered with a number
_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
STOP_WORDS = frozenset(
    "a an the of in on at to for from by with as and or but is are was were be been it its this that these those "
    "there which who whom what when where why how many much does do did according document report slide slides "
    "page pages text shown shows show state states mentions based provided paper figure table chart guidebook "
    "has have had than all any each not no".split())


def question_kind(question: str) -> str:
    """The answer shape asked for by the question's words: 'int', 'percent', 'year', 'number', 'list' or 'str'.
    An instruction on the answer's form ('Write the answer in integer format', 'Return me an integer', '... in
    list format') decides first (`split_format_instructions`)."""
    question, instructions = split_format_instructions(question)
    wanted = instructions.lower()
    for pattern, kind in ((r"\bint(?:eger)?\b", "int"), (r"\bfloat\b|\bdecimals?\b", "number"),
                          (r"\blist\b|\[", "list"), (r"\bstring\b", "str")):
        if re.search(pattern, wanted):
            return kind
    q = " " + " ".join(question.lower().split()) + " "
    if re.search(r"\bhow many\b|\bnumber of\b|\bcount\b", q) and not re.search(r"percent|proportion|ratio", q):
        return "int"
    if re.search(r"percent|%|\bproportion\b|\bshare of\b|\brate\b", q):
        return "percent"
    if re.search(r"\b(what|which) year\b|\bin what year\b|\bwhen (was|were|did|is)\b", q):
        return "year"
    if re.search(r"\bhow much\b|\bhow (long|far|old|big|large|high|tall)\b|\bwhat is the (total|average|value|"
                 r"amount|price|cost|number)\b", q):
        return "number"
    if re.search(r"\b(what|which) (are|were)\b|\blist\b|\bwhich \w+s (are|were|does|do|did|has|have)\b"
                 r"|\bwhat \w+s (are|were|does|do|did)\b", q):
        return "list"
    return "str"


def normalize_number(text: str, *, integer: bool = False) -> str | None:
    """'1,234' -> '1234', '12.50' -> '12.5', '$3.0M' -> '3', 'five' -> '5'; `integer`: rounded to an int.
    None when `text` holds no number."""
    t = text.strip().lower()
    if t in _NUMBER_WORDS:
        return str(_NUMBER_WORDS[t])
    match = re.search(r"-?\d[\d,]*(?:\.\d+)?", t)
    if not match:
        return None
    raw = match.group(0)
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", raw) or "," not in raw:
        raw = raw.replace(",", "")
    else:  # '3,5' is not a thousands separator: keep the first number
        raw = raw.split(",")[0]
    value = float(raw)
    if integer:
        return str(int(round(value)))
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else f"{value:g}" if "e" not in f"{value:g}" \
        else raw


def normalize_percent(text: str) -> str | None:
    """'21 %' -> '21%', '12.50 per cent' -> '12.5%'; None when `text` holds no number."""
    number = normalize_number(text)
    return None if number is None else number + "%"


def clean_span(text: str) -> str:
    """A copied span without surrounding blanks, quotes and punctuation, inner whitespace collapsed."""
    return " ".join(text.split()).strip(" .,;:'\"()[]-–•*")


def normalize_list(text: str | Sequence[str]) -> str:
    """A list answer as the benchmark writes it (a Python list literal): split on commas, semicolons, 'and',
    bullets and new lines; items cleaned, empty and repeated items (case-insensitive) dropped."""
    parts = re.split(r",|;|\band\b|\n|•|\s\d+\.\s", text) if isinstance(text, str) else list(text)
    items: list[str] = []
    for part in parts:
        item = clean_span(part)
        if item and item.lower() not in {i.lower() for i in items}:
            items.append(item)
    return repr(items)


_NUM_RE = re.compile(r"(?<![\w.])(\$?-?\d[\d,]*(?:\.\d+)?)(\s?(?:%|per ?cent\b))?|\b(" + "|".join(_NUMBER_WORDS)
                     + r")\b", re.I)


@dataclass(frozen=True)
class Candidate:
    """A candidate answer: its normalised text, and the surface string it was found as."""

    text: str
    surface: str
    passage: int
    start: int


def number_candidates(texts: Sequence[str], kind: str, *, limit: int = 24) -> list[Candidate]:
    """Distinct numbers of the passages for a numeric `kind`, in order of first occurrence: integers for 'int'
    (number words up to twenty too), percentages for 'percent' (a bare number when no percentage occurs),
    years 1900-2099 for 'year' (ranges like '2015-2016' too), any number for 'number'."""
    found: dict[str, Candidate] = {}
    for p, text in enumerate(texts):
        if kind == "year":
            for m in re.finditer(r"\b((?:19|20)\d\d)(?:\s?[-–/]\s?((?:19|20)?\d\d))?\b", text):
                value = f"{m.group(1)}-{m.group(2)}" if m.group(2) else m.group(1)
                found.setdefault(value, Candidate(value, m.group(0), p, m.start()))
            continue
        for m in _NUM_RE.finditer(text):
            if m.group(3):
                if kind != "int":
                    continue
                value = str(_NUMBER_WORDS[m.group(3).lower()])
            elif kind == "percent":
                if not m.group(2):
                    continue
                value = normalize_percent(m.group(1))
            else:
                value = normalize_number(m.group(1), integer=kind == "int")
                if kind == "int" and "." in m.group(1):
                    continue  # a decimal is not a count
            if value is not None:
                found.setdefault(value, Candidate(value, m.group(0), p, m.start()))
    if kind == "percent" and not found:
        return number_candidates(texts, "number", limit=limit)
    return list(found.values())[:limit]


def content_words(text: str) -> set[str]:
    """Lower-cased words of `text` that are not stop words (suffix 's' dropped)."""
    return {w.rstrip("s") for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOP_WORDS and len(w) > 1}


def proximity(question: str, text: str, start: int, end: int, window: int = 160) -> float:
    """Share of the question's content words found within `window` characters of text[start:end]."""
    words = content_words(question)
    if not words:
        return 0.0
    near = content_words(text[max(0, start - window):end + window])
    return len(words & near) / len(words)


def answer_span(answer: str, text: str) -> list[int] | None:
    """[start, end]: character offsets of `answer` in `text` (case-insensitive, any run of blanks matching any
    other); for a list answer, of its first item; for a percentage also without the '%'. None when absent."""
    if answer.startswith("[") and answer.endswith("]"):
        items = re.findall(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"", answer)
        answer = next((a or b for a, b in items if a or b), "")
    answer = answer.strip()
    if not answer or answer == NOT_ANSWERABLE:
        return None
    for form in (answer, answer.rstrip("%").strip()):
        if not form:
            continue
        pattern = r"\s+".join(re.escape(w) for w in form.split())
        bounded = (r"(?<!\w)" if form[0].isalnum() else "") + pattern + (r"(?!\w)" if form[-1].isalnum() else "")
        match = re.search(bounded, text, flags=re.I) or (  # a multi-word copy may stop inside a word
            re.search(pattern, text, flags=re.I) if len(form.split()) > 1 else None)
        if match:
            return [match.start(), match.end()]
    return None


_SMALL_WORDS = frozenset({"of", "and", "for", "the", "in", "on", "to", "&"})
_ACRONYM_QUESTION = re.compile(r"\b([A-Z][A-Z0-9&]{1,7})\b,?\s+(?:stands?|means?)\b|\bstands? for\s+([A-Z][A-Z0-9&]{1,7})\b"
                               r"|\b(?:full (?:form|name)|expansion|abbreviation) (?:of|for)\s+([A-Z][A-Z0-9&]{1,7})\b")


def acronym_expansion(question: str, texts: Sequence[str]) -> str | None:
    """For 'What does NARL stand for?' (also 'full form of X'): the first run of capitalised words in `texts`
    whose initials spell the acronym, small words ('of', 'and', ...) allowed between them ('National
    Atmospheric Research Laboratory'). None when the question asks no such thing or no run matches."""
    match = _ACRONYM_QUESTION.search(question)
    if not match:
        return None
    letters = next(g for g in match.groups() if g).replace("&", "")
    for text in texts:
        words = re.findall(r"[A-Za-z][\w'-]*", text)
        for start, first in enumerate(words):
            if first[0] != letters[0]:
                continue
            run, k = [], 0
            for word in words[start:start + 2 * len(letters) + 2]:
                if k == len(letters):
                    break
                if word.lower() in _SMALL_WORDS and run:
                    run.append(word)
                elif word[0] == letters[k] and word[0].isupper():
                    run.append(word)
                    k += 1
                else:
                    break
            if k == len(letters) and len(run) > 1 and run[-1].lower() not in _SMALL_WORDS:
                return " ".join(run)
    return None


_YEAR_RANGE = re.compile(r"\b((?:19|20)\d\d)\s?[-–/]\s?((?:19|20)?\d\d)\b")


def normalize_year_range(text: str) -> str | None:
    """'2015-16' / '2015–2016' / '2015/16' -> '2015-2016'; None when `text` holds no year range."""
    match = _YEAR_RANGE.search(text)
    if not match:
        return None
    first, last = match.group(1), match.group(2)
    last = first[:2] + last if len(last) == 2 else last
    return f"{first}-{last}" if int(last) > int(first) else None


_LABEL_SYNONYMS = {"telephone": ("tel", "phone"), "phone": ("tel", "telephone"), "number": ("no",), "no": ("number",),
                   "email": ("e-mail",), "address": ("addr",)}
_VALUE_AFTER_LABEL = re.compile(r"^[\s:.#-]*(?:no\.?|number|by)?[\s:.#-]*(.+?)(?:\s{3,}|\)|$)", re.I)


def labelled_value(question: str, texts: Sequence[str], *, max_words: int = 8) -> tuple[str, float] | None:
    """A value printed next to a label the question names ('Tel: 01983 873655', 'Produced by:' then the next
    line, 'CA. Bar No. 239516'): the text after the line's last question word (or the next line when nothing
    follows), as (value, share of the question's content words on that line). Values that repeat the
    question's words or run over `max_words` words are skipped, and so are lines over 2 x `max_words` words
    (prose, not a label); the line with the largest share wins."""
    asked = content_words(question)
    if not asked:
        return None
    labels = {word: word for word in asked} | {syn: word for word in asked for syn in _LABEL_SYNONYMS.get(word, ())
                                               if syn not in asked}
    best: tuple[str, float] | None = None
    for text in texts:
        lines = [line.strip() for line in text.split("\n") if line.strip()]
        for i, line in enumerate(lines):
            hits = [m for m in re.finditer(r"[A-Za-z0-9]+", line) if m.group(0).lower().rstrip("s") in labels]
            if not hits or len(line.split()) > 2 * max_words:  # labels sit on short lines, not in prose
                continue
            share = len({labels[m.group(0).lower().rstrip("s")] for m in hits}) / len(asked)
            after = _VALUE_AFTER_LABEL.match(line[hits[-1].end():])
            value = after.group(1).strip(" ,;:") if after else ""
            if not re.search(r"\w", value) or len(value.split()) > max_words:
                value = lines[i + 1].strip(" ,;:") if i + 1 < len(lines) else ""
            if (value and len(value.split()) <= max_words and not content_words(value) & set(labels)
                    and (best is None or share > best[1])):
                best = (value, share)
    return best


def pattern_answer(question: str, texts: Sequence[str]) -> tuple[str, float] | None:
    """An answer found by the shape of the question alone, before any reader: an acronym's expansion
    (confidence 1), the year range asked by 'what year/period' (0.8), a value next to the label the question
    names (confidence: the label's share of the question's words). None when no pattern applies."""
    expansion = acronym_expansion(question, texts)
    if expansion:
        return expansion, 1.0
    if re.search(r"\b(?:what|which) (?:year|period)\b", question, re.I):
        for text in texts[:1]:
            years = normalize_year_range(text)
            if years:
                return years, 0.8
    if question_kind(question) == "str":
        return labelled_value(question, texts)
    return None


_SHOWN = re.compile(r"\b(colou?rs?|pictures?|photos?|photographs?|images?|icons?|logos?|cartoons?|drawn|drawings?|"
                    r"maps?|shapes?|boxe?s?|rectangles?|circles?|arrows?|diagrams?|charts?|graphs?|figures?|"
                    r"screenshots?|people in|persons? in)\b", re.I)


def asks_what_is_shown(question: str) -> bool:
    """Whether the question is about what a page shows (colours, pictures, charts, figures, logos...): text
    alone rarely answers it."""
    return bool(_SHOWN.search(question))


_QUESTION_OPENERS = frozenset("what which how who where when why list according among please in on for the is are "
                              "does do did give write answer return if assume compared".split())


def unmatched_specifics(question: str, texts: Sequence[str]) -> float:
    """Share of the question's specifics (numbers, years, quoted phrases, capitalised names) that occur nowhere
    in `texts` (the whole document): a question about 'the survey of 2022' in a report of the 2018 survey."""
    specifics = [m.group(1) or m.group(2) or m.group(0) for m in
                 re.finditer(r"\b\d[\d,.]*\d\b|\b\d\b|\"([^\"]{2,60})\"|“([^”]{2,60})”", question)]
    names = [w for w in re.findall(r"\b[A-Z][A-Za-z]{2,}\b", question) if w.lower() not in _QUESTION_OPENERS]
    wanted = [w.lower() for w in specifics + names]
    if not wanted:
        return 0.0
    document = " ".join(" ".join(texts).lower().split())
    return sum(1 for w in wanted if " ".join(w.split()) not in document) / len(wanted)


FEATURES = ("bias", "top_score", "mean_logprob", "proximity", "found", "numeric", "list", "pattern", "shown",
            "unmatched")


def abstention_features(*, top_score: float, answer_logprob: float, answer_tokens: int, proximity: float,
                        found: bool, kind: str, pattern: float = 0.0, shown: bool = False,
                        unmatched: float = 0.0) -> dict[str, float]:
    """The evidence an answer rests on, as the numbers `AbstentionRule` weighs: the best passage's retrieval
    score, the reader's mean log-likelihood per token of its answer, how many of the question's content words
    are near the answer in the passages, whether the answer occurs there, the answer's kind, the confidence of a
    `pattern_answer`, whether the question asks what is shown (`asks_what_is_shown`) and the share of its
    specifics the document lacks (`unmatched_specifics`)."""
    return {"bias": 1.0, "top_score": float(top_score),
            "mean_logprob": float(answer_logprob) / max(1, answer_tokens), "proximity": float(proximity),
            "found": float(found), "numeric": float(kind in NUMERIC_KINDS),
            "list": float(kind == "list"), "pattern": float(pattern), "shown": float(shown),
            "unmatched": float(unmatched)}


def _sigmoid(x: np.ndarray | float) -> np.ndarray | float:
    return 1.0 / (1.0 + np.exp(-x))


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1.0, steps: int = 2000, lr: float = 0.5) -> np.ndarray:
    """Weights of an L2-regularised logistic regression (first column: the bias, not regularised) by gradient
    descent on standardised features; returned for the raw features."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    mean, std = x.mean(0), x.std(0)
    mean[0], std[0] = 0.0, 1.0
    std[std == 0] = 1.0
    z = (x - mean) / std
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        grad = z.T @ (_sigmoid(z @ w) - y) / len(y)
        grad[1:] += l2 * w[1:] / len(y)
        w -= lr * grad
    raw = w / std
    raw[0] = w[0] - float(np.sum(w[1:] * mean[1:] / std[1:]))
    return raw


@dataclass(frozen=True)
class AbstentionRule:
    """Answer only when P(answer is right) from a logistic regression over `FEATURES` is >= `threshold`."""

    weights: dict[str, float] = field(default_factory=dict)
    threshold: float = 0.5
    fitted_on: str = ""

    def probability(self, features: dict[str, float]) -> float:
        return float(_sigmoid(sum(self.weights.get(k, 0.0) * features.get(k, 0.0) for k in FEATURES)))

    def decide(self, features: dict[str, float]) -> tuple[bool, str]:
        """(abstain, why): the reason names the weakest evidence when abstaining."""
        p = self.probability(features)
        if p >= self.threshold:
            return False, f"answered: P(right) {p:.2f} >= {self.threshold:.2f}"
        why = []
        if not features.get("found"):
            why.append("the answer does not occur in the passages")
        if features.get("proximity", 0.0) < 0.34:
            why.append(f"only {features.get('proximity', 0.0):.0%} of the question's words are near the answer")
        why.append(f"best passage score {features.get('top_score', 0.0):.2f}")
        why.append(f"reader's mean log-likelihood {features.get('mean_logprob', 0.0):.2f}/token")
        return True, f"P(right) {p:.2f} below {self.threshold:.2f} (" + "; ".join(why) + ")"


def abstain_without_evidence(n_items: int) -> str:
    """The reason for abstaining when no passage has text."""
    return (f"no text was found in the {n_items:,} pages/frames read (the text route reads text only; a "
            "vision-language model is needed for what is shown)")


# Fitted with `longvlm.eval.mmlongbench_text.fit_abstention` on the even-qid half of the MMLongBench-Doc dev subset
# (bench/results/mmlongbench_text_dev_issue27/results.json; the odd-qid half is held out). With 6 right candidates
# among the 130 of that half it abstains on nearly everything: the reader is rarely right (bench/RESULTS.md).
DEFAULT_RULE = AbstentionRule(
    weights={"bias": -0.9588, "top_score": -1.5340, "mean_logprob": 0.4461, "proximity": 1.4364, "found": 0.9950,
             "numeric": 1.5999, "list": -0.8427, "pattern": -2.1287, "shown": 0.5835, "unmatched": -3.2726},
    threshold=0.1689, fitted_on="MMLongBench-Doc dev subset, even qids (issue 27)")

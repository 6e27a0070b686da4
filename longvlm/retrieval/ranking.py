"""Question-aware selection: rank pages or video frames by how likely they hold the answer to a question.

Signals, fused into one score per item:
- lexical: BM25 (the `bm25s` library, English stop words, Snowball stemming) over each item's text;
- dense: all-MiniLM-L6-v2 cosine similarity between the question and the item's text chunks (max over chunks),
  computed only for a BM25 shortlist of 16 items (and cached on disk), which keeps indexing a 100-page PDF
  fast (on MMLongBench-Doc a 16-item shortlist ranks as well as dense scores on every page: bench/RESULTS.md);
- figure/table labels: pages with a caption ("Figure 3:", "TABLE II") the question names (1), or a mention (0.5);
- neighbours: BM25 + dense of a page plus 0.2 x the mean of its neighbours' (evidence spans consecutive pages);
- references: items the question names explicitly ("page 14", "slide 4", "the last page", "at 2:30",
  "minute 5": the grammar of `longvlm.references`); weighted 2 by default, so a named page comes first unless
  another page matches much better. A named page number matches a page's number or its printed label.
Each signal is min-max normalised per question before the weighted sum (`fusion="rrf"`: reciprocal-rank fusion
of BM25 and dense instead; `cue_weight`: pages dense with numbers for "how many"/"percentage" questions; both off
by default: they did not help on MMLongBench-Doc, bench/RESULTS.md). Ranking reads `TextItem.text` plus
`TextItem.extra` (e.g. the section heading a page continues). Items that tie (e.g. no text at all)
are ordered by an even spread over the input, so a question with no usable signal gets uniform sampling.

`QuestionSelector.rank(question, items)` is the one entry point; the planner takes its order.
"""

from __future__ import annotations

from collections.abc import Sequence
import re
from dataclasses import dataclass, field

import numpy as np

from longvlm.ingest.cache import text_sha256
from longvlm.references import page_references, positional_pages, time_references
from longvlm.retrieval.questions import split_format_instructions
from longvlm.ingest.sampling import spread_order
from longvlm.retrieval.page_text import TextItem
from longvlm.errors import ConfigError
from longvlm.retrieval.embeddings import EmbeddingCache
from longvlm.retrieval.embeddings import MiniLMEmbedder


def index_text(item: TextItem) -> str:
    """What ranking reads of an item: its text plus its retrieval-only `extra` text (tables, section headings)."""
    return f"{item.text}\n{item.extra}" if item.extra else item.text


def chunk_words(text: str, size: int = 150, overlap: int = 30) -> list[str]:
    """Split text into chunks of at most `size` words, consecutive chunks sharing `overlap` words."""
    words = text.split()
    if not words:
        return []
    step = max(1, size - overlap)
    return [" ".join(words[i:i + size]) for i in range(0, max(1, len(words) - overlap), step)]


def rrf(scores: np.ndarray, k: float = 60.0, valid: np.ndarray | None = None) -> np.ndarray:
    """Reciprocal-rank fusion term of each item: 1 / (k + rank), rank 1 for the highest score (tied items share
    the best rank of their group); items not `valid` (e.g. outside the dense shortlist) get 0."""
    x = np.asarray(scores, dtype=np.float64)
    valid = np.ones(x.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    out = np.zeros_like(x)
    vals = x[valid]
    if vals.size:
        # rank = 1 + number of valid items scoring strictly higher
        ranks = 1 + (vals[None, :] > vals[:, None]).sum(1)
        out[valid] = 1.0 / (k + ranks)
    return out


def smooth_neighbours(scores: np.ndarray, weight: float) -> np.ndarray:
    """Each item's score plus `weight` times the mean of its neighbours' scores (one neighbour at the ends):
    evidence often spans consecutive pages, so a page next to a strong match gains a little."""
    x = np.asarray(scores, dtype=np.float64)
    if weight == 0 or x.size < 2:
        return x.copy()
    left = np.concatenate([[np.nan], x[:-1]])
    right = np.concatenate([x[1:], [np.nan]])
    return x + weight * np.nanmean(np.stack([left, right]), axis=0)


def minmax(x: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] (all zeros when the values are constant)."""
    x = np.asarray(x, dtype=np.float64)
    span = x.max() - x.min() if x.size else 0.0
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


@dataclass
class Ranking:
    """Scores of items (higher is better) and their order, best first."""

    scores: np.ndarray
    order: list[int]
    signals: dict[str, np.ndarray] = field(default_factory=dict)  # each normalised signal, for inspection

    def top(self, k: int) -> list[int]:
        """The `k` best item positions, best first."""
        return self.order[:k]


class Bm25Index:
    """BM25 over a list of texts (bm25s; stop words removed, Snowball English stemming when available)."""

    def __init__(self, texts: Sequence[str]) -> None:
        import bm25s

        try:
            import Stemmer

            self._stemmer = Stemmer.Stemmer("english").stemWords
        except ImportError:  # PyStemmer is part of the `text` extra; without it, no stemming
            self._stemmer = None
        self._bm25s = bm25s
        self.size = len(texts)
        tokens = self._tokenize(list(texts))
        self._empty = not any(tokens)
        if not self._empty:
            self._index = bm25s.BM25()
            self._index.index(tokens, show_progress=False)

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        return self._bm25s.tokenize(texts, token_pattern=r"(?u)\b\w+\b", stopwords="en", stemmer=self._stemmer,
                                    return_ids=False, show_progress=False)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every text for `query` (zeros when nothing matches)."""
        if self._empty:
            return np.zeros(self.size)
        terms = [t for t in self._tokenize([query])[0] if t in self._index.vocab_dict]
        if not terms:
            return np.zeros(self.size)
        return np.asarray(self._index.get_scores(terms), dtype=np.float64)


FUSIONS = ("minmax", "rrf")

_LABEL_Q = re.compile(r"\b(fig(?:ure)?|table|tab)\.?\s*([0-9]+[a-z]?|[ivxlc]+)\b", re.IGNORECASE)
_CUE_Q = re.compile(r"\b(how many|how much|percentage|percent|proportion|share|ratio|rate|number of|which year|"
                    r"what year|in which year|average|total|sum|difference|increase|decrease|more than|less than|"
                    r"compared)\b|%", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])\d[\d,.]*%?")


def question_labels(question: str) -> list[tuple[str, str]]:
    """('figure'|'table', id) for each figure/table the question names ("Figure 3", "fig. 2b", "Table II")."""
    out = []
    for kind, ident in _LABEL_Q.findall(question):
        kind = "figure" if kind.lower().startswith("fig") else "table"
        if ident.isalpha() and kind == "figure":  # "figure in" etc.: roman numerals only for tables
            continue
        out.append((kind, ident.lower()))
    return out


def label_score(text: str, labels: Sequence[tuple[str, str]]) -> float:
    """1 when the text has a caption line starting with one of `labels` ("Figure 3:", "TABLE II"), 0.5 when it
    only mentions one, else 0."""
    best = 0.0
    for kind, ident in labels:
        word = r"fig(?:ure)?\.?" if kind == "figure" else r"tab(?:le)?\.?"
        pattern = rf"\b{word}\s*{re.escape(ident)}\b"
        if re.search(rf"(?im)^\s*{pattern}", text):
            return 1.0
        if re.search(pattern, text, re.IGNORECASE):
            best = 0.5
    return best


def numeric_density(text: str) -> float:
    """Share of the text's tokens that are numbers (figures, percentages, years)."""
    tokens = text.split()
    return len(_NUMBER.findall(text)) / len(tokens) if tokens else 0.0


class QuestionSelector:
    """Ranks pages/frames against a question with BM25 + MiniLM (+ explicit page/time references, figure/table
    labels, neighbour smoothing of pages).

    `embedder`: a `MiniLMEmbedder`, None to load it on first use, or False for lexical only. `shortlist`: how
    many BM25-best items get dense scores (all items when there are at most that many; None: always all).
    `printed_pages`: a page the question names ('page 9') is the one printed with that number
    (`TextItem.printed`) before the PDF page at that position (False: PDF positions and labels only).
    `strip_instructions`: rank on the question without its instructions on the answer's form. `reranker`:
    reorders the best items at the end (e.g. `longvlm.retrieval.reranking.QueryLikelihoodReranker`; None: no
    second stage).
    """

    def __init__(self, embedder=None, *, lexical_weight: float = 1.0, dense_weight: float = 1.0,
                 reference_weight: float = 2.0, shortlist: int | None = 16, chunk_size: int = 150,
                 time_width_s: float = 10.0, fusion: str = "minmax", rrf_k: float = 60.0,
                 neighbour_weight: float = 0.2, label_weight: float = 1.0, cue_weight: float = 0.0,
                 printed_pages: bool = True, strip_instructions: bool = True, reranker=None) -> None:
        if min(lexical_weight, dense_weight, reference_weight, neighbour_weight, label_weight, cue_weight) < 0:
            raise ConfigError("selection weights must be non-negative")
        if fusion not in FUSIONS:
            raise ConfigError(f"unknown fusion {fusion!r}; choose one of {FUSIONS}")
        if rrf_k < 0:
            raise ConfigError("rrf_k must be >= 0")
        self._embedder = embedder
        self.lexical_weight, self.dense_weight, self.reference_weight = lexical_weight, dense_weight, reference_weight
        self.shortlist = shortlist
        self.chunk_size = chunk_size
        self.time_width_s = time_width_s
        self.fusion, self.rrf_k = fusion, rrf_k
        self.neighbour_weight, self.label_weight, self.cue_weight = neighbour_weight, label_weight, cue_weight
        self.printed_pages, self.strip_instructions = printed_pages, strip_instructions
        self.reranker = reranker
        self.last_stats: dict = {}

    @property
    def embedder(self):
        if self._embedder is None:

            self._embedder = MiniLMEmbedder()
        return self._embedder

    # -- signals ----------------------------------------------------------------------------------------
    def lexical_scores(self, question: str, items: Sequence[TextItem]) -> np.ndarray:
        """Raw BM25 scores of the items' texts."""
        return Bm25Index([index_text(it) for it in items]).scores(question)

    def dense_scores(self, question: str, items: Sequence[TextItem], positions: Sequence[int] | None = None,
                     key: str | None = None) -> np.ndarray:
        """Max cosine similarity between the question and each item's chunks, for `positions` (all if None);
        other items and items without text get -1. Chunk embeddings are cached under `key`
        (default: a hash of all item texts)."""

        positions = range(len(items)) if positions is None else positions
        chunks, owner = [], []
        for pos in positions:
            for chunk in chunk_words(index_text(items[pos]), self.chunk_size):
                chunks.append(chunk)
                owner.append(pos)
        scores = np.full(len(items), -1.0)
        if not chunks:
            return scores
        cache = EmbeddingCache(self.embedder, key or text_sha256(*(index_text(it) for it in items)))
        vectors = cache.embed(chunks)
        query = self.embedder.embed([question])[0]
        for pos, sim in zip(owner, vectors @ query):
            scores[pos] = max(scores[pos], float(sim))
        self.last_stats["chunks_embedded"] = cache.computed
        self.last_stats["chunks_scored"] = len(chunks)
        return scores

    def reference_scores(self, question: str, items: Sequence[TextItem]) -> np.ndarray:
        """1 for pages the question names by a printed number or label (`TextItem.printed`, `label`), or by
        position where no page prints that number (0.5 where one does); for frames, closeness to a named time."""
        scores = np.zeros(len(items))
        pages = page_references(question, len(items) if items and items[0].kind == "page" else None, bounded=False)
        times = time_references(question) if any(it.kind == "frame" for it in items) else []
        printed = set().union(*(self._printed(item) for item in items))
        by_position = positional_pages(question, len(items)) if pages else set()
        numbered = pages - by_position
        for pos, item in enumerate(items):
            if item.kind == "page" and pages:
                named = numbered & self._printed(item)
                # the page printed with the number comes first; the PDF page at that position next ('the cover',
                # 'the last page' are positions: the PDF page)
                scores[pos] = (1.0 if item.number in by_position or named else
                               (0.5 if numbered & printed else 1.0) if item.number in pages else 0.0)
            elif item.kind == "frame" and times and item.timestamp is not None:
                scores[pos] = max(np.exp(-abs(item.timestamp - t) / self.time_width_s) for t in times)
        return scores

    def _printed(self, item: TextItem) -> set[int]:
        """The numbers a page prints: its numeric PDF label, and (`printed_pages`) its header/footer numbers."""
        label = {int(item.label)} if item.label.isdigit() else set()
        return label | set(item.printed) if self.printed_pages else label

    # -- fusion -----------------------------------------------------------------------------------------
    def rank(self, question: str, items: Sequence[TextItem], key: str | None = None) -> Ranking:
        """Score and order `items` (best first) for `question` (without its trailing instructions on the answer's
        form, `split_format_instructions`, unless `strip_instructions` is False)."""
        if not items:
            raise ConfigError("nothing to rank: zero items")
        self.last_stats = {}
        if self.strip_instructions:
            question = split_format_instructions(question)[0]
        lexical = self.lexical_scores(question, items)
        signals = {"lexical": minmax(lexical)}
        fused = {"lexical": (lexical, lexical > 0)}
        if self._embedder is not False and self.dense_weight > 0:
            if self.shortlist is None or len(items) <= self.shortlist:
                positions = list(range(len(items)))
            else:
                positions = self._shortlist(lexical, self.shortlist)
            dense = self.dense_scores(question, items, positions, key)
            valid = dense > -1
            signals["dense"] = np.where(valid, minmax(np.where(valid, dense, dense[valid].min() if valid.any() else 0)), 0.0)
            fused["dense"] = (dense, valid)
        content = self._fuse(signals, fused)
        if self.neighbour_weight > 0 and all(it.kind == "page" for it in items):
            content = smooth_neighbours(content, self.neighbour_weight)
        scores = content
        signals["reference"] = self.reference_scores(question, items)
        scores = scores + self.reference_weight * signals["reference"]
        if self.label_weight > 0:
            labels = question_labels(question)
            if labels:
                signals["label"] = np.array([label_score(index_text(it), labels) for it in items])
                scores = scores + self.label_weight * signals["label"]
        if self.cue_weight > 0 and _CUE_Q.search(question):
            signals["cue"] = minmax(np.array([numeric_density(index_text(it)) for it in items]))
            scores = scores + self.cue_weight * signals["cue"]
        spread = spread_order(len(items))
        tie_break = np.empty(len(items))
        tie_break[spread] = np.arange(len(items))
        order = sorted(range(len(items)), key=lambda i: (-round(float(scores[i]), 9), tie_break[i]))
        if self.reranker is not None:
            scores, order, signals["rerank"] = self.reranker.rerank(question, items, scores, order)
        return Ranking(np.asarray(scores, dtype=np.float64), order, signals)

    def _fuse(self, signals: dict[str, np.ndarray], raw: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Content score from the lexical and dense signals: their weighted sum (both min-max normalised), or
        reciprocal-rank fusion (each term scaled by k + 1, so the best item of a signal scores its weight)."""
        weights = {"lexical": self.lexical_weight, "dense": self.dense_weight}
        total = np.zeros(len(signals["lexical"]))
        for name in ("lexical", "dense"):
            if name not in signals or weights[name] == 0:
                continue
            value = signals[name]
            if self.fusion == "rrf":  # ranks of the raw scores, among the items the signal scored
                value = (self.rrf_k + 1) * rrf(raw[name][0], self.rrf_k, valid=raw[name][1])
            total = total + weights[name] * value
        return total

    def _shortlist(self, lexical: np.ndarray, size: int) -> list[int]:
        """The `size` best items by BM25; when fewer have any lexical match, the rest evenly spread."""
        matched = [int(i) for i in np.argsort(-lexical, kind="stable") if lexical[i] > 0][:size]
        chosen = set(matched)
        for i in spread_order(len(lexical)):
            if len(matched) >= size:
                break
            if i not in chosen:
                matched.append(i)
                chosen.add(i)
        return sorted(matched)

"""Question-aware selection: rank pages or video frames by how likely they hold the answer to a question.

Signals, fused into one score per item:
- lexical: BM25 (the `bm25s` library, English stop words, Snowball stemming) over each item's text;
- dense: all-MiniLM-L6-v2 cosine similarity between the question and the item's text chunks (max over chunks),
  computed only for a BM25 shortlist of 16 items (and cached on disk), which keeps indexing a 100-page PDF
  fast (on MMLongBench-Doc a 16-item shortlist ranks as well as dense scores on every page: bench/RESULTS.md);
- references: items the question names explicitly ("page 14", "slide 4", "the last page", "at 2:30",
  "minute 5": the grammar of `longvlm.references`); weighted 2 by default, so a named page comes first unless
  another page matches much better. A named page number matches a page's number or its printed label.
Each signal is min-max normalised per question before the weighted sum. Items that tie (e.g. no text at all)
are ordered by an even spread over the input, so a question with no usable signal gets uniform sampling.

`QuestionSelector.rank(question, items)` is the one entry point; the planner takes its order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from longvlm.ingest.cache import text_sha256
from longvlm.references import page_references, time_references
from longvlm.ingest.sampling import spread_order
from longvlm.retrieval.page_text import TextItem
from longvlm.errors import ConfigError
from longvlm.retrieval.embeddings import EmbeddingCache
from longvlm.retrieval.embeddings import MiniLMEmbedder


def chunk_words(text: str, size: int = 150, overlap: int = 30) -> list[str]:
    """Split text into chunks of at most `size` words, consecutive chunks sharing `overlap` words."""
    words = text.split()
    if not words:
        return []
    step = max(1, size - overlap)
    return [" ".join(words[i:i + size]) for i in range(0, max(1, len(words) - overlap), step)]


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


class QuestionSelector:
    """Ranks pages/frames against a question with BM25 + MiniLM (+ explicit page/time references).

    `embedder`: a `MiniLMEmbedder`, None to load it on first use, or False for lexical only. `shortlist`: how
    many BM25-best items get dense scores (all items when there are at most that many; None: always all).
    """

    def __init__(self, embedder=None, *, lexical_weight: float = 1.0, dense_weight: float = 1.0,
                 reference_weight: float = 2.0, shortlist: int | None = 16, chunk_size: int = 150,
                 time_width_s: float = 10.0) -> None:
        if min(lexical_weight, dense_weight, reference_weight) < 0:
            raise ConfigError("selection weights must be non-negative")
        self._embedder = embedder
        self.lexical_weight, self.dense_weight, self.reference_weight = lexical_weight, dense_weight, reference_weight
        self.shortlist = shortlist
        self.chunk_size = chunk_size
        self.time_width_s = time_width_s
        self.last_stats: dict = {}

    @property
    def embedder(self):
        if self._embedder is None:

            self._embedder = MiniLMEmbedder()
        return self._embedder

    # -- signals ----------------------------------------------------------------------------------------
    def lexical_scores(self, question: str, items: Sequence[TextItem]) -> np.ndarray:
        """Raw BM25 scores of the items' texts."""
        return Bm25Index([it.text for it in items]).scores(question)

    def dense_scores(self, question: str, items: Sequence[TextItem], positions: Sequence[int] | None = None,
                     key: str | None = None) -> np.ndarray:
        """Max cosine similarity between the question and each item's chunks, for `positions` (all if None);
        other items and items without text get -1. Chunk embeddings are cached under `key`
        (default: a hash of all item texts)."""

        positions = range(len(items)) if positions is None else positions
        chunks, owner = [], []
        for pos in positions:
            for chunk in chunk_words(items[pos].text, self.chunk_size):
                chunks.append(chunk)
                owner.append(pos)
        scores = np.full(len(items), -1.0)
        if not chunks:
            return scores
        cache = EmbeddingCache(self.embedder, key or text_sha256(*(it.text for it in items)))
        vectors = cache.embed(chunks)
        query = self.embedder.embed([question])[0]
        for pos, sim in zip(owner, vectors @ query):
            scores[pos] = max(scores[pos], float(sim))
        self.last_stats["chunks_embedded"] = cache.computed
        self.last_stats["chunks_scored"] = len(chunks)
        return scores

    def reference_scores(self, question: str, items: Sequence[TextItem]) -> np.ndarray:
        """1 for pages the question names (by number or printed label); for frames, closeness to a named time."""
        scores = np.zeros(len(items))
        pages = page_references(question, len(items) if items and items[0].kind == "page" else None, bounded=False)
        times = time_references(question) if any(it.kind == "frame" for it in items) else []
        for pos, item in enumerate(items):
            if item.kind == "page" and pages:
                label = int(item.label) if item.label.isdigit() else None
                scores[pos] = float(item.number in pages or label in pages)
            elif item.kind == "frame" and times and item.timestamp is not None:
                scores[pos] = max(np.exp(-abs(item.timestamp - t) / self.time_width_s) for t in times)
        return scores

    # -- fusion -----------------------------------------------------------------------------------------
    def rank(self, question: str, items: Sequence[TextItem], key: str | None = None) -> Ranking:
        """Score and order `items` (best first) for `question`."""
        if not items:
            raise ConfigError("nothing to rank: zero items")
        self.last_stats = {}
        lexical = self.lexical_scores(question, items)
        signals = {"lexical": minmax(lexical)}
        if self._embedder is not False and self.dense_weight > 0:
            if self.shortlist is None or len(items) <= self.shortlist:
                positions = list(range(len(items)))
            else:
                positions = self._shortlist(lexical, self.shortlist)
            dense = self.dense_scores(question, items, positions, key)
            valid = dense > -1
            signals["dense"] = np.where(valid, minmax(np.where(valid, dense, dense[valid].min() if valid.any() else 0)), 0.0)
        signals["reference"] = self.reference_scores(question, items)
        weights = {"lexical": self.lexical_weight, "dense": self.dense_weight, "reference": self.reference_weight}
        scores = sum(weights[name] * value for name, value in signals.items())
        spread = spread_order(len(items))
        tie_break = np.empty(len(items))
        tie_break[spread] = np.arange(len(items))
        order = sorted(range(len(items)), key=lambda i: (-round(float(scores[i]), 9), tie_break[i]))
        return Ranking(np.asarray(scores, dtype=np.float64), order, signals)

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

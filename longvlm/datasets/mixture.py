"""Reproducible data mixtures: weights over sources (synthetic task generators) and over length bins.

Example `i` of a mixture is a pure function of (seed, i): training can resume at any step without saved data
state, and held-out sets use a different stream. The share of long samples is a setting (ETVLM-style recipe);
`realised()` reports the mixture actually drawn.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from longvlm.datasets import needles
from longvlm.datasets.examples import Example
from longvlm.datasets.records import read_records, record_to_example
from longvlm.errors import ConfigError


def _video_needle(question: str) -> Callable[[np.random.Generator, int], Example]:
    """Video needle generator of size n: 2n frames at a random timing (see `needles.random_timing`)."""
    return lambda rng, n: needles.video_needle(rng, 2 * n, question=question, fps=None, start_s=None)


# name -> (generator(rng, size) -> Example, smallest size). `size` is the generator's length knob.
GENERATORS: dict[str, tuple[Callable[[np.random.Generator, int], Example], int]] = {
    "video_needle/color": (_video_needle("color"), 1),
    "video_needle/shape": (_video_needle("shape"), 1),
    "video_needle/count": (_video_needle("count"), 2),
    "video_needle/order": (_video_needle("order"), 2),
    "document_needle/page": (lambda rng, n: needles.document_needle(rng, n, question="page"), 1),
    "document_needle/color": (lambda rng, n: needles.document_needle(rng, n, question="color"), 1),
    "document_needle/code": (lambda rng, n: needles.document_needle(rng, n, question="code"), 1),
    "document_needle/count": (lambda rng, n: needles.document_needle(rng, n, question="count"), 1),
    "document_needle/order": (lambda rng, n: needles.document_needle(rng, n, question="order"), 2),
    "image_grid_needle": (lambda rng, n: needles.image_grid_needle(rng, n), 1),
    "text_passkey": (lambda rng, n: needles.text_passkey(rng, n), 1),
}

TRAIN_STREAM, HELDOUT_STREAM = 0, 1
JSONL_PREFIX = "jsonl:"  # a source named "jsonl:/path/to/samples.jsonl" draws records from that file


@dataclass(frozen=True)
class LengthBin:
    """Samples whose token length falls in [min_tokens, max_tokens]."""

    name: str
    min_tokens: int
    max_tokens: int


class Mixture:
    """Weighted sources x weighted length bins, sampled reproducibly.

    `length_of(example)` gives an example's token count; each source's size knob is calibrated against it,
    so a drawn target length turns into the right number of frames / pages / filler repeats.
    """

    def __init__(self, sources: dict[str, float], bins: list[LengthBin], length_of: Callable[[Example], int], *,
                 bin_weights: list[float] | None = None, long_share: float | None = None,
                 long_threshold: int | None = None, source_bin_weights: dict[str, list[float]] | None = None,
                 seed: int = 0, stream: int = TRAIN_STREAM) -> None:
        self._records = {name: read_records(name[len(JSONL_PREFIX):]) for name in sources
                         if name.startswith(JSONL_PREFIX)}
        unknown = sorted(set(sources) - set(GENERATORS) - set(self._records))
        if unknown:
            raise ConfigError(f"unknown data sources {unknown}; known: {sorted(GENERATORS)}")
        if not sources or min(sources.values()) < 0 or sum(sources.values()) <= 0:
            raise ConfigError("data sources need non-negative weights with a positive sum")
        if not bins:
            raise ConfigError("at least one length bin is needed")
        self.sources = dict(sources)
        self.bins = list(bins)
        self.bin_weights = self._bin_weights(bin_weights, long_share, long_threshold)
        self.source_bin_weights = self._source_bin_weights(source_bin_weights or {})
        self.length_of = length_of
        self.seed, self.stream = seed, stream
        self._calibration = {name: self._calibrate(name) for name in self.sources if name in GENERATORS}

    def _bin_weights(self, weights, long_share, long_threshold) -> np.ndarray:
        if long_share is not None:
            if not 0 <= long_share <= 1:
                raise ConfigError(f"long_share must be in [0, 1], got {long_share}")
            threshold = long_threshold if long_threshold is not None else self.bins[-1].min_tokens
            is_long = np.array([b.min_tokens >= threshold for b in self.bins])
            if not is_long.any() or is_long.all():
                raise ConfigError("long_share needs both short and long bins (see long_threshold)")
            w = np.where(is_long, long_share / is_long.sum(), (1 - long_share) / (~is_long).sum())
        else:
            w = np.ones(len(self.bins)) if weights is None else np.asarray(weights, dtype=float)
        if len(w) != len(self.bins) or w.min() < 0 or w.sum() <= 0:
            raise ConfigError("bin weights must be non-negative, one per bin, with a positive sum")
        return w / w.sum()

    def _source_bin_weights(self, weights: dict[str, list[float]]) -> dict[str, np.ndarray]:
        """Per-source weights over the bins (a per-task length curriculum), normalised; checked like bin weights."""
        unknown = sorted(set(weights) - set(self.sources))
        if unknown:
            raise ConfigError(f"source_bin_weights names sources not in the mixture: {unknown}")
        out = {}
        for name, w in weights.items():
            w = np.asarray(w, dtype=float)
            if len(w) != len(self.bins) or w.min() < 0 or w.sum() <= 0:
                raise ConfigError(f"source_bin_weights[{name!r}] needs one non-negative weight per bin "
                                  f"({[b.name for b in self.bins]}) with a positive sum, got {w.tolist()}")
            out[name] = w / w.sum()
        return out

    def bin_weights_for(self, source: str) -> np.ndarray:
        """The weights over the bins that `source`'s examples are drawn with: its own, else the mixture's."""
        return self.source_bin_weights.get(source, self.bin_weights)

    def _calibrate(self, name: str) -> tuple[float, float]:
        """(tokens at size 0, tokens per size unit) of a source, from two probe examples."""
        make, smallest = GENERATORS[name]
        rng = np.random.default_rng([self.seed, 99, len(name)])
        small, large = smallest, smallest + 8
        a, b = self.length_of(make(rng, small)), self.length_of(make(rng, large))
        per_unit = max(1e-3, (b - a) / (large - small))
        return a - per_unit * small, per_unit

    def size_for(self, name: str, target_tokens: int) -> int:
        """Largest size knob whose expected length stays within `target_tokens`."""
        base, per_unit = self._calibration[name]
        return max(GENERATORS[name][1], int((target_tokens - base) // per_unit))

    def draw(self, index: int) -> Example:
        """Example `index` of this mixture's stream (a pure function of seed, stream and index)."""
        rng = np.random.default_rng([self.seed, self.stream, index])
        names = list(self.sources)
        weights = np.array([self.sources[n] for n in names], dtype=float)
        name = names[rng.choice(len(names), p=weights / weights.sum())]
        bin_ = self.bins[rng.choice(len(self.bins), p=self.bin_weights_for(name))]
        target = int(rng.integers(bin_.min_tokens, bin_.max_tokens + 1))
        if name in self._records:
            return self._draw_record(name, rng, bin_, target)
        size = self.size_for(name, target)
        make, smallest = GENERATORS[name]
        state = rng.bit_generator.state
        while True:
            rng.bit_generator.state = state
            example = make(rng, size)
            length = self.length_of(example)
            if length <= bin_.max_tokens or size <= smallest:
                break
            size = max(smallest, size - max(1, size // 10))
        example.meta.update(source=name, bin=bin_.name, target_tokens=target, length=length)
        return example

    def _draw_record(self, name: str, rng: np.random.Generator, bin_: LengthBin, target: int) -> Example:
        """A record of a JSONL source (records have fixed lengths: up to 16 tries for one within the bin)."""
        records = self._records[name]
        for _ in range(16):
            example = record_to_example(records[int(rng.integers(len(records)))])
            length = self.length_of(example)
            if length <= bin_.max_tokens:
                example.meta.update(source=name, bin=bin_.name, target_tokens=target, length=length)
                return example
        raise ConfigError(f"{name}: no record found within the {bin_.name} bin ({bin_.max_tokens} tokens)")

    def realised(self, count: int, start: int = 0) -> dict:
        """Counts and shares per source and per bin over examples [start, start + count), with targets."""
        drawn = [self.draw(i) for i in range(start, start + count)]
        by_source = Counter(e.meta["source"] for e in drawn)
        by_bin = Counter(e.meta["bin"] for e in drawn)
        total_w = sum(self.sources.values())
        bin_targets = sum(w / total_w * self.bin_weights_for(n) for n, w in self.sources.items())
        return {
            "samples": count,
            "sources": {n: {"share": by_source[n] / count, "target": w / total_w} for n, w in self.sources.items()},
            "bins": {b.name: {"share": by_bin[b.name] / count, "target": float(w)}
                     for b, w in zip(self.bins, bin_targets)},
            "mean_length": float(np.mean([e.meta["length"] for e in drawn])),
            "max_length": int(max(e.meta["length"] for e in drawn)),
        }

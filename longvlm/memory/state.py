"""The state a memory bridge carries across segments: small, bounded, and saved without pickle.

* `memory` [M, C]: the current memory tokens (the output of the last segment, after retrieval);
* `cache` [K, M, C] with K <= cache_size: the memories of the segments so far, as the bridge's
  `retrieval_order` caches them (after retrieval with "retrieve_first", before it with "cache_first",
  VideoLLaMB's order; see `longvlm.memory.bridge`). Each entry covers a contiguous time span of the
  video (`spans`: start_s, end_s, first and last segment, number of segments merged into it). When the cache
  is full, two adjacent entries are merged (segment-count weighted average, spans joined): among the pairs
  covering the fewest segments, the one with the most similar mean memories. So the state stays the same size
  however long the video is, and the entries keep balanced shares of it;
* `meta`: JSON-able facts (video path, sampling, frame size of the stream, segments seen, seconds covered).

`save(dir)` writes `memory_state.safetensors` + `memory_state.json`; `MemoryState.load(dir)` reads them back.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import torch
from safetensors.torch import load_file, save_file

from longvlm.errors import ConfigError

TENSORS_NAME = "memory_state.safetensors"
META_NAME = "memory_state.json"


@dataclass
class CacheSpan:
    """The part of the video one cache entry summarises: seconds, segments, and temporal patches of the stream
    (patch p = sampled frames 2p and 2p+1), so that the span can be decoded again."""

    start_s: float
    end_s: float
    first_segment: int
    last_segment: int
    segments: int = 1
    first_patch: int = 0
    last_patch: int = 0

    @property
    def patch_count(self) -> int:
        """Temporal patches of the stream this span covers."""
        return self.last_patch - self.first_patch + 1

    def contains(self, seconds: float) -> bool:
        return self.start_s <= seconds < self.end_s


@dataclass
class MemoryState:
    """Memory tokens, the bounded memory cache with the spans it covers, and metadata (see module docstring)."""

    memory: torch.Tensor
    cache: torch.Tensor
    spans: list[CacheSpan] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @property
    def segments_seen(self) -> int:
        return int(self.meta.get("segments_seen", 0))

    def nbytes(self) -> int:
        """Bytes held by the tensors (what grows with the cache, bounded by cache_size)."""
        return self.memory.numel() * self.memory.element_size() + self.cache.numel() * self.cache.element_size()

    def push(self, memory: torch.Tensor, span: CacheSpan, cache_size: int, entry: torch.Tensor | None = None) -> None:
        """Make `memory` the current memory and append `entry` (default: `memory` itself) to the cache, merging
        when the cache is full."""
        memory = memory.detach()
        self.memory = memory
        entries = list(self.cache.unbind(0)) + [memory if entry is None else entry.detach()]
        spans = self.spans + [span]
        while len(entries) > cache_size:
            _merge_adjacent(entries, spans)
        self.cache = torch.stack(entries)
        self.spans = spans
        self.meta["segments_seen"] = self.segments_seen + 1
        self.meta["seconds_covered"] = span.end_s

    def entry_at(self, seconds: float) -> int | None:
        """Index of the cache entry whose span contains `seconds` (None if none does)."""
        for k, span in enumerate(self.spans):
            if span.contains(seconds):
                return k
        if self.spans and seconds >= self.spans[-1].end_s:
            return len(self.spans) - 1
        return None

    def save(self, path: str | os.PathLike) -> None:
        """Write tensors (safetensors) and spans + metadata (JSON) into directory `path`."""
        os.makedirs(path, exist_ok=True)
        save_file({"memory": self.memory.contiguous().cpu(), "cache": self.cache.contiguous().cpu()},
                  os.path.join(path, TENSORS_NAME))
        with open(os.path.join(path, META_NAME), "w") as fh:
            json.dump({"spans": [span.__dict__ for span in self.spans], "meta": self.meta}, fh, indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike) -> MemoryState:
        """Read a state written by `save` (no pickle)."""
        meta_file, tensor_file = os.path.join(path, META_NAME), os.path.join(path, TENSORS_NAME)
        if not (os.path.isfile(meta_file) and os.path.isfile(tensor_file)):
            raise ConfigError(f"{path}: no {META_NAME} / {TENSORS_NAME}, not a saved memory state")
        with open(meta_file) as fh:
            data = json.load(fh)
        tensors = load_file(tensor_file)
        spans = [CacheSpan(**span) for span in data["spans"]]
        if tensors["cache"].shape[0] != len(spans):
            raise ConfigError(f"{path}: {tensors['cache'].shape[0]} cache entries but {len(spans)} spans")
        return cls(tensors["memory"], tensors["cache"], spans, data["meta"])


def _merge_adjacent(entries: list[torch.Tensor], spans: list[CacheSpan]) -> None:
    """Merge, in place, one adjacent pair of cache entries: among the pairs covering the fewest segments together,
    the one whose mean memories are most similar. Entries so keep balanced shares of the video (a recurrent
    memory changes little from one segment to the next, and merging by similarity alone folds most of a long
    video into one entry, too long to be shown when it is selected)."""
    means = torch.stack([e.float().mean(dim=0) for e in entries])
    sims = torch.nn.functional.cosine_similarity(means[:-1], means[1:], dim=-1)
    sizes = torch.tensor([a.segments + b.segments for a, b in zip(spans[:-1], spans[1:])])
    sims[sizes > sizes.min()] = -float("inf")
    k = int(sims.argmax())
    a, b = spans[k], spans[k + 1]
    total = a.segments + b.segments
    merged = (entries[k].float() * a.segments + entries[k + 1].float() * b.segments) / total
    entries[k:k + 2] = [merged.to(entries[k].dtype)]
    spans[k:k + 2] = [CacheSpan(a.start_s, b.end_s, a.first_segment, b.last_segment, total, a.first_patch,
                                b.last_patch)]

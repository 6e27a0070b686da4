"""LOOK-M (arXiv 2406.18139): text-prior KV pruning at prefill, with evicted pairs merged into kept ones.

Score: the attention each cached key receives from the prompt, accumulated over the queries of the last
`window` prompt tokens (the question and the assistant prompt) and averaged over the query heads of each KV
head. The queries are recomputed from the layer's hidden states (`scoring.window_scores`), so SDPA and flash
attention keep working and nothing O(L^2) is materialised.

Text prior: the recent window and then all text tokens are kept first; image and video tokens compete for the
rest of the budget. When even the protected tokens exceed the budget, the best-scoring of them are kept
(window before text), so the budget is always met exactly.

Merge (`merging.py`): each evicted pair is merged into the most similar kept key of its head with the average,
pivotal or weighted rule; `merge=None` only evicts. `LookMPress(merge=m)` compresses exactly like
`MergingPress(LookMPress(merge=None), m)` (the same `compress_merged`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from longvlm.presses.base import LayerView, ScorerPress, require_int, tiered
from longvlm.presses.budget import Selection
from longvlm.presses.merging import check_merge_method, compress_merged
from longvlm.presses.scoring import window_scores


@dataclass(kw_only=True)
class LookMPress(ScorerPress):
    """Text-prior pruning with KV merging (`merge`: one of `MERGE_METHODS`, None = evict only); the `window`
    recent tokens are always kept and are the score queries."""

    name = "lookm"

    window: int = 32
    merge: str | None = "weighted"

    def __post_init__(self) -> None:
        super().__post_init__()
        require_int(self, "window", 1)
        check_merge_method(self.merge, allow_none=True)

    def priority(self, view: LayerView) -> torch.Tensor:
        recent = view.recent(self.window)
        text = view.real & ~view.visual()
        return tiered(window_scores(view, self.window), recent.long() + text.long())

    def compress(self, view: LayerView) -> tuple[torch.Tensor, torch.Tensor, Selection]:
        if self.merge is None:
            return super().compress(view)
        return compress_merged(view, self.priority(view), self.merge)

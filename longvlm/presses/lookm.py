"""LOOK-M (arXiv 2406.18139): text-prior KV pruning at prefill, with evicted pairs merged into kept ones.

Score: the attention each cached key receives from the prompt, accumulated over the queries of the last
`window` prompt tokens (the question and the assistant prompt) and averaged over the query heads of each KV
head. The queries are recomputed from the layer's hidden states (`scoring.window_scores`), so SDPA and flash
attention keep working and nothing O(L^2) is materialised.

Text prior: the recent window and then all text tokens are kept first; image and video tokens compete for the
rest of the budget. When even the protected tokens exceed the budget, the best-scoring of them are kept
(window before text), so the budget is always met exactly.

Merge (`merge.py`): each evicted pair is merged into the most similar kept key of its head with the average,
pivotal or weighted rule; `merge=None` only evicts.
"""

from __future__ import annotations

import torch

from longvlm.presses.merging import MERGE_METHODS, merge_evicted
from longvlm.presses.base import KVPress, LayerView, tiered
from longvlm.presses.scoring import window_scores
from longvlm.presses.budget import KVBudget, Selection, gather_slots, select_tokens
from longvlm.errors import ConfigError


class LookMPress(KVPress):
    """Text-prior pruning with KV merging; `window` recent tokens always kept (and used as score queries)."""

    name = "lookm"

    def __init__(self, budget: KVBudget | float | int, *, window: int = 32, merge: str | None = "weighted",
                 record_indices: bool = False) -> None:
        super().__init__(budget, record_indices=record_indices)
        if merge is not None and merge not in MERGE_METHODS:
            raise ConfigError(f"unknown merge method {merge!r}; known: {', '.join(MERGE_METHODS)} or None")
        if window < 1:
            raise ConfigError(f"window must be at least 1, got {window}")
        self.window = window
        self.merge = merge

    def __repr__(self) -> str:
        return f"LookMPress(budget={self.budget}, window={self.window}, merge={self.merge})"

    def priority(self, view: LayerView) -> torch.Tensor:
        recent = view.recent(self.window)
        text = view.real & ~view.visual()
        return tiered(window_scores(view, self.window), recent.long() + text.long())

    def compress(self, view: LayerView) -> tuple[torch.Tensor, torch.Tensor, Selection]:
        selection = select_tokens(self.priority(view), view.real, view.counts)
        keys, values = gather_slots(view.keys, selection.indices), gather_slots(view.values, selection.indices)
        if self.merge is None:
            return keys, values, selection
        evicted = view.real[:, None, :] & ~selection.kept  # [B, H, L]
        width = keys.shape[2]
        positions = torch.arange(view.length, device=evicted.device)
        for row in range(keys.shape[0]):
            kept, dropped = int(view.counts[row]), int(view.real[row].sum()) - int(view.counts[row])
            if dropped == 0:
                continue
            # indices [H, P] of the evicted tokens of this row (the same count in every head)
            order = torch.where(evicted[row], positions, view.length).sort(dim=-1).values[:, :dropped]
            index = order[..., None].expand(-1, -1, view.keys.shape[-1])
            merged_k, merged_v = merge_evicted(keys[row, :, width - kept:], values[row, :, width - kept:],
                                               view.keys[row].gather(1, index), view.values[row].gather(1, index),
                                               self.merge)
            keys[row, :, width - kept:] = merged_k
            values[row, :, width - kept:] = merged_v
        return keys, values, selection

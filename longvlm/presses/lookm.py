"""LOOK-M (arXiv 2406.18139): text-prior KV pruning at prefill, with evicted pairs merged into kept ones.

Score (`scoring`): the attention each cached key receives from prompt queries, averaged over the query heads of
each KV head. "window" (default): the queries of the recent window only (the question and the assistant
prompt), SnapKV-style, O(window * L); "all_queries": every prompt query, as LOOK-M's code does (it sums the
eager attention weights of the whole prefill), O(L^2) compute. The queries are recomputed from the layer's
hidden states (`scoring.summed_attention`), so SDPA and flash attention keep working and nothing O(L^2) is
held in memory.

Text prior, in this order: the recent `window` (int tokens, or a float ratio of the row's real tokens; LOOK-M's
code uses 10% of the prompt), then the text tokens, then the image and video tokens by score. Inside a tier the
best-scoring tokens win, so the budget is met exactly: when the window alone exceeds it, the best-scoring window
tokens are kept. `protect_all_text=True` keeps every text token (and the window) even past the budget, as
LOOK-M's code does; rows then keep max(budget, |window + text|) tokens.

Merge (`merging.py`): each evicted pair is merged into the most similar kept key of its head with one of
`MERGE_METHODS` (default `weighted_reference`, LOOK-M's weighted merge as its code does it); `merge=None` only
evicts. `LookMPress(merge=m)` compresses exactly like `MergingPress(LookMPress(merge=None), m)` (the same
`compress_merged`).

`LookMPress(budget, **LOOKM_REFERENCE)` is LOOK-M's released configuration in every respect but one (its cache
is hh_ratio + recent_ratio of the prompt; here the budget), see docs/parity/presses.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from longvlm.presses.base import (LayerView, ScorerPress, recent_mask, require_bool, require_choice, require_window,
                                  tiered, window_tokens)
from longvlm.presses.budget import Selection
from longvlm.presses.merging import DEFAULT_MERGE, check_merge_method, compress_merged
from longvlm.presses.scoring import accumulated_scores, window_scores
from longvlm.encoded import IMAGE, VIDEO

SCORINGS = ("window", "all_queries")

LOOKM_REFERENCE = {"window": 0.1, "scoring": "all_queries", "merge": "pivotal_reference", "protect_all_text": True}
"""Options of `LookMPress` for the configuration of LOOK-M's released script (text_prior_pivot_merge,
recent_ratio 0.1): `build_press("lookm", 0.2, **LOOKM_REFERENCE)`."""


@dataclass(kw_only=True)
class LookMPress(ScorerPress):
    """Text-prior pruning with KV merging. `window`: recent tokens always kept first (int count, or float ratio of
    each row's prompt); `scoring`: "window" (the window's queries) or "all_queries" (every prompt query);
    `merge`: one of `MERGE_METHODS`, None = evict only; `protect_all_text`: keep every text token even past the
    budget (LOOK-M's code; the budget is then a minimum)."""

    name = "lookm"

    window: int | float = 32
    scoring: str = "window"
    merge: str | None = DEFAULT_MERGE
    protect_all_text: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        require_window(self, "window", 1)
        require_choice(self, "scoring", SCORINGS)
        check_merge_method(self.merge, allow_none=True)
        require_bool(self, "protect_all_text")

    def window_sizes(self, real: torch.Tensor) -> torch.Tensor:
        """[B] recent-window size of each row (at least 1 token)."""
        return window_tokens(self.window, real, minimum=1)

    def protected(self, real: torch.Tensor, token_types: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, L] masks of the recent window and of the text tokens (real tokens only)."""
        recent = recent_mask(real, self.window_sizes(real))
        text = real & (token_types != IMAGE) & (token_types != VIDEO)
        return recent, text

    def keep_counts(self, real: torch.Tensor, token_types: torch.Tensor) -> torch.Tensor:
        counts = super().keep_counts(real, token_types)
        if not self.protect_all_text:
            return counts
        recent, text = self.protected(real, token_types.to(real.device))
        return torch.maximum(counts.to(real.device), (recent | text).sum(-1))

    def scores(self, view: LayerView) -> torch.Tensor:
        """[B, Hkv, L] attention received from the scoring queries."""
        if self.scoring == "all_queries":
            return accumulated_scores(view)
        return window_scores(view, self.window_sizes(view.real))

    def priority(self, view: LayerView) -> torch.Tensor:
        recent, text = self.protected(view.real, view.token_types)
        return tiered(self.scores(view), 2 * recent.long() + (text & ~recent).long())

    def compress(self, view: LayerView) -> tuple[torch.Tensor, torch.Tensor, Selection]:
        if self.merge is None:
            return super().compress(view)
        return compress_merged(view, self.priority(view), self.merge)

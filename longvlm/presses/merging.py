"""LOOK-M KV merging: each evicted KV pair is merged into the kept pair whose key is most similar (cosine,
per head), so that pruned visual context is compensated rather than lost (arXiv 2406.18139, Sec. 3).

For a kept pair (k_c, v_c) and the set E_c of evicted pairs assigned to it, every method is a weighted sum with
a weight w_c for the kept pair and w_e for each evicted pair, divided by w_c plus a "mass" m_e per evicted pair
(m_e = w_e for a weighted mean):

    k_c' = (w_c k_c + sum_e w_e k_e) / (w_c + sum_e m_e)         (the same weights for the values)

    average:   w_c = 1,          w_e = 1,             m_e = w_e   plain mean of the group
    pivotal:   w_c = |E_c|,      w_e = 1,             m_e = w_e   k_c' = k_c / 2 + mean(k_e) / 2: the kept
                                                                  (pivotal) pair keeps half the weight
    weighted:  w_c = 1,          w_e = max(s_e, 0),   m_e = w_e   s_e = cosine similarity of k_e to k_c; a
                                                                  weighted mean (the kept pair counts as s = 1)

and the rules of LOOK-M's released code (`modify_llama.py`, see docs/parity/presses.md):

    pivotal_reference:  w_c = 1 + |E_c|/2,  w_e = 1/2,  m_e = 1/2
        k_c' = (k_c + sum_e (k_e + k_c) / 2) / (1 + |E_c|)    (TextPivotMerge_LayerWise: scatter_reduce 'mean'
        with include_self of the pairwise means; 3/4 k_c + 1/4 k_e for one evicted pair)
    weighted_reference: w_c = 1,  w_e = f_e s_e,  m_e = f_e
        k_c' = (k_c + sum_e f_e s_e k_e) / (1 + sum_e f_e)    (TextWeightedMerge_LayerWise). f_e = 1 keeps the
        evicted pairs whose similarity is at least the mean: with the evicted pairs of each head in position
        order, the p-th one passes when its similarity averaged over the heads (the p-th evicted pair of every
        head) is >= the mean over all heads and pairs; the others are dropped without merging. Not a weighted
        mean: the divisor counts the merged pairs, not their similarity.

A kept pair that receives nothing is unchanged. `average`, `pivotal` and `weighted` were written from the
paper's definitions (normalised weighted means); the `_reference` rules transcribe the released code. (The
code's average merge pairs the similarity-filtered targets with the unfiltered evicted pairs,
`src=k_hh_pruned`; that is not reproduced.)

`merge_selection` applies this to one layer's selection (row by row; the kept pairs of row b and head h receive
that row's and head's evicted real tokens). LOOK-M (`LookMPress(merge=...)`) and `MergingPress`, which wraps
any scoring press, both compress with `compress_merged`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from longvlm.errors import ConfigError
from longvlm.presses.base import KVPress, LayerView
from longvlm.presses.budget import KVBudget, Selection, gather_slots, select_tokens

MERGE_METHODS = ("average", "pivotal", "weighted", "pivotal_reference", "weighted_reference")
DEFAULT_MERGE = "weighted_reference"
"""The merge rule of `LookMPress` and `MergingPress` when none is named: LOOK-M's weighted merge as its code does it."""
# Similarity is computed in chunks of evicted keys so that [heads, chunk, kept] stays under this many elements.
SIMILARITY_CHUNK_ELEMENTS = 1 << 26


def assign_to_kept(evicted_keys: torch.Tensor, kept_keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For evicted keys [H, P, D] and kept keys [H, K, D]: index [H, P] of the most similar kept key per head
    and that cosine similarity [H, P]. Memory is bounded by chunking over the evicted keys."""
    heads, evicted, _ = evicted_keys.shape
    kept = F.normalize(kept_keys.float(), dim=-1)
    step = max(1, SIMILARITY_CHUNK_ELEMENTS // max(1, heads * kept_keys.shape[1]))
    targets, sims = [], []
    for start in range(0, evicted, step):
        chunk = F.normalize(evicted_keys[:, start:start + step].float(), dim=-1)
        best = torch.einsum("hpd,hkd->hpk", chunk, kept).max(dim=-1)
        targets.append(best.indices)
        sims.append(best.values)
    if not targets:
        empty = evicted_keys.new_zeros((heads, 0))
        return empty.long(), empty.float()
    return torch.cat(targets, dim=1), torch.cat(sims, dim=1)


def check_merge_method(method: str, allow_none: bool = False) -> None:
    """ConfigError unless `method` is one of `MERGE_METHODS` (or None when `allow_none`)."""
    if method is None and allow_none:
        return
    if method not in MERGE_METHODS:
        known = ", ".join(MERGE_METHODS) + (" or None" if allow_none else "")
        raise ConfigError(f"unknown merge method {method!r}; known: {known}")


def merge_weights(method: str, similarity: torch.Tensor, targets: torch.Tensor,
                  kept: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weights (w_c [H, K], w_e [H, P], m_e [H, P]) of `method` (see the module docstring) for evicted pairs
    [H, P] (in position order per head) assigned to `targets` [H, P] with cosine `similarity` [H, P]."""
    check_merge_method(method)
    heads = targets.shape[0]
    self_weight = torch.ones(heads, kept, dtype=torch.float32, device=targets.device)
    evicted_weight = torch.ones_like(similarity, dtype=torch.float32)
    received = torch.zeros_like(self_weight).scatter_add_(1, targets, evicted_weight)  # |E_c|
    if method == "pivotal":
        self_weight = torch.where(received > 0, received, self_weight)
    elif method == "weighted":
        evicted_weight = similarity.float().clamp(min=0.0)
    elif method == "pivotal_reference":
        self_weight = 1.0 + received / 2
        evicted_weight = evicted_weight / 2
    elif method == "weighted_reference":
        similarity = similarity.float()
        passed = (similarity.mean(dim=0, keepdim=True) >= similarity.mean()).float().expand_as(similarity)
        return self_weight, passed * similarity, passed
    return self_weight, evicted_weight, evicted_weight


def merge_states(kept: torch.Tensor, evicted: torch.Tensor, targets: torch.Tensor, self_weight: torch.Tensor,
                 evicted_weight: torch.Tensor, evicted_mass: torch.Tensor | None = None) -> torch.Tensor:
    """(w_c k_c + sum w_e k_e) / (w_c + sum m_e) (see the module docstring) of kept states [H, K, D] and evicted
    states [H, P, D]; `evicted_mass` m_e defaults to the weights (a weighted mean)."""
    evicted_mass = evicted_weight if evicted_mass is None else evicted_mass
    index = targets[..., None].expand(-1, -1, kept.shape[-1])
    numerator = kept.float() * self_weight[..., None]
    numerator = numerator.scatter_add(1, index, evicted.float() * evicted_weight[..., None])
    denominator = self_weight.scatter_add(1, targets, evicted_mass.float())
    return (numerator / denominator[..., None]).to(kept.dtype)


def merge_evicted(kept_keys: torch.Tensor, kept_values: torch.Tensor, evicted_keys: torch.Tensor,
                  evicted_values: torch.Tensor, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge evicted KV pairs [H, P, D] into the kept ones [H, K, D] with `method`; returns new (keys, values)."""
    if evicted_keys.shape[1] == 0:
        return kept_keys, kept_values
    targets, similarity = assign_to_kept(evicted_keys, kept_keys)
    weights = merge_weights(method, similarity, targets, kept_keys.shape[1])
    return (merge_states(kept_keys, evicted_keys, targets, *weights),
            merge_states(kept_values, evicted_values, targets, *weights))


def merge_selection(view: LayerView, selection: Selection, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values [B, H, K, D] of the slots of `selection`, with the evicted real pairs of each row and head
    (real, not kept: n_b - k_b of them) merged into that row's and head's kept pairs (`merge_evicted`)."""
    keys, values = gather_slots(view.keys, selection.indices), gather_slots(view.values, selection.indices)
    evicted = view.real[:, None, :] & ~selection.kept  # [B, H, L]
    width = keys.shape[2]
    positions = torch.arange(view.length, device=evicted.device)
    for row in range(keys.shape[0]):
        kept = int(view.counts[row])
        dropped = int(view.real[row].sum()) - kept
        if dropped == 0:
            continue
        # positions [H, P] of the evicted tokens of this row (the same count in every head)
        order = torch.where(evicted[row], positions, view.length).sort(dim=-1).values[:, :dropped]
        evicted_keys = view.keys[row].gather(1, order[..., None].expand(-1, -1, view.keys.shape[-1]))
        # values may be narrower than keys (latent attention keeps the rotary key there)
        evicted_values = view.values[row].gather(1, order[..., None].expand(-1, -1, view.values.shape[-1]))
        merged_k, merged_v = merge_evicted(keys[row, :, width - kept:], values[row, :, width - kept:],
                                           evicted_keys, evicted_values, method)
        keys[row, :, width - kept:] = merged_k
        values[row, :, width - kept:] = merged_v
    return keys, values


def compress_merged(view: LayerView, priority: torch.Tensor,
                    method: str) -> tuple[torch.Tensor, torch.Tensor, Selection]:
    """`KVPress.compress` with merging: keep the `view.counts` tokens of highest `priority` [B, H, L] per row and
    head, merge the evicted ones into them with `method`; returns (keys, values, selection)."""
    selection = select_tokens(priority, view.real, view.counts)
    keys, values = merge_selection(view, selection, method)
    return keys, values, selection


@dataclass
class MergingPress(KVPress):
    """Wraps a scoring press: tokens are chosen by `press.priority` with `press.budget` (`press.keep_counts`),
    then every evicted pair is merged into the most similar kept key of its row and head with the LOOK-M rule
    `merge` (one of `MERGE_METHODS`, see the module docstring) instead of being dropped. `record_indices` is the
    inner press's.

        MergingPress(SnapKVPress(0.2, window=16), "pivotal_reference")
    """

    press: KVPress
    merge: str = DEFAULT_MERGE

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.press, KVPress):
            raise ConfigError(f"MergingPress wraps a KV press, got {self.press!r}")
        if getattr(self.press, "merge", None) is not None:
            raise ConfigError(f"{self.press!r} merges already; wrap a press that only evicts (e.g. merge=None)")
        check_merge_method(self.merge)

    @property
    def name(self) -> str:
        return f"{self.press.name}+{self.merge}-merge"

    @property
    def budget(self) -> KVBudget:
        return self.press.budget

    @property
    def record_indices(self) -> bool:
        return self.press.record_indices

    def keep_counts(self, real: torch.Tensor, token_types: torch.Tensor) -> torch.Tensor:
        return self.press.keep_counts(real, token_types)

    def priority(self, view: LayerView) -> torch.Tensor:
        return self.press.priority(view)

    def compress(self, view: LayerView) -> tuple[torch.Tensor, torch.Tensor, Selection]:
        return compress_merged(view, self.priority(view), self.merge)

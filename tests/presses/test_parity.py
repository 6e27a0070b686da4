"""Reference parity of the KV presses (docs/parity/presses.md): every choice where a reference implementation
differs is computed here by a straightforward transcription of the reference code on fixed tensors and
compared with the press (the default, or the named option that selects the reference behaviour).

References (line numbers at the commits named):
  LOOK-M   github.com/SUSTechBruce/LOOK-M @ ecf0f51, LLaVA-mix_merge_v1/llava/model/kv_token_merge/modify_llama.py
  kvpress  github.com/NVIDIA/kvpress 0.5.5 (= @ 8bb29b9 for these files), kvpress/presses/*.py
  SnapKV   github.com/FasterDecoding/SnapKV @ e216ddc, snapkv/monkeypatch/snapkv_utils.py

The presses run on a stand-in attention layer whose queries are fixed tensors (identity q_proj, identity
rotary), so the attention they recompute is softmax(q k^T / sqrt(D)) with a causal mask, which the references
receive as their (eager) attention weights. When kvpress's press modules import, their own `score` methods are
compared as well.
"""

import importlib
import importlib.util
import math
import os
import sys
import types
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from longvlm.encoded import IMAGE, TEXT, VIDEO
from longvlm.presses import (LOOKM_REFERENCE, H2OPress, LookMPress, MergingPress, SnapKVPress, StreamingLLMPress,
                             build_press)
from longvlm.presses.base import LayerView
from longvlm.presses.merging import merge_evicted


# -- a stand-in attention layer with fixed queries ----------------------------------------------------------

def apply_rotary_pos_emb(q, k, cos, sin):
    """Looked up by `scoring.rotary_function` in the module defining the attention class: identity here."""
    return q, k


class FixedAttention(nn.Module):
    """What the presses read of an attention module; q_proj is the identity, so hidden states are the queries."""

    def __init__(self, heads: int, head_dim: int):
        super().__init__()
        self.q_proj = nn.Identity()
        self.head_dim, self.scaling, self.layer_idx = head_dim, head_dim ** -0.5, 0
        self.config = SimpleNamespace(num_attention_heads=heads)


def fixed_layer(batch=1, heads=2, kv_heads=2, length=40, dim=8, seed=0, pad=None):
    """Random queries [B, H, L, D], keys and values [B, Hkv, L, D], the eager attention the references see
    [B, H, L, L] and the real-token mask (rows left-padded by `pad`)."""
    gen = torch.Generator().manual_seed(seed)
    queries = torch.randn(batch, heads, length, dim, generator=gen) * 2
    keys = torch.randn(batch, kv_heads, length, dim, generator=gen)
    values = torch.randn(batch, kv_heads, length, dim, generator=gen)
    pad = pad or [0] * batch
    real = torch.arange(length)[None, :] >= torch.tensor(pad)[:, None]
    repeated = keys.repeat_interleave(heads // kv_heads, dim=1)
    logits = queries @ repeated.transpose(-1, -2) / math.sqrt(dim)
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    allowed = causal[None, None] & real[:, None, None, :]
    attentions = torch.nan_to_num(logits.masked_fill(~allowed, float("-inf")).softmax(-1), nan=0.0)
    return SimpleNamespace(queries=queries, keys=keys, values=values, attentions=attentions, real=real,
                           heads=heads, kv_heads=kv_heads, dim=dim, length=length)


def view_of(layer, press, token_types=None):
    batch, _, length, _ = layer.keys.shape
    types_ = torch.zeros(batch, length, dtype=torch.long) if token_types is None else token_types
    hidden = layer.queries.transpose(1, 2).reshape(batch, length, -1)
    ones, zeros = torch.ones(batch, length, layer.dim), torch.zeros(batch, length, layer.dim)
    counts = press.keep_counts(layer.real, types_)
    return LayerView(FixedAttention(layer.heads, layer.dim), hidden, ones, zeros, layer.keys, layer.values,
                     layer.real, types_, counts)


def kept_sets(press, layer, token_types=None):
    """{(row, head): sorted kept positions} and the compressed (keys, values) of `press` on `layer`."""
    view = view_of(layer, press, token_types)
    keys, values, selection = press.compress(view)
    batch, heads = selection.indices.shape[:2]
    kept = {(b, h): torch.nonzero(selection.kept[b, h]).flatten().tolist() for b in range(batch) for h in range(heads)}
    return kept, keys, values, selection


def mask_sets(mask):
    """[H, L] bool -> {(0, head): kept positions}."""
    return {(0, h): torch.nonzero(mask[h]).flatten().tolist() for h in range(mask.shape[0])}


# -- transcriptions of the reference code ---------------------------------------------------------------------

def lookm_hh_score(attn_weights):
    """modify_llama.py L720 (TextPivotMerge_LayerWise._update_hh_score, prefill): attn_score_cache.sum(0).sum(1),
    the eager attention [1, H, L, L] summed over the batch and over every prompt query -> [H, L]."""
    return attn_weights.sum(0).sum(1)


def lookm_sizes(length, hh_ratio=0.1, recent_ratio=0.1):
    """modify_llama.py L662-663: hh_size = int(L * hh_ratio), recent_size = int(L * recent_ratio)."""
    return int(length * hh_ratio), int(length * recent_ratio)


def lookm_text_prior_mask(hh_score, visual, hh_size, recent_size):
    """modify_llama.py L680-693 (TextPivotMerge_LayerWise.__call__; the same in TextWeightedMerge_LayerWise
    L775-789): visual tokens and the recent window get -65516, the top hh_size of the non-recent part are kept,
    then every position with a score >= 0 (kept top-k, recent window, ALL text tokens) is kept. `visual` [L]
    replaces LLaVA's 576-token image spans (image_position). Run in float64 here: in fp16 (the reference's
    dtype) the offset quantises the visual scores to steps of 32."""
    hh_score = hh_score.clone()
    anti_image_mask = torch.full(hh_score.shape, 0, dtype=hh_score.dtype)
    anti_image_mask[:, visual] = -65516
    anti_image_mask[:, -recent_size:] = -65516
    hh_score = hh_score + anti_image_mask
    _, keep_topk = torch.topk(hh_score[:, :-recent_size], hh_size, dim=-1)
    keep_topk = keep_topk.sort().values
    hh_score.scatter_(1, keep_topk, 0)
    hh_score[:, -recent_size:] = 0
    return hh_score >= 0


def _lookm_split(keys, values, mask):
    """modify_llama.py L694-702 / L790-799: kept (k_hh_recent) and evicted (k_hh_pruned) pairs in position order
    per head, cosine similarity of each evicted key to each kept key, best match (`.squeeze()` written as
    `.squeeze(0)`, 128 as head_dim)."""
    bsz, num_heads, _, head_dim = keys.shape
    expanded_mask = mask.unsqueeze(-1).expand_as(keys)
    k_hh_recent = torch.masked_select(keys.squeeze(0), expanded_mask).view(bsz, num_heads, -1, head_dim)
    v_hh_recent = torch.masked_select(values.squeeze(0), expanded_mask).view(bsz, num_heads, -1, head_dim)
    k_hh_pruned = torch.masked_select(keys, ~expanded_mask).view(bsz, num_heads, -1, head_dim)
    similarity = (k_hh_pruned / torch.norm(k_hh_pruned, dim=-1).unsqueeze(-1).repeat(1, 1, 1, head_dim)) @ (
        (k_hh_recent / (torch.norm(k_hh_recent, dim=-1).unsqueeze(-1).repeat(1, 1, 1, head_dim))).transpose(-1, -2))
    max_values, max_indices = similarity.max(dim=-1)
    return k_hh_recent, v_hh_recent, k_hh_pruned, max_values, max_indices


def lookm_pivot_merge(keys, values, mask):
    """modify_llama.py L700-711 (TextPivotMerge_LayerWise.__call__): each evicted pair is averaged with its most
    similar kept pair, (k_e + k_c)/2, and scatter_reduce('mean', include_self=True) folds those into k_c:
    k_c' = (k_c + sum (k_e + k_c)/2) / (1 + n). keys/values [1, H, L, D], mask [H, L] kept."""
    bsz, num_heads, _, head_dim = keys.shape
    k_hh_recent, v_hh_recent, k_hh_pruned, max_values, max_indices = _lookm_split(keys, values, mask)
    merged_indices = max_indices.unsqueeze(-1).repeat(1, 1, 1, head_dim)
    k_hh_selected = torch.gather(input=k_hh_recent, dim=2, index=merged_indices)
    k_hh_merged = (k_hh_pruned + k_hh_selected) / 2
    k_hh_recent = torch.scatter_reduce(input=k_hh_recent, dim=2, index=merged_indices, src=k_hh_merged, reduce="mean",
                                       include_self=True)
    v_hh_pruned = values.squeeze(0)[~mask].view(bsz, num_heads, -1, head_dim)
    v_hh_selected = torch.gather(input=v_hh_recent, dim=2, index=merged_indices)
    v_hh_merged = (v_hh_pruned + v_hh_selected) / 2
    v_hh_recent = torch.scatter_reduce(input=v_hh_recent, dim=2, index=merged_indices, src=v_hh_merged, reduce="mean",
                                       include_self=True)
    return k_hh_recent, v_hh_recent


def lookm_weighted_merge(keys, values, mask):
    """modify_llama.py L798-810 (TextWeightedMerge_LayerWise.__call__): evicted pairs whose similarity, averaged
    over the heads (mean(1) of [1, H, P]), is below the overall mean are dropped; the others are scaled by
    their similarity and folded in with scatter_reduce('mean', include_self=True):
    k_c' = (k_c + sum s_e k_e) / (1 + n)."""
    bsz, num_heads, _, head_dim = keys.shape
    k_hh_recent, v_hh_recent, k_hh_pruned, max_values, max_indices = _lookm_split(keys, values, mask)
    filter_indices = (max_values.mean(1) >= max_values.mean()).squeeze(0)
    merged_indices = max_indices[..., filter_indices].unsqueeze(-1).repeat(1, 1, 1, head_dim)
    merge_weights = max_values[..., filter_indices].unsqueeze(-1).repeat(1, 1, 1, head_dim)
    k_hh_merged = k_hh_pruned[..., filter_indices, :]
    k_hh_recent = torch.scatter_reduce(input=k_hh_recent, dim=2, index=merged_indices, src=merge_weights * k_hh_merged,
                                       reduce="mean", include_self=True)
    expanded_mask = mask.unsqueeze(-1).expand_as(keys)
    v_hh_pruned = torch.masked_select(values, ~expanded_mask).view(bsz, num_heads, -1, head_dim)
    v_hh_merged = v_hh_pruned[..., filter_indices, :]
    v_hh_recent = torch.scatter_reduce(input=v_hh_recent, dim=2, index=merged_indices, src=merge_weights * v_hh_merged,
                                       reduce="mean", include_self=True)
    return k_hh_recent, v_hh_recent


LOOKM_MERGES = {"pivotal_reference": lookm_pivot_merge, "weighted_reference": lookm_weighted_merge}


def lookm_merge_groups(kept_k, kept_v, ev_k, ev_v, method):
    """The LOOK-M code's merge of evicted pairs [H, P, D] into kept pairs [H, K, D]: kept first, then evicted,
    in one sequence with the kept mask, through the transcriptions above."""
    keys, values = torch.cat([kept_k, ev_k], dim=1)[None], torch.cat([kept_v, ev_v], dim=1)[None]
    mask = torch.zeros(keys.shape[1:3], dtype=torch.bool)
    mask[:, :kept_k.shape[1]] = True
    k, v = LOOKM_MERGES[method](keys, values, mask)
    return k[0], v[0]


def lookm_h2o_mask(hh_score, hh_size, recent_size):
    """modify_llama.py L890-899 (H2OKVCache_LayerWise.__call__, LOOK-M's H2O baseline): top hh_size of the
    accumulated scores outside the recent window, plus the recent window."""
    seq_len = hh_score.shape[-1]
    select_hh_scores = hh_score[:, :seq_len - recent_size]
    _, keep_topk = torch.topk(select_hh_scores, hh_size, dim=-1)
    keep_topk = keep_topk.sort().values
    keep_recent = torch.arange(seq_len - recent_size, seq_len).repeat(keep_topk.shape[0], 1)
    keep_idx = torch.cat([keep_topk, keep_recent], dim=-1)
    mask = torch.zeros(hh_score.shape, dtype=torch.bool)
    return mask.scatter(-1, keep_idx, 1)


def kvpress_keep(scores, n_kept):
    """kvpress scorer_press.py L93-95 (ScorerPress.compress): indices = scores.topk(n_kept).indices per head."""
    return scores.topk(n_kept, dim=-1).indices


def kvpress_snapkv_score(attentions, window_size, kernel_size, num_key_value_heads):
    """kvpress snapkv_press.py L88-103 (SnapKVPress.score with attentions): mean over the window's queries of
    the keys BEFORE the window, avg-pooled, averaged per KV group, the window padded with max + 1."""
    bsz, _, _, k_len = attentions.shape
    num_key_value_groups = attentions.shape[1] // num_key_value_heads
    attn_weights = attentions[..., -window_size:, :-window_size]
    scores = attn_weights.mean(dim=-2)
    scores = F.avg_pool1d(scores, kernel_size=kernel_size, padding=kernel_size // 2, stride=1)
    scores = scores.view(bsz, num_key_value_heads, num_key_value_groups, k_len - window_size)
    scores = scores.mean(2)
    return F.pad(scores, (0, window_size), value=scores.max().item() + 1)


def snapkv_original_keep(attn_weights, window_size, max_capacity_prompt, kernel_size, pooling):
    """SnapKV snapkv_utils.py L55-62 (SnapKVCluster.update_kv, per query head): window queries summed over the
    keys BEFORE the window, avg- or max-pooled, top (capacity - window) plus the window itself."""
    q_len = attn_weights.shape[-1]
    attn_weights_sum = attn_weights[:, :, -window_size:, :-window_size].sum(dim=-2)
    if pooling == "avgpool":
        attn_cache = F.avg_pool1d(attn_weights_sum, kernel_size=kernel_size, padding=kernel_size // 2, stride=1)
    elif pooling == "maxpool":
        attn_cache = F.max_pool1d(attn_weights_sum, kernel_size=kernel_size, padding=kernel_size // 2, stride=1)
    indices = attn_cache.topk(max_capacity_prompt - window_size, dim=-1).indices
    window = torch.arange(q_len - window_size, q_len).expand(*indices.shape[:2], -1)
    return torch.cat([indices, window], dim=-1), attn_cache


def kvpress_observed_score(attentions, num_key_value_heads):
    """kvpress observed_attention_press.py L44-48 (ObservedAttentionPress.score): attention summed over all
    queries, divided by the number of queries that see each key (n_tokens - j), averaged per KV group."""
    scores = attentions.sum(2)
    bsz, _, n_tokens = scores.shape
    n_tokens_in_sum = torch.arange(n_tokens, 0, -1).to(attentions.device, attentions.dtype)
    scores = scores / n_tokens_in_sum
    return scores.view(bsz, num_key_value_heads, -1, n_tokens).mean(2)


def kvpress_streaming_score(keys, compression_ratio, n_sink=4):
    """kvpress streaming_llm_press.py L48-52 (StreamingLLMPress.score): ones, zeros for the n_pruned tokens
    after the sinks."""
    k_len = keys.shape[2]
    n_pruned = k_len - int(k_len * (1 - compression_ratio))
    scores = torch.ones_like(keys[..., 0])
    scores[:, :, n_sink:n_sink + n_pruned] = 0
    return scores


def index_sets(indices):
    """[B, H, K] indices -> {(row, head): sorted positions}."""
    return {(b, h): sorted(indices[b, h].tolist()) for b in range(indices.shape[0]) for h in range(indices.shape[1])}


# -- LOOK-M ----------------------------------------------------------------------------------------------------

def test_lookm_recent_window_is_kept_before_text(monkeypatch):
    """Issue 23 finding 1. 10 tokens, window 4 (positions 6-9; 6 and 7 visual), budget 6: the window is kept
    first, then the best text tokens (0, 1). Ranking by tier recent + text made 6 and 7 tie with the older text
    tokens and lose ([0, 1, 2, 3, 8, 9]). LOOK-M keeps the window first (modify_llama.py L686-688: the recent
    window is left out of the top-k; L692-693: then kept unconditionally)."""
    scores = torch.tensor([9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 1.0, 0.5, 2.0, 3.0])[None, None]
    monkeypatch.setattr(LookMPress, "scores", lambda self, view: scores)
    types_ = torch.tensor([[TEXT] * 6 + [IMAGE, VIDEO] + [TEXT] * 2])
    real = torch.ones(1, 10, dtype=torch.bool)
    for press in (LookMPress(6, window=4, merge=None), build_press("lookm", 6, window=4, merge="none"),
                  LookMPress(6, window=0.4, merge=None)):
        counts = press.keep_counts(real, types_)
        view = LayerView(None, None, None, None, torch.zeros(1, 1, 10, 2), torch.zeros(1, 1, 10, 2), real, types_,
                         counts)
        _, _, selection = press.compress(view)
        assert torch.nonzero(selection.kept[0, 0]).flatten().tolist() == [0, 1, 6, 7, 8, 9], press
    # the window alone larger than the budget: its best-scoring tokens are kept (the budget stays exact)
    press = LookMPress(3, window=4, merge=None)
    view = LayerView(None, None, None, None, torch.zeros(1, 1, 10, 2), torch.zeros(1, 1, 10, 2), real, types_,
                     press.keep_counts(real, types_))
    assert torch.nonzero(press.compress(view)[2].kept[0, 0]).flatten().tolist() == [6, 8, 9]


@pytest.mark.parametrize("groups", [1, 2])
def test_lookm_all_queries_scores_are_the_reference_sum(groups):
    """scoring="all_queries" = modify_llama.py L720 (attention summed over every prompt query, per head); with
    grouped-query attention (LLaVA's LLaMA has none) the sums of the query heads of a KV head are averaged.
    scoring="window" sums only the window's queries."""
    layer = fixed_layer(heads=2 * groups, kv_heads=2, length=24)
    reference = lookm_hh_score(layer.attentions).view(2, groups, -1).mean(1)[None]
    ours = LookMPress(0.5, scoring="all_queries").scores(view_of(layer, LookMPress(0.5)))
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    window = LookMPress(0.5, window=5).scores(view_of(layer, LookMPress(0.5)))
    reference_window = layer.attentions[:, :, -5:].sum(2).view(1, 2, groups, -1).mean(2)
    torch.testing.assert_close(window, reference_window, atol=1e-5, rtol=1e-5)


def _lookm_prompt(length=40):
    visual = torch.zeros(length, dtype=torch.bool)
    visual[5:30] = True  # text 0-4, one image 5-29, text 30-39 (question; the last 4 are the recent window)
    types_ = torch.where(visual, IMAGE, TEXT)[None]
    return visual, types_


@pytest.mark.parametrize("hh_size", [14, 6])  # images compete for 3 slots / the text alone exceeds the budget
@pytest.mark.parametrize("merge", [None, "pivotal_reference", "weighted_reference"])
def test_lookm_reference_configuration(hh_size, merge):
    """LookMPress(hh + recent tokens, **LOOKM_REFERENCE) keeps exactly the tokens of LOOK-M's text prior
    (modify_llama.py L662-663 sizes, L681-693 selection, L720 scores; window = int(0.1 L), every text token kept
    even past the budget) and merges exactly like its code (L700-711 pivotal, L798-810 weighted)."""
    layer = fixed_layer(heads=2, kv_heads=2, length=40, seed=1)
    visual, types_ = _lookm_prompt()
    _, recent_size = lookm_sizes(40)
    mask = lookm_text_prior_mask(lookm_hh_score(layer.attentions).double(), visual, hh_size, recent_size)
    press = LookMPress(hh_size + recent_size, **{**LOOKM_REFERENCE, "merge": merge})
    kept, keys, values, selection = kept_sets(press, layer, types_)
    assert kept == mask_sets(mask)
    n_text = int((~visual).sum())
    assert int(selection.slot_mask.sum()) == max(hh_size + recent_size, n_text)  # past the budget when text is
    if merge is None:
        return
    want_k, want_v = LOOKM_MERGES[merge](layer.keys, layer.values, mask)
    torch.testing.assert_close(keys, want_k, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(values, want_v, atol=1e-5, rtol=1e-5)


def test_lookm_protect_all_text_counts_and_window_ratio():
    """protect_all_text: rows keep max(budget, |window + text|), as the reference keeps every text token
    (modify_llama.py L693); the window as a ratio is int(ratio * row length) per row (L663); MergingPress keeps
    the counts of the press it wraps."""
    real = torch.arange(30)[None, :] >= torch.tensor([0, 10])[:, None]  # rows of 30 and 20 real tokens
    types_ = torch.full((2, 30), IMAGE)
    types_[:, :12] = TEXT  # row 0: 12 text; row 1: 2 text (positions 10, 11)
    exact = LookMPress(5, window=0.1)
    assert exact.keep_counts(real, types_).tolist() == [5, 5]
    assert exact.window_sizes(real).tolist() == [3, 2]
    protect = LookMPress(5, window=0.1, protect_all_text=True)
    assert protect.keep_counts(real, types_).tolist() == [15, 5]  # 12 text + 3 window; 2 text + 2 window < 5
    wrapped = MergingPress(LookMPress(5, window=0.1, protect_all_text=True, merge=None), "pivotal_reference")
    assert wrapped.keep_counts(real, types_).tolist() == [15, 5]
    # a text-only prompt is kept whole (the reference does not compress prompts without images, L1417)
    assert protect.keep_counts(real, torch.full((2, 30), TEXT)).tolist() == [30, 20]


# -- merge rules ------------------------------------------------------------------------------------------------

def test_reference_merge_rules_on_one_pair():
    """pivotal_reference: 3/4 k_c + 1/4 k_e for one evicted pair (modify_llama.py L706-707); pivotal: 1/2, 1/2.
    weighted_reference with one pair: the pair passes the mean filter, k_c' = (k_c + s k_e) / 2 (L801-807),
    where weighted gives the weighted mean (k_c + s k_e) / (1 + s)."""
    kept = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    evicted = torch.tensor([[[1.0, 0.5]]])  # closest to slot 0, cosine 2/sqrt(5)
    s = 2 / 5 ** 0.5
    expected = {"pivotal_reference": 0.75 * kept[0, 0] + 0.25 * evicted[0, 0],
                "pivotal": 0.5 * kept[0, 0] + 0.5 * evicted[0, 0],
                "weighted_reference": (kept[0, 0] + s * evicted[0, 0]) / 2,
                "weighted": (kept[0, 0] + s * evicted[0, 0]) / (1 + s),
                "average": (kept[0, 0] + evicted[0, 0]) / 2}
    for method, want in expected.items():
        k, v = merge_evicted(kept, kept, evicted, evicted, method)
        torch.testing.assert_close(k[0, 0], want, msg=method)
        torch.testing.assert_close(v[0, 0], want, msg=method)
        assert torch.equal(k[0, 1], kept[0, 1])


@pytest.mark.parametrize("method", ["pivotal_reference", "weighted_reference"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference_merge_rules_match_the_code(method, seed):
    """merge_evicted with the `_reference` rules = the transcriptions of modify_llama.py L696-711 (pivotal) and
    L798-810 (weighted, similarity filter across heads included) on random kept/evicted pairs."""
    gen = torch.Generator().manual_seed(seed)
    kept_k, kept_v = torch.randn(3, 5, 8, generator=gen), torch.randn(3, 5, 8, generator=gen)
    ev_k, ev_v = torch.randn(3, 17, 8, generator=gen), torch.randn(3, 17, 8, generator=gen)
    got_k, got_v = merge_evicted(kept_k, kept_v, ev_k, ev_v, method)
    want_k, want_v = lookm_merge_groups(kept_k, kept_v, ev_k, ev_v, method)
    torch.testing.assert_close(got_k, want_k, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_v, want_v, atol=1e-5, rtol=1e-5)


# -- H2O -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("window", [4, 0.1])
def test_h2o_is_lookm_h2o_baseline(window):
    """H2OPress(hh + recent, window=recent or 0.1) keeps what LOOK-M's H2O baseline keeps: modify_llama.py
    L854-855 sizes, L890-899 selection, L978 scores (sum over every prompt query, no normalisation)."""
    layer = fixed_layer(heads=2, kv_heads=2, length=40, seed=2)
    hh_size, recent_size = 9, 4
    mask = lookm_h2o_mask(lookm_hh_score(layer.attentions), hh_size, recent_size)
    kept, *_ = kept_sets(H2OPress(hh_size + recent_size, window=window, query_chunk=7), layer)
    assert kept == mask_sets(mask)


@pytest.mark.parametrize("groups", [1, 2])
def test_h2o_normalize_is_kvpress_observed_attention(groups):
    """H2OPress(window=0, normalize=True) = kvpress observed_attention_press.py L44-48 (sum over queries / the
    number of queries seeing each key, mean per KV group) + scorer_press.py L93-95 (top-k per head)."""
    layer = fixed_layer(heads=2 * groups, kv_heads=2, length=36, seed=3)
    n_kept = int(36 * (1 - 0.6))
    press = H2OPress(n_kept, window=0, normalize=True)
    reference = kvpress_observed_score(layer.attentions, 2)
    torch.testing.assert_close(press.scores(view_of(layer, press)), reference, atol=1e-6, rtol=1e-5)
    kept, *_ = kept_sets(press, layer)
    assert kept == index_sets(kvpress_keep(reference, n_kept))
    # the default (sum + window) differs: keys early in the prompt are favoured by the plain sum
    assert kept_sets(H2OPress(n_kept, window=0), layer)[0] != kept


def test_h2o_left_padding_counts():
    """With left padding a real key j is still seen by L - j queries, so a padded row scores like the same
    row alone (the kvpress formula assumes no padding)."""
    layer = fixed_layer(batch=2, heads=2, kv_heads=2, length=30, seed=4, pad=[0, 8])
    press = H2OPress(10, window=0, normalize=True)
    padded = press.scores(view_of(layer, press))[1, :, 8:]
    alone = SimpleNamespace(queries=layer.queries[1:, :, 8:], keys=layer.keys[1:, :, 8:],
                            values=layer.values[1:, :, 8:], real=torch.ones(1, 22, dtype=torch.bool), heads=2,
                            dim=layer.dim)
    torch.testing.assert_close(padded, press.scores(view_of(alone, press))[0], atol=1e-6, rtol=1e-5)


# -- SnapKV ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("groups", [1, 2])
def test_snapkv_avg_is_kvpress(groups):
    """SnapKVPress(window=w, kernel=5, pooling="avg") keeps what kvpress keeps: snapkv_press.py L88-103 (pool
    only the keys before the window, per query head, then average per KV group; window kept) + scorer_press.py
    L93-95."""
    layer = fixed_layer(heads=2 * groups, kv_heads=2, length=48, seed=5)
    n_kept = int(48 * (1 - 0.5))
    reference = kvpress_snapkv_score(layer.attentions, 8, 5, 2)
    kept, *_ = kept_sets(SnapKVPress(n_kept, window=8, kernel=5, pooling="avg"), layer)
    assert kept == index_sets(kvpress_keep(reference, n_kept))


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_snapkv_is_snapkv_original(pooling):
    """SnapKVPress (default pool_window=False) keeps what SnapKV keeps: snapkv_utils.py L55-68 (window queries
    summed over the keys before the window, max- or avg-pooled, top capacity - window, plus the window). The
    original works per query head (after repeat_kv); here with one query head per KV head."""
    layer = fixed_layer(heads=2, kv_heads=2, length=48, seed=6)
    capacity = 20
    reference, pooled = snapkv_original_keep(layer.attentions, 8, capacity, 7, f"{pooling}pool")
    kept, *_ = kept_sets(SnapKVPress(capacity, window=8, kernel=7, pooling=pooling), layer)
    if pooling == "avg":
        assert kept == index_sets(reference)
        return
    # max pooling makes plateaus of equal scores: which tied keys top-k returns is arbitrary in both, so compare
    # the pooled scores of the kept keys (equal multisets = both are a top-k of the same scores)
    for (b, h), ours in kept.items():
        theirs = index_sets(reference)[(b, h)]
        assert ours[-8:] == theirs[-8:] == list(range(40, 48))
        assert sorted(pooled[b, h, ours[:-8]].tolist()) == sorted(pooled[b, h, theirs[:-8]].tolist())


def test_snapkv_pool_window_option():
    """pool_window=True pools across the whole prompt, window included (the project's earlier behaviour): the
    keys just before the window inherit the window's scores, so they are kept more often."""
    layer = fixed_layer(heads=2, kv_heads=2, length=48, seed=7)
    press = SnapKVPress(16, window=8, kernel=7, pool_window=True)
    summed = layer.attentions[:, :, -8:].sum(2)  # [1, H, L] (one query head per KV head)
    pooled = F.max_pool1d(summed, 7, stride=1, padding=3)
    torch.testing.assert_close(press.scores(view_of(layer, press)), pooled, atol=1e-6, rtol=1e-5)
    outside = SnapKVPress(16, window=8, kernel=7).scores(view_of(layer, press))
    before = slice(40 - 3, 40)  # the kernel // 2 keys before the window
    assert bool((press.scores(view_of(layer, press))[..., before] >= outside[..., before]).all())
    assert not torch.equal(press.scores(view_of(layer, press))[..., before], outside[..., before])


# -- StreamingLLM ----------------------------------------------------------------------------------------------

def test_streaming_is_kvpress():
    """StreamingLLMPress(sinks=4) keeps kvpress's tokens: streaming_llm_press.py L48-52 + scorer_press.py L93-95."""
    layer = fixed_layer(heads=2, kv_heads=2, length=30, seed=8)
    n_kept = int(30 * (1 - 0.7))
    kept, *_ = kept_sets(StreamingLLMPress(n_kept), layer)
    assert kept == index_sets(kvpress_keep(kvpress_streaming_score(layer.keys, 0.7), n_kept))


# -- kvpress itself, when its press modules import -------------------------------------------------------------

def load_kvpress():
    """kvpress's press classes, or None. kvpress 0.5.5's package __init__ imports every press (DuoAttentionPress
    needs `cachetools` and `datasets`, and its metadata pins transformers<5.3); when that fails, the three press
    modules are loaded directly (they only need torch and transformers' LLaMA helpers)."""
    try:
        kvpress = importlib.import_module("kvpress")
        return kvpress.SnapKVPress, kvpress.ObservedAttentionPress, kvpress.StreamingLLMPress
    except Exception:  # noqa: BLE001 - ImportError, or an incompatibility with this transformers
        pass
    spec = importlib.util.find_spec("kvpress")
    if spec is None or spec.origin is None:
        return None
    root = os.path.dirname(spec.origin)
    saved = {name: sys.modules.get(name) for name in ("kvpress", "kvpress.presses")}
    try:
        for name, path in (("kvpress", root), ("kvpress.presses", os.path.join(root, "presses"))):
            package = types.ModuleType(name)
            package.__path__ = [path]
            sys.modules[name] = package
        snap = importlib.import_module("kvpress.presses.snapkv_press").SnapKVPress
        observed = importlib.import_module("kvpress.presses.observed_attention_press").ObservedAttentionPress
        streaming = importlib.import_module("kvpress.presses.streaming_llm_press").StreamingLLMPress
        return snap, observed, streaming
    except Exception:  # noqa: BLE001 - any import failure means: not comparable here
        return None
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


@pytest.mark.parametrize("groups", [1, 2])
def test_against_installed_kvpress(groups):
    """kvpress's own SnapKVPress / ObservedAttentionPress / StreamingLLMPress `.score` on the same attentions
    and keys, top-k as kvpress's ScorerPress.compress: the same kept tokens per head."""
    classes = load_kvpress()
    if classes is None:
        pytest.skip("kvpress is not installed (pip install --no-deps kvpress==0.5.5)")
    snap, observed, streaming = classes
    layer = fixed_layer(heads=2 * groups, kv_heads=2, length=48, seed=9)
    module = SimpleNamespace(config=SimpleNamespace(num_attention_heads=2 * groups, num_key_value_heads=2),
                             head_dim=layer.dim)
    hidden = torch.zeros(1, 48, 4)
    ratio = 0.5
    n_kept = int(48 * (1 - ratio))
    cases = [(snap(compression_ratio=ratio, window_size=8, kernel_size=5),
              SnapKVPress(n_kept, window=8, kernel=5, pooling="avg")),
             (observed(compression_ratio=ratio), H2OPress(n_kept, window=0, normalize=True)),
             (streaming(compression_ratio=ratio), StreamingLLMPress(n_kept))]
    for theirs, ours in cases:
        scores = theirs.score(module, hidden, layer.keys, layer.values, layer.attentions, {})
        kept, *_ = kept_sets(ours, layer)
        assert kept == index_sets(kvpress_keep(scores, n_kept)), type(theirs).__name__

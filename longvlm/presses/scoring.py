"""Attention scores for KV pruning without materialising the model's own O(L^2) attention.

The attention layers run with SDPA / flash attention, which never return their weights. Instead the scores are
recomputed from the layer's input hidden states: queries = RoPE(q_proj(hidden)) with the layer's own
projection and the model's own `apply_rotary_pos_emb`, against the keys already in the cache (SnapKV-style).

`summed_attention` adds up what each key receives from a set of prompt queries, per query head: the last
`queries` real tokens of each row (O(queries * L), SnapKV's observation window) or every prompt query (H2O's
accumulated attention, O(L^2) compute). Queries are processed in chunks, so memory stays O(chunk * L).
`window_scores` and `accumulated_scores` average it over the query heads that share a KV head.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import torch

from longvlm.errors import ConfigError

if TYPE_CHECKING:
    from longvlm.presses.base import LayerView


def rotary_function(module: torch.nn.Module):
    """The `apply_rotary_pos_emb` of the modeling file that defines this attention module."""
    function = getattr(sys.modules[type(module).__module__], "apply_rotary_pos_emb", None)
    if function is None:
        raise ConfigError(f"{type(module).__name__}: its modeling module has no apply_rotary_pos_emb; "
                          "KV scoring supports the model families of longvlm.vlm.families")
    return function


def project_queries(view: LayerView, start: int, end: int) -> torch.Tensor:
    """Queries [B, H, end-start, D] of prompt positions start..end-1, as the attention layer computed them:
    q_proj; for a gated attention (Qwen3.5) the query half of each head's [query, gate]; the per-head RMSNorm
    when the layer has one (Qwen3-VL, Qwen3.5); RoPE (partial when cos/sin cover fewer dims)."""
    module = view.module
    hidden = view.hidden_states[:, start:end]
    batch, length, _ = hidden.shape
    projected = module.q_proj(hidden)
    heads, dim = module.config.num_attention_heads, module.head_dim
    if projected.shape[-1] == 2 * heads * dim:  # gated: each head holds [query, gate]
        queries = projected.view(batch, length, heads, 2 * dim)[..., :dim]
    else:
        queries = projected.view(batch, length, heads, dim)
    if getattr(module, "q_norm", None) is not None:
        queries = module.q_norm(queries)
    queries = queries.transpose(1, 2)
    cos, sin = view.cos[:, start:end], view.sin[:, start:end]
    rotated, _ = rotary_function(module)(queries, queries, cos, sin)
    return rotated


def is_latent_attention(module: torch.nn.Module) -> bool:
    """Multi-head latent attention (DeepSeek-V3, Kimi K2.5's LLM): the cache holds one compressed latent per
    token ([B, 1, L, kv_lora_rank] in the keys slot, the shared rotary key [B, 1, L, rope dims] in the values
    slot) and every head's keys and values are expanded from it at each step."""
    return hasattr(module, "kv_b_proj") and hasattr(module, "expand_kv")


def _latent_queries(view: LayerView, start: int, end: int) -> torch.Tensor:
    """MLA queries [B, H, end-start, nope + rope dims] as DeepseekV3Attention computes them (low-rank q when
    q_lora_rank is set; RoPE on the rope part only, interleaved when the config says so)."""
    module = view.module
    hidden = view.hidden_states[:, start:end]
    batch, length, _ = hidden.shape
    if module.q_lora_rank is None:
        projected = module.q_proj(hidden)
    else:
        projected = module.q_b_proj(module.q_a_layernorm(module.q_a_proj(hidden)))
    queries = projected.view(batch, length, -1, module.qk_head_dim).transpose(1, 2)
    passed, rotary = torch.split(queries, [module.qk_nope_head_dim, module.qk_rope_head_dim], dim=-1)
    cos, sin = view.cos[:, start:end], view.sin[:, start:end]
    modeling = sys.modules[type(module).__module__]
    rotate = modeling.apply_rotary_pos_emb_interleave if module.config.rope_interleave else rotary_function(module)
    rotated, _ = rotate(rotary, rotary, cos, sin)
    return torch.cat([passed, rotated], dim=-1)


def per_head_keys(view: LayerView) -> torch.Tensor:
    """Keys [B, Hk, L, D] as the attention compares queries with them: the cached keys, or for latent attention
    every head's keys expanded from the cached latent (Hk = query heads)."""
    if is_latent_attention(view.module):
        keys, _ = view.module.expand_kv(view.keys, view.values)
        return keys
    return view.keys


def attention_probs(view: LayerView, start: int, end: int) -> torch.Tensor:
    """Softmax attention [B, Hkv, G, end-start, L] (float32) of prompt queries start..end-1 over the cached
    keys, causal and without padding keys; padding queries get all-zero rows. Hkv = heads of the cache (1 for
    latent attention, whose heads then all count as one group), G = query heads per cache head."""
    batch, kv_heads, length, _ = view.keys.shape
    latent = is_latent_attention(view.module)
    queries = (_latent_queries(view, start, end) if latent else project_queries(view, start, end)).float()
    keys = per_head_keys(view).float()
    heads, dim = queries.shape[1], queries.shape[-1]
    groups = heads // kv_heads
    if latent:  # per-head keys: logits per head, then viewed as one cache head of H groups
        logits = torch.einsum("bhqd,bhld->bhql", queries, keys).view(batch, kv_heads, groups, end - start, length)
    else:
        queries = queries.view(batch, kv_heads, groups, end - start, dim)
        logits = torch.einsum("bhgqd,bhld->bhgql", queries, keys)
    logits = logits * view.module.scaling
    causal = torch.arange(length, device=keys.device)[None, :] <= torch.arange(start, end, device=keys.device)[:, None]
    allowed = causal[None, :, :] & view.real[:, None, :]  # [B, q, L]
    logits = logits.masked_fill(~allowed[:, None, None], float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.nan_to_num(probs, nan=0.0)  # rows with no allowed key (padding queries)


# Query chunks hold at most this many attention weights ([B, H, chunk, L] float32).
ACCUMULATE_CHUNK_ELEMENTS = 1 << 26


def summed_attention(view: LayerView, queries: int | torch.Tensor | None = None,
                     chunk: int | None = None) -> torch.Tensor:
    """Attention each cached key receives, summed over prompt queries, per query head: [B, Hkv, G, L] float32.

    `queries`: None = every prompt query (H2O; O(L^2) compute); an int or a [B] tensor = the last `queries` real
    tokens of each row (SnapKV's observation window; O(queries * L)). Memory is bounded by `chunk` queries at a
    time (auto when None)."""
    batch, kv_heads, length, _ = view.keys.shape
    device = view.keys.device
    heads = view.module.config.num_attention_heads
    if queries is None:
        first = torch.zeros(batch, dtype=torch.long, device=device)
    else:
        counts = torch.as_tensor(queries, device=device).long().expand(batch)
        first = length - counts  # per row: queries at positions >= first count (left padding: the last real ones)
    start = max(0, int(first.min()))
    chunk = chunk or max(1, ACCUMULATE_CHUNK_ELEMENTS // (batch * heads * length))
    total = torch.zeros(batch, kv_heads, heads // kv_heads, length, dtype=torch.float32, device=device)
    for begin in range(start, length, chunk):
        end = min(length, begin + chunk)
        probs = attention_probs(view, begin, end)  # [B, Hkv, G, q, L]
        used = torch.arange(begin, end, device=device)[None, :] >= first[:, None]  # [B, q]
        total += (probs * used[:, None, None, :, None]).sum(dim=3)
    return total


def window_scores(view: LayerView, window: int | torch.Tensor) -> torch.Tensor:
    """Attention each cached key receives from the last `window` prompt queries of each row (an int or a [B]
    tensor), summed over those queries and averaged over the query heads sharing a KV head: [B, Hkv, L]."""
    return summed_attention(view, window).mean(dim=2)


def accumulated_scores(view: LayerView, chunk: int | None = None) -> torch.Tensor:
    """H2O's accumulated attention: what each key receives from every prompt query, [B, Hkv, L]. O(L^2)
    compute (impractical beyond ~32K tokens); memory bounded by `chunk` queries at a time (auto by default)."""
    return summed_attention(view, None, chunk).mean(dim=2)


def observed_counts(length: int, device: torch.device | None = None) -> torch.Tensor:
    """[L] number of prompt queries that see key j under the causal mask: L - j. With left padding a real key
    j is seen by exactly the queries j..L-1 of its row (all real), so this holds for every row."""
    return torch.arange(length, 0, -1, device=device, dtype=torch.float32)

"""Numbers for the stats panel: token counts before/after compression, context, KV memory, stage times."""

from __future__ import annotations

import torch

STAGE_TIMES = (("plan", "time_plan_s"), ("decode", "time_decode_s"), ("encode", "time_encode_s"),
               ("compress", "time_compress_s"), ("thumbnails", "time_thumbnails_s"),
               ("generate", "time_generate_s"))


def _layer_types(text_config) -> list[str]:
    return getattr(text_config, "layer_types", None) or ["full_attention"] * text_config.num_hidden_layers


def kv_cache_bytes(text_config, tokens: int, dtype: torch.dtype) -> int:
    """Bytes of a full (unpruned) KV cache for `tokens` positions: `kv_values_per_token` of every
    softmax-attention layer x tokens x element size (sliding-window layers keep at most their window;
    linear-attention layers keep no KV: `recurrent_state_bytes`)."""
    window = getattr(text_config, "sliding_window", None)
    kept = [0 if kind == "linear_attention" else min(tokens, window) if kind == "sliding_attention" and window
            else tokens for kind in _layer_types(text_config)]
    element = torch.empty((), dtype=dtype).element_size()
    return kv_values_per_token(text_config) * element * sum(kept)


def kv_values_per_token(text_config) -> int:
    """Cached values per token and layer: keys and values of every KV head (2 * kv_heads * head_dim), or for
    multi-head latent attention (DeepSeek-V3, Kimi K2.5) the latent and the shared rotary key
    (kv_lora_rank + qk_rope_head_dim)."""
    if getattr(text_config, "kv_lora_rank", None):
        return int(text_config.kv_lora_rank + text_config.qk_rope_head_dim)
    head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // text_config.num_attention_heads
    return 2 * text_config.num_key_value_heads * head_dim


def recurrent_state_bytes(text_config, dtype: torch.dtype) -> int:
    """Bytes the linear-attention layers (Qwen3.5's Gated DeltaNet) keep whatever the context length: per layer
    a convolution state (2 key dims + value dims) x kernel at `dtype` and a recurrent state value heads x key
    dim x value dim in float32 (transformers' PyTorch path computes it in float32 whatever the model's dtype;
    measured in bench/families.py). 0 for models without such layers."""
    layers = _layer_types(text_config).count("linear_attention")
    if not layers:
        return 0
    key_dim = text_config.linear_num_key_heads * text_config.linear_key_head_dim
    value_dim = text_config.linear_num_value_heads * text_config.linear_value_head_dim
    conv = (2 * key_dim + value_dim) * text_config.linear_conv_kernel_dim
    recurrent = text_config.linear_num_value_heads * text_config.linear_key_head_dim * text_config.linear_value_head_dim
    return layers * (conv * torch.empty((), dtype=dtype).element_size() + recurrent * 4)


def format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def stats_rows(stats: dict, *, max_context: int, text_config, dtype: torch.dtype,
               compression_note: str) -> list[tuple[str, str]]:
    """(name, value) rows describing an encoded input and, once asked, the last answer."""
    rows: list[tuple[str, str]] = []
    encoded = stats.get("visual_tokens")
    if encoded is not None:
        # a k x k visual compressor (longvlm.compression) keeps 1/k^2 of each item's merged tokens, exactly;
        # the budget then counts the compressed tokens
        factor = int(stats.get("visual_downsample", 1))
        budget = stats.get("budget")
        budget_note = f" (budget {budget:,})" if budget else ""
        rows.append(("visual tokens before compression", f"{encoded * factor * factor:,}"
                     + ("" if factor > 1 else budget_note)))
        after = (f"{encoded:,} ({stats.get('visual_compressor')}, {factor}x{factor}){budget_note}" if factor > 1
                 else f"{encoded:,} ({compression_note})")
        rows.append(("visual tokens after compression", after))
    if "frames_sampled" in stats:
        rows.append(("frames sampled", f"{stats['frames_sampled']:,} of {stats['video_duration_s']:.0f} s video"))
    elif "visual_items" in stats:
        total = stats.get("pages_in_document", stats["visual_items"])
        rows.append(("pages read", f"{stats['visual_items']:,} of {total:,}"))
    if "context_length" in stats:
        context = stats["context_length"]
        rows.append(("context length", f"{context:,} tokens (model limit {max_context:,})"))
        full = kv_cache_bytes(text_config, context, dtype)
        if "kv_cache_bytes" in stats:  # a KV press pruned the cache (longvlm.compression)
            rows.append(("KV cache", f"{format_bytes(stats['kv_cache_bytes'])} after pruning, "
                                     f"{format_bytes(full)} unpruned"))
        else:
            rows.append(("KV cache", f"{format_bytes(full)} ({stats.get('kv_note', 'no KV pruning')})"))
        recurrent = recurrent_state_bytes(text_config, dtype)
        if recurrent:  # linear-attention layers: a fixed-size state, not KV, never pruned
            rows.append(("linear-attention state", f"{format_bytes(recurrent)} (fixed, any context length)"))
        rows.append(("new tokens", f"{stats.get('new_tokens', 0)}"))
    times = [f"{name} {stats[key]:.2f}s" for name, key in STAGE_TIMES if key in stats]
    if times:
        rows.append(("time per stage", " · ".join(times)))
    if "peak_rss_mb" in stats:
        rows.append(("peak memory (RSS)", f"{stats['peak_rss_mb']:,.0f} MiB"))
    return rows

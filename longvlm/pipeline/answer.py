"""Answer questions about an encoded input: chat tokens around its visual features, then greedy generation
(on a KV cache pruned by the options' press when there is one)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from longvlm.encoded import Answer, EncodedInput
from longvlm.errors import BudgetError, ConfigError
from longvlm.limits import check_question
from longvlm.memory.streaming import for_question
from longvlm.presses.base import KVPress
from longvlm.presses.decode import generate_pruned
from longvlm.profiling import peak_rss_mb
from longvlm.vlm.loading import VLM
from longvlm.vlm.positions import generation_position_ids
from longvlm.vlm.prompt import build_chat_inputs
from longvlm.vlm.rope import position_extension
from longvlm.vlm.vision import model_features
from longvlm.vlm.room import MIN_NEW_TOKENS, add_notes, default_new_tokens


def model_inputs(vlm: VLM, encoded: EncodedInput, question: str, *,
                 follow_ups: Sequence[tuple[str, str]] = ()) -> dict:
    """Keyword arguments for `vlm.model(...)` / `generate(...)`: chat tokens around the encoded input, the
    pre-encoded visual features (`mm_encoder_outputs`, with their DeepStack features), grids, and explicit 3D
    `position_ids` when the input has a layout transformers cannot derive from the grids (a hybrid-resolution
    video of a family that writes a video as one block). Families with 1D positions (Kimi) get no token types."""
    question = check_question(question)  # empty or longer than MAX_QUESTION_CHARS: InputError
    inputs = build_chat_inputs(vlm.tokenizer, vlm.config, [*encoded.user_parts, question],
                               follow_ups=follow_ups)
    device = vlm.model.device
    kwargs = {k: v.to(device) for k, v in inputs.items()}
    mm_outputs = {}
    if encoded.image_embeds:
        kwargs["image_grid_thw"] = encoded.image_grid_thw.to(device)
        mm_outputs["image"] = model_features(vlm, encoded.image_embeds, device)
    if encoded.video_embeds:
        kwargs["video_grid_thw"] = encoded.video_grid_thw.to(device)
        mm_outputs["video"] = model_features(vlm, encoded.video_embeds, device)
        if vlm.family_spec.absolute_time:
            kwargs["second_per_grid_ts"] = encoded.second_per_grid_ts.to(device)
    if encoded.position_blocks is not None:
        kwargs["position_ids"] = generation_position_ids(
            inputs["mm_token_type_ids"], encoded.position_blocks,
            vlm.config.vision_config.spatial_merge_size).to(device)
    kwargs["mm_encoder_outputs"] = mm_outputs
    if not vlm.family_spec.mrope:  # 1D positions (Kimi): the model takes no token types
        kwargs.pop("mm_token_type_ids")
    return kwargs


@torch.no_grad()
def answer(vlm: VLM, encoded: EncodedInput, question: str, *, follow_ups: Sequence[tuple[str, str]] = (),
           max_new_tokens: int | None = None, max_context: int | None = None, streamer=None,
           prefill_chunk_size: int | None = None, kv_press: KVPress | None = None) -> Answer:
    """Answer `question` about an already encoded input (no re-decoding, no re-encoding).

    `follow_ups` are earlier (answer, question) pairs after the first question, for multi-turn chat; then
    `question` is ignored in favour of the last follow-up. `max_context` defaults to the model's limit
    (`max_position_embeddings`, which `longvlm.vlm.rope.apply_position_extension` raises to L * scale).
    `max_new_tokens` defaults to `longvlm.vlm.room.default_new_tokens`; when the prompt leaves less room it is
    lowered (with a note in the stats), down to `MIN_NEW_TOKENS`, below which a `BudgetError` says so.
    `kv_press` prunes the KV cache at prefill (`longvlm.presses`; default: the press of the options the input
    was encoded with); decoding then runs greedily on the pruned cache with the original positions
    (`generate_pruned`); it cannot be combined with chunked prefill.
    """
    if kv_press is None and encoded.options is not None:
        kv_press = encoded.options.kv_press
    if kv_press is not None and prefill_chunk_size is not None:
        raise ConfigError("kv_press needs the whole prompt in one prefill pass; drop prefill_chunk_size")
    if encoded.memory is not None:  # streamed through a memory bridge: memory + the segment for this question
        encoded = for_question(vlm, encoded, follow_ups[-1][1] if follow_ups else question)
    kwargs = model_inputs(vlm, encoded, question, follow_ups=follow_ups)
    context = int(kwargs["input_ids"].shape[1])
    limit = max_context or vlm.max_context
    notes = []
    if max_new_tokens is None:
        max_new_tokens = default_new_tokens(limit)
    if context + max_new_tokens > limit:
        if limit - context < min(MIN_NEW_TOKENS, max_new_tokens):
            raise BudgetError(
                f"context of {context} tokens ({encoded.visual_tokens} visual) leaves {max(0, limit - context)} "
                f"of the model's {limit} tokens for the answer; lower the visual-token budget "
                f"(--max-visual-tokens), ask a shorter question, or extend the context (--rope-method/--rope-scale)")
        notes.append(f"max new tokens lowered from {max_new_tokens} to {limit - context} to fit the model's "
                     f"{limit}-token context")
        max_new_tokens = limit - context
    started = time.perf_counter()
    kv_stats = {}
    if kv_press is None:
        output = vlm.model.generate(**kwargs, max_new_tokens=max_new_tokens, do_sample=False, streamer=streamer,
                                    prefill_chunk_size=prefill_chunk_size)
        new_tokens = output[0, context:]
    else:
        pruned = generate_pruned(vlm.model, kwargs, kv_press, max_new_tokens=max_new_tokens, streamer=streamer)
        new_tokens = pruned.tokens[0]  # one row: generation stops at its EOS, no padding
        kv_stats = {"kv_press": repr(kv_press), "kv_tokens_full": context,
                    "kv_tokens_kept": int(pruned.state.keep_counts[0]), "kv_cache_bytes": pruned.cache_bytes,
                    "recurrent_state_bytes": pruned.recurrent_bytes,
                    "time_kv_press_s": pruned.state.time_s, "time_prefill_s": pruned.prefill_s}
    generate_s = time.perf_counter() - started
    text = vlm.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
    stats = dict(encoded.stats)
    stats.update(kv_stats)
    add_notes(stats, notes)
    extension = position_extension(vlm)
    stats.update(context_length=context, text_tokens=context - encoded.visual_tokens,
                 new_tokens=int(new_tokens.numel()), time_generate_s=generate_s, peak_rss_mb=peak_rss_mb(),
                 position_extension=f"{extension.method} x{extension.scale:g}" if extension else "none")
    return Answer(text, vlm.name, "vlm", list(encoded.evidence), stats)

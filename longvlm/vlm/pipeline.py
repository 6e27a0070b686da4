"""The one entry point: ask a question about a video, a PDF or images; get text, evidence and stats."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from longvlm.compression.base import Compression
from longvlm.compression.decode import generate_pruned
from longvlm.compression.press import KVPress
from longvlm.encoders.hybrid import HybridConfig
from longvlm.errors import BudgetError, ConfigError, LongVLMError
from longvlm.limits import check_question
from longvlm.profiling import peak_rss_mb
from longvlm.vlm.inputs import EncodedInput, Evidence, ProgressFn, encode_images, encode_pdf, encode_video
from longvlm.vlm.loading import VLM
from longvlm.vlm.positions import generation_position_ids
from longvlm.vlm.prompt import build_chat_inputs
from longvlm.vlm.rope import position_extension
from longvlm.vlm.room import MIN_NEW_TOKENS, add_notes, default_new_tokens, fit_room


@dataclass
class Answer:
    """A model answer with the evidence it was given and how it was produced."""

    text: str
    model: str
    route: str  # "vlm": the vision-language model read the frames/pages; "text": a small LM read retrieved text
    evidence: list[Evidence]
    stats: dict = field(default_factory=dict)
    passages: list[dict] = field(default_factory=list)  # text route: the excerpts read (cite, score, text, source)

    def citations(self) -> str:
        """Compact list of what was fed, e.g. 'p.1, p.4' or '0.0s .. 59.0s (60 frames)' (text route: each
        retrieved page/frame, best first)."""
        if not self.evidence:
            return ""
        if self.evidence[0].kind == "frame" and self.route != "text":
            first, last = self.evidence[0], self.evidence[-1]
            return f"{first.cite()} .. {last.cite()} ({len(self.evidence)} frames)"
        return ", ".join(e.cite() for e in self.evidence)


def model_inputs(vlm: VLM, encoded: EncodedInput, question: str, *,
                 follow_ups: Sequence[tuple[str, str]] = ()) -> dict:
    """Keyword arguments for `vlm.model(...)` / `generate(...)`: chat tokens around the encoded input, the
    pre-encoded visual features (`mm_encoder_outputs`), grids, and explicit 3D `position_ids` when the input
    has a layout transformers cannot derive from the grids (a hybrid-resolution video)."""
    question = check_question(question)  # empty or longer than MAX_QUESTION_CHARS: LongVLMError
    inputs = build_chat_inputs(vlm.tokenizer, vlm.config, [*encoded.user_parts, question],
                               follow_ups=follow_ups)
    device = vlm.model.device
    kwargs = {k: v.to(device) for k, v in inputs.items()}
    mm_outputs = {}
    if encoded.image_embeds:
        kwargs["image_grid_thw"] = encoded.image_grid_thw.to(device)
        mm_outputs["image"] = BaseModelOutputWithPooling(pooler_output=[e.to(device) for e in encoded.image_embeds])
    if encoded.video_embeds:
        kwargs["video_grid_thw"] = encoded.video_grid_thw.to(device)
        mm_outputs["video"] = BaseModelOutputWithPooling(pooler_output=[e.to(device) for e in encoded.video_embeds])
        if vlm.family == "qwen2_5_vl":
            kwargs["second_per_grid_ts"] = encoded.second_per_grid_ts.to(device)
    if encoded.position_blocks is not None:
        kwargs["position_ids"] = generation_position_ids(
            inputs["mm_token_type_ids"], encoded.position_blocks,
            vlm.config.vision_config.spatial_merge_size).to(device)
    kwargs["mm_encoder_outputs"] = mm_outputs
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
    `kv_press` prunes the KV cache at prefill (`longvlm.compression`); decoding then runs greedily on the
    pruned cache with the original positions (`generate_pruned`); it cannot be combined with chunked prefill.
    """
    if kv_press is not None and prefill_chunk_size is not None:
        raise ConfigError("kv_press needs the whole prompt in one prefill pass; drop prefill_chunk_size")
    if encoded.memory is not None:  # streamed through a memory bridge: memory + the segment for this question
        from longvlm.vlm.memory_inputs import for_question

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


def ask(vlm: VLM, question: str, *, video: str | None = None, pdf: str | None = None,
        images: Sequence[str] | None = None, max_visual_tokens: int | None = None,
        max_new_tokens: int | None = None,
        sample_fps: float = 1.0, max_frames: int | None = None, dpi: float = 144.0, max_pages: int | None = None,
        video_resolution: str = "uniform", hybrid: HybridConfig | None = None,
        progress: ProgressFn | None = None, compression: Compression | None = None,
        memory_bridge=None) -> Answer:
    """Answer a question about exactly one of: a video, a PDF, or a list of images.

    `max_visual_tokens` and `max_new_tokens` default to what fits the model (`longvlm.vlm.room.fit_room`);
    values above that are lowered, with a note in the answer's stats (`notes`).

    `video_resolution` ("uniform", "hybrid", "auto") and `hybrid` are passed to `encode_video`.
    `compression` (optional) reduces the input before the LLM: `compression.selector` ranks pages (text
    layer, OCR) or frames (on-screen text, named times) against the question so the best
    `compression.native_items` get native resolution; its visual compressor shrinks the encoded tokens; its
    KV press prunes the KV cache at prefill. They compose in that order.
    `memory_bridge` (a `MemoryBridge` or `MemoryOptions`, video only) streams the video through the bridge and
    answers from the memory plus the segment chosen for the question (`longvlm.vlm.memory_inputs`).
    """
    if sum(x is not None for x in (video, pdf, images)) != 1:
        raise LongVLMError("give exactly one of video=, pdf= or images=")
    question = check_question(question)  # empty or longer than MAX_QUESTION_CHARS: LongVLMError
    if memory_bridge is not None and video is None:
        raise ConfigError("a memory bridge works on video only")
    room = fit_room(vlm, question=question, max_visual_tokens=max_visual_tokens, max_new_tokens=max_new_tokens)
    selector = compression.selector if compression is not None else None
    native = compression.native_items if compression is not None else 0
    selection: dict = {}
    if video is not None:
        order = None
        if selector is not None:
            order, selection = _rank_frames(selector, question, video, sample_fps, max_frames, native)
        encoded = encode_video(vlm, video, sample_fps=sample_fps, max_frames=max_frames, resolution=video_resolution, hybrid=hybrid,
                               frame_order=order, native_frames=native if order is not None else 0,
                               progress=progress, compression=compression, memory=memory_bridge,
                               **room.encoder_budget)
    elif pdf is not None:
        order = None
        if selector is not None:
            order, selection = _rank_pages(selector, question, pdf, max_pages, native)
        encoded = encode_pdf(vlm, pdf, dpi=dpi, max_pages=max_pages,
                             page_order=order, native_pages=native if order is not None else None,
                             progress=progress, compression=compression, **room.encoder_budget)
    else:
        encoded = encode_images(vlm, list(images), progress=progress, compression=compression,
                                **room.encoder_budget)
    add_notes(encoded.stats, room.notes)
    result = answer(vlm, encoded, question, max_new_tokens=room.new_tokens,
                    kv_press=compression.kv_press if compression is not None else None)
    result.stats.update(selection)
    return result


def _rank_frames(selector, question: str, video: str, sample_fps: float, max_frames: int | None,
                 native: int) -> tuple[list[int], dict]:
    """Frame indices of `video` ranked against `question` (best first) and selection stats."""
    from longvlm.datasets.page_text import video_frame_texts

    started = time.perf_counter()
    frames = video_frame_texts(video, every_s=1.0 / sample_fps, max_frames=max_frames)
    ranked = selector.rank(question, frames).order
    stats = {"selection_ranked": len(frames), "selection_top": [frames[i].cite() for i in ranked[:native]],
             "time_selection_s": time.perf_counter() - started}
    return [frames[i].index for i in ranked], stats


def _rank_pages(selector, question: str, pdf: str, max_pages: int | None, native: int) -> tuple[list[int], dict]:
    """0-based page indices of `pdf` ranked against `question` (best first) and selection stats."""
    from longvlm.datasets.cache import file_sha256
    from longvlm.datasets.page_text import pdf_page_texts

    started = time.perf_counter()
    pages = pdf_page_texts(pdf, max_pages=max_pages)
    order = selector.rank(question, pages, key=file_sha256(pdf)).order
    stats = {"selection_ranked": len(pages), "selection_top": [f"p.{i + 1}" for i in order[:native]],
             "time_selection_s": time.perf_counter() - started}
    return order, stats

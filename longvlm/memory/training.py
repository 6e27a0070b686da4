"""Training a memory bridge: the loss of one video example seen through the bridge.

The (frozen) vision tower encodes the example's frames; SceneTilling on the pooled temporal-patch features
(forced cut after `max_segment_patches`) gives the segments; the bridge unrolls over them with gradients
(`MemoryBridge.unroll`); the LLM gets the final memory and the last segment (`memory_prompt_parts`, the layout
of inference) and the loss is on the answer tokens. With `selection_loss_weight` > 0 (a bridge with
`relevance_dim` > 0), a cross-entropy over the final cache entries' relevance scores for the question, towards
the entries whose segments hold the needle frames (`meta['needle_frames']` of the synthetic tasks), trains the
choice of the segment shown at inference. Gradients reach the bridge (and LoRA adapters if any).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from longvlm.memory.bridge import (MemoryBridge, MemoryBridgeConfig, check_bridge_size, memory_grid,
                                   model_signature)
from longvlm.datasets.examples import Example, VideoItem
from longvlm.memory.scene_tiling import scene_tiling
from longvlm.errors import ConfigError
from longvlm.vlm.loading import VLM
from longvlm.memory.streaming import encode_patches, memory_prompt_parts, question_embedding
from longvlm.vlm.prompt import IGNORE_INDEX, build_training_inputs, frame_interval
from longvlm.vlm.vision import llm_input_part, model_features, without_deepstack


def build_bridge(vlm: VLM, config: MemoryBridgeConfig, init: str | None = None) -> MemoryBridge:
    """A new bridge of `config`'s sizes (seeded by the caller) for the model's hidden size, recording the model's
    signature; or, with `init`, the bridge saved there (it must have `config.relevance_dim`), re-signed for
    this model."""
    signature = model_signature(vlm.model)  # the bridge is trained on (and for) this model
    if init:
        bridge = MemoryBridge.from_pretrained(init)
        check_bridge_size(bridge, vlm.model)
        if bridge.config.relevance_dim != config.relevance_dim:
            raise ConfigError(f"memory_bridge.init: the bridge has relevance_dim {bridge.config.relevance_dim}, the "
                              f"config asks for {config.relevance_dim}")
        bridge.config.model_signature = signature
        return bridge
    return MemoryBridge(dataclasses.replace(config, hidden_size=vlm.config.text_config.hidden_size,
                                            model_signature=signature))


def memory_example_loss(vlm: VLM, model, bridge: MemoryBridge, example: Example, *, max_segment_patches: int,
                        alpha: float, selection_loss_weight: float = 0.0
                        ) -> tuple[torch.Tensor, dict[str, int]]:
    """Answer-token loss of `example` (one video, then the question) seen as memory + last segment (segments:
    SceneTilling with `alpha`, cut after `max_segment_patches` temporal patches), plus `selection_loss_weight`
    times the selection loss, and the LLM input's size: {'tokens': sequence length, 'answer_tokens': labelled
    tokens}."""
    video = next((p for p in example.parts if isinstance(p, VideoItem)), None)
    question = example.parts[-1]
    if video is None or not isinstance(question, str):
        raise ConfigError(f"memory bridge training needs video examples ending with a question ({example.task})")
    spec = vlm.vision
    frames, stamps = video.frames, list(video.timestamps)
    pad = -len(frames) % spec.temporal_patch_size
    if pad:
        frames = np.concatenate([frames, frames[-1:].repeat(pad, axis=0)])
        stamps += [stamps[-1]] * pad
    size = spec.resized(*frames.shape[1:3])
    encoded = encode_patches(vlm, frames, size)  # [P, tokens per patch, C (x DeepStack)], frozen tower
    tokens = llm_input_part(vlm, encoded)  # what the bridge reads
    patch_stamps = stamps[::spec.temporal_patch_size]
    # the rule the bridge streams with at inference (population std, no cap: `OnlineSceneTiler`), so training
    # sees the segments inference makes
    segments = scene_tiling(tokens.float().mean(dim=1).cpu().numpy(), patch_stamps, alpha=alpha,
                            max_segment=max_segment_patches, std="population", max_cuts=None)
    pieces = [tokens[s.start:s.end + 1].reshape(-1, tokens.shape[-1]) for s in segments]
    memory, cache, spans = bridge.unroll(pieces)
    selection_loss = None
    if selection_loss_weight and example.meta.get("needle_frames"):
        needle_segments = {next(i for i, s in enumerate(segments) if s.start <= f // spec.temporal_patch_size <= s.end)
                           for f in example.meta["needle_frames"]}
        targets = [k for k, span in enumerate(spans)
                   if any(span.first_segment <= i <= span.last_segment for i in needle_segments)]
        scores = bridge.relevance_scores(cache, question_embedding(vlm, question))
        selection_loss = torch.logsumexp(scores, 0) - torch.logsumexp(scores[targets], 0)
    last = segments[-1]
    shown = encoded[last.start:last.end + 1].reshape(-1, encoded.shape[-1])
    parts = [p for p in example.parts[:-1] if not isinstance(p, VideoItem)]
    shown_stamps = stamps[last.start * spec.temporal_patch_size:(last.end + 1) * spec.temporal_patch_size]
    parts += memory_prompt_parts(bridge.num_memory_tokens, int(shown.shape[0]), len(segments), last.end_s,
                                 shown_stamps, spec.temporal_patch_size) + [question]
    inputs = build_training_inputs(vlm.tokenizer, vlm.config, parts, example.answer)
    device = next(model.parameters()).device
    merge = spec.merge_size
    kwargs = {k: v.to(device) for k, v in inputs.items()}
    kwargs["image_grid_thw"] = torch.tensor([memory_grid(bridge.num_memory_tokens, merge)], device=device)
    kwargs["video_grid_thw"] = torch.tensor([spec.grid(*size, last.length * spec.temporal_patch_size)],
                                            device=device)
    if vlm.family_spec.absolute_time:
        kwargs["second_per_grid_ts"] = torch.tensor([spec.temporal_patch_size * frame_interval(stamps)],
                                                    device=device)
    dtype = next(vlm.model.model.language_model.parameters()).dtype
    kwargs["mm_encoder_outputs"] = {
        "image": model_features(vlm, [without_deepstack(vlm, memory).to(dtype)], device),
        "video": model_features(vlm, [shown.to(dtype)], device)}
    sizes = {"tokens": int(inputs["input_ids"].shape[-1]),
             "answer_tokens": int((inputs["labels"] != IGNORE_INDEX).sum())}
    loss = model(**kwargs, use_cache=False).loss
    if selection_loss is not None:
        loss = loss + selection_loss_weight * selection_loss.to(loss.device)
    return loss, sizes

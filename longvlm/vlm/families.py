"""The model families longvlm runs, and what differs between them.

Each family is a pair of transformers classes (config, model) plus the few facts the pipeline needs to feed
it: how a video is laid out in the prompt, whether the vision tower returns DeepStack features, how video
temporal positions are counted, which text layers keep a KV cache, and the chat template's fixed text.
Everything else (planner, encoders, presses, memory bridge) reads these facts, never the family's name.

| family       | vision tower                            | video in the prompt                        | text layers  |
| ------------ | --------------------------------------- | ------------------------------------------ | ------------ |
| `qwen2_vl`   | patch 14, 2x2 merge, 2-frame patches    | one block, 1 temporal id per patch         | attention    |
| `qwen2_5_vl` | same, windowed attention                | one block, temporal ids follow seconds     | attention    |
| `qwen3_vl`   | patch 16, 2x2 merge, 2-frame patches,   | one block per temporal patch after its     | attention    |
|              | DeepStack features for early LLM layers | time as text, `<12.5 seconds>`             |              |
| `qwen3_5`    | Qwen3-VL's tower without DeepStack      | as Qwen3-VL                                | 3 linear : 1 |
|              |                                         |                                            | full attn.   |
| `kimi_k25`   | MoonViT: patch 14, 2x2 merge, 4-frame   | one block per 4-frame chunk after its      | MLA (DeepSeek|
|              | chunks pooled in time (`vlm.kimi`)      | clock time, `00:01:02.500`; 1D positions   | -V3), 1D RoPE|
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from transformers import (Kimi_K25Config, Kimi_K25ForConditionalGeneration, PretrainedConfig, Qwen2_5_VLConfig,
                          Qwen2_5_VLForConditionalGeneration, Qwen2VLConfig, Qwen2VLForConditionalGeneration,
                          Qwen3_5Config, Qwen3_5ForConditionalGeneration, Qwen3VLConfig,
                          Qwen3VLForConditionalGeneration)

from longvlm.errors import ConfigError
from longvlm.processing.spec import VisionSpec
from longvlm.vlm.kimi import kimi_tiny_config

HALF = (0.5, 0.5, 0.5)
QWEN_VISION = VisionSpec()  # patch 14, 2x2 merge, 2-frame patches, CLIP normalisation, 4 to 1280 tokens
PATCH16_VISION = VisionSpec(patch_size=16, min_pixels=32 * 32 * 4, max_pixels=32 * 32 * 1280, image_mean=HALF,
                            image_std=HALF)  # Qwen3-VL / Qwen3.5: 32 x 32 pixels a token, mean = std = 0.5
KIMI_VISION = VisionSpec(temporal_patch_size=4, min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 4096, image_mean=HALF,
                         image_std=HALF)  # MoonViT: patch 14, 2x2 merge, 4-frame chunks, mean = std = 0.5


@dataclass(frozen=True)
class ChatFormat:
    """The fixed text of a chat template around the turns."""

    system: str  # "{}" is the system prompt
    user: str  # opens the user turn
    end: str  # closes a turn
    assistant: str  # opens the assistant turn


QWEN_CHAT = ChatFormat("<|im_start|>system\n{}<|im_end|>\n", "<|im_start|>user\n", "<|im_end|>\n",
                       "<|im_start|>assistant\n")
KIMI_CHAT = ChatFormat("<|im_system|>system<|im_middle|>{}<|im_end|>", "<|im_user|>user<|im_middle|>",
                       "<|im_end|>", "<|im_assistant|>assistant<|im_middle|>")


def seconds_text(frame_times: Sequence[float]) -> str:
    """Qwen3-VL's time before a temporal patch: the mean of its first and last frame, `<12.5 seconds>`."""
    return f"<{(frame_times[0] + frame_times[-1]) / 2:.1f} seconds>"


def clock_text(frame_times: Sequence[float]) -> str:
    """Kimi's time before a video chunk: its first frame as HH:MM:SS.mmm (processing_kimi_k25.py:88-89)."""
    first = float(frame_times[0])
    return time.strftime("%H:%M:%S", time.gmtime(first)) + f".{int(first % 1 * 1000):03d}"


@dataclass(frozen=True)
class Family:
    """One model family: its transformers classes and the facts the pipeline feeds it by."""

    name: str  # transformers' model_type
    label: str  # for people: "Qwen2-VL"
    config_class: type
    model_class: type
    # video: one block per temporal patch, after its time as text (`time_text` of the patch's frame times)
    timestamped_frames: bool = False
    time_text: Callable[[Sequence[float]], str] = seconds_text
    deepstack: bool = False  # the tower also returns features injected into the first LLM layers
    absolute_time: bool = False  # video temporal ids follow seconds (tokens_per_second), Qwen2.5-VL
    system_prompt: str | None = "You are a helpful assistant."  # the chat template's default system turn
    assistant_prefix: str = ""  # fixed text the template puts after "<|im_start|>assistant\n"
    # Several samples can share a training row (position ids restart per sample). Not for Qwen3.5: its
    # linear-attention layers take sample boundaries only from flash-attention varlen kwargs (cu_seqlens,
    # GPU kernels); transformers' PyTorch path would carry the recurrent state from one sample into the next.
    packs_samples: bool = True
    chat: ChatFormat = QWEN_CHAT
    media_text: bool = False  # Kimi: "image" / "video" and <|media_content|> after each block's start token
    vision_tower: str = "visual"  # attribute of the base model holding the vision tower
    vision: VisionSpec = QWEN_VISION  # the released processors' patching and normalisation (a new model's spec)
    patch_layout: str = "qwen"  # "qwen": merge-window order, flattened patches; "kimi": raster [N, 3, 14, 14]
    mrope: bool = True  # 3D M-RoPE positions (get_rope_index); False: 1D positions for every token
    # config attribute -> token string of the placeholders, as the family's tokenizer spells them
    tokens: tuple[tuple[str, str], ...] = (("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
                                           ("vision_start_token_id", "<|vision_start|>"),
                                           ("vision_end_token_id", "<|vision_end|>"))
    chat_tokens: tuple[str, ...] = ()  # special tokens of the chat format besides Qwen's (tiny presets add them)
    image_processor: str = "Qwen2VLImageProcessor"  # written to preprocessor_config.json by save_pretrained


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("qwen2_vl", "Qwen2-VL", Qwen2VLConfig, Qwen2VLForConditionalGeneration),
    Family("qwen2_5_vl", "Qwen2.5-VL", Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, absolute_time=True),
    Family("qwen3_vl", "Qwen3-VL", Qwen3VLConfig, Qwen3VLForConditionalGeneration, timestamped_frames=True,
           deepstack=True, system_prompt=None, vision=PATCH16_VISION),
    # Qwen3.5 thinks by default; longvlm asks for the answer, so the prompt closes an empty think block as the
    # template does with enable_thinking=False.
    Family("qwen3_5", "Qwen3.5", Qwen3_5Config, Qwen3_5ForConditionalGeneration, timestamped_frames=True,
           system_prompt=None, assistant_prefix="<think>\n\n</think>\n\n", packs_samples=False,
           vision=PATCH16_VISION),
    # Kimi K2.5: MoonViT (longvlm.vlm.kimi) + DeepSeek-V3 with MLA; 1D positions; each 4-frame video chunk is a
    # block after its clock time; answers without thinking (an empty think block, as K2.5's instant mode)
    Family("kimi_k25", "Kimi K2.5", Kimi_K25Config, Kimi_K25ForConditionalGeneration, timestamped_frames=True,
           time_text=clock_text, system_prompt="You are Kimi, an AI assistant created by Moonshot AI.",
           assistant_prefix="<think></think>", chat=KIMI_CHAT, media_text=True, vision_tower="vision_tower",
           patch_layout="kimi", mrope=False, vision=KIMI_VISION,
           tokens=(("image_token_id", "<|media_pad|>"), ("video_token_id", "<|kimi_k25_video_placeholder|>"),
                   ("vision_start_token_id", "<|media_begin|>"), ("vision_end_token_id", "<|media_end|>")),
           chat_tokens=("<|im_system|>", "<|im_user|>", "<|im_assistant|>", "<|im_middle|>", "<|media_begin|>",
                        "<|media_content|>", "<|media_end|>", "<|media_pad|>", "<|kimi_k25_video_placeholder|>"),
           image_processor="Kimi_K25ImageProcessor"),
)}


def family_of(config: PretrainedConfig | str) -> Family:
    """The family of a model config (or a model_type string); ConfigError for one longvlm does not run."""
    name = config if isinstance(config, str) else getattr(config, "model_type", None)
    if name not in FAMILIES:
        raise ConfigError(f"model_type {name!r} is not supported (supported: {', '.join(FAMILIES)})")
    return FAMILIES[name]


def _mrope_section(half: int, interleaved: bool) -> list[int]:
    """An [t, h, w] split of `half` rotary frequencies: Qwen2-VL's proportions (1/4 t, the rest h and w);
    interleaved layouts hold h and w in every third index, so each gets at most ceil((half - 1) / 3)."""
    if interleaved:
        h = (half + 1) // 3
        w = half // 3
        return [half - h - w, h, w]
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def tiny_config(family: str = "qwen2_vl", vocab_size: int = 264, *, hidden_size: int = 64, layers: int = 2,
                heads: int = 4, kv_heads: int = 2, vision_depth: int = 2, vision_dim: int = 32,
                max_position_embeddings: int = 8192, token_ids: dict[str, int] | None = None) -> PretrainedConfig:
    """A small config of a family's real classes (random weights; for tests and the tiny presets).

    Qwen2-VL / Qwen2.5-VL: head_dim = hidden/heads, contiguous mrope_section. Qwen3-VL: head_dim as Qwen2,
    interleaved M-RoPE, DeepStack from every vision layer (at most 3, as released). Qwen3.5: layers alternate
    linear attention and full attention (the last is full), head_dim 2 * hidden/heads with the released
    partial rotary factor 0.25.
    """
    spec = family_of(family)
    if family == "kimi_k25":
        return kimi_tiny_config(vocab_size, token_ids, hidden_size=hidden_size, layers=layers, heads=heads,
                                vision_depth=vision_depth, vision_dim=vision_dim,
                                max_position_embeddings=max_position_embeddings)
    head_dim = hidden_size // heads
    text = dict(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=hidden_size * 2,
                num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                max_position_embeddings=max_position_embeddings, rms_norm_eps=1e-6,
                bos_token_id=None, eos_token_id=None, pad_token_id=None)
    rope = {"rope_type": "default", "rope_theta": 10000.0}
    if family == "qwen2_vl":
        vision = dict(depth=vision_depth, embed_dim=vision_dim, hidden_size=hidden_size, num_heads=2, mlp_ratio=2)
    elif family == "qwen2_5_vl":
        vision = dict(depth=vision_depth, hidden_size=vision_dim, out_hidden_size=hidden_size, num_heads=2,
                      intermediate_size=vision_dim * 2, fullatt_block_indexes=[vision_depth - 1],
                      window_size=112, tokens_per_second=2)
    else:
        vision = dict(depth=vision_depth, hidden_size=vision_dim, out_hidden_size=hidden_size, num_heads=2,
                      intermediate_size=vision_dim * 2, num_position_embeddings=64, patch_size=16)
        if spec.deepstack:
            vision["deepstack_visual_indexes"] = list(range(min(vision_depth, 3)))
    if family == "qwen3_5":
        head_dim = 2 * hidden_size // heads
        rope["partial_rotary_factor"] = 0.25
        text.update(head_dim=head_dim, layer_types=["linear_attention" if (i + 1) % 2 else "full_attention"
                                                    for i in range(layers - 1)] + ["full_attention"],
                    linear_num_key_heads=2, linear_num_value_heads=2, linear_key_head_dim=16,
                    linear_value_head_dim=16, linear_conv_kernel_dim=4)
        half = int(head_dim * 0.25) // 2
    else:
        half = head_dim // 2
        if family == "qwen3_vl":
            text["head_dim"] = head_dim
    interleaved = family in ("qwen3_vl", "qwen3_5")
    rope["mrope_section"] = _mrope_section(half, interleaved)
    if interleaved:
        rope["mrope_interleaved"] = True
    text["rope_parameters"] = rope
    return spec.config_class(text_config=text, vision_config=vision, tie_word_embeddings=True, **(token_ids or {}))

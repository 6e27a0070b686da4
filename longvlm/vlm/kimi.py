"""Kimi K2.5 / K2.6 (transformers `kimi_k25`): MoonViT native-resolution vision tower, sizing and pixel layout.

Line references are to transformers 5.25 (`models/kimi_k25/`, `models/deepseek_v3/`, `vision_utils.py`).

Sizing (`kimi_resized`, `kimi_padded`, `kimi_tokens`; `navit_resize`, image_processing_kimi_k25.py:50-82)
-------------------------------------------------------------------------------------------------------------
scale = min(1, sqrt(max_patches / (h//14 * w//14)), 7168 / h, 7168 / w); the image is resampled (bicubic) to
(int(h * scale), int(w * scale)), each side capped at 512 patches = 7168 px, then zero-padded at the bottom and
right to multiples of 28 (pad before normalisation, so padded pixels become -1: image_processing_kimi_k25.py:188,
197; `TorchvisionBackend.pad` pads (0, 0, right, bottom) with 0). Caps: 16384 patches per image
(image_processing_kimi_k25.py:90), 4096 per video frame (video_processing_kimi_k25.py:103). Differences from
Qwen2-VL's `smart_resize` (`longvlm.processing.resize`):
- never upscales and has no minimum: a 10x10 image is padded to 28x28 (1 token); Qwen scales up to min_pixels;
- the aspect ratio is kept exactly (floor of each side) and the remainder is black padding, which costs tokens;
  Qwen rounds each side to the nearest multiple of 28 by resampling (slight distortion, no padding);
- the budget counts floor(h/14) * floor(w/14) patches of the unpadded size, so after padding an image can exceed
  it (a 1700x2200 page at 5120 patches: 1142x882 -> 1148x896 = 5248 patches); Qwen's max_pixels bounds the area
  after rounding (up to the rounding of each side);
- a per-side cap of 7168 px and no aspect-ratio limit (Qwen refuses above 200:1).
`kimi_resized(h, w, max_pixels)` reads a pixel budget as max_patches = max_pixels // 196.

Pixel layout (`kimi_patches`, `kimi_video_patches`)
---------------------------------------------------
pixel_values is [patches, 3, 14, 14] (not flattened), rescaled by 1/255 and normalised with mean = std = 0.5
(IMAGENET_STANDARD_MEAN/STD, image_processing_kimi_k25.py:93-94). Patches are in raster order within each
frame (row-major over the patch grid; image_processing_kimi_k25.py:124-150), not merge-window order as in
Qwen2-VL: the tower merges 2x2 windows itself by index (`get_vision_temporal_merge_index`,
modeling_kimi_k25.py:420-475). grid_thw rows are [t, padded_h / 14, padded_w / 14]. Resampling is bicubic in
both, but transformers' processor (torchvision only, image_processing_kimi_k25.py:19) resizes tensors with
antialias where longvlm uses PIL (`resize_frame`): a resampled image may differ by a few uint8 levels (not
checked here). longvlm passes arrays already at their size through unchanged; from there on (padding,
normalisation, patch order, grid) the layout is the processor's exactly (tested against its code).

Video: frames are cut into chunks of `temporal_patch_size` = 4 frames (video_processing_kimi_k25.py:101,
211-216); the last chunk keeps its 1-3 frames (no repetition). Each chunk is one grid_thw row [t, gh, gw] and
its patches are frame after frame (video_processing_kimi_k25.py:134-152). In the tower a chunk attends jointly
over all its t*gh*gw patches (`merge_temporal=True`, modeling_kimi_k25.py:524, vision_utils.py:61-62), gets
a sinusoidal time embedding for frames 1..t (none when t == 1, modeling_kimi_k25.py:79-95, 116-122) and is then
mean-pooled over its frames (`temporal_merge`, modeling_kimi_k25.py:497-507). So a chunk gives gh*gw/4 LLM
tokens whatever its t (split sizes, modeling_kimi_k25.py:593), and a video of T frames at (h, w) gives
ceil(T / 4) * gh * gw / 4 tokens (processing_kimi_k25.py:129-133). The time table has `pos_emb_time` + 1 = 5
rows, so a grid row may hold at most pos_emb_time = 4 frames (a longer one raises IndexError). Kimi's processor
writes each chunk as its own block: "HH:MM:SS.mmm<|media_begin|>video<|media_content|>{tokens}<|media_end|>"
(processing_kimi_k25.py:84-93).

Positions and KV cache of the language model (DeepSeek-V3 with MLA)
--------------------------------------------------------------------
- Positions are 1D for every token, visual or not: Kimi_K25Model.forward hands `position_ids` to the language
  model unchanged (modeling_kimi_k25.py:709-717) and DeepseekV3Model uses arange(past, past + seq) when none are
  given (modeling_deepseek_v3.py:588-591). There is no M-RoPE / get_rope_index: an image of N tokens takes N
  consecutive positions, and the text after it continues at +N.
- The cache holds the compressed latent, not per-head K/V (modeling_deepseek_v3.py:432-444): per layer, the
  cache's `keys` slot is kv_nope = RMSNorm(latent) of shape [batch, 1, seq, kv_lora_rank] and its `values` slot
  is the shared rotary key k_rot (after RoPE) of shape [batch, 1, seq, qk_rope_head_dim]. K and V per head are
  rebuilt from the cached latent by kv_b_proj at every step (`expand_kv`, modeling_deepseek_v3.py:391-408).
  With DeepseekV3Config's defaults (kv_lora_rank 512, qk_rope_head_dim 64): 576 values per token per layer, against
  2 * 128 heads * 128-192 dims for expanded K/V; the tiny config here
  (16, 8): keys [1, 1, S, 16], values [1, 1, S, 8] (tests/vlm/test_kimi.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from transformers import (Kimi_K25Config, Kimi_K25ForConditionalGeneration, Kimi_K25Model, Kimi_K25VisionConfig,
                          PreTrainedTokenizerFast)

from longvlm.errors import ConfigError, InputError
from longvlm.processing.patches import normalize, resize_frame
from longvlm.processing.spec import VisionSpec
from longvlm.vlm.tokenizer import build_byte_tokenizer

KIMI_PATCH = 14
KIMI_MERGE = 2
KIMI_FACTOR = KIMI_PATCH * KIMI_MERGE  # 28 px: one LLM token per 28x28 (per 4-frame chunk for video)
KIMI_TEMPORAL = 4  # frames per video chunk (video processor `temporal_patch_size`, vision `pos_emb_time`)
KIMI_IMAGE_MAX_PATCHES = 16384
KIMI_VIDEO_MAX_PATCHES = 4096  # per frame
KIMI_MAX_SIDE_PATCHES = 512  # processor `size = {"max_height": 512, "max_width": 512}`, in patches
KIMI_TEXT_HIDDEN = 7168  # Kimi K2 hidden size: the mm_projector's output width
KIMI_SPEC = VisionSpec(patch_size=KIMI_PATCH, merge_size=KIMI_MERGE, temporal_patch_size=KIMI_TEMPORAL,
                       min_pixels=KIMI_FACTOR ** 2, max_pixels=KIMI_IMAGE_MAX_PATCHES * KIMI_PATCH ** 2,
                       image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5))
"""Kimi's constants as a VisionSpec, for `normalize`, `factor`, `grid` and `tokens` of a padded size (those
follow the same rule). Its `resized` is Qwen's smart_resize: size with `kimi_resized` instead."""


def kimi_resized(height: int, width: int, max_pixels: int | None = None, *, video: bool = False) -> tuple[int, int]:
    """Size (h, w) Kimi's processor resamples a height x width image (or video frame) to, before padding.

    `max_pixels` sets the patch budget (max_patches = max_pixels // 196); by default the processor's: 16384
    patches for images, 4096 per frame for video. Never larger than the input; see `kimi_padded`.
    """
    if height <= 0 or width <= 0:
        raise InputError(f"image size must be positive, got {height}x{width}")
    if max_pixels is None:
        max_patches = KIMI_VIDEO_MAX_PATCHES if video else KIMI_IMAGE_MAX_PATCHES
    else:
        max_patches = max_pixels // KIMI_PATCH ** 2
        if max_patches < 1:
            raise ConfigError(f"max_pixels {max_pixels} is below one {KIMI_PATCH}x{KIMI_PATCH} patch")
    side = KIMI_MAX_SIDE_PATCHES * KIMI_PATCH
    patches = max(1, height // KIMI_PATCH) * max(1, width // KIMI_PATCH)
    scale = min(1.0, math.sqrt(max_patches / patches), side / height, side / width)
    return min(max(1, int(height * scale)), side), min(max(1, int(width * scale)), side)


def kimi_padded(height: int, width: int) -> tuple[int, int]:
    """A resized size padded up to multiples of 28 (bottom and right), as the tower sees it."""
    return -(-height // KIMI_FACTOR) * KIMI_FACTOR, -(-width // KIMI_FACTOR) * KIMI_FACTOR


def kimi_grid(height: int, width: int, frames: int = 1) -> torch.Tensor:
    """grid_thw rows [t, gh, gw] of one image (frames=1) or one video of `frames` frames at a resized size:
    one row per chunk of up to 4 frames."""
    if frames < 1:
        raise ConfigError(f"frames must be positive, got {frames}")
    ph, pw = kimi_padded(height, width)
    chunks = [min(KIMI_TEMPORAL, frames - start) for start in range(0, frames, KIMI_TEMPORAL)]
    return torch.tensor([[t, ph // KIMI_PATCH, pw // KIMI_PATCH] for t in chunks], dtype=torch.long)


def kimi_tokens(height: int, width: int, frames: int = 1) -> int:
    """LLM tokens of an image (frames=1) or a video of `frames` frames resized to (height, width):
    ceil(frames / 4) chunks of (padded_h / 28) * (padded_w / 28) tokens."""
    return KIMI_SPEC.tokens(*kimi_padded(height, width), num_frames=frames)


def _patchify(frames: list[Image.Image | np.ndarray], height: int, width: int) -> torch.Tensor:
    """Frames resampled to (height, width), zero-padded to multiples of 28, normalised -> [T*gh*gw, 3, 14, 14]
    in raster order within each frame, frame after frame."""
    ph, pw = kimi_padded(height, width)
    stacked = np.zeros((len(frames), ph, pw, 3), np.uint8)
    for n, frame in enumerate(frames):
        stacked[n, :height, :width] = resize_frame(frame, height, width)
    x = torch.from_numpy(normalize(stacked, KIMI_SPEC))
    p = KIMI_PATCH
    x = x.view(len(frames), 3, ph // p, p, pw // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(-1, 3, p, p)


def kimi_patches(images: Sequence[Image.Image | np.ndarray], sizes: Sequence[tuple[int, int]],
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Images resampled to `sizes` (from `kimi_resized`; multiples of 28 need no padding) ->
    (pixel_values [patches, 3, 14, 14], image_grid_thw [N, 3]) as Kimi's image processor lays them out."""
    pieces = [_patchify([image], h, w) for image, (h, w) in zip(images, sizes, strict=True)]
    grid = torch.cat([kimi_grid(h, w) for h, w in sizes]) if sizes else torch.zeros(0, 3, dtype=torch.long)
    return torch.cat(pieces), grid


def kimi_video_patches(frames: Sequence[Image.Image | np.ndarray], size: tuple[int, int],
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """One video's frames resampled to `size` -> (pixel_values_videos [T*gh*gw, 3, 14, 14], video_grid_thw with
    one row per chunk of up to 4 frames) as Kimi's video processor lays them out."""
    h, w = size
    return _patchify(list(frames), h, w), kimi_grid(h, w, len(frames))


def _base(model: Kimi_K25ForConditionalGeneration | Kimi_K25Model) -> Kimi_K25Model:
    return model.model if isinstance(model, Kimi_K25ForConditionalGeneration) else model


def kimi_placement(model: Kimi_K25ForConditionalGeneration | Kimi_K25Model) -> tuple[torch.device, torch.dtype]:
    """(device, dtype) of the vision tower's parameters: where pixels must go."""
    param = next(_base(model).vision_tower.parameters())
    return param.device, param.dtype


def kimi_image_tokens(model: Kimi_K25ForConditionalGeneration | Kimi_K25Model,
                      images: Sequence[Image.Image | np.ndarray], sizes: Sequence[tuple[int, int]],
                      ) -> list[torch.Tensor]:
    """Images resampled to `sizes` -> one [tokens, text_hidden] tensor per image (tower + mm_projector)."""
    device, dtype = kimi_placement(model)
    pixels, grid = kimi_patches(images, sizes)
    out = _base(model).get_image_features(pixel_values=pixels.to(device, dtype), image_grid_thw=grid.to(device))
    return list(out.pooler_output)


def kimi_video_tokens(model: Kimi_K25ForConditionalGeneration | Kimi_K25Model,
                      frames: Sequence[Image.Image | np.ndarray], size: tuple[int, int]) -> list[torch.Tensor]:
    """One video's frames at `size` -> one [tokens, text_hidden] tensor per 4-frame chunk (each chunk is its own
    media block in Kimi's prompt)."""
    device, dtype = kimi_placement(model)
    pixels, grid = kimi_video_patches(frames, size)
    out = _base(model).get_video_features(pixel_values_videos=pixels.to(device, dtype),
                                          video_grid_thw=grid.to(device))
    return list(out.pooler_output)


def kimi_vision_config_full() -> Kimi_K25VisionConfig:
    """The released Kimi K2.5 / K2.6 MoonViT (27 layers, hidden 1152, MLP 4304, 16 heads, patch 14, 64x64
    position grid, 4 time steps, 2x2 merge): `Kimi_K25VisionConfig`'s defaults (documented checkpoint
    moonshotai/Kimi-K2.6), spelt out so that a change of defaults shows."""
    return Kimi_K25VisionConfig(patch_size=14, pos_emb_height=64, pos_emb_width=64, pos_emb_time=4,
                                num_attention_heads=16, num_hidden_layers=27, hidden_size=1152,
                                intermediate_size=4304, hidden_act="gelu_pytorch_tanh", merge_kernel_size=(2, 2))


def kimi_encoder_config() -> Kimi_K25Config:
    """The released vision tower and mm_projector (1152 * 4 -> 4608 -> 7168) over a stub language model
    (no layers, 8-entry vocabulary): `Kimi_K25Model(config).get_image_features` is the full-size encoder."""
    text = dict(model_type="deepseek_v3", vocab_size=8, hidden_size=KIMI_TEXT_HIDDEN, num_hidden_layers=0,
                bos_token_id=None, eos_token_id=None, pad_token_id=None)
    return Kimi_K25Config(text_config=text, vision_config=kimi_vision_config_full(), projection_hidden_size=1152)


def kimi_tiny_config(vocab_size: int, token_ids: dict[str, int] | None = None, *, hidden_size: int = 64,
                     layers: int = 2, heads: int = 4, moe_layers: int = 0, vision_depth: int = 2,
                     vision_dim: int = 32, max_position_embeddings: int = 8192) -> Kimi_K25Config:
    """A small config of the real Kimi K2.5 classes: MoonViT (patch 14, 2x2 merge) and DeepSeek-V3 with MLA
    (q_lora 32, kv_lora 16, rope 8 + nope 8 per q/k head, v 8). The last `moe_layers` layers are MoE (4 routed
    experts, 2 per token, 1 shared); DeepSeek-V3 makes layer i MoE when i >= first_k_dense_replace."""
    if not 0 <= moe_layers <= layers:
        raise ConfigError(f"moe_layers must be in 0..{layers}, got {moe_layers}")
    text = dict(model_type="deepseek_v3", vocab_size=vocab_size, hidden_size=hidden_size,
                intermediate_size=hidden_size * 2, moe_intermediate_size=hidden_size // 2,
                num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                q_lora_rank=32, kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=8,
                first_k_dense_replace=layers - moe_layers, n_routed_experts=4, num_experts_per_tok=2,
                n_shared_experts=1, n_group=1, topk_group=1, max_position_embeddings=max_position_embeddings,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, rms_norm_eps=1e-6,
                bos_token_id=None, eos_token_id=None, pad_token_id=None)
    vision = dict(patch_size=KIMI_PATCH, merge_kernel_size=(KIMI_MERGE, KIMI_MERGE), hidden_size=vision_dim,
                  intermediate_size=vision_dim * 2, num_hidden_layers=vision_depth, num_attention_heads=2,
                  pos_emb_height=16, pos_emb_width=16, pos_emb_time=KIMI_TEMPORAL)
    return Kimi_K25Config(text_config=text, vision_config=vision, projection_hidden_size=vision_dim,
                          tie_word_embeddings=True, **(token_ids or {}))


def build_kimi_tiny(seed: int = 0, dtype: torch.dtype = torch.float32,
                    ) -> tuple[Kimi_K25ForConditionalGeneration, PreTrainedTokenizerFast]:
    """A random tiny Kimi K2.5 model with longvlm's offline byte tokenizer, whose Qwen-style vision tokens stand
    in for Kimi's (<|vision_start|>, <|image_pad|>, <|video_pad|>, <|vision_end|>). Returns (model, tokenizer)."""
    tokenizer = build_byte_tokenizer()
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in [
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")]}
    config = kimi_tiny_config(len(tokenizer), ids)
    config.text_config.eos_token_id = tokenizer.eos_token_id
    config.text_config.pad_token_id = tokenizer.pad_token_id
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Kimi_K25ForConditionalGeneration(config)
    return model.to(dtype).eval(), tokenizer

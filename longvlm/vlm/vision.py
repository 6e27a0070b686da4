"""Every call of the vision tower: pixels -> merged visual tokens, for images and for video frames.

The encoders of `longvlm.pipeline`, the memory bridge's stream (`longvlm.memory.streaming`) and training all
come through here, so the dtype/device handling and the patch layout (`longvlm.processing.patches`) are in one
place. Nothing is planned here: sizes come from the caller's plan.

DeepStack (Qwen3-VL): the tower also returns, per visual token, features for the first few LLM layers. They
travel with their token as extra channels: an item's features are [tokens, C * (1 + layers)] (the LLM input
first, then one C-wide block per DeepStack layer), so everything that selects, orders or pools tokens moves
them together; `model_features` splits them again for the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

from longvlm.processing.patches import image_patches, video_patches
from longvlm.vlm.kimi import kimi_patches, kimi_video_patches
from longvlm.vlm.loading import VLM


def vision_placement(vlm: VLM) -> tuple[torch.device, torch.dtype]:
    """(device, dtype) of the vision tower's parameters: where pixels must go."""
    param = next(getattr(vlm.model.model, vlm.family_spec.vision_tower).parameters())
    return param.device, param.dtype


def image_pixels(vlm: VLM, images: Sequence[Image.Image | np.ndarray], sizes: Sequence[tuple[int, int]],
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Images resized to `sizes` -> (pixel values, grid_thw [N, 3]) in the family's layout (Qwen: flattened
    patches in merge-window order, `longvlm.processing.patches`; Kimi: `longvlm.vlm.kimi.kimi_patches`)."""
    if vlm.family_spec.patch_layout == "kimi":
        return kimi_patches(list(images), list(sizes))
    return image_patches(list(images), list(sizes), vlm.vision)


def video_pixels(vlm: VLM, frames: Sequence[np.ndarray], size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """One video item's frames at `size` -> (pixel values, grid rows): one row per item (Qwen), or per 4-frame
    chunk (Kimi, whose tower pools each chunk in time)."""
    if vlm.family_spec.patch_layout == "kimi":
        return kimi_video_patches(list(frames), size)
    return video_patches(list(frames), size, vlm.vision)


def token_grid(vlm: VLM, rows: torch.Tensor) -> list[int]:
    """The (t, h, w) patch grid of one video item's merged tokens from its grid rows: t counts token planes
    (Qwen: temporal patches of the one row; Kimi: one per chunk row)."""
    t = int(rows.shape[0]) if vlm.family_spec.patch_layout == "kimi" else int(rows[:, 0].sum())
    return [t, int(rows[0, 1]), int(rows[0, 2])]


def image_tokens(vlm: VLM, images: Sequence[Image.Image | np.ndarray], sizes: Sequence[tuple[int, int]],
                 ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Images resized to `sizes` (height, width) -> one [tokens, C] tensor of merged tokens per image, and the
    [N, 3] grid_thw they were encoded with. Gradients flow when the tower requires them."""
    device, dtype = vision_placement(vlm)
    pixels, grid = image_pixels(vlm, images, sizes)
    out = vlm.model.get_image_features(pixel_values=pixels.to(device, dtype), image_grid_thw=grid.to(device))
    return _stacked(out), grid


def video_tokens(vlm: VLM, pixels: torch.Tensor, grid: torch.Tensor,
                 rows_per_item: Sequence[int] | None = None) -> list[torch.Tensor]:
    """Patched video pixels (`video_pixels`, several items concatenated) and their grid rows -> one [tokens, C]
    tensor of merged tokens per item (`rows_per_item`: grid rows of each item, default one each)."""
    device, dtype = vision_placement(vlm)
    out = vlm.model.get_video_features(pixel_values_videos=pixels.to(device, dtype), video_grid_thw=grid.to(device))
    per_row = _stacked(out)
    if rows_per_item is None:
        return per_row
    items, start = [], 0
    for rows in rows_per_item:
        items.append(torch.cat(per_row[start:start + rows]))
        start += rows
    return items


def _stacked(out) -> list[torch.Tensor]:
    """Per item: the tower's merged tokens, with its DeepStack features (if any) as extra channels."""
    deepstack = getattr(out, "deepstack_features", None)
    if not deepstack:
        return list(out.pooler_output)
    return [torch.cat([main, *layers], dim=-1) for main, *layers in zip(out.pooler_output, *deepstack)]


def deepstack_layers(vlm: VLM) -> int:
    """How many LLM layers take DeepStack features from the vision tower (0 for most families)."""
    if not vlm.family_spec.deepstack:
        return 0
    return len(vlm.config.vision_config.deepstack_visual_indexes)


def text_hidden_size(vlm: VLM) -> int:
    """C: the LLM's hidden size, the width of one visual token as the LLM takes it."""
    return int(vlm.config.text_config.hidden_size)


def llm_input_part(vlm: VLM, features: torch.Tensor) -> torch.Tensor:
    """The LLM-input channels of encoded features (without their DeepStack blocks): [..., C]."""
    return features[..., :text_hidden_size(vlm)]


def without_deepstack(vlm: VLM, tokens: torch.Tensor) -> torch.Tensor:
    """Tokens made outside the vision tower ([N, C], e.g. memory-bridge tokens) widened to the encoded layout
    with zero DeepStack blocks: the LLM adds nothing to their hidden states in the injection layers."""
    layers = deepstack_layers(vlm)
    if not layers:
        return tokens
    return torch.cat([tokens, tokens.new_zeros(tokens.shape[0], layers * tokens.shape[1])], dim=-1)


def model_features(vlm: VLM, items: Sequence[torch.Tensor], device: torch.device | str
                   ) -> BaseModelOutputWithPooling:
    """Encoded items ([tokens, C] or, with DeepStack, [tokens, C * (1 + layers)]) as the model's forward takes
    them in `mm_encoder_outputs`: the LLM-input tokens per item, and per DeepStack layer its features per item."""
    width = text_hidden_size(vlm)
    main = [item[:, :width].to(device) for item in items]
    layers = deepstack_layers(vlm)
    if not layers:
        return BaseModelOutputWithPooling(pooler_output=main)
    deepstack = [[item[:, (k + 1) * width:(k + 2) * width].to(device) for item in items] for k in range(layers)]
    return BaseModelOutputWithDeepstackFeatures(pooler_output=main, deepstack_features=deepstack)


def frame_tokens(vlm: VLM, frames: Sequence[np.ndarray], size: tuple[int, int]) -> tuple[torch.Tensor, list[int]]:
    """Frames (a whole number of temporal patches) of one video item at `size` -> its merged tokens [tokens, C]
    and its grid_thw."""
    pixels, rows = video_pixels(vlm, frames, size)
    return video_tokens(vlm, pixels, rows, [rows.shape[0]])[0], token_grid(vlm, rows)

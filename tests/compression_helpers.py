"""Shared helpers for the compression tests: tiny models with non-degenerate outputs and batched prompts."""

from __future__ import annotations

import torch
from longvlm.vlm.loading import VLM, load_vlm
from longvlm.vlm.prompt import VisualSlot, build_chat_inputs, video_slot
from longvlm.vlm.vision import deepstack_layers, model_features


def sharp_vlm(preset: str, seed: int = 0, gain: float = 1.5) -> VLM:
    """A tiny model whose language-model matrices are re-drawn with std gain/sqrt(fan_in).

    The default random init (std 0.02) makes greedy decoding repeat one token whatever the context, which
    would make token-identity tests vacuous; with this init the next token depends on the context.
    """
    vlm = load_vlm(preset)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in vlm.model.model.language_model.parameters():
            if param.ndim == 2:
                param.copy_(torch.randn(param.shape, generator=generator) * gain / param.shape[1] ** 0.5)
    return vlm


def batch_inputs(vlm: VLM, rows: list[tuple[list[tuple[str, tuple[int, int, int]]], str]], seed: int = 0,
                 seconds_per_grid: float = 1.0) -> dict:
    """Left-padded chat inputs for several rows. Each row: ([(kind, patch grid (t, h, w)), ...], question).
    Visual features are random vectors (the LLM-side tests do not need the vision tower; with DeepStack
    features for each injection layer too)."""
    generator = torch.Generator().manual_seed(seed)
    hidden = vlm.config.text_config.hidden_size * (1 + deepstack_layers(vlm))
    encoded, grids, feats = [], {"image": [], "video": []}, {"image": [], "video": []}
    for items, question in rows:
        parts = []
        for kind, (t, h, w) in items:
            tokens = t * h * w // 4
            slot = video_slot(tokens, [float(i) for i in range(2 * t)]) if kind == "video" else VisualSlot(kind, tokens)
            parts += [f"{kind}:", slot, "\n"]
            grids[kind].append([t, h, w])
            feats[kind].append(torch.randn(tokens, hidden, generator=generator))
        encoded.append(build_chat_inputs(vlm.tokenizer, vlm.config, parts + [question]))
    length = max(e["input_ids"].shape[1] for e in encoded)

    def left_pad(x: torch.Tensor, value: int) -> torch.Tensor:
        return torch.cat([torch.full((1, length - x.shape[1]), value, dtype=x.dtype), x], dim=1)

    inputs = {"input_ids": torch.cat([left_pad(e["input_ids"], vlm.tokenizer.pad_token_id) for e in encoded]),
              "attention_mask": torch.cat([left_pad(e["attention_mask"], 0) for e in encoded]),
              "mm_token_type_ids": torch.cat([left_pad(e["mm_token_type_ids"], 0) for e in encoded])}
    outputs = {}
    for kind in ("image", "video"):
        if grids[kind]:
            inputs[f"{kind}_grid_thw"] = torch.tensor(grids[kind])
            outputs[kind] = model_features(vlm, feats[kind], "cpu")
    if grids["video"] and vlm.family == "qwen2_5_vl":
        inputs["second_per_grid_ts"] = torch.full((len(grids["video"]),), seconds_per_grid)
    inputs["mm_encoder_outputs"] = outputs
    if not vlm.family_spec.mrope:  # 1D positions (Kimi): the model takes no token types
        inputs.pop("mm_token_type_ids")
    return inputs


MIXED_ROWS = [
    ([("image", (1, 8, 12)), ("video", (3, 4, 8))], "What happens after the red car appears?"),
    ([("image", (1, 4, 4))], "Short one?"),
]

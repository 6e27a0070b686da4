"""Greedy decoding on a pruned KV cache with the ORIGINAL positions, for any batch (left padding included).

Positions. transformers' `generate()` builds prompt positions as [4, B, L] (a text row from the attention mask,
then the three M-RoPE rows from `get_rope_index`) and continues every row with `last + 1` per new token. Inside
the model, positions derived from the cache length plus `rope_deltas` would be too small by the number of
pruned tokens. `generate_pruned` therefore passes explicit positions built exactly like `generate()` does
(checked in the tests against transformers' own `_prepare_position_ids_for_generation`), and the attention
mask of the pruned cache (`PressState.slot_mask`, then ones for the generated tokens).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache
from transformers.generation import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

from longvlm.presses.base import KVPress, PressState
from longvlm.errors import ConfigError

PROMPT_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "image_grid_thw", "video_grid_thw",
               "second_per_grid_ts", "mm_encoder_outputs", "position_ids")


def prompt_position_ids(model: nn.Module, inputs: dict) -> torch.Tensor:
    """[4, B, L] prompt positions as `generate()` builds them: text row, then temporal/height/width rows; [B, L]
    for a model with 1D positions (no `get_rope_index`: Kimi K2.5)."""
    input_ids = inputs["input_ids"]
    mask = inputs.get("attention_mask")
    if mask is None:
        text = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :].expand(input_ids.shape[0], -1)
    else:
        text = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    if not hasattr(model.model, "get_rope_index"):
        return text
    grids = {k: inputs[k] for k in ("image_grid_thw", "video_grid_thw", "second_per_grid_ts")
             if inputs.get(k) is not None}
    if inputs.get("mm_token_type_ids") is not None and ("image_grid_thw" in grids or "video_grid_thw" in grids):
        vision, _ = model.model.get_rope_index(input_ids, mm_token_type_ids=inputs["mm_token_type_ids"],
                                               attention_mask=mask, **grids)
    else:
        vision = text[None].expand(3, -1, -1)
    return torch.cat([text[None], vision.to(text.device, text.dtype)], dim=0)


def decode_position_ids(prompt_positions: torch.Tensor, step: int) -> torch.Tensor:
    """[4, B, 1] ([B, 1] for 1D positions) positions of the `step`-th generated token fed back to the model
    (step 0 = first one)."""
    return prompt_positions[..., -1:] + 1 + step


def _nbytes(states) -> int:
    """Bytes of a tensor, or of the tensors in a dict / list of them (anything else: 0)."""
    if isinstance(states, torch.Tensor):
        return states.numel() * states.element_size()
    if isinstance(states, dict):
        states = list(states.values())
    return sum(_nbytes(s) for s in states) if isinstance(states, (list, tuple)) else 0


def cache_nbytes(cache) -> int:
    """Bytes held by the keys and values of a transformers cache (the part a KV press prunes)."""
    return sum(_nbytes(getattr(layer, "keys", None)) + _nbytes(getattr(layer, "values", None))
               for layer in cache.layers)


def recurrent_state_nbytes(cache) -> int:
    """Bytes of the fixed-size states of linear-attention layers (Qwen3.5's convolution and recurrent states):
    held per layer whatever the prompt's length, and never pruned."""
    return sum(_nbytes(getattr(layer, "conv_states", None)) + _nbytes(getattr(layer, "recurrent_states", None))
               for layer in cache.layers)


@dataclass
class PrunedGeneration:
    """New tokens [B, T] (padding after a row's EOS, like `generate`), press state, timings and cache size."""

    tokens: torch.Tensor
    state: PressState | None
    prefill_s: float
    decode_s: float
    cache_bytes: int  # KV bytes right after prefill (after pruning)
    decode_steps: int  # forward passes after prefill
    recurrent_bytes: int = 0  # linear-attention layers' fixed-size states (not KV, never pruned)

    @property
    def decode_tokens_per_s(self) -> float:
        """Generated tokens per second of the decode steps (batch rows counted)."""
        return self.decode_steps * self.tokens.shape[0] / self.decode_s if self.decode_s > 0 else float("nan")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _eos_ids(model: nn.Module, eos_token_id) -> list[int]:
    eos = eos_token_id if eos_token_id is not None else model.generation_config.eos_token_id
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]


@torch.no_grad()
def generate_pruned(model: nn.Module, inputs: dict, press: KVPress | None = None, *, max_new_tokens: int = 64,
                    eos_token_id: int | list[int] | None = None, pad_token_id: int | None = None,
                    streamer=None, clock: Callable[[], float] = time.perf_counter) -> PrunedGeneration:
    """Greedy generation (plus the model's repetition penalty, if configured) with `press` pruning the KV
    cache at prefill. `inputs`: input_ids, attention_mask (left padding), mm_token_type_ids, grids,
    second_per_grid_ts, pre-encoded `mm_encoder_outputs` and optionally explicit `position_ids` ([3 or 4, B, L],
    continued by +1 per token as `generate` does), as for `generate`. Without a press, or with a
    budget of 100%, the tokens equal `model.generate(**inputs, do_sample=False)` (tested). `eos_token_id=[]`
    disables stopping; `clock` times prefill and decoding (wall clock by default)."""
    unknown = set(inputs) - set(PROMPT_KEYS)
    if unknown:
        raise ConfigError(f"generate_pruned: unsupported inputs {sorted(unknown)}")
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    input_ids = inputs["input_ids"]
    batch, device = input_ids.shape[0], input_ids.device
    mask = inputs.get("attention_mask")
    if mask is None:
        mask = torch.ones_like(input_ids)
    if bool((mask[:, 1:] < mask[:, :-1]).any()):
        raise ConfigError("generate_pruned needs left-padded rows (tokenizer padding_side='left')")
    eos = _eos_ids(model, eos_token_id)
    pad = pad_token_id if pad_token_id is not None else model.generation_config.pad_token_id
    pad = pad if pad is not None else (eos[0] if eos else 0)
    penalty = model.generation_config.repetition_penalty
    processors = LogitsProcessorList(
        [RepetitionPenaltyLogitsProcessor(penalty)] if penalty not in (None, 1.0) else [])
    positions = inputs.get("position_ids")  # explicit layouts (e.g. hybrid-resolution video) are kept as given
    if positions is None:
        positions = prompt_position_ids(model, {**inputs, "attention_mask": mask})
    cache = DynamicCache(config=model.config)
    prefill = {k: v for k, v in inputs.items() if v is not None}
    prefill.update(attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                   logits_to_keep=1)
    if streamer is not None:
        streamer.put(input_ids.cpu())
    sequence = input_ids
    eos_tensor = torch.tensor(eos, device=device, dtype=torch.long)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    generated: list[torch.Tensor] = []
    steps = 0
    with press(model) if press is not None else nullcontext(None) as state:
        _sync(device)
        started = clock()
        logits = model(**prefill).logits[:, -1]
        _sync(device)
        prefill_s = clock() - started
        cache_bytes, recurrent_bytes = cache_nbytes(cache), recurrent_state_nbytes(cache)
        cache_mask = state.slot_mask.to(mask.dtype) if state is not None and state.slot_mask is not None else mask
        started = clock()
        for step in range(max_new_tokens):
            token = processors(sequence, logits.float()).argmax(dim=-1)
            token = torch.where(finished, torch.full_like(token, pad), token)
            generated.append(token)
            sequence = torch.cat([sequence, token[:, None]], dim=1)
            if streamer is not None:
                streamer.put(token.cpu())
            if eos:
                finished |= torch.isin(token, eos_tensor)
            if bool(finished.all()) or step == max_new_tokens - 1:
                break
            cache_mask = torch.cat([cache_mask, cache_mask.new_ones(batch, 1)], dim=1)
            logits = model(input_ids=token[:, None], attention_mask=cache_mask,
                           position_ids=decode_position_ids(positions, step), cache=cache,
                           use_cache=True).logits[:, -1]
            steps += 1
        _sync(device)
        decode_s = clock() - started
    if streamer is not None:
        streamer.end()
    return PrunedGeneration(torch.stack(generated, dim=1), state, prefill_s, decode_s, cache_bytes, steps,
                            recurrent_bytes)

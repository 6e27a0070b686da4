"""Build model inputs in Qwen2-VL's chat format with visual placeholders of exact, planned lengths."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

DEFAULT_SYSTEM = "You are a helpful assistant."
TEXT, IMAGE, VIDEO = 0, 1, 2  # mm_token_type_ids values transformers uses


@dataclass(frozen=True)
class VisualSlot:
    """Placeholder for one visual item: `<|vision_start|>` + `tokens` pad tokens + `<|vision_end|>`."""

    kind: str  # "image" or "video"
    tokens: int


def build_chat_inputs(tokenizer, config, user_parts: Sequence[str | VisualSlot],
                      system: str = DEFAULT_SYSTEM,
                      follow_ups: Sequence[tuple[str, str]] = ()) -> dict[str, torch.Tensor]:
    """Token ids for a user turn (text and visual slots in order), then the assistant prompt.

    With `follow_ups`, `user_parts` is the first turn, each (answer, next question) pair is appended as an
    assistant turn and a user turn, and the prompt ends with the assistant prompt after the last question.

    Returns `input_ids`, `attention_mask` and `mm_token_type_ids` (0 text, 1 image, 2 video), batch of one.
    The text around the slots follows Qwen2-VL's chat template.
    """
    ids: list[int] = []
    types: list[int] = []

    def add_text(text: str) -> None:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids.extend(piece)
        types.extend([TEXT] * len(piece))

    add_text(f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n")
    for part in user_parts:
        if isinstance(part, str):
            add_text(part)
            continue
        pad_id, kind = ((config.image_token_id, IMAGE) if part.kind == "image" else (config.video_token_id, VIDEO))
        ids.append(config.vision_start_token_id)
        types.append(TEXT)
        ids.extend([pad_id] * part.tokens)
        types.extend([kind] * part.tokens)
        ids.append(config.vision_end_token_id)
        types.append(TEXT)
    for previous_answer, question in follow_ups:
        add_text(f"<|im_end|>\n<|im_start|>assistant\n{previous_answer}<|im_end|>\n<|im_start|>user\n{question}")
    add_text("<|im_end|>\n<|im_start|>assistant\n")
    input_ids = torch.tensor([ids], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
            "mm_token_type_ids": torch.tensor([types], dtype=torch.int32)}


IGNORE_INDEX = -100


def build_training_inputs(tokenizer, config, user_parts: Sequence[str | VisualSlot], answer: str,
                          system: str = DEFAULT_SYSTEM) -> dict[str, torch.Tensor]:
    """`build_chat_inputs` plus the assistant's answer and `<|im_end|>`, with `labels` on those tokens only."""
    inputs = build_chat_inputs(tokenizer, config, user_parts, system=system)
    answer_ids = tokenizer(answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
    prompt_len = inputs["input_ids"].shape[1]
    input_ids = torch.cat([inputs["input_ids"], torch.tensor([answer_ids])], dim=1)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[0, prompt_len:] = input_ids[0, prompt_len:]
    types = torch.cat([inputs["mm_token_type_ids"], torch.zeros((1, len(answer_ids)), dtype=torch.int32)], dim=1)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels,
            "mm_token_type_ids": types}

"""Build model inputs in Qwen2-VL's chat format with visual placeholders of exact, planned lengths."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from longvlm.encoded import IMAGE, TEXT, VIDEO
from longvlm.datasets.examples import Example, ImageItem, VideoItem
from longvlm.processing.spec import VisionSpec

DEFAULT_SYSTEM = "You are a helpful assistant."


@dataclass(frozen=True)
class VisualSlot:
    """Placeholder for one visual item: `<|vision_start|>` + `tokens` pad tokens + `<|vision_end|>`."""

    kind: str  # "image" or "video"
    tokens: int


def frame_interval(timestamps: Sequence[float], default: float = 1.0) -> float:
    """Mean seconds between consecutive sampled frames; `default` for one frame (or all at one time)."""
    if len(timestamps) > 1 and timestamps[-1] > timestamps[0]:
        return (timestamps[-1] - timestamps[0]) / (len(timestamps) - 1)
    return default


def video_header(duration_s: float, frames: int, start_s: float, end_s: float) -> str:
    """The line that introduces a video block: one wording for training data, files and memory segments."""
    return f"Video ({duration_s:.0f} s, {frames} frames from {start_s:.1f}s to {end_s:.1f}s):"


def video_prompt_parts(tokens: int, timestamps: Sequence[float], duration_s: float | None = None
                       ) -> list[str | VisualSlot]:
    """A video's user-turn parts: `video_header`, the video slot of `tokens` tokens, a newline. Without
    `duration_s` the video lasts from 0 s to one frame interval after its last frame."""
    if not timestamps:
        raise ValueError("a video block needs at least one frame timestamp")
    if duration_s is None:
        duration_s = timestamps[-1] + frame_interval(timestamps)
    return [video_header(duration_s, len(timestamps), timestamps[0], timestamps[-1]), VisualSlot("video", tokens),
            "\n"]


def example_prompt_parts(example: Example, spec: VisionSpec) -> list[str | VisualSlot]:
    """The user-turn parts of `example` as the model sees them: text as is, an image slot per image, and per
    video the header, slot and newline of `video_prompt_parts` (the layout `encode_video` gives a file)."""
    parts: list[str | VisualSlot] = []
    for part in example.parts:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, ImageItem):
            parts.append(VisualSlot("image", spec.tokens(*spec.resized(*part.pixels.shape[:2]))))
        elif isinstance(part, VideoItem):
            tokens = spec.tokens(*spec.resized(*part.frames.shape[1:3]), len(part.frames))
            parts += video_prompt_parts(tokens, part.timestamps)
        else:
            raise TypeError(f"unsupported example part {type(part).__name__}")
    return parts


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

"""Build model inputs in the family's chat format with visual placeholders of exact, planned lengths.

Qwen2-VL / Qwen2.5-VL put a video in one block; Qwen3-VL / Qwen3.5 / Kimi K2.5 (`Family.timestamped_frames`)
put each temporal patch in its own block after its time as text (`Family.time_text`: `<12.5 seconds>`, the
mean time of the patch's frames, as transformers' Qwen3-VL processor writes it; Kimi: the chunk's first frame
as `00:00:12.500`), so a video slot carries its per-patch frame times and tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from longvlm.encoded import IMAGE, TEXT, VIDEO
from longvlm.datasets.examples import Example, ImageItem, VideoItem
from longvlm.errors import ConfigError
from longvlm.processing.spec import VisionSpec
from longvlm.vlm.families import family_of

DEFAULT_SYSTEM = "You are a helpful assistant."
_FAMILY_SYSTEM = object()  # the default of `system`: the family's own (Qwen2-VL's DEFAULT_SYSTEM, Qwen3: none)


@dataclass(frozen=True)
class VisualSlot:
    """Placeholder for one visual item: `<|vision_start|>` + `tokens` pad tokens + `<|vision_end|>`.

    A video slot may also carry `patches`: (its frames' times in seconds, tokens) of each temporal patch, which
    families with timestamped frames need (one block per patch after its time)."""

    kind: str  # "image" or "video"
    tokens: int
    patches: tuple[tuple[tuple[float, ...], int], ...] = ()


def patch_frame_times(timestamps: Sequence[float], patches: int) -> list[tuple[float, ...]]:
    """The frame times of each of `patches` temporal patches over the frames at `timestamps` (consecutive
    equal groups; a short last patch repeats the last frame, as transformers' Qwen3-VL processor pads it)."""
    if patches < 1 or not timestamps:
        return []
    size = -(-len(timestamps) // patches)
    padded = list(timestamps) + [timestamps[-1]] * (size * patches - len(timestamps))
    return [tuple(padded[k * size:(k + 1) * size]) for k in range(patches)]


def video_slot(tokens: int, timestamps: Sequence[float], patch_tokens: Sequence[int] | None = None,
               temporal_patch_size: int = 2) -> VisualSlot:
    """A video slot of `tokens` tokens over frames at `timestamps`, with its per-patch times and tokens:
    `patch_tokens` (one entry per temporal patch), or when omitted equal shares of
    ceil(frames / temporal_patch_size) patches (no patch list when `tokens` does not divide)."""
    if patch_tokens is None:
        count = -(-len(timestamps) // temporal_patch_size)
        if count < 1 or tokens % count:
            return VisualSlot("video", tokens)
        patch_tokens = [tokens // count] * count
    if sum(patch_tokens) != tokens:
        raise RuntimeError(f"video slot of {tokens} tokens split into patches of {sum(patch_tokens)}")
    times = patch_frame_times(timestamps, len(patch_tokens))
    return VisualSlot("video", tokens, tuple(zip(times, (int(n) for n in patch_tokens))))


def frame_interval(timestamps: Sequence[float], default: float = 1.0) -> float:
    """Mean seconds between consecutive sampled frames; `default` for one frame (or all at one time)."""
    if len(timestamps) > 1 and timestamps[-1] > timestamps[0]:
        return (timestamps[-1] - timestamps[0]) / (len(timestamps) - 1)
    return default


def video_header(duration_s: float, frames: int, start_s: float, end_s: float) -> str:
    """The line that introduces a video block: one wording for training data, files and memory segments."""
    return f"Video ({duration_s:.0f} s, {frames} frames from {start_s:.1f}s to {end_s:.1f}s):"


def video_prompt_parts(tokens: int, timestamps: Sequence[float], duration_s: float | None = None, *,
                       temporal_patch_size: int, patch_tokens: Sequence[int] | None = None,
                       ) -> list[str | VisualSlot]:
    """A video's user-turn parts: `video_header`, the video slot of `tokens` tokens (`video_slot`: per-patch
    times, with `patch_tokens` when the patches differ in size, else equal patches of `temporal_patch_size`
    frames: the model's, 2 for Qwen, 4 for Kimi), a newline. Without `duration_s` the video lasts from 0 s to
    one frame interval after its last frame."""
    if not timestamps:
        raise ValueError("a video block needs at least one frame timestamp")
    if duration_s is None:
        duration_s = timestamps[-1] + frame_interval(timestamps)
    return [video_header(duration_s, len(timestamps), timestamps[0], timestamps[-1]),
            video_slot(tokens, timestamps, patch_tokens, temporal_patch_size), "\n"]


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
            parts += video_prompt_parts(tokens, part.timestamps, temporal_patch_size=spec.temporal_patch_size)
        else:
            raise TypeError(f"unsupported example part {type(part).__name__}")
    return parts


def slot_pieces(slot: VisualSlot, config) -> list[tuple[str, int]]:
    """How a slot is written for the model of `config`: (text before a block, block tokens) per visual block.
    One block without text, or for a video of a timestamped family one block per temporal patch after its
    time (ConfigError when the slot carries no patches)."""
    family = family_of(config)
    if slot.kind != "video" or not family.timestamped_frames:
        return [("", slot.tokens)]
    if not slot.patches:
        raise ConfigError(f"{family.label} writes each temporal patch after its time; this video slot "
                          f"has no per-patch times (build it with longvlm.vlm.prompt.video_slot)")
    return [(family.time_text(times), n) for times, n in slot.patches]


def media_text(kind: str, config) -> str:
    """Text after a block's start token: Kimi's "image<|media_content|>" / "video<|media_content|>", else none."""
    return f"{kind}<|media_content|>" if family_of(config).media_text else ""


def build_chat_inputs(tokenizer, config, user_parts: Sequence[str | VisualSlot],
                      system: str | None = _FAMILY_SYSTEM,  # type: ignore[assignment]
                      follow_ups: Sequence[tuple[str, str]] = ()) -> dict[str, torch.Tensor]:
    """Token ids for a user turn (text and visual slots in order), then the assistant prompt.

    With `follow_ups`, `user_parts` is the first turn, each (answer, next question) pair is appended as an
    assistant turn and a user turn, and the prompt ends with the assistant prompt after the last question.

    Returns `input_ids`, `attention_mask` and `mm_token_type_ids` (0 text, 1 image, 2 video), batch of one.
    The text around the slots follows the family's chat template (`system`: its default system turn unless
    given; None for no system turn), each slot as `slot_pieces`.
    """
    family = family_of(config)
    if system is _FAMILY_SYSTEM:
        system = family.system_prompt
    ids: list[int] = []
    types: list[int] = []

    def add_text(text: str) -> None:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids.extend(piece)
        types.extend([TEXT] * len(piece))

    chat = family.chat
    if system is not None:
        add_text(chat.system.format(system))
    add_text(chat.user)
    for part in user_parts:
        if isinstance(part, str):
            add_text(part)
            continue
        pad_id, kind = ((config.image_token_id, IMAGE) if part.kind == "image" else (config.video_token_id, VIDEO))
        for text, tokens in slot_pieces(part, config):
            if text:
                add_text(text)
            ids.append(config.vision_start_token_id)
            types.append(TEXT)
            add_text(media_text(part.kind, config))
            ids.extend([pad_id] * tokens)
            types.extend([kind] * tokens)
            ids.append(config.vision_end_token_id)
            types.append(TEXT)
    for previous_answer, question in follow_ups:
        add_text(f"{chat.end}{chat.assistant}{previous_answer}{chat.end}{chat.user}{question}")
    add_text(f"{chat.end}{chat.assistant}{family.assistant_prefix}")
    input_ids = torch.tensor([ids], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
            "mm_token_type_ids": torch.tensor([types], dtype=torch.int32)}


IGNORE_INDEX = -100


def build_training_inputs(tokenizer, config, user_parts: Sequence[str | VisualSlot], answer: str,
                          system: str | None = _FAMILY_SYSTEM,  # type: ignore[assignment]
                          ) -> dict[str, torch.Tensor]:
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

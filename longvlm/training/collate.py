"""Examples -> token ids, labels, pixels and per-sample 3D M-RoPE positions; sequence packing.

Packing follows transformers' own convention for Qwen2-VL: `position_ids` of shape [4, batch, length] whose
first row holds text positions that restart at 0 for every packed sample, and no attention mask. From that
row transformers builds a block-diagonal causal mask (SDPA / eager) or varlen boundaries (flash-attn), so
samples never attend to each other; rows 1-3 are each sample's own M-RoPE positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from longvlm.datasets.examples import Example, ImageItem, VideoItem
from longvlm.processing.patches import image_patches, video_patches
from longvlm.processing.spec import VisionSpec
from longvlm.errors import BudgetError, ConfigError
from longvlm.vlm.prompt import IGNORE_INDEX, build_training_inputs, example_prompt_parts, frame_interval
from longvlm.vlm.families import family_of


@dataclass
class TokenizedExample:
    """One example ready for the model (batch dimension removed)."""

    input_ids: torch.Tensor  # [L]
    labels: torch.Tensor  # [L], IGNORE_INDEX outside the answer
    mm_token_type_ids: torch.Tensor  # [L]
    position_ids: torch.Tensor  # [3, L] M-RoPE positions starting at 0
    pixel_values: torch.Tensor | None
    image_grid_thw: torch.Tensor | None
    pixel_values_videos: torch.Tensor | None
    video_grid_thw: torch.Tensor | None
    second_per_grid_ts: torch.Tensor | None
    task: str = ""

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def tokenize_example(example: Example, tokenizer, model, spec: VisionSpec) -> TokenizedExample:
    """Tokenize `example` for `model` (a ForConditionalGeneration of a family with 3D M-RoPE positions and
    Qwen's patch layout: Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5; ConfigError for Kimi K2.5)."""
    family = family_of(model.config)
    if not family.mrope:
        raise ConfigError(f"training supports the Qwen-VL families; {family.label} (1D positions, MoonViT patch "
                          f"layout) is not wired into the training collator")
    parts = example_prompt_parts(example, spec)
    images = [p.pixels for p in example.parts if isinstance(p, ImageItem)]
    image_sizes = [spec.resized(*pixels.shape[:2]) for pixels in images]
    videos = [(p, spec.resized(*p.frames.shape[1:3])) for p in example.parts if isinstance(p, VideoItem)]
    config = model.config
    inputs = build_training_inputs(tokenizer, config, parts, example.answer)
    pixel_values = image_grid = videos_pixels = video_grid = seconds = None
    if images:
        pixel_values, image_grid = image_patches(images, image_sizes, spec)
    if videos:
        encoded = [video_patches(list(item.frames), size, spec) for item, size in videos]
        videos_pixels = torch.cat([e[0] for e in encoded])
        video_grid = torch.cat([e[1] for e in encoded])
        seconds = torch.tensor([spec.temporal_patch_size * frame_interval(item.timestamps) for item, _ in videos])
    rope_kwargs = {"second_per_grid_ts": seconds} if "second_per_grid_ts" in _rope_params(model) else {}
    if images or videos:
        positions, _ = model.model.get_rope_index(inputs["input_ids"], mm_token_type_ids=inputs["mm_token_type_ids"],
                                                  image_grid_thw=image_grid, video_grid_thw=video_grid,
                                                  **rope_kwargs)
        positions = positions[:, 0]
    else:
        positions = torch.arange(inputs["input_ids"].shape[1]).expand(3, -1)
    return TokenizedExample(inputs["input_ids"][0], inputs["labels"][0], inputs["mm_token_type_ids"][0], positions,
                            pixel_values, image_grid, videos_pixels, video_grid, seconds, example.task)


def _rope_params(model) -> set[str]:
    import inspect

    return set(inspect.signature(model.model.get_rope_index).parameters)


def pack_rows(rows: Sequence[Sequence[TokenizedExample]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Batch of packed rows: each row concatenates its samples; rows are right-padded to the longest row.

    Padding forms its own segment (text positions restart at 0) with IGNORE_INDEX labels, so it affects no
    real token. Returns model inputs including `labels` and `position_ids` [4, batch, length].
    """
    lengths = [sum(len(s) for s in row) for row in rows]
    total = max(lengths)
    ids = torch.full((len(rows), total), pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), total), IGNORE_INDEX, dtype=torch.long)
    types = torch.zeros((len(rows), total), dtype=torch.int32)
    positions = torch.zeros((4, len(rows), total), dtype=torch.long)
    for r, row in enumerate(rows):
        offset = 0
        for sample in row:
            n = len(sample)
            ids[r, offset:offset + n] = sample.input_ids
            labels[r, offset:offset + n] = sample.labels
            types[r, offset:offset + n] = sample.mm_token_type_ids
            positions[0, r, offset:offset + n] = torch.arange(n)
            positions[1:, r, offset:offset + n] = sample.position_ids
            offset += n
        if offset < total:
            pad = torch.arange(total - offset)
            positions[:, r, offset:] = pad
    batch: dict[str, torch.Tensor] = {"input_ids": ids, "labels": labels, "mm_token_type_ids": types,
                                      "position_ids": positions}
    samples = [s for row in rows for s in row]
    for key in ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw", "second_per_grid_ts"):
        values = [getattr(s, key) for s in samples if getattr(s, key) is not None]
        if values:
            batch[key] = torch.cat(values)
    return batch


def greedy_pack(samples: Sequence[TokenizedExample], max_length: int, rows: int | None = None, *,
                one_per_row: bool = False) -> list[list[TokenizedExample]]:
    """First-fit packing of samples (in order) into rows of at most `max_length` tokens (`one_per_row`: each
    sample alone in its row, for families that cannot pack, `Family.packs_samples`).

    A sample longer than `max_length` is an error (the data mixture must respect the stage length).
    """
    packed: list[list[TokenizedExample]] = []
    room: list[int] = []
    for sample in samples:
        if len(sample) > max_length:
            raise BudgetError(f"a {sample.task} sample has {len(sample)} tokens, over the packing length {max_length}")
        for i, free in enumerate(room):
            if len(sample) <= free and not one_per_row:
                packed[i].append(sample)
                room[i] -= len(sample)
                break
        else:
            packed.append([sample])
            room.append(max_length - len(sample))
    if rows is not None and len(packed) > rows:
        raise BudgetError(f"{len(samples)} samples need {len(packed)} rows of {max_length} tokens, more than {rows}")
    return packed


def example_length(example: Example, tokenizer, config, spec: VisionSpec) -> int:
    """Token count of `example` exactly as `tokenize_example` produces it, without touching pixels."""
    parts = example_prompt_parts(example, spec)
    return int(build_training_inputs(tokenizer, config, parts, example.answer)["input_ids"].shape[1])

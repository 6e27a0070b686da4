"""The types that flow between the layers: what the model saw (`Evidence`), an encoded input ready to be
asked about (`EncodedInput`), an answer (`Answer`), progress callbacks, and the token-type ids.

A leaf module: the readers, planners, encoders, the memory bridge, the text route and the demo all use these
types, so they live below all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from longvlm.planning.planner import Plan
    from longvlm.vlm.positions import VisualBlock
    from longvlm.vlm.prompt import VisualSlot

TEXT, IMAGE, VIDEO = 0, 1, 2  # mm_token_type_ids values transformers uses

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class Evidence:
    """One visual item the model saw: a page (1-based number and printed label), an image, or a video frame."""

    kind: str  # "page" | "image" | "frame"
    index: int  # page number (1-based) / image index (0-based) / frame index
    label: str = ""
    timestamp: float | None = None

    def cite(self) -> str:
        if self.kind == "frame":
            return f"{self.timestamp:.1f}s"
        return f"p.{self.index}" if self.kind == "page" else f"image {self.index}"


@dataclass
class EncodedInput:
    """Visual features of one input and the prompt parts that place them, ready to be asked about."""

    source: str
    kind: str  # "video" | "pdf" | "images"
    plan: Plan
    user_parts: list[str | VisualSlot]
    evidence: list[Evidence]
    image_embeds: list[torch.Tensor] = field(default_factory=list)
    image_grid_thw: torch.Tensor | None = None
    video_embeds: list[torch.Tensor] = field(default_factory=list)
    video_grid_thw: torch.Tensor | None = None
    second_per_grid_ts: torch.Tensor | None = None
    # Position layout when the model cannot derive it from the grids (a hybrid video: one block, several
    # grids): one VisualBlock per visual slot of `user_parts`. None: transformers' get_rope_index is used.
    position_blocks: list[VisualBlock] | None = None
    stats: dict = field(default_factory=dict)
    # Set for a video streamed through a memory bridge (`longvlm.memory.streaming.MemoryContext`): `answer()`
    # then picks the segment for each question.
    memory: Any = None
    # The `longvlm.options.Options` it was encoded with (set by `longvlm.pipeline.encode.encode`): `answer()`
    # applies their compression's KV press.
    options: Any = None

    @property
    def visual_tokens(self) -> int:
        return sum(int(e.shape[0]) for e in self.image_embeds + self.video_embeds)


def report_progress(progress: ProgressFn | None, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)


@dataclass
class Answer:
    """A model answer with the evidence it was given and how it was produced."""

    text: str
    model: str
    route: str  # "vlm": the vision-language model read the frames/pages; "text": a small LM read retrieved text
    evidence: list[Evidence]
    stats: dict = field(default_factory=dict)
    passages: list[dict] = field(default_factory=list)  # text route: the excerpts read (cite, score, text, source)

    def evidence_summary(self) -> str:
        """Compact list of what was fed, e.g. 'p.1, p.4' or '0.0s .. 59.0s (60 frames)' (text route: each
        retrieved page/frame, best first)."""
        if not self.evidence:
            return ""
        if self.evidence[0].kind == "frame" and self.route != "text":
            first, last = self.evidence[0], self.evidence[-1]
            return f"{first.cite()} .. {last.cite()} ({len(self.evidence)} frames)"
        return ", ".join(e.cite() for e in self.evidence)


def check_planned(encoded: EncodedInput) -> EncodedInput:
    """Check that the encoder produced exactly the planned number of tokens, and record the counts."""
    planned = encoded.plan.total_tokens
    if encoded.visual_tokens != planned:
        raise RuntimeError(f"internal error: planned {planned} visual tokens but the vision tower produced "
                           f"{encoded.visual_tokens}")
    encoded.stats.update(planned_visual_tokens=planned, visual_tokens=encoded.visual_tokens,
                         visual_items=len(encoded.plan.items), skipped=encoded.plan.skipped,
                         budget=encoded.plan.budget)
    return encoded

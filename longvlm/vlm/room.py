"""Context room: how many visual tokens and new tokens fit the loaded model, for every caller.

A model with a context of C tokens holds the chat prompt (template, question, the labels around each
page/frame) + the visual tokens + the answer. Every entry point (CLI, demo, Python API, lmms-eval adapter,
benchmarks) takes its defaults from here, so the default budget is always what fits the model in use (a
512-token small model and a 128K checkpoint alike), and a budget set above what fits is lowered with a note
in the answer's stats instead of failing:

    visual room = C - answer room - prompt text (template + question; the demo, which encodes before the
                  question is known, reserves `QUESTION_ROOM` tokens for it)

The labels around each page/frame ("Page 12:", the video header, vision start/end tokens) depend on how many
items the planner keeps; the encoders fit them exactly (`fit_plan`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from longvlm.errors import BudgetError
from longvlm.vlm.prompt import VisualSlot, build_chat_inputs, media_text, slot_pieces

DEFAULT_NEW_TOKENS = 64
"""Answer room when none is asked for: 64 tokens, at most 1/8 of the context (short answers with citations)."""

QUESTION_ROOM = 64
"""Tokens kept free for the question when the input is encoded before it is asked (the demo): 64, at most 1/8
of the context. A longer question still fits when the answer room allows (`answer()` lowers max new tokens)."""

MIN_NEW_TOKENS = 8
"""Fewest new tokens `answer()` lowers a request to before it reports that the context is full."""


@dataclass(frozen=True)
class Room:
    """What fits: the visual-token budget and the new tokens, with notes on anything lowered."""

    visual_tokens: int
    new_tokens: int
    context: int
    notes: tuple[str, ...] = ()


def add_notes(stats: dict, notes) -> None:
    """Append `notes` (what was lowered or skipped, for the user) to `stats["notes"]`."""
    if notes:
        stats["notes"] = [*stats.get("notes", []), *notes]


def _share(limit: int, amount: int) -> int:
    return max(1, min(amount, limit // 8))


def default_new_tokens(limit: int) -> int:
    """`DEFAULT_NEW_TOKENS`, at most 1/8 of a `limit`-token context."""
    return _share(limit, DEFAULT_NEW_TOKENS)


def prompt_tokens(tokenizer, config, question: str | None) -> int:
    """Tokens of the chat prompt without any visual item: template + question (or `QUESTION_ROOM` tokens
    when the question is not known yet)."""
    count = int(build_chat_inputs(tokenizer, config, [question] if question else [])["input_ids"].shape[1])
    return count if question else count + _share(int(config.text_config.max_position_embeddings), QUESTION_ROOM)


def fit_room(vlm, *, question: str | None = None, max_visual_tokens: int | None = None,
             max_new_tokens: int | None = None) -> Room:
    """The visual budget and answer room for `vlm` (its `max_context`, raised by a position extension):
    the requested values when they fit, else lowered with a note; None asks for what fits."""
    limit = vlm.max_context
    notes = []
    new = default_new_tokens(limit) if max_new_tokens is None else int(max_new_tokens)
    prompt = prompt_tokens(vlm.tokenizer, vlm.config, question)
    if new > limit - prompt - 1:
        lowered = max(1, min(default_new_tokens(limit), limit - prompt - 1))
        notes.append(f"max new tokens lowered from {new} to {lowered} to fit the model's {limit}-token context")
        new = lowered
    room = limit - prompt - new
    if room < 1:
        raise BudgetError(f"the question alone takes {prompt} of the model's {limit}-token context; "
                          f"ask a shorter question")
    if max_visual_tokens is None:
        visual = room
    elif max_visual_tokens > room:
        visual = room
        notes.append(f"visual-token budget lowered from {max_visual_tokens} to fit the model's {limit}-token "
                     f"context: {room} tokens are left for the visual tokens and their labels after {prompt} "
                     f"prompt and {new} answer tokens")
    else:
        visual = int(max_visual_tokens)
    return Room(visual, new, room, tuple(notes))


def text_tokens(tokenizer, config, parts: Sequence[str | VisualSlot]) -> int:
    """Tokens the non-visual part of `parts` adds to a prompt for the model of `config`: each text part as
    `build_chat_inputs` tokenizes it, plus per visual block its vision start/end tokens and the text before it
    (`slot_pieces`: a frame's time for families with timestamped frames)."""

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0

    return sum(sum(2 + count(text) + count(media_text(p.kind, config)) for text, _ in slot_pieces(p, config))
               if isinstance(p, VisualSlot) else count(p) for p in parts)


def fit_plan(plan_for: Callable[[int], object], context_tokens: Callable[[object], int], budget: int,
             room: int | None):
    """`plan_for(b)` for the largest b <= `budget` whose `context_tokens(plan)` (its visual tokens plus the
    text that places them) fit `room` tokens; just `plan_for(budget)` when `room` is None. Plans grow in
    steps (a frame or a resolution step at a time), so b is found by bisection: at most ~log2(budget) plans,
    each a few milliseconds of arithmetic."""
    plan = plan_for(budget)
    if room is None or context_tokens(plan) <= room:
        return plan

    def fitting(b: int):
        try:
            candidate = plan_for(b)
        except BudgetError:  # not even one item at this budget
            return None
        return candidate if context_tokens(candidate) <= room else None

    best, low, high = None, 0, min(budget, room)  # the labels cost tokens too: b never exceeds the room
    while high - low > 1:
        middle = (low + high) // 2
        candidate = fitting(middle)
        if candidate is None:
            high = middle
        else:
            best, low = candidate, middle
    if best is None:
        best = fitting(high) if high >= 1 else None
    if best is None:
        raise BudgetError(f"the labels around the planned pages/frames leave no room for visual tokens in "
                          f"{room} tokens of context; raise the budget or extend the context")
    return best

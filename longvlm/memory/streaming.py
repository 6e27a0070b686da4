"""Stream a video through a memory bridge, and give the LLM memory tokens plus one segment's tokens.

Streaming (`stream_video`). Frames sampled at `sample_fps` are decoded and encoded a chunk at a time at one
fixed size, chosen so that a segment of `max_segment_patches` temporal patches (2 frames each) fits the
visual budget next to the M memory tokens. Each temporal patch's tokens are mean-pooled into a feature for
online SceneTilling (`longvlm.memory.scene_tiling`); when a segment closes, its tokens go through the bridge
and are dropped. Only the open segment's tokens and the bounded `MemoryState` are held, so memory is flat in
the video length and time is linear.

The bridge reads and writes the LLM-input features; with DeepStack (Qwen3-VL) the segment's tokens keep
their DeepStack features for the LLM and the memory tokens get none (zeros: nothing is added in the
injection layers), `longvlm.vlm.vision.without_deepstack`.

What the LLM sees (`memory_encoded_input`): "Video memory ...:" + an image block of the M memory tokens
(grid 1 x rows x cols: transformers derives their M-RoPE positions like an image's) + the header every video
block gets (`longvlm.vlm.prompt.video_prompt_parts`) + one video block of the segment's tokens (an ordinary
video item: positions from its grid; Qwen2.5-VL's `second_per_grid_ts` from the real frame interval). Both
blocks are ordinary items, so the positions are the ones `get_rope_index` computes (tested against
`longvlm.vlm.positions`).

Which segment (`for_question`, called by `answer()`): the last segment by default ("current"). With
`select="auto"`, a time named in the question ("minute 5", "5 min", "5:00", "300 s") picks the cache entry whose
span contains it; otherwise the cache entry whose mean memory is most similar to the question's mean token
embedding. The chosen span is decoded and encoded again from the video file at the stream's size (thinned
evenly to the budget if the entry merged several segments), so a question about minute 5 of a 60-minute video
gets minute 5's frames plus the memory, while the state itself stays small.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from longvlm.memory.bridge import MemoryBridge, check_bridge_model, memory_grid
from longvlm.memory.state import CacheSpan, MemoryState
from longvlm.ingest import sampling
from longvlm.ingest.video import VideoReader
from longvlm.planning.planner import Plan, PlannedImage, PlannedVideo, plan_video
from longvlm.memory.scene_tiling import OnlineSceneTiler
from longvlm.encoded import EncodedInput, Evidence, check_planned
from longvlm.errors import BudgetError, ConfigError
from longvlm.references import time_references
from longvlm.vlm.loading import VLM
from longvlm.vlm.prompt import VisualSlot, frame_interval, video_prompt_parts
from longvlm.vlm.vision import frame_tokens, llm_input_part, without_deepstack

SELECT_MODES = ("auto", "relevance", "last")


@dataclass
class MemoryOptions:
    """How to stream a video through `bridge`: SceneTilling cut rule (online: `alpha` over the running depth
    statistics, or an absolute `threshold`; `tiling_std` "population", as the shipped bridge was trained, or
    VideoLLaMB's "unbiased"), the forced cut after `max_segment_patches` temporal patches, and which segment
    the LLM gets (`select`: auto | relevance | last; see the module docstring)."""

    bridge: MemoryBridge
    max_segment_patches: int = 16
    alpha: float | None = 1.0
    threshold: float | None = None
    select: str = "auto"
    tiling_std: str = "population"

    def __post_init__(self) -> None:
        if self.select not in SELECT_MODES:
            raise ConfigError(f"memory select must be one of {SELECT_MODES}, got {self.select!r}")
        if self.max_segment_patches < 1:
            raise ConfigError(f"max_segment_patches must be positive, got {self.max_segment_patches}")
        if self.threshold is not None:
            self.alpha = None


@dataclass
class MemoryContext:
    """Attached to an `EncodedInput` made with a memory bridge: the options, the state, the last segment's
    span (the default) and the span whose tokens the input holds."""

    options: MemoryOptions
    state: MemoryState
    last: CacheSpan
    shown: CacheSpan


def stream_indices(meta, sample_fps: float, max_frames: int | None, tp: int) -> list[int]:
    """The frames the stream reads: sampled at `sample_fps` (at most `max_frames`), padded to whole temporal
    patches by repeating the last frame."""
    indices = sampling.indices_by_fps(meta.num_frames, meta.fps, sample_fps, max_frames)
    return indices + [indices[-1]] * (-len(indices) % tp)


def stream_size(vlm: VLM, height: int, width: int, segment_budget: int, patches: int) -> tuple[int, int, int]:
    """(height, width, tokens per temporal patch) at which `patches` temporal patches fit `segment_budget`."""
    tp = vlm.vision.temporal_patch_size
    plan = plan_video(patches * tp, 1.0, height, width, segment_budget, vlm.vision, sample_fps=1.0)
    item = plan.items[0]
    if item.num_frames < patches * tp:
        raise BudgetError(f"a visual budget of {segment_budget} tokens (after the memory tokens) cannot hold a "
                          f"segment of {patches} temporal patches; raise --max-visual-tokens or lower "
                          f"max_segment_patches")
    return item.height, item.width, item.tokens // patches


def patch_tokens(vlm: VLM, frames: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Frames (a whole number of temporal patches) -> merged tokens [patches, tokens per patch, C], with
    gradients to the vision tower and merger when they require them."""
    out, grid = frame_tokens(vlm, list(frames), size)
    return out.reshape(int(grid[0]), -1, out.shape[-1])


@torch.no_grad()
def encode_patches(vlm: VLM, frames: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """`patch_tokens` without gradients (inference, or a frozen tower)."""
    return patch_tokens(vlm, frames, size)


@dataclass
class _Patch:
    tokens: torch.Tensor
    indices: list[int]
    timestamps: list[float]


@torch.no_grad()
def stream_video(vlm: VLM, path: str, options: MemoryOptions, *, max_visual_tokens: int = 4096,
                 sample_fps: float = 1.0, max_frames: int | None = None, frames_per_chunk: int = 16,
                 progress=None) -> tuple[MemoryState, CacheSpan, list[_Patch]]:
    """Stream a video through the bridge; returns the state, the last segment's span and its patches."""
    bridge, spec = options.bridge, vlm.vision
    check_bridge_model(bridge, vlm.model)
    tp = spec.temporal_patch_size
    reader = VideoReader(path)
    meta = reader.metadata
    segment_budget = max_visual_tokens - bridge.num_memory_tokens
    height, width, per_patch = stream_size(vlm, meta.height, meta.width, segment_budget, options.max_segment_patches)
    indices = stream_indices(meta, sample_fps, max_frames, tp)
    state = bridge.initial_state({
        "source": path, "sample_fps": sample_fps, "max_frames": max_frames, "height": height, "width": width,
        "tokens_per_patch": per_patch, "segment_budget": segment_budget, "duration_s": meta.duration,
        "patches": len(indices) // tp})
    last, patches = _stream_patches(vlm, reader, indices, 0, state, options, progress, frames_per_chunk)
    return state, last, patches


def _stream_patches(vlm: VLM, reader: VideoReader, indices: list[int], first_patch: int, state: MemoryState,
                    options: MemoryOptions, progress=None,
                    frames_per_chunk: int = 16) -> tuple[CacheSpan, list[_Patch]]:
    """Stream frames `indices` (temporal patches from `first_patch` on) through the bridge into `state`, cut by
    online SceneTilling; returns the last segment's span and patches."""
    bridge, tp = options.bridge, vlm.vision.temporal_patch_size
    size = (int(state.meta["height"]), int(state.meta["width"]))
    tiler = OnlineSceneTiler(threshold=options.threshold, alpha=options.alpha,
                             max_segment=options.max_segment_patches, std=options.tiling_std)
    buffer: OrderedDict[int, _Patch] = OrderedDict()
    last: tuple[CacheSpan, list[_Patch]] | None = None
    chunk = max(tp, frames_per_chunk - frames_per_chunk % tp)

    def close(segments) -> None:
        nonlocal last
        for seg in segments:
            patches = [buffer.pop(p) for p in range(seg.start, seg.end + 1)]
            span = CacheSpan(seg.start_s, seg.end_s, seg.index, seg.index, 1, first_patch + seg.start,
                             first_patch + seg.end)
            bridge.advance(state, llm_input_part(vlm, torch.cat([p.tokens for p in patches])), span)
            last = (span, patches)

    done = 0
    for frames in reader.iter_chunks(indices, chunk):
        tokens = encode_patches(vlm, frames.frames, size)
        for k in range(tokens.shape[0]):
            p = done // tp + k
            sl = slice(k * tp, (k + 1) * tp)
            buffer[p] = _Patch(tokens[k], frames.indices[sl], frames.timestamps[sl])
            close(tiler.push(llm_input_part(vlm, tokens[k]).float().mean(dim=0).cpu().numpy(),
                             frames.timestamps[k * tp]))
        done += len(frames.indices)
        if progress is not None:
            progress("stream", done, len(indices))
    close(tiler.finish())
    assert last is not None and not buffer
    return last[0], last[1]


def memory_prompt_parts(memory_tokens: int, segment_tokens: int, segments: int, covered_s: float,
                        segment_timestamps: Sequence[float], temporal_patch_size: int) -> list[str | VisualSlot]:
    """The user-turn parts that place the memory (image block) and one segment (video block, introduced like
    any video: `video_prompt_parts` over the seconds covered); shared by inference and training so that both
    see the same layout."""
    return [f"Video memory ({segments} scenes, 0.0s to {covered_s:.1f}s):", VisualSlot("image", memory_tokens), "\n",
            *video_prompt_parts(segment_tokens, segment_timestamps, covered_s,
                                temporal_patch_size=temporal_patch_size)]


def memory_encoded_input(vlm: VLM, state: MemoryState, options: MemoryOptions, span: CacheSpan,
                         patches: list[_Patch], stats: dict | None = None, last: CacheSpan | None = None):
    """The `EncodedInput` the LLM gets: memory tokens (image block) + the patches of one span (video block)."""

    spec, merge = vlm.vision, vlm.vision.merge_size
    m = options.bridge.num_memory_tokens
    mem_grid = memory_grid(m, merge)
    height, width = int(state.meta["height"]), int(state.meta["width"])
    indices = [i for p in patches for i in p.indices]
    stamps = [t for p in patches for t in p.timestamps]
    tokens = torch.cat([p.tokens for p in patches])
    video_grid = spec.grid(height, width, len(indices))
    step = frame_interval(stamps, 1.0 / float(state.meta["sample_fps"]))
    items = [PlannedImage(-1, mem_grid[1] * spec.patch_size, mem_grid[2] * spec.patch_size, m),
             PlannedVideo(indices, height, width, int(tokens.shape[0]))]
    plan = Plan(items, m + int(state.meta["segment_budget"]), height * width)
    parts = memory_prompt_parts(m, int(tokens.shape[0]), state.segments_seen,
                                float(state.meta.get("seconds_covered", 0.0)), stamps, spec.temporal_patch_size)
    evidence = [Evidence("frame", i, timestamp=t) for i, t in zip(indices, stamps)]
    encoded = EncodedInput(str(state.meta.get("source", "video")), "video", plan, parts, evidence,
                           image_embeds=[without_deepstack(vlm, state.memory)],
                           image_grid_thw=torch.tensor([mem_grid]),
                           video_embeds=[tokens], video_grid_thw=torch.tensor([video_grid]),
                           second_per_grid_ts=torch.tensor([spec.temporal_patch_size * step]),
                           stats=dict(stats or {}))
    encoded.memory = MemoryContext(options, state, last or span, span)
    encoded.stats.update(memory_tokens=m, memory_segments=state.segments_seen,
                         memory_cache_entries=int(state.cache.shape[0]), memory_state_bytes=state.nbytes(),
                         memory_span=f"{span.start_s:.1f}s-{span.end_s:.1f}s")
    return check_planned(encoded)


def encode_video_with_memory(vlm: VLM, path: str, options: MemoryOptions, *, max_visual_tokens: int = 4096,
                             sample_fps: float = 1.0, max_frames: int | None = None, frames_per_chunk: int = 16,
                             progress=None):
    """Stream the video through the bridge; the result holds the memory and the last segment's tokens."""
    started = time.perf_counter()
    state, span, patches = stream_video(vlm, path, options, max_visual_tokens=max_visual_tokens,
                                        sample_fps=sample_fps, max_frames=max_frames,
                                        frames_per_chunk=frames_per_chunk, progress=progress)
    stats = {"video_duration_s": state.meta["duration_s"], "frames_sampled": 2 * state.meta["patches"],
             "time_stream_s": time.perf_counter() - started, "memory_selection": "last"}
    return memory_encoded_input(vlm, state, options, span, patches, stats)


def question_seconds(question: str, duration_s: float) -> float | None:
    """The first time a question names inside the video, in seconds ("minute 5", "1:02:03", "300 s": the grammar
    of `longvlm.references`); None when it names none."""
    times = time_references(question, duration_s)
    return times[0] if times else None


def question_embedding(vlm: VLM, question: str) -> torch.Tensor:
    """Mean of the LLM's input embeddings of the question's tokens [C]."""
    ids = vlm.tokenizer(question, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return vlm.model.get_input_embeddings()(ids.to(vlm.model.device))[0].mean(dim=0)


def select_span(vlm: VLM, context: MemoryContext, question: str) -> tuple[CacheSpan, str, float | None]:
    """The span to show for `question`, why ('time', 'relevance' or 'last'), and the time it names if any."""
    state, mode = context.state, context.options.select
    if mode == "last" or not state.spans:
        return context.last, "last", None
    if mode == "auto":
        seconds = question_seconds(question, float(state.meta.get("duration_s", 0.0)))
        if seconds is not None:
            if seconds >= context.last.start_s:
                return context.last, "time", seconds
            return state.spans[state.entry_at(seconds)], "time", seconds
    query = question_embedding(vlm, question)
    entry = int(context.options.bridge.relevance(state, query).argmax())
    return zoom_span(vlm, context, state, entry, query), "relevance", None


MAX_ZOOM_LEVELS = 4


def reopen_stream(vlm: VLM, state: MemoryState) -> tuple[VideoReader, list[int]]:
    """The streamed video's reader again, with the frame indices the stream sampled (temporal patch p is
    frames `indices[p * temporal_patch_size:(p + 1) * temporal_patch_size]`)."""
    reader = VideoReader(str(state.meta["source"]))
    indices = stream_indices(reader.metadata, float(state.meta["sample_fps"]), state.meta["max_frames"],
                             vlm.vision.temporal_patch_size)
    return reader, indices


def shown_patches(state: MemoryState) -> int:
    """How many temporal patches of the stream fit the segment budget next to the memory (at least 1)."""
    return max(1, int(state.meta["segment_budget"]) // int(state.meta["tokens_per_patch"]))


@torch.no_grad()
def zoom_span(vlm: VLM, context: MemoryContext, state: MemoryState, entry: int, query: torch.Tensor) -> CacheSpan:
    """The selected cache entry's span, narrowed while it holds more temporal patches than the budget shows:
    its frames are streamed through the bridge again (from the memory before it, into an empty cache of finer
    entries), and the most relevant of those is taken, up to `MAX_ZOOM_LEVELS` times. Costs
    decoding the span again (about 1 / cache_size of the video per level, as merging keeps entries balanced)."""
    tp = vlm.vision.temporal_patch_size
    fit = shown_patches(state)
    span = state.spans[entry]
    reader = None
    for _ in range(MAX_ZOOM_LEVELS):
        if span.patch_count <= fit:
            break
        if reader is None:
            reader, indices = reopen_stream(vlm, state)
        finer = context.options.bridge.initial_state(state.meta)
        if entry > 0:
            finer.memory = state.cache[entry - 1].clone()
        _stream_patches(vlm, reader, indices[span.first_patch * tp:(span.last_patch + 1) * tp], span.first_patch,
                        finer, context.options)
        best = int(context.options.bridge.relevance(finer, query).argmax())
        if finer.spans[best].patch_count >= span.patch_count:
            break  # no finer split (one long scene): show the span thinned
        state, entry, span = finer, best, finer.spans[best]
    return span


@torch.no_grad()
def encode_span(vlm: VLM, state: MemoryState, span: CacheSpan, around_s: float | None = None) -> list[_Patch]:
    """Decode and encode a span of the stream again at the stream's size. A span longer than the budget (a
    merged cache entry) is thinned evenly, or, with `around_s`, cut to the window of patches around that time."""
    tp = vlm.vision.temporal_patch_size
    reader, indices = reopen_stream(vlm, state)
    count = span.patch_count
    fit = shown_patches(state)
    if count <= fit:
        chosen = list(range(span.first_patch, span.last_patch + 1))
    elif around_s is not None:
        where = span.first_patch + (around_s - span.start_s) / max(span.end_s - span.start_s, 1e-9) * count
        first = min(max(span.first_patch, int(where) - fit // 2), span.last_patch + 1 - fit)
        chosen = list(range(first, first + fit))
    else:
        chosen = [span.first_patch + int((k + 0.5) * count / fit) for k in range(fit)]
    frames = [indices[p * tp + j] for p in chosen for j in range(tp)]
    out = []
    size = (int(state.meta["height"]), int(state.meta["width"]))
    for chunk in reader.iter_chunks(frames, 8 * tp):
        tokens = encode_patches(vlm, chunk.frames, size)
        out += [_Patch(tokens[k], chunk.indices[k * tp:(k + 1) * tp], chunk.timestamps[k * tp:(k + 1) * tp])
                for k in range(tokens.shape[0])]
    return out


def for_question(vlm: VLM, encoded, question: str):
    """The input to answer `question` with: `encoded` itself when its segment is the one selected, else the
    memory plus the selected span, encoded again."""
    context: MemoryContext = encoded.memory
    span, reason, seconds = select_span(vlm, context, question)
    if span == context.shown or (span == context.last and context.shown == context.last):
        encoded.stats["memory_selection"] = reason
        return encoded
    started = time.perf_counter()
    patches = encode_span(vlm, context.state, span, seconds)
    stats = {**encoded.stats, "memory_selection": reason, "time_reencode_s": time.perf_counter() - started}
    return memory_encoded_input(vlm, context.state, context.options, span, patches, stats, last=context.last)

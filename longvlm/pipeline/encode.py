"""Turn a video, a PDF or images into planned, encoded visual features ready for the LLM.

`encode(vlm, source, options, question=...)` is the one entry point: it detects the input's kind once
(`longvlm.ingest.kinds`), ranks pages/frames against the question when the options' `Compression` has a
selector, and calls the encoder of that kind (`encode_pdf`, `encode_video`, `encode_images`; a video with a
memory bridge streams through `longvlm.memory.streaming`). The result carries its options, so `answer()`
applies the same compression's KV press.

The vision tower runs chunk by chunk (a few frames or pages at a time) and only the merged visual tokens are
kept, so memory is bounded by the token budget, not by the length of the video or document. The result is
reused across questions (follow-ups do not re-decode or re-encode).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from longvlm.compression.base import VisualCompressor
from longvlm.compression.visual import compress_item
from longvlm.datasets.examples import Example, ImageItem, VideoItem
from longvlm.encoded import EncodedInput, Evidence, ProgressFn, check_planned, report_progress
from longvlm.errors import ConfigError, InputError
from longvlm.ingest.cache import file_sha256
from longvlm.ingest.images import image_size, open_image
from longvlm.ingest.kinds import KINDS, detect_kind
from longvlm.ingest.pdf import PdfDocument
from longvlm.ingest.video import VideoReader
from longvlm.limits import check_question
from longvlm.memory.streaming import encode_video_with_memory
from longvlm.options import Compression, Options
from longvlm.references import time_references
from longvlm.planning.planner import (Plan, PlannedImage, PlannedVideo, plan_images, plan_native_frames,
                                      plan_ranked_images, plan_video)
from longvlm.retrieval.page_text import pdf_page_texts, video_frame_texts
from longvlm.vlm.loading import VLM
from longvlm.vlm.positions import VisualBlock, video_time_interval
from longvlm.vlm.prompt import VisualSlot, example_prompt_parts, frame_interval, video_prompt_parts
from longvlm.vlm.room import add_notes, fit_plan, fit_room, text_tokens
from longvlm.vlm.vision import (frame_tokens, image_tokens, text_hidden_size, token_grid, video_pixels, video_tokens,
                                vision_placement)


@dataclass
class _Visual:
    """The visual compression of one input: factor k and the compressor (None when k == 1)."""

    factor: int = 1
    compressor: VisualCompressor | None = None
    seconds: float = 0.0

    def apply(self, vlm: VLM, tokens: torch.Tensor, grid_thw: Sequence[int]) -> torch.Tensor:
        if self.compressor is None:
            return tokens
        started = time.perf_counter()
        out, _ = compress_item(tokens, grid_thw, self.compressor, self.factor, vlm.vision.merge_size,
                               block_width=text_hidden_size(vlm))
        self.seconds += time.perf_counter() - started
        return out

    def grid(self, vlm: VLM, height: int, width: int, num_frames: int = 1) -> list[int]:
        """grid_thw reported to the LLM for an item resized to (height, width): see compression.visual."""
        t, h, w = vlm.vision.grid(height, width, num_frames)
        return [t, h // self.factor, w // self.factor]

    def stats(self) -> dict:
        name = self.compressor.name if self.compressor is not None else "none"
        return {"visual_downsample": self.factor, "visual_compressor": name, "time_compress_s": self.seconds}


def _visual_setup(vlm: VLM, compression: Compression | None, kind: str, duration_s: float | None = None) -> _Visual:
    if compression is None:
        return _Visual()
    factor = compression.visual_factor(kind, duration_s)
    if factor == 1:
        return _Visual()
    device, dtype = vision_placement(vlm)
    return _Visual(factor, compression.visual_compressor().to(device=device, dtype=dtype).eval())


@torch.no_grad()
def _encode_images(vlm: VLM, images: list[Image.Image | np.ndarray], sizes: list[tuple[int, int]],
                   visual: _Visual | None = None) -> list[torch.Tensor]:
    tokens, grid = image_tokens(vlm, images, sizes)
    visual = visual or _Visual()
    return [visual.apply(vlm, item, item_grid.tolist()) for item, item_grid in zip(tokens, grid)]


def _budget(options: Options) -> int:
    """The visual-token budget of the per-kind encoders: `options.max_visual_tokens`, else 4096."""
    return options.max_visual_tokens or 4096


def encode_pdf(vlm: VLM, path: str, options: Options | None = None, *, page_order: Sequence[int] | None = None,
               native_pages: int | None = None, only_pages: Sequence[int] | None = None,
               min_tokens_per_page: int = 64, pages_per_chunk: int = 8, progress: ProgressFn | None = None,
               context_room: int | None = None) -> EncodedInput:
    """Plan and encode the pages of a PDF as `options` say: the first `max_pages` if given, rendered at `dpi`,
    into `max_visual_tokens` (default 4096).

    `page_order` (0-based indices, best first) decides which pages are kept when not all fit;
    `only_pages` (0-based) restricts the candidates (e.g. oracle evidence pages). With `native_pages` (and a
    `page_order`, e.g. from question-aware selection) the first `native_pages` of the order get native
    resolution and the others low resolution or none (`plan_ranked_images`). With `options.compression`, its
    visual compressor shrinks each page k x k and the budget counts compressed tokens (composes with
    `native_pages`: the ranking picks the resolutions, the compressor shrinks every page).
    With `context_room` (`longvlm.vlm.room`), the visual tokens plus the page labels around them fit in that
    many tokens: the budget is lowered until they do.
    """
    options = options or Options()
    max_visual_tokens, dpi, max_pages = _budget(options), options.dpi, options.max_pages
    visual = _visual_setup(vlm, options.compression, "pdf")
    stats: dict = {}
    started = time.perf_counter()
    with PdfDocument(path) as doc:
        count = doc.page_count if max_pages is None else min(doc.page_count, max_pages)
        candidates = doc.usable_pages(range(count) if only_pages is None
                                      else sorted({p for p in only_pages if 0 <= p < count}))
        if not candidates:
            raise InputError(path, f"none of the requested pages exist (document has {count} pages)")
        sizes = [doc.page_size(i, dpi) for i in candidates]
        stats["pages_in_document"] = doc.page_count
        if doc.skipped_pages:  # pages no model can read (aspect ratio), left out before planning
            stats["pages_unusable"] = [f"p.{n}: {why}" for n, why in sorted(doc.skipped_pages.items())]
        t_plan = time.perf_counter()
        position = {page: k for k, page in enumerate(candidates)}
        order = None if page_order is None else [position[p] for p in page_order if p in position]

        def plan_for(budget: int) -> Plan:
            if native_pages is not None and order is not None:
                planned = plan_ranked_images(sizes, budget, vlm.vision, order, native=native_pages,
                                             min_tokens_per_image=min_tokens_per_page, downsample=visual.factor)
            else:
                planned = plan_images(sizes, budget, vlm.vision, min_tokens_per_image=min_tokens_per_page,
                                      order=order, downsample=visual.factor)
            return dataclasses.replace(planned, items=[dataclasses.replace(item, source_index=candidates[
                item.source_index]) for item in planned.items])

        plan = fit_plan(plan_for,
                        lambda p: p.total_tokens + text_tokens(vlm.tokenizer, vlm.config, _page_parts(p.items)),
                        max_visual_tokens, context_room)
        stats["time_plan_s"] = time.perf_counter() - t_plan
        report_progress(progress, "plan", len(plan.items), count)
        embeds = []
        decode_s = encode_s = 0.0
        for start in range(0, len(plan.items), pages_per_chunk):
            chunk = plan.items[start:start + pages_per_chunk]
            t0 = time.perf_counter()
            images = [doc.render(item.source_index, dpi=dpi, max_pixels=4 * item.height * item.width)
                      for item in chunk]
            t1 = time.perf_counter()
            embeds.extend(_encode_images(vlm, images, [(item.height, item.width) for item in chunk], visual))
            decode_s += t1 - t0
            encode_s += time.perf_counter() - t1
            report_progress(progress, "encode", start + len(chunk), len(plan.items))
        parts = _page_parts(plan.items)
        evidence = [Evidence("page", item.source_index + 1, doc.page_label(item.source_index)) for item in plan.items]
    stats.update(time_decode_s=decode_s, time_encode_s=encode_s, time_ingest_total_s=time.perf_counter() - started)
    stats.update(visual.stats())
    grid = torch.tensor([visual.grid(vlm, it.height, it.width) for it in plan.items], dtype=torch.long)
    return check_planned(EncodedInput(path, "pdf", plan, parts, evidence, image_embeds=embeds, image_grid_thw=grid,
                                stats=stats))


def _labelled_parts(labels: Sequence[str], items: Sequence[PlannedImage]) -> list[str | VisualSlot]:
    """Prompt parts of planned images, each "<label>:", its slot and a newline."""
    parts: list[str | VisualSlot] = []
    for label, item in zip(labels, items, strict=True):
        parts += [f"{label}:", VisualSlot("image", item.tokens), "\n"]
    return parts


def _page_parts(items: Sequence[PlannedImage]) -> list[str | VisualSlot]:
    """The prompt parts of planned PDF pages: "Page N:", the page's slot, a newline."""
    return _labelled_parts([f"Page {item.source_index + 1}" for item in items], items)


def _image_parts(items: Sequence[PlannedImage]) -> list[str | VisualSlot]:
    """The prompt parts of planned images: "Image i:", the image's slot, a newline."""
    return _labelled_parts([f"Image {item.source_index}" for item in items], items)


def _closeup_parts(closeups: Sequence[PlannedImage], timestamps: Sequence[float]) -> list[str | VisualSlot]:
    """The prompt parts of a video's native-resolution close-ups, after the video block."""
    if not closeups:
        return []
    return ["Close-up frames:\n", *_labelled_parts([f"Frame at {t:.1f}s" for t in timestamps], closeups)]


def encode_images(vlm: VLM, images: Sequence[str | Image.Image], options: Options | None = None, *,
                  progress: ProgressFn | None = None, context_room: int | None = None) -> EncodedInput:
    """Plan and encode a list of images (paths or PIL images) into `options.max_visual_tokens` (default 4096;
    see `encode_pdf` for the compression and `context_room`).

    The plan comes from the files' headers (`longvlm.ingest.images.image_size`: nothing decoded, pixel and
    aspect-ratio limits checked); then each kept image is decoded, bounded to 4x its planned pixels
    (`open_image`), and encoded before the next one is decoded, so one decoded image is alive at a time.
    """
    started = time.perf_counter()
    if not images:
        raise ConfigError("no images given")
    options = options or Options()
    sizes = [image_size(im) for im in images]
    visual = _visual_setup(vlm, options.compression, "images")
    plan = fit_plan(lambda budget: plan_images(sizes, budget, vlm.vision, downsample=visual.factor),
                    lambda p: p.total_tokens + text_tokens(vlm.tokenizer, vlm.config, _image_parts(p.items)),
                    _budget(options),
                    context_room)
    embeds: list[torch.Tensor] = []
    decode_s = encode_s = 0.0
    for done, item in enumerate(plan.items, start=1):
        t0 = time.perf_counter()
        image = open_image(images[item.source_index], max_pixels=4 * item.height * item.width)
        t1 = time.perf_counter()
        embeds += _encode_images(vlm, [image], [(item.height, item.width)], visual)
        decode_s += t1 - t0
        encode_s += time.perf_counter() - t1
        report_progress(progress, "encode", done, len(plan.items))
    parts = _image_parts(plan.items)
    grid = torch.tensor([visual.grid(vlm, it.height, it.width) for it in plan.items], dtype=torch.long)
    evidence = [Evidence("image", item.source_index) for item in plan.items]
    stats = {"time_decode_s": decode_s, "time_encode_s": encode_s,
             "time_ingest_total_s": time.perf_counter() - started, **visual.stats()}
    return check_planned(EncodedInput("images", "images", plan, parts, evidence, image_embeds=embeds,
                                image_grid_thw=grid, stats=stats))


@torch.no_grad()
def encode_video(vlm: VLM, path: str, options: Options | None = None, *, frame_order: Sequence[int] | None = None,
                 native_frames: int = 0, frames_per_chunk: int = 16, progress: ProgressFn | None = None,
                 context_room: int | None = None, focus_times: Sequence[float] = ()) -> EncodedInput:
    """Plan and encode a video as `options` say (`sample_fps`, `max_frames`) into `max_visual_tokens`
    (default 4096), decoding `frames_per_chunk` frames at a time.

    `options.video_resolution`: "uniform" (one size for all frames), "hybrid" (GIRAFFE's hybrid resolution,
    see `longvlm.planning.hybrid`; `options.hybrid` sets L, m and s) or "auto" (hybrid when uniform frames at
    `hybrid.high_tokens` tokens do not fit the budget). A hybrid video is one visual block made of several
    video items; the encoded input then carries the position layout `answer()` passes to the model.

    `focus_times` (seconds, e.g. the times a question names: coarse to fine) put the sampled frames nearest
    to them first when the budget forces thinning: a dense run of frames around each time instead of frames
    spread over the whole video, and only those stretches are decoded. Times outside the video are ignored.

    `frame_order` (frame indices, best first, e.g. from question-aware selection) decides which frames are
    kept when the budget forces thinning, after the focus times' frames; with `native_frames`, its first
    frames are also given as close-up images at native resolution (at most half the budget), after the
    video, labelled with their timestamps.

    With `options.compression`, each chunk's frames (and the close-ups) are compressed k x k right after the vision
    tower (k from the video's duration when `downsample="auto"`) and the budget counts compressed tokens;
    uniform resolution only (the planner refuses hybrid with k > 1).

    With `options.memory` (`longvlm.memory.streaming.MemoryOptions`), the whole video is
    streamed through the bridge segment by segment (SceneTilling) and the result holds the memory tokens plus
    one segment's tokens within `max_visual_tokens`; `answer()` picks the segment per question. Uniform
    resolution, no visual compression, no question-aware frame order.

    With `context_room` (`longvlm.vlm.room`), the visual tokens plus the video header and close-up labels fit
    in that many tokens: the budget is lowered until they do (with a memory bridge: the budget alone).
    """
    options = options or Options()
    max_visual_tokens, sample_fps, max_frames = _budget(options), options.sample_fps, options.max_frames
    resolution, hybrid = options.video_resolution, options.hybrid
    if options.memory is not None:  # Options refuses a memory bridge with compression or non-uniform frames
        budget = max_visual_tokens if context_room is None else min(max_visual_tokens, context_room)
        return encode_video_with_memory(vlm, path, options.memory, max_visual_tokens=budget, sample_fps=sample_fps,
                                        max_frames=max_frames, frames_per_chunk=frames_per_chunk, progress=progress)
    started = time.perf_counter()
    reader = VideoReader(path)
    meta = reader.metadata
    t_plan = time.perf_counter()
    spec = vlm.vision
    visual = _visual_setup(vlm, options.compression, "video", meta.duration)
    focus = [t for t in focus_times if 0 <= t <= meta.duration]
    if focus:
        frame_order = [*focus_order(reader.indices(fps=sample_fps), meta.fps, focus), *(frame_order or [])]

    def plan_for(budget: int) -> tuple[Plan, list[PlannedImage]]:
        closeups: list[PlannedImage] = []
        if frame_order is not None and native_frames > 0:
            closeups = plan_native_frames(frame_order, meta.height, meta.width, budget, spec,
                                          count=native_frames, downsample=visual.factor)
        return plan_video(meta.num_frames, meta.fps, meta.height, meta.width,
                          budget - sum(c.tokens for c in closeups), spec, sample_fps=sample_fps,
                          max_frames=max_frames, resolution=resolution, hybrid=hybrid, downsample=visual.factor,
                          frame_order=frame_order), closeups

    def context_tokens(planned: tuple[Plan, list[PlannedImage]]) -> int:
        """Visual tokens + header + close-up labels, with timestamps estimated from the frame rate."""
        video, shots = planned
        stamps = [i / meta.fps for item in video.items for i in item.frame_indices]
        parts = [*video_prompt_parts(video.total_tokens, stamps, meta.duration,
                                     temporal_patch_size=spec.temporal_patch_size,
                                     patch_tokens=_patch_tokens(video.items, spec)),
                 *_closeup_parts(shots, [c.source_index / meta.fps for c in shots])]
        return video.total_tokens + sum(c.tokens for c in shots) + text_tokens(vlm.tokenizer, vlm.config, parts)

    plan, closeups = fit_plan(plan_for, context_tokens, max_visual_tokens, context_room)
    plan_s = time.perf_counter() - t_plan
    items = plan.items
    frame_indices = [i for item in items for i in item.frame_indices]
    report_progress(progress, "plan", len(frame_indices), meta.num_frames)
    chunk_frames = max(spec.temporal_patch_size, frames_per_chunk - frames_per_chunk % spec.temporal_patch_size)
    embeds, timestamps, decode_s, encode_s = _encode_video_items(vlm, reader, items, chunk_frames, progress, visual)
    grid_thw = torch.tensor([visual.grid(vlm, it.height, it.width, it.num_frames) for it in items], dtype=torch.long)
    second_per_grid_ts = torch.tensor([spec.temporal_patch_size * frame_interval(timestamps, 1.0 / meta.fps)]
                                      * len(items))
    duration = meta.duration
    parts = video_prompt_parts(sum(it.tokens for it in items), timestamps, duration,
                               temporal_patch_size=spec.temporal_patch_size, patch_tokens=_patch_tokens(items, spec))
    evidence = [Evidence("frame", i, timestamp=t) for i, t in zip(frame_indices, timestamps)]
    image_embeds: list[torch.Tensor] = []
    image_grid = None
    if closeups:
        t0 = time.perf_counter()
        shots = reader.read([c.source_index for c in closeups])
        t1 = time.perf_counter()
        image_embeds = _encode_images(vlm, list(shots.frames), [(c.height, c.width) for c in closeups], visual)
        decode_s += t1 - t0
        encode_s += time.perf_counter() - t1
        parts += _closeup_parts(closeups, shots.timestamps)
        evidence = sorted(evidence + [Evidence("frame", c.source_index, "native", t)
                                      for c, t in zip(closeups, shots.timestamps)], key=lambda e: e.timestamp)
        image_grid = torch.tensor([visual.grid(vlm, c.height, c.width) for c in closeups], dtype=torch.long)
        plan = dataclasses.replace(plan, items=[*plan.items, *closeups], budget=max_visual_tokens)
    stats = {"video_duration_s": duration, "video_fps": meta.fps, "frames_sampled": len(set(frame_indices)),
             "focus_times_s": focus,
             "frames_encoded": len(frame_indices),
             "native_frames": len(closeups), "resolution": plan.resolution, "time_plan_s": plan_s,
             "time_decode_s": decode_s, "time_encode_s": encode_s,
             "time_ingest_total_s": time.perf_counter() - started, **visual.stats()}
    if reader.notes:  # e.g. a truncated file: also issued as an InputWarning, which the CLI prints
        stats["input_warnings"] = list(reader.notes)
    blocks = None
    if plan.resolution == "hybrid":  # several grids in one block (families with timestamped frames: a block each)
        high, low = items[0], items[min(1, len(items) - 1)]  # each group: a high step, then low steps
        stats.update(video_items=len(items), high_size=f"{high.width}x{high.height}",
                     low_size=f"{low.width}x{low.height}")
        if not vlm.family_spec.timestamped_frames:
            interval = video_time_interval(vlm.config, second_per_grid_ts[0])
            blocks = [VisualBlock(tuple(tuple(g) for g in grid_thw.tolist()), interval)]
            if image_grid is not None:  # close-ups: one image block each, after the video
                blocks += [VisualBlock((tuple(g),)) for g in image_grid.tolist()]
    return check_planned(EncodedInput(path, "video", plan, parts, evidence, video_embeds=embeds,
                                video_grid_thw=grid_thw, image_embeds=image_embeds, image_grid_thw=image_grid,
                                second_per_grid_ts=second_per_grid_ts, position_blocks=blocks, stats=stats))


def _patch_tokens(items: Sequence[PlannedVideo], spec) -> list[int]:
    """Tokens of each temporal patch of planned video items, in order (items differ in size when hybrid)."""
    out: list[int] = []
    for item in items:
        patches = -(-item.num_frames // spec.temporal_patch_size)
        out += [item.tokens // patches] * patches
    return out


def focus_order(indices: Sequence[int], fps: float, times: Sequence[float]) -> list[int]:
    """`indices` (frames of a video at `fps`) ordered by their distance to the nearest of `times` (seconds),
    nearest first; ties keep the earlier frame first."""
    return sorted(indices, key=lambda i: (min(abs(i / fps - t) for t in times), i))


def _encode_video_items(vlm: VLM, reader: VideoReader, items: list[PlannedVideo], chunk_frames: int,
                        progress: ProgressFn | None, visual: _Visual | None = None,
                        ) -> tuple[list[torch.Tensor], list[float], float, float]:
    """Decode the items' frames `chunk_frames` at a time (in time order) and run each chunk through the
    vision tower, every item's part of the chunk at its own size. Returns per-item embeddings, the frame
    timestamps, and decode / encode seconds. Chunks end on temporal patch boundaries (items hold whole
    temporal patches), so the result equals encoding each item in one pass. `visual` compresses each chunk's
    features right away (per frame, so chunking does not change the result)."""
    spec = vlm.vision
    visual = visual or _Visual()
    owners = [k for k, item in enumerate(items) for _ in item.frame_indices]
    indices = [i for item in items for i in item.frame_indices]
    pieces: list[list[torch.Tensor]] = [[] for _ in items]
    timestamps: list[float] = []
    decode_s = encode_s = 0.0
    chunks = reader.iter_chunks(indices, chunk_frames)
    while True:
        t0 = time.perf_counter()
        chunk = next(chunks, None)
        decode_s += time.perf_counter() - t0
        if chunk is None:
            break
        t1 = time.perf_counter()
        offset = len(timestamps)
        chunk_owners = owners[offset:offset + len(chunk.indices)]
        runs = [(k, start) for start, k in enumerate(chunk_owners) if start == 0 or chunk_owners[start - 1] != k]
        pixel_parts, grid_parts = [], []
        for n, (k, start) in enumerate(runs):
            stop = runs[n + 1][1] if n + 1 < len(runs) else len(chunk_owners)
            pixels, grid = video_pixels(vlm, chunk.frames[start:stop], (items[k].height, items[k].width))
            pixel_parts.append(pixels)
            grid_parts.append(grid)
        features_per_run = video_tokens(vlm, torch.cat(pixel_parts), torch.cat(grid_parts),
                                        [len(grid) for grid in grid_parts])
        for (k, _), features, grid in zip(runs, features_per_run, grid_parts, strict=True):
            pieces[k].append(visual.apply(vlm, features, token_grid(vlm, grid)))
        encode_s += time.perf_counter() - t1
        timestamps.extend(chunk.timestamps)
        report_progress(progress, "decode+encode", len(timestamps), len(indices))
    return [torch.cat(p) for p in pieces], timestamps, decode_s, encode_s


@torch.no_grad()
def encode_example(vlm: VLM, example: Example) -> EncodedInput:
    """Encode an in-memory `Example` (synthetic tasks, evaluation) as given: every visual item at its own
    size (smart-resized to the model's bounds), no budgeting. The question is the example's last text part."""
    spec = vlm.vision
    parts = example_prompt_parts(example, spec)
    items, evidence = [], []
    image_embeds, image_grids, video_embeds, video_grids, seconds = [], [], [], [], []
    for part in example.parts:
        if isinstance(part, ImageItem):
            h, w = spec.resized(*part.pixels.shape[:2])
            image_embeds += _encode_images(vlm, [part.pixels], [(h, w)])
            image_grids.append(spec.grid(h, w))
            items.append(PlannedImage(len(image_grids) - 1, h, w, spec.tokens(h, w)))
            evidence.append(Evidence("image", len(image_grids) - 1))
        elif isinstance(part, VideoItem):
            h, w = spec.resized(*part.frames.shape[1:3])
            tokens, grid = frame_tokens(vlm, list(part.frames), (h, w))
            video_embeds.append(tokens)
            video_grids.append(grid)
            seconds.append(spec.temporal_patch_size * frame_interval(part.timestamps))
            items.append(PlannedVideo(list(range(len(part.frames))), h, w, spec.tokens(h, w, len(part.frames))))
            evidence += [Evidence("frame", i, timestamp=t) for i, t in enumerate(part.timestamps)]
    plan = Plan(items, sum(item.tokens for item in items), spec.max_pixels)
    encoded = EncodedInput(example.task or "example", "example", plan, parts[:-1], evidence,
                           image_embeds=image_embeds, video_embeds=video_embeds,
                           image_grid_thw=torch.tensor(image_grids, dtype=torch.long) if image_grids else None,
                           video_grid_thw=torch.tensor(video_grids, dtype=torch.long) if video_grids else None,
                           second_per_grid_ts=torch.tensor(seconds) if seconds else None)
    encoded.stats["question"] = parts[-1] if parts and isinstance(parts[-1], str) else ""
    return check_planned(encoded)


Source = str | os.PathLike | Sequence[str | os.PathLike | Image.Image]
"""What `encode` and `ask` read: a PDF, video or image file, or a list of image files / PIL images."""


def encode(vlm: VLM, source: Source, options: Options | None = None, *, question: str | None = None,
           kind: str | None = None, progress: ProgressFn | None = None,
           context_room: int | None = None) -> EncodedInput:
    """Encode one input for `vlm` as `options` say (default `Options()`: what fits the model).

    `source` is a file (its kind detected once from its content, then its suffix: `longvlm.ingest.kinds`,
    unless the caller says it with `kind`: 'pdf', 'video' or 'image', e.g. the CLI's --pdf) or a list of images.
    With a `Compression` selector the question is needed (`ConfigError` without it): the pages/frames are
    ranked against it before planning. A video question that names times ("at 30:00", "minute 12") focuses
    the frames on them (`encode_video`'s `focus_times`). `context_room` (`longvlm.vlm.room`): the visual tokens
    plus their labels fit in that many tokens; without it, what fits the model after the prompt and the answer
    (`fit_room`, with a note when `options.max_visual_tokens` is lowered). The result remembers `options` for
    `answer()` (its KV press).
    """
    options = options or Options()
    compression = options.compression
    selector = compression.selector if compression is not None else None
    if selector is not None and question is None:
        raise ConfigError("question-aware selection ranks the pages/frames against the question: pass question=")
    notes: tuple[str, ...] = ()
    if context_room is None:
        room = fit_room(vlm, question=question, max_visual_tokens=options.max_visual_tokens,
                        max_new_tokens=options.max_new_tokens)
        visual_tokens, context_room, notes = room.visual_tokens, room.context, room.notes
    else:
        visual_tokens = min(options.max_visual_tokens or context_room, context_room)
    sized = options.replace(max_visual_tokens=visual_tokens)  # what the per-kind encoders plan for
    selection: dict = {}
    if isinstance(source, (list, tuple)):
        if options.memory is not None:
            raise ConfigError("a memory bridge works on video only")
        encoded = encode_images(vlm, list(source), sized, progress=progress, context_room=context_room)
    else:
        path = os.fspath(source)
        if kind is None:
            kind = detect_kind(path)
        elif kind not in KINDS:
            raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if options.memory is not None and kind != "video":
            raise ConfigError("a memory bridge works on video only")
        if kind == "pdf":
            order = native = None
            if selector is not None:
                order, selection = _rank_pages(selector, check_question(question), path, options.max_pages,
                                               compression.native_items)
                native = compression.native_items
            encoded = encode_pdf(vlm, path, sized, page_order=order, native_pages=native, progress=progress,
                                 context_room=context_room)
        elif kind == "video":
            order = None
            if selector is not None:
                order, selection = _rank_frames(selector, check_question(question), path, options.sample_fps,
                                                options.max_frames, compression.native_items)
            times = time_references(question) if question is not None and options.memory is None else []
            encoded = encode_video(vlm, path, sized, frame_order=order,
                                   native_frames=compression.native_items if order is not None else 0,
                                   progress=progress, context_room=context_room, focus_times=times)
        else:
            encoded = encode_images(vlm, [path], sized, progress=progress, context_room=context_room)
    encoded.stats.update(selection)
    add_notes(encoded.stats, notes)
    encoded.options = options
    return encoded


def _rank_frames(selector, question: str, video: str, sample_fps: float, max_frames: int | None,
                 native: int) -> tuple[list[int], dict]:
    """Frame indices of `video` ranked against `question` (best first) and selection stats."""
    started = time.perf_counter()
    frames = video_frame_texts(video, every_s=1.0 / sample_fps, max_frames=max_frames)
    ranked = selector.rank(question, frames).order
    stats = {"selection_ranked": len(frames), "selection_top": [frames[i].cite() for i in ranked[:native]],
             "time_selection_s": time.perf_counter() - started}
    return [frames[i].index for i in ranked], stats


def _rank_pages(selector, question: str, pdf: str, max_pages: int | None, native: int) -> tuple[list[int], dict]:
    """0-based page indices of `pdf` ranked against `question` (best first) and selection stats."""
    started = time.perf_counter()
    pages = pdf_page_texts(pdf, max_pages=max_pages)
    order = selector.rank(question, pages, key=file_sha256(pdf)).order
    stats = {"selection_ranked": len(pages), "selection_top": [f"p.{i + 1}" for i in order[:native]],
             "time_selection_s": time.perf_counter() - started}
    return order, stats

"""Multimodal needle-in-a-haystack: video (V-NIAH protocol), image grids (MMNeedle) and documents
(fact on page p; MM-NIAH-style retrieval / counting / reasoning), over length x depth grids.

Every cell is seeded, each sample is written to a JSONL file as soon as it is scored (question id, answer,
response, context length, depth, latency, peak memory), and a run resumes by skipping samples already in
that file. Video results are also written as V-NIAH's `all_accuracies.json` (Num. Frame, Frame Depth, Score)
and every suite gets a heatmap PNG of accuracy over length x depth.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from longvlm.datasets import needles
from longvlm.datasets.examples import Example, VideoItem
from longvlm.encoded import Answer
from longvlm.eval.synthetic import normalize_answer
from longvlm.eval.sharding import Shard, run_sharded
from longvlm.profiling import RssSampler
from longvlm.training.collate import tokenize_example
from longvlm.training.evaluate import teacher_forced_hits
from longvlm.pipeline.encode import encode_example
from longvlm.vlm.loading import VLM
from longvlm.vlm.rope import position_extension
from longvlm.pipeline.answer import answer
from longvlm.ingest.video import VideoReader

SUITES = ("video", "image", "document")
QUESTION_KINDS = needles.DOCUMENT_QUESTIONS  # the document suite's questions


# -- haystacks and needles -------------------------------------------------------------------------------
class ClipHaystack:
    """Haystack frames from real video clips, sampled at `fps`, looped to any length."""

    def __init__(self, paths: list[str], fps: float = 1.0) -> None:

        frames = []
        for path in paths:
            reader = VideoReader(path)
            frames.extend(reader.read(reader.indices(fps=fps)).frames)
        if not frames:
            raise ValueError("no haystack frames")
        self.frames = frames

    def __call__(self, rng: np.random.Generator, count: int, size: int) -> np.ndarray:
        from PIL import Image

        start = int(rng.integers(len(self.frames)))
        picked = [self.frames[(start + i) % len(self.frames)] for i in range(count)]
        return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.Resampling.BICUBIC))
                         for f in picked])


def procedural_haystack(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    return np.stack([needles.haystack_frame(rng, size, size) for _ in range(count)])


@dataclass
class ImageNeedle:
    """A V-NIAH needle: an image, its question (prompt) and answer (option letter or short answer)."""

    image: np.ndarray
    prompt: str
    answer: str
    name: str


def load_vniah_needles(json_path: str) -> list[ImageNeedle]:
    """Needles from a V-NIAH needle file; entries whose image is missing are skipped."""
    from PIL import Image

    with open(json_path) as fh:
        entries = json.load(fh)
    out = []
    for entry in entries:
        path = os.path.join(os.path.dirname(json_path), entry["path"])
        if os.path.isfile(path):
            with Image.open(path) as image:
                out.append(ImageNeedle(np.asarray(image.convert("RGB")), entry["prompt"].strip(), entry["answer"],
                                       entry["path"]))
    return out


def video_sample(rng: np.random.Generator, num_frames: int, depth: float, *, size: int = 56,
                 haystack: Callable = procedural_haystack, needle: ImageNeedle | None = None) -> Example:
    """One V-NIAH sample: `num_frames` haystack frames with the needle frame at `depth` (0..1).

    Without an image needle the needle is a coloured shape drawn on the frame (question: its colour)."""
    frames = haystack(rng, num_frames, size)
    index = int(round(depth * (num_frames - 1)))
    if needle is None:
        color, shape = needles._pick(rng, list(needles.COLORS)), needles._pick(rng, needles.SHAPES)
        frames[index] = needles.draw_shape(frames[index], rng, shape, color)
        question, answer_text = "What color is the shape that appears in the video?", color
    else:
        from PIL import Image

        frames[index] = np.asarray(Image.fromarray(needle.image).resize((size, size), Image.Resampling.BICUBIC))
        question, answer_text = needle.prompt, needle.answer
    video = VideoItem(frames, [float(i) for i in range(num_frames)])
    return Example([video, question], answer_text, "niah/video", {"num_frames": num_frames, "depth": depth,
                                                                  "needle_frame": index})


# -- scoring ---------------------------------------------------------------------------------------------
def parse_response(response: str, reference: str) -> str:
    """The part of a free response that is compared: an option letter when the answer is one, else the text."""
    if re.fullmatch(r"[A-Da-d]", reference.strip()):
        match = re.search(r"\b([A-D])\b", response.strip().upper())
        return match.group(1) if match else response.strip()
    return response


def grid_answer(text: str) -> tuple[int, int, int] | None:
    """'index, row, column' -> ints; '-1' or unparsable -> None."""
    numbers = [int(n) for n in re.findall(r"-?\d+", text)]
    if not numbers or numbers[0] == -1 or len(numbers) < 3:
        return None
    return numbers[0], numbers[1], numbers[2]


@dataclass
class SuiteSpec:
    """A grid of cells (length x depth), `samples` seeded samples per cell."""

    suite: str
    lengths: list[int]
    depths: list[float]
    samples: int = 5
    seed: int = 0
    question: str = "page"  # document suite: page | color | code | count | order


def sample_cells(spec: SuiteSpec) -> list[tuple[str, int, float, int]]:
    """(question id, length, depth, sample number) of every sample, in run order; ids are stable so runs can
    resume."""
    return [(f"{spec.suite}-L{length}-D{depth:.2f}-{k}", length, depth, k)
            for length in spec.lengths for depth in spec.depths for k in range(spec.samples)]


def make_sample(spec: SuiteSpec, length: int, depth: float, k: int, *, haystack: Callable = procedural_haystack,
                vniah_needles: list[ImageNeedle] | None = None, frame_size: int = 56) -> Example:
    """Sample `k` of the cell (length, depth): the same example whenever and wherever it is made."""
    rng = np.random.default_rng([spec.seed, length, int(round(depth * 1000)), k])
    if spec.suite == "video":
        needle = vniah_needles[k % len(vniah_needles)] if vniah_needles else None
        example = video_sample(rng, length, depth, size=frame_size, haystack=haystack, needle=needle)
    elif spec.suite == "document":
        example = needles.document_needle(rng, length, question=spec.question, depth=depth)
    elif spec.suite == "image":
        # MMNeedle: `length` images; depth only decides which image holds the needle when present
        example = needles.image_grid_needle(rng, length, negative=k % 2 == 1)
    else:
        raise ValueError(f"unknown suite {spec.suite!r}; known: {SUITES}")
    example.meta.setdefault("depth", depth)
    return example


def iter_samples(spec: SuiteSpec, **sample_kwargs) -> Iterator[tuple[str, Example]]:
    """(question id, example) for every cell and sample (`make_sample`'s keyword arguments apply)."""
    for qid, length, depth, k in sample_cells(spec):
        yield qid, make_sample(spec, length, depth, k, **sample_kwargs)


def run_suite(vlm: VLM, spec: SuiteSpec, out_dir: str, *, scoring: str = "both", max_new_tokens: int = 12,
              **sample_kwargs) -> dict:
    """Score every sample (generation and/or teacher forcing), appending to `<out>/<suite>_samples.jsonl`
    and skipping ids already there; then write the summary JSON and the heatmap. Under `accelerate launch` /
    `torchrun` the samples are shared out over the processes (`longvlm.eval.sharding`); the main process
    writes the summary."""
    shard = Shard.from_env()
    cells = sample_cells(spec)
    ids = [cell[0] for cell in cells]

    def score(n: int) -> dict:  # a process makes only the samples it scores
        qid, length, depth, k = cells[n]
        return score_example(vlm, qid, make_sample(spec, length, depth, k, **sample_kwargs), scoring, max_new_tokens)

    records = run_sharded(ids, os.path.join(out_dir, f"{spec.suite}_samples.jsonl"), score, key="question_id",
                          shard=shard)
    if not shard.is_main:  # the main process writes the summary and the heatmap
        return summarize(spec.suite, records)
    summary = summarize(spec.suite, records)
    with open(os.path.join(out_dir, f"{spec.suite}_summary.json"), "w") as fh:
        json.dump(summary, fh, indent=2)
    if spec.suite == "video":
        with open(os.path.join(out_dir, "all_accuracies.json"), "w") as fh:
            json.dump(vniah_accuracies(records), fh, indent=1)
    extension = position_extension(vlm)
    method = f"{extension.method} x{extension.scale:g}" if extension else "no position extension"
    plot_heatmap(records, os.path.join(out_dir, f"{spec.suite}_heatmap.png"),
                 title=f"{spec.suite} needle-in-a-haystack: model {vlm.name}, {method} (context {vlm.max_context})",
                 length_label="frames" if spec.suite == "video" else ("images" if spec.suite == "image" else "pages"))
    return summary


def generate_answer(vlm: VLM, example: Example, max_new_tokens: int = 12) -> Answer:
    """The model's greedy answer to an example as the suites score it (every item at its own size)."""
    encoded = encode_example(vlm, example)
    return answer(vlm, encoded, encoded.stats["question"], max_new_tokens=max_new_tokens)


def score_example(vlm: VLM, qid: str, example: Example, scoring: str, max_new_tokens: int) -> dict:
    """One per-sample record (generation + parsing, and/or teacher-forced argmax)."""
    record = {"question_id": qid, "task": example.task, "answer": example.answer,
              "depth": example.meta.get("depth"), "length": _length_of(example)}
    with RssSampler() as rss:
        started = time.perf_counter()
        if scoring in ("generate", "both"):
            result = generate_answer(vlm, example, max_new_tokens)
            record["response"] = result.text
            record["context_length"] = result.stats["context_length"]
            record["correct_generate"] = _is_correct(example, result.text)
        if scoring in ("teacher", "both"):
            sample = tokenize_example(example, vlm.tokenizer, vlm.model, vlm.vision)
            record["correct_teacher"] = teacher_forced_hits(vlm.model, [sample], vlm.tokenizer.pad_token_id)[0]
            record.setdefault("context_length", len(sample) - len(vlm.tokenizer(example.answer + "<|im_end|>",
                                                                                   add_special_tokens=False)["input_ids"]))
        record["latency_s"] = time.perf_counter() - started
    record["peak_rss_mb"] = rss.peak_mb
    record["correct"] = record.get("correct_generate", record.get("correct_teacher"))
    if example.task == "image_grid_needle":
        record.update(_grid_metrics(example, record.get("response", "")))
    return record


def _length_of(example: Example) -> int:
    meta = example.meta
    return int(meta.get("num_frames") or meta.get("num_pages") or meta.get("num_images") or 0)


def answer_matches(reference: str, response: str) -> bool:
    """Whether a free response gives the reference answer (option letter or normalised text)."""
    return normalize_answer(parse_response(response, reference)) == normalize_answer(reference)


def _is_correct(example: Example, response: str) -> bool:
    return answer_matches(example.answer, response)


def _grid_metrics(example: Example, response: str) -> dict:
    """MMNeedle: existence (needle present or not, right), index and exact (index, row, column) accuracy."""
    predicted = grid_answer(response)
    truth = example.meta["needle"]
    if truth is None:
        return {"existence_correct": predicted is None, "index_correct": predicted is None,
                "exact_correct": predicted is None}
    return {"existence_correct": predicted is not None,
            "index_correct": predicted is not None and predicted[0] == truth[0],
            "exact_correct": predicted is not None and list(predicted) == truth}


def summarize(suite: str, records: list[dict]) -> dict:
    """Accuracy overall and per (length, depth) cell; grid metrics for the image suite."""
    cells: dict[tuple, list] = defaultdict(list)
    for r in records:
        cells[(r["length"], round(r["depth"], 2))].append(r)
    def share(rs, key):
        values = [r[key] for r in rs if r.get(key) is not None]
        return sum(values) / len(values) if values else None
    out = {"suite": suite, "samples": len(records), "accuracy": share(records, "correct"),
           "accuracy_generate": share(records, "correct_generate"),
           "accuracy_teacher_forced": share(records, "correct_teacher"),
           "mean_latency_s": float(np.mean([r["latency_s"] for r in records])) if records else None,
           "max_peak_rss_mb": max((r["peak_rss_mb"] for r in records), default=None),
           "cells": [{"length": k[0], "depth": k[1], "accuracy": share(v, "correct"), "samples": len(v),
                      "mean_context_length": float(np.mean([r["context_length"] for r in v])),
                      "mean_latency_s": float(np.mean([r["latency_s"] for r in v])),
                      "peak_rss_mb": max(r["peak_rss_mb"] for r in v)} for k, v in sorted(cells.items())]}
    if suite == "image":
        for key in ("existence_correct", "index_correct", "exact_correct"):
            out[key.replace("_correct", "_accuracy")] = share(records, key)
    return out


def vniah_accuracies(records: list[dict]) -> list[dict]:
    """V-NIAH's all_accuracies.json rows: {"Num. Frame", "Frame Depth" (percent, rounded to 10), "Score"}."""
    cells: dict[tuple, list] = defaultdict(list)
    for r in records:
        cells[(r["length"], round(r["depth"] * 100, -1))].append(float(r["correct"]))
    return [{"Num. Frame": n, "Frame Depth": d, "Score": sum(v) / len(v)} for (n, d), v in sorted(cells.items())]


def plot_heatmap(records: list[dict], png_path: str, *, title: str, length_label: str) -> None:
    """Accuracy heatmap: depth (rows, %) x length (columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = sorted({r["length"] for r in records})
    depths = sorted({round(r["depth"], 2) for r in records})
    grid = np.full((len(depths), len(lengths)), np.nan)
    for i, d in enumerate(depths):
        for j, n in enumerate(lengths):
            values = [float(r["correct"]) for r in records if r["length"] == n and round(r["depth"], 2) == d]
            if values:
                grid[i, j] = sum(values) / len(values)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(lengths), 1.2 + 0.5 * len(depths)))
    image = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(lengths)), [str(n) for n in lengths])
    ax.set_yticks(range(len(depths)), [f"{d * 100:.0f}%" for d in depths])
    ax.set_xlabel(length_label)
    ax.set_ylabel("needle depth")
    for i in range(len(depths)):
        for j in range(len(lengths)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label="accuracy")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)

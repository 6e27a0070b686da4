"""Needle accuracy of the shipped small model when every visual item is compressed k x k before the LLM.

Held-out synthetic needle examples of the visual tasks of a compressor training config's mixture (default
`configs/oryx_small.yaml`: video colour / shape, document page / colour / code, image grid), `--per-task` per
task split evenly over the config's length bins (medium 129-512 and long 513-1536 tokens, counted *uncompressed*
as in training), drawn from the held-out stream with `--seed` (not the training seed; bin b uses seed + 1000 b).
The SAME examples go through every row:

  none        k = 1, the reference: `encode_example`, every item at its own size, no compressor
  avgpool     k x k average pooling              } k in --factors (default 2 and 4: 4x and 16x fewer
  bilinear    bilinear downsampling              } visual tokens; at k = 2 it equals avgpool)
  oryx untrained   the Oryx compressor training starts from (config options, seeded with the config's seed):
              its gate is 0, so it is average pooling by construction; reported as a check (a line under the
              table counts the samples where it answers exactly like avgpool)
  oryx trained     `--oryx-weights DIR` (e.g. runs/oryx_small/oryx_compressor), when given

A compressed input is built exactly as training builds it (`longvlm.training.trainer.oryx_example_loss`): each
image / video resized so that its merged grid divides into k x k regions (`VisionSpec.resized(downsample=k)`),
encoded by the tower (`image_tokens` for all images at once, `frame_tokens` per video), compressed by
`longvlm.compression.training.compress_items` and placed at the positions of a k-times smaller grid (the
reported grids). For the first example of each task in each row the bench runs `oryx_example_loss` itself with
a recording stand-in for the LLM and checks that the LLM would get the same prompt tokens, grids and visual
features (an error otherwise). The tower runs once per example and k; the compressors share its features.

Answers: greedy `answer()` (`--new-tokens`), exact match after `normalize_answer`. The long bin at k = 1 is
beyond the 512 tokens the small model was trained on (no context guard: `max_context` is raised for it).

    python bench/visual_compression.py --oryx-weights runs/oryx_small/oryx_compressor --json rows.json
    python bench/visual_compression.py --per-task 2 --tasks video_needle/color --factors 2   # quick look

Prints a markdown table: one row per compressor and k, accuracy per task and overall, and the mean visual
tokens the LLM saw per sample (at k = 4 more than 1/16 of the reference's: items are resized to multiples of
4 x 4 merged tokens, and tiny ones round up). `--threads 1` (the default) is much faster than 2 threads on a busy
2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from longvlm.compression import build_compressor  # noqa: E402
from longvlm.compression.base import VisualCompressor  # noqa: E402
from longvlm.compression.training import build_oryx, compress_items  # noqa: E402
from longvlm.datasets.examples import Example, ImageItem  # noqa: E402
from longvlm.encoded import EncodedInput, Evidence, check_planned  # noqa: E402
from longvlm.errors import ConfigError  # noqa: E402
from longvlm.eval.synthetic import heldout_examples, normalize_answer  # noqa: E402
from longvlm.pipeline.answer import answer, model_inputs  # noqa: E402
from longvlm.pipeline.encode import encode_example  # noqa: E402
from longvlm.planning.planner import Plan, PlannedImage, PlannedVideo  # noqa: E402
from longvlm.training.config import TrainConfig, load_config  # noqa: E402
from longvlm.training.trainer import compressed_prompt, oryx_example_loss  # noqa: E402
from longvlm.vlm.loading import VLM, load_vlm  # noqa: E402
from longvlm.vlm.prompt import IGNORE_INDEX, frame_interval  # noqa: E402
from longvlm.vlm.vision import frame_tokens, image_tokens, vision_placement  # noqa: E402

DEFAULT_CONFIG = "configs/oryx_small.yaml"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN_SEED_STRIDE = 1000  # bin b of the held-out set uses seed + 1000 b (so bins do not share random draws)


@dataclass
class Sample:
    task: str
    bin: str
    example: Example

    @property
    def question(self) -> str:
        question = self.example.parts[-1]
        if not isinstance(question, str):
            raise ConfigError(f"{self.task}: the example does not end with its question")
        return question


@dataclass
class TowerFeatures:
    """One example at one factor k, up to the compressor: the prompt parts (slots sized for the compressed
    tokens, the question last), the planned items, and the tower's merged tokens and patch grids of its images
    and videos (at sizes whose merged grids divide into k x k regions)."""

    parts: list
    items: list
    evidence: list
    images: tuple[list[torch.Tensor], list[list[int]]] | None = None
    videos: list[tuple[torch.Tensor, list[int]]] = field(default_factory=list)
    seconds_per_grid: list[float] = field(default_factory=list)


@dataclass
class Row:
    compressor: str
    factor: int
    weights: str | None = None
    records: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    checked: int = 0  # examples whose input was checked against the training path

    def summary(self, tasks: list[str], bins: list[str]) -> dict:
        def accuracy(records):
            return sum(r["correct"] for r in records) / len(records) if records else None

        n = max(1, len(self.records))
        return {"compressor": self.compressor, "factor": self.factor, "weights": self.weights,
                "accuracy": accuracy(self.records), "samples": len(self.records),
                "per_task": {t: accuracy([r for r in self.records if r["task"] == t]) for t in tasks},
                "per_bin": {b: accuracy([r for r in self.records if r["bin"] == b]) for b in bins},
                "visual_tokens_mean": sum(r["visual_tokens"] for r in self.records) / n,
                "context_mean": sum(r["context_length"] for r in self.records) / n,
                "seconds": self.seconds, "seconds_per_sample": self.seconds / n,
                "checked_against_training": self.checked, "records": self.records}


# --- the held-out set ---------------------------------------------------------------------------------------

def config_tasks(config: TrainConfig) -> list[str]:
    """The tasks of the config's (last stage's) mixture."""
    return list(config.stages[-1].sources or config.data.sources)


def config_bins(config: TrainConfig) -> list[tuple[str, int, int]]:
    """(name, min, max) of the config's length bins, clipped to the last stage's max_length as training does."""
    last = config.stages[-1]
    specs = last.bins if last.bins is not None else config.data.bins
    return [(b["name"], b["min_tokens"], min(b["max_tokens"], last.max_length)) for b in specs
            if b["min_tokens"] <= last.max_length]


def heldout_set(vlm: VLM, tasks: list[str], bins: list[tuple[str, int, int]], per_task: int,
                seed: int) -> list[Sample]:
    """`per_task` held-out examples per task, split evenly over `bins` (the first bins get the remainder)."""
    samples = []
    for task in tasks:
        for b, (name, low, high) in enumerate(bins):
            count = per_task // len(bins) + (b < per_task % len(bins))
            if count:
                samples += [Sample(task, name, e) for e in
                            heldout_examples(vlm, task, count, low, high, seed=seed + BIN_SEED_STRIDE * b)]
    return samples


# --- compressed inputs, as training builds them ---------------------------------------------------------------

@torch.no_grad()
def tower_features(vlm: VLM, example: Example, factor: int) -> TowerFeatures:
    """The first half of `oryx_example_loss` (prompt parts, sizes, frozen tower) for `example` at factor k."""
    spec = vlm.vision
    parts, visuals = compressed_prompt(vlm, example, factor)
    items, evidence = [], []
    images, videos = [], []
    for part, size, tokens in visuals:
        if isinstance(part, ImageItem):
            images.append((part.pixels, size))
            items.append(PlannedImage(len(images) - 1, *size, tokens))
            evidence.append(Evidence("image", len(images) - 1))
        else:
            videos.append((part, size))
            items.append(PlannedVideo(list(range(len(part.frames))), *size, tokens))
            evidence += [Evidence("frame", i, timestamp=t) for i, t in enumerate(part.timestamps)]
    if not images and not videos:
        raise ConfigError(f"{example.task}: no images or videos to compress")
    features = TowerFeatures(parts, items, evidence)
    if images:
        tokens, grid = image_tokens(vlm, [p for p, _ in images], [s for _, s in images])
        features.images = (tokens, grid.tolist())
    features.videos = [frame_tokens(vlm, list(item.frames), size) for item, size in videos]
    features.seconds_per_grid = [spec.temporal_patch_size * frame_interval(item.timestamps) for item, _ in videos]
    return features


@torch.no_grad()
def compressed_input(vlm: VLM, features: TowerFeatures, compressor: VisualCompressor, factor: int,
                     source: str = "example") -> EncodedInput:
    """The second half: `compress_items` on the tower's tokens, then an EncodedInput for `answer()` (user parts:
    all but the question) with the compressed tokens and the reported (k-times smaller) grids."""
    spec = vlm.vision
    device = vlm.model.device
    dtype = next(vlm.model.model.language_model.parameters()).dtype
    kwargs: dict = {}
    if features.images is not None:
        tokens, grids = compress_items(features.images[0], features.images[1], compressor, factor, spec.merge_size)
        kwargs.update(image_embeds=[t.to(device, dtype) for t in tokens],
                      image_grid_thw=torch.tensor(grids, dtype=torch.long))
    if features.videos:
        tokens, grids = compress_items([t for t, _ in features.videos], [g for _, g in features.videos],
                                       compressor, factor, spec.merge_size)
        kwargs.update(video_embeds=[t.to(device, dtype) for t in tokens],
                      video_grid_thw=torch.tensor(grids, dtype=torch.long),
                      second_per_grid_ts=torch.tensor(features.seconds_per_grid))
    plan = Plan(list(features.items), sum(item.tokens for item in features.items), spec.max_pixels,
                downsample=factor)
    encoded = EncodedInput(source, "example", plan, features.parts[:-1], list(features.evidence), **kwargs)
    return check_planned(encoded)


class _Recorder(nn.Module):
    """Stands in for the LLM in `oryx_example_loss`: records its keyword arguments, returns a zero loss."""

    def __init__(self, device) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros((), device=device))
        self.kwargs: dict = {}

    def forward(self, **kwargs):
        self.kwargs = kwargs
        return SimpleNamespace(loss=self.anchor * 0)


def check_against_training(vlm: VLM, sample: Sample, compressor: VisualCompressor, factor: int,
                           encoded: EncodedInput) -> None:
    """Run the training path on `sample` and check that the LLM would get what `answer(encoded)` gives it:
    the same prompt tokens (training appends the answer), token types, grids and visual features."""
    recorder = _Recorder(vlm.model.device)
    with torch.no_grad():
        oryx_example_loss(vlm, recorder, compressor, sample.example, factor)
    train, ours = recorder.kwargs, model_inputs(vlm, encoded, sample.question)
    n = ours["input_ids"].shape[1]
    where = f"{sample.task} ({compressor.name}, k={factor})"
    labels = train["labels"]
    if not torch.equal(train["input_ids"][:, :n].cpu(), ours["input_ids"].cpu()) \
            or not torch.equal(train["mm_token_type_ids"][:, :n].cpu(), ours["mm_token_type_ids"].cpu()) \
            or bool((labels[:, :n] != IGNORE_INDEX).any()) or bool((labels[:, n:] == IGNORE_INDEX).all()):
        raise RuntimeError(f"{where}: the prompt differs from the one training builds")
    for kind in ("image", "video"):
        grid = f"{kind}_grid_thw"
        if (grid in train) != (grid in ours) or \
                (grid in train and not torch.equal(train[grid].cpu(), ours[grid].cpu())):
            raise RuntimeError(f"{where}: the {kind} grids differ from training's")
        if grid in train:
            a = train["mm_encoder_outputs"][kind].pooler_output
            b = ours["mm_encoder_outputs"][kind].pooler_output
            if len(a) != len(b) or any(x.shape != y.shape or not torch.allclose(x, y, rtol=1e-4, atol=1e-5)
                                       for x, y in zip(a, b)):
                raise RuntimeError(f"{where}: the compressed {kind} features differ from training's")


# --- rows ----------------------------------------------------------------------------------------------------

def score(vlm: VLM, row: Row, sample: Sample, encoded: EncodedInput, new_tokens: int, max_context: int) -> None:
    result = answer(vlm, encoded, sample.question, max_new_tokens=new_tokens, max_context=max_context)
    row.records.append({"task": sample.task, "bin": sample.bin, "length": sample.example.meta.get("length"),
                        "answer": sample.example.answer, "response": result.text,
                        "correct": normalize_answer(result.text) == normalize_answer(sample.example.answer),
                        "visual_tokens": encoded.visual_tokens, "context_length": result.stats["context_length"]})


def run_reference(vlm: VLM, samples: list[Sample], new_tokens: int, max_context: int) -> Row:
    row = Row("none", 1)
    started = time.perf_counter()
    for sample in samples:
        score(vlm, row, sample, encode_example(vlm, sample.example), new_tokens, max_context)
    row.seconds = time.perf_counter() - started
    return row


def run_factor(vlm: VLM, samples: list[Sample], factor: int,
               compressors: list[tuple[str, VisualCompressor, str | None]], new_tokens: int,
               max_context: int) -> list[Row]:
    """One row per compressor at factor k; the tower runs once per example (its time is shared out evenly)."""
    rows = [Row(name, factor, weights) for name, _, weights in compressors]
    checked: set[tuple[str, str]] = set()
    tower_s = 0.0
    for sample in samples:
        started = time.perf_counter()
        features = tower_features(vlm, sample.example, factor)
        tower_s += time.perf_counter() - started
        for row, (name, compressor, _) in zip(rows, compressors):
            started = time.perf_counter()
            encoded = compressed_input(vlm, features, compressor, factor, sample.task)
            score(vlm, row, sample, encoded, new_tokens, max_context)
            row.seconds += time.perf_counter() - started
            if (name, sample.task) not in checked:  # outside the timing
                check_against_training(vlm, sample, compressor, factor, encoded)
                checked.add((name, sample.task))
                row.checked += 1
    for row in rows:
        row.seconds += tower_s / len(rows)
    return rows


class _Placed(VisualCompressor):
    """A parameter-free compressor (avgpool, bilinear) with a placeholder parameter: training's `compress_items`
    takes the compressor's dtype from its parameters, so every row goes through the same helper."""

    def __init__(self, inner: VisualCompressor) -> None:
        super().__init__()
        self.inner, self.name = inner, inner.name
        self.placement = nn.Parameter(torch.zeros(()), requires_grad=False)

    def forward(self, grid: torch.Tensor, factor: int) -> torch.Tensor:
        return self.inner(grid, factor)


def build_compressors(vlm: VLM, config: TrainConfig, oryx_weights: str | None
                      ) -> list[tuple[str, VisualCompressor, str | None]]:
    """(row name, compressor on the vision tower's device and dtype, weights) for every compressed row."""
    hidden = vlm.config.text_config.hidden_size
    section = config.oryx_compressor
    if section is None:
        raise ConfigError("the training config has no oryx_compressor section")
    with torch.random.fork_rng():  # the compressor training starts from (OryxCompressorObjective)
        torch.manual_seed(config.seed)
        untrained = build_oryx(hidden, section.compressor)
    out = [("avgpool", _Placed(build_compressor("avgpool")), None),
           ("bilinear", _Placed(build_compressor("bilinear")), None),
           ("oryx untrained", untrained, None)]
    if oryx_weights:
        out.append(("oryx trained", build_oryx(hidden, section.compressor, init=oryx_weights), oryx_weights))
    device, dtype = vision_placement(vlm)
    return [(name, c.to(device=device, dtype=dtype).eval(), w) for name, c, w in out]


# --- report --------------------------------------------------------------------------------------------------

def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown_table(summaries: list[dict], tasks: list[str]) -> str:
    head = ["compressor", "k", *tasks, "overall", "visual tokens"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    for s in summaries:
        cells = [s["compressor"], str(s["factor"]), *(fmt(s["per_task"][t]) for t in tasks), fmt(s["accuracy"]),
                 f"{s['visual_tokens_mean']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def agreement_notes(rows: list[Row]) -> list[str]:
    """Per k: on how many samples the untrained Oryx compressor answers like average pooling."""
    notes = []
    by = {(r.compressor, r.factor): r for r in rows}
    for (name, k), row in sorted(by.items(), key=lambda kv: kv[0][1]):
        pool = by.get(("avgpool", k))
        if name == "oryx untrained" and pool is not None:
            same = sum(a["response"] == b["response"] for a, b in zip(row.records, pool.records))
            notes.append(f"k={k}: oryx untrained answers like avgpool on {same}/{len(row.records)} samples")
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="small",
                        help="load_vlm name or directory (default: the shipped small model)")
    parser.add_argument("--config", default=os.path.join(REPO, DEFAULT_CONFIG),
                        help="the compressor training config: its mixture's tasks, length bins, Oryx options, seed")
    parser.add_argument("--oryx-weights", help="a trained Oryx compressor directory (adds the 'oryx trained' rows)")
    parser.add_argument("--per-task", type=int, default=20, help="held-out examples per task, split over the bins")
    parser.add_argument("--tasks", nargs="+", help="a subset of the config's tasks (default: all of them)")
    parser.add_argument("--factors", type=int, nargs="+", default=[2, 4], help="k values (each >= 2)")
    parser.add_argument("--seed", type=int, default=1, help="held-out seed (must differ from the config's)")
    parser.add_argument("--new-tokens", type=int, default=12, help="greedy answer tokens at most")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy machine)")
    parser.add_argument("--json", help="also write the rows (with per-sample records) to this JSON file")
    args = parser.parse_args(argv)

    config = load_config(args.config)
    tasks = config_tasks(config)
    if args.tasks:
        unknown = [t for t in args.tasks if t not in tasks]
        if unknown:
            parser.error(f"tasks {unknown} are not in the config's mixture ({', '.join(tasks)})")
        tasks = [t for t in tasks if t in args.tasks]
    if args.seed == config.seed:
        parser.error(f"--seed {args.seed} is the training seed; pick another one")
    if args.per_task < 1 or any(k < 2 for k in args.factors):
        parser.error("--per-task must be >= 1 and every --factors value >= 2")
    if args.threads:
        torch.set_num_threads(args.threads)

    started = time.perf_counter()
    vlm = load_vlm(args.model)
    bins = config_bins(config)
    samples = heldout_set(vlm, tasks, bins, args.per_task, args.seed)
    max_context = max(vlm.max_context, 2 * max(high for _, _, high in bins) + args.new_tokens)
    compressors = build_compressors(vlm, config, args.oryx_weights)
    print(f"{len(samples)} held-out samples ({args.per_task} per task over bins "
          f"{', '.join(f'{n} {lo}-{hi}' for n, lo, hi in bins)}; seed {args.seed}), model {args.model}",
          file=sys.stderr)

    rows = [run_reference(vlm, samples, args.new_tokens, max_context)]
    print(f"  none k=1: {rows[0].seconds:.1f} s", file=sys.stderr)
    for k in args.factors:
        rows += run_factor(vlm, samples, k, compressors, args.new_tokens, max_context)
        print(f"  k={k}: " + ", ".join(f"{r.compressor} {r.seconds:.1f} s" for r in rows[-len(compressors):]),
              file=sys.stderr)

    bin_names = [name for name, _, _ in bins]
    summaries = [row.summary(tasks, bin_names) for row in rows]
    scored = sum(s["samples"] for s in summaries)
    total_s = sum(s["seconds"] for s in summaries)
    print(f"\nNeedle accuracy, {args.model} model, {args.per_task} held-out samples per task "
          f"(visual tokens: mean per sample seen by the LLM)\n")
    print(markdown_table(summaries, tasks))
    print()
    for note in agreement_notes(rows):
        print(note)
    print(f"{scored} answers in {total_s:.1f} s ({total_s / max(1, scored):.3f} s per sample; "
          f"{time.perf_counter() - started:.1f} s in all); inputs checked against the training path: "
          f"{sum(r.checked for r in rows)}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"model": args.model, "config": args.config, "seed": args.seed, "per_task": args.per_task,
                       "tasks": tasks, "bins": bins, "rows": summaries}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

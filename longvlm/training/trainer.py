"""The training loop (Hugging Face accelerate): packed batches from a seeded mixture, progressive context
stages, resumable checkpoints, JSONL metrics with a progress bar, and a loss-curve PNG at the end."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoTokenizer

from longvlm.compression.oryx import OryxCompressor
from longvlm.compression.training import build_oryx, compress_items, factor_for
from longvlm.datasets.examples import Example, ImageItem, VideoItem
from longvlm.datasets.mixture import HELDOUT_STREAM, TRAIN_STREAM, LengthBin, Mixture
from longvlm.errors import ConfigError
from longvlm.memory.training import build_bridge, memory_example_loss
from longvlm.profiling import peak_rss_mb
from longvlm.training.collate import example_length, greedy_pack, pack_rows, tokenize_example
from longvlm.training.config import StageConfig, TrainConfig, config_to_dict
from longvlm.training.evaluate import teacher_forced_accuracy
from longvlm.training.model_setup import apply_trainable, build_training_model, trainable_summary
from longvlm.training.vision_pretrain import pretrain_vision
from longvlm.vlm.loading import VLM
from longvlm.vlm.prompt import IGNORE_INDEX, VisualSlot, build_training_inputs, frame_interval, video_prompt_parts
from longvlm.vlm.vision import frame_tokens, image_tokens, model_features, text_hidden_size

SAMPLES_PER_MICRO_STEP = 100_000  # index space reserved per micro step in the mixture stream


@dataclass
class TrainResult:
    output_dir: str
    steps: int
    final_loss: float
    eval: dict | None


class BatchMaker:
    """Deterministic packed batches: micro step k draws mixture examples k*SPACE, k*SPACE+1, ... and packs
    them first-fit into `rows_per_step` rows of the stage's `max_length` until the next one does not fit."""

    def __init__(self, vlm: VLM, config: TrainConfig, stream: int = TRAIN_STREAM) -> None:
        self.vlm, self.config = vlm, config
        self._mixtures: dict[tuple[str, int], Mixture] = {}
        self.stream = stream

    def mixture(self, stage: StageConfig) -> Mixture:
        """The stage's mixture: its sources and bins (the stage's own, else the data section's), bins clipped
        to the stage's `max_length` (with their per-source weights, when the data section gives them)."""
        key = (stage.name, stage.max_length)
        if key not in self._mixtures:
            data = self.config.data
            specs = stage.bins if stage.bins is not None else data.bins
            raw_weights = (data.bin_weights if stage.bins is None and data.bin_weights else [1.0] * len(specs))
            bins, weights, kept = [], [], []
            for i, (spec, w) in enumerate(zip(specs, raw_weights)):
                if spec["min_tokens"] <= stage.max_length:
                    bins.append(LengthBin(spec["name"], spec["min_tokens"],
                                          min(spec["max_tokens"], stage.max_length)))
                    weights.append(w)
                    kept.append(i)
            if not bins:
                raise ConfigError(f"stage {stage.name!r}: no length bin fits max_length {stage.max_length}")
            sources = stage.sources or data.sources
            per_source = {}
            if stage.bins is None:
                for name, source_weights in (data.source_bin_weights or {}).items():
                    if name not in sources:
                        continue
                    if len(source_weights) != len(specs):
                        raise ConfigError(f"data.source_bin_weights[{name!r}] needs {len(specs)} weights, one per "
                                          f"bin, got {len(source_weights)}")
                    per_source[name] = [source_weights[i] for i in kept]
                    if sum(per_source[name]) <= 0:
                        raise ConfigError(f"stage {stage.name!r}: data.source_bin_weights[{name!r}] gives no weight "
                                          f"to the bins that fit max_length {stage.max_length}; give the stage "
                                          f"its own sources")
            long_share = data.long_share
            threshold = data.long_threshold
            if long_share is not None and (all(b.min_tokens >= (threshold or bins[-1].min_tokens) for b in bins)
                                           or len(bins) == 1):
                long_share = None  # a stage with only short (or only long) bins
            vlm = self.vlm
            self._mixtures[key] = Mixture(
                sources, bins,
                lambda e: example_length(e, vlm.tokenizer, vlm.config, vlm.vision),
                bin_weights=None if long_share is not None else weights, long_share=long_share,
                long_threshold=threshold, source_bin_weights=per_source, seed=self.config.seed, stream=self.stream)
        return self._mixtures[key]

    def batch(self, micro_step: int, stage: StageConfig) -> tuple[dict[str, torch.Tensor], dict]:
        mixture = self.mixture(stage)
        rows = stage.rows_per_step or self.config.optim.rows_per_step
        samples, free = [], [stage.max_length] * rows
        base = micro_step * SAMPLES_PER_MICRO_STEP
        for j in range(SAMPLES_PER_MICRO_STEP):
            example = mixture.draw(base + j)
            length = example.meta["length"]
            slot = next((r for r in range(rows) if free[r] >= length), None)
            if slot is None:
                break
            free[slot] = free[slot] - length if self.vlm.family_spec.packs_samples else 0
            samples.append(tokenize_example(example, self.vlm.tokenizer, self.vlm.model, self.vlm.vision))
        packed = greedy_pack(samples, stage.max_length, one_per_row=not self.vlm.family_spec.packs_samples)
        batch = pack_rows(packed, self.vlm.tokenizer.pad_token_id)
        info = {"samples": len(samples), "tokens": int(sum(len(s) for s in samples)),
                "answer_tokens": int((batch["labels"] != -100).sum())}
        return batch, info


def heldout_samples(vlm: VLM, config: TrainConfig, count: int, max_length: int | None = None):
    """`count` tokenized held-out examples (separate stream, the last stage's mixture) at the last stage's
    length, or at `max_length`."""
    maker = BatchMaker(vlm, config, stream=HELDOUT_STREAM)
    last = config.stages[-1]
    mixture = maker.mixture(dataclasses.replace(last, max_length=max_length or last.max_length))
    return [tokenize_example(mixture.draw(i), vlm.tokenizer, vlm.model, vlm.vision) for i in range(count)]


def training_loss(model, batch: dict[str, torch.Tensor], text_loss_weight: float = 0.0,
                  pad_token_id: int | None = None) -> torch.Tensor:
    """Mean cross-entropy on the answer tokens (`labels`), plus `text_loss_weight` times the mean next-token
    cross-entropy on the prompt's text tokens (not visual placeholders, not padding, not across packed samples)."""
    if not text_loss_weight:
        return model(**batch, use_cache=False).loss
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits
    predictions = logits[:, :-1].flatten(0, 1).float()  # position i predicts token i + 1
    answer_loss = torch.nn.functional.cross_entropy(predictions, batch["labels"][:, 1:].flatten(),
                                                    ignore_index=IGNORE_INDEX)
    ids, types = batch["input_ids"], batch["mm_token_type_ids"]
    targets = ids[:, 1:].clone()
    keep = (types[:, 1:] == 0) & (batch["labels"][:, 1:] == IGNORE_INDEX) & (batch["position_ids"][0, :, 1:] > 0)
    if pad_token_id is not None:
        keep &= targets != pad_token_id
    targets[~keep] = IGNORE_INDEX
    if not keep.any():
        return answer_loss
    text_loss = torch.nn.functional.cross_entropy(predictions, targets.flatten(), ignore_index=IGNORE_INDEX)
    return answer_loss + text_loss_weight * text_loss


class Objective:
    """What trains and how its loss is computed, chosen once per run (`make_objective`). This one: the model's
    trainable parameters, on packed rows of the mixture (`BatchMaker`), with the answer loss plus
    `optim.text_loss_weight` times the prompt's text loss (`training_loss`). `modules`: modules trained next to
    the model (prepared by accelerate with it, optimized with it, saved by `save`)."""

    def __init__(self, vlm: VLM, config: TrainConfig, maker: BatchMaker) -> None:
        self.vlm, self.config, self.maker = vlm, config, maker
        self.modules: list[nn.Module] = []

    def loss(self, accelerator, model, micro_step: int, stage: StageConfig) -> tuple[torch.Tensor, dict]:
        """The loss of micro step `micro_step` and what it saw: {'samples', 'tokens', 'answer_tokens'}."""
        batch, info = self.maker.batch(micro_step, stage)
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        return training_loss(model, batch, self.config.optim.text_loss_weight, self.vlm.tokenizer.pad_token_id), info

    def summary(self) -> dict:
        """Extra fields for every log record."""
        return {}

    def save(self, accelerator, output_dir: str) -> None:
        """Save what trained next to the model (the model itself is saved by the loop)."""


class MemoryBridgeObjective(Objective):
    """A memory bridge (new, seeded with the run's seed, or `memory_bridge.init`) trains next to the model's
    trainable parameters (possibly none): each micro step is the mean loss of `rows_per_step` mixture examples
    (one video each) seen through the bridge (`longvlm.memory.training.memory_example_loss`)."""

    def __init__(self, vlm: VLM, config: TrainConfig, maker: BatchMaker) -> None:
        super().__init__(vlm, config, maker)
        section = config.memory_bridge
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            bridge = build_bridge(vlm, section.bridge, section.init).to(vlm.model.device)
        bridge.train()
        self.modules = [bridge]

    def loss(self, accelerator, model, micro_step: int, stage: StageConfig) -> tuple[torch.Tensor, dict]:
        section = self.config.memory_bridge
        bridge = accelerator.unwrap_model(self.modules[0])
        mixture = self.maker.mixture(stage)
        rows = stage.rows_per_step or self.config.optim.rows_per_step
        base = micro_step * SAMPLES_PER_MICRO_STEP
        results = [memory_example_loss(self.vlm, model, bridge, mixture.draw(base + j),
                                       max_segment_patches=section.max_segment_patches, alpha=section.alpha,
                                       selection_loss_weight=section.selection_loss_weight)
                   for j in range(rows)]
        return torch.stack([loss for loss, _ in results]).mean(), {
            "samples": rows, "tokens": sum(size["tokens"] for _, size in results),
            "answer_tokens": sum(size["answer_tokens"] for _, size in results)}

    def summary(self) -> dict:
        return {"bridge_trainable": sum(p.numel() for p in self.modules[0].parameters() if p.requires_grad)}

    def save(self, accelerator, output_dir: str) -> None:
        accelerator.unwrap_model(self.modules[0]).save_pretrained(os.path.join(output_dir, "memory_bridge"))


def compressed_prompt(vlm: VLM, example: Example, factor: int
                      ) -> tuple[list, list[tuple[ImageItem | VideoItem, tuple[int, int], int]]]:
    """The prompt parts of `example` with every image and video resized so that its merged grid divides into
    `factor` x `factor` regions, and those visual items in order with their (height, width) and the number of
    tokens the LLM gets for them after compression."""
    spec = vlm.vision
    parts: list = []
    visuals: list[tuple[ImageItem | VideoItem, tuple[int, int], int]] = []
    for part in example.parts:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, ImageItem):
            size = spec.resized(*part.pixels.shape[:2], downsample=factor)
            tokens = spec.tokens(*size, downsample=factor)
            parts.append(VisualSlot("image", tokens))
            visuals.append((part, size, tokens))
        elif isinstance(part, VideoItem):
            size = spec.resized(*part.frames.shape[1:3], downsample=factor)
            tokens = spec.tokens(*size, len(part.frames), downsample=factor)
            parts += video_prompt_parts(tokens, part.timestamps, temporal_patch_size=spec.temporal_patch_size)
            visuals.append((part, size, tokens))
        else:
            raise TypeError(f"unsupported example part {type(part).__name__}")
    return parts, visuals


def oryx_example_loss(vlm: VLM, model, compressor: OryxCompressor, example: Example, factor: int
                      ) -> tuple[torch.Tensor, dict[str, int]]:
    """Answer-token loss of `example` with every image and video compressed `factor` x `factor` by `compressor`,
    as at inference: each item resized so that its merged grid divides into k x k regions, encoded by the vision
    tower and merger without gradients (frozen), compressed with gradients (`compress_items`), and placed at the
    positions of a k-times smaller grid (the LLM derives them from the reported grids). Returns the loss and the
    LLM input's size: {'tokens': sequence length, 'answer_tokens': labelled tokens}."""
    spec = vlm.vision
    parts, visuals = compressed_prompt(vlm, example, factor)
    images = [(part.pixels, size) for part, size, _ in visuals if isinstance(part, ImageItem)]
    videos = [(part, size) for part, size, _ in visuals if isinstance(part, VideoItem)]
    if not images and not videos:
        raise ConfigError(f"oryx compressor training needs examples with images or videos ({example.task})")
    inputs = build_training_inputs(vlm.tokenizer, vlm.config, parts, example.answer)
    device = next(model.parameters()).device
    dtype = next(vlm.model.model.language_model.parameters()).dtype
    width = text_hidden_size(vlm)
    kwargs = {k: v.to(device) for k, v in inputs.items()}
    outputs = {}
    with torch.no_grad():  # the frozen vision tower and merger
        encoded_images = image_tokens(vlm, [p for p, _ in images], [s for _, s in images]) if images else None
        encoded_videos = [frame_tokens(vlm, list(item.frames), size) for item, size in videos]
    if encoded_images is not None:
        tokens, grids = compress_items(encoded_images[0], encoded_images[1].tolist(), compressor, factor,
                                       spec.merge_size, block_width=width)
        kwargs["image_grid_thw"] = torch.tensor(grids, device=device)
        outputs["image"] = model_features(vlm, [t.to(dtype) for t in tokens], device)
    if encoded_videos:
        tokens, grids = compress_items([t for t, _ in encoded_videos], [g for _, g in encoded_videos], compressor,
                                       factor, spec.merge_size, block_width=width)
        kwargs["video_grid_thw"] = torch.tensor(grids, device=device)
        outputs["video"] = model_features(vlm, [t.to(dtype) for t in tokens], device)
        if vlm.family_spec.absolute_time:
            kwargs["second_per_grid_ts"] = torch.tensor(
                [spec.temporal_patch_size * frame_interval(item.timestamps) for item, _ in videos], device=device)
    kwargs["mm_encoder_outputs"] = outputs
    sizes = {"tokens": int(inputs["input_ids"].shape[-1]),
             "answer_tokens": int((inputs["labels"] != IGNORE_INDEX).sum())}
    return model(**kwargs, use_cache=False).loss, sizes


class OryxCompressorObjective(Objective):
    """An Oryx compressor (new, seeded with the run's seed, or `oryx_compressor.init`) trains next to the model's
    trainable parameters (possibly none): each micro step is the mean loss of `rows_per_step` mixture examples,
    each compressed by its factor from `oryx_compressor.factors` (`oryx_example_loss`)."""

    def __init__(self, vlm: VLM, config: TrainConfig, maker: BatchMaker) -> None:
        super().__init__(vlm, config, maker)
        section = config.oryx_compressor
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            compressor = build_oryx(vlm.config.text_config.hidden_size, section.compressor, section.init)
        compressor = compressor.to(vlm.model.device)
        compressor.train()
        self.modules = [compressor]

    def loss(self, accelerator, model, micro_step: int, stage: StageConfig) -> tuple[torch.Tensor, dict]:
        factors = self.config.oryx_compressor.factors
        compressor = accelerator.unwrap_model(self.modules[0])
        mixture = self.maker.mixture(stage)
        rows = stage.rows_per_step or self.config.optim.rows_per_step
        base = micro_step * SAMPLES_PER_MICRO_STEP
        results = [oryx_example_loss(self.vlm, model, compressor, mixture.draw(base + j),
                                     factor_for(micro_step * rows + j, factors))
                   for j in range(rows)]
        return torch.stack([loss for loss, _ in results]).mean(), {
            "samples": rows, "tokens": sum(size["tokens"] for _, size in results),
            "answer_tokens": sum(size["answer_tokens"] for _, size in results)}

    def summary(self) -> dict:
        return {"compressor_trainable": sum(p.numel() for p in self.modules[0].parameters() if p.requires_grad)}

    def save(self, accelerator, output_dir: str) -> None:
        accelerator.unwrap_model(self.modules[0]).save_pretrained(os.path.join(output_dir, "oryx_compressor"))


def make_objective(vlm: VLM, config: TrainConfig, maker: BatchMaker) -> Objective:
    """The run's objective: a memory bridge's when the config has a memory_bridge section, an Oryx compressor's
    when it has an oryx_compressor section, else the model's."""
    if config.memory_bridge is not None:
        return MemoryBridgeObjective(vlm, config, maker)
    if config.oryx_compressor is not None:
        return OryxCompressorObjective(vlm, config, maker)
    return Objective(vlm, config, maker)


def _lr_lambda(config: TrainConfig):
    warmup, floor = config.optim.warmup_steps, config.optim.min_lr_ratio
    total = config.optim.decay_steps or config.total_steps

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def latest_checkpoint(output_dir: str) -> str | None:
    root = os.path.join(output_dir, "checkpoints")
    if not os.path.isdir(root):
        return None
    steps = sorted(int(d.split("-")[1]) for d in os.listdir(root) if d.startswith("step-"))
    return os.path.join(root, f"step-{steps[-1]}") if steps else None


def train(config: TrainConfig, *, resume: str | bool | None = None, max_steps: int | None = None) -> TrainResult:
    """Train per `config`. `resume=True` continues from the latest checkpoint in output_dir, or give a path.
    `max_steps` stops early (the schedule still spans the configured total)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, set_seed
    from tqdm.auto import tqdm

    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    # The learning-rate schedule is in optimizer steps, stepped once per step by the loop below: accelerate's
    # default (step_scheduler_with_optimizer) advances it once per process, a schedule num_processes times faster.
    # A micro-batch of text rows leaves the vision tower without gradients: DDP must not wait for them.
    accelerator = Accelerator(mixed_precision=config.mixed_precision,
                              gradient_accumulation_steps=config.optim.grad_accum,
                              step_scheduler_with_optimizer=False,
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    _check_launch(accelerator)
    set_seed(config.seed)
    os.makedirs(config.output_dir, exist_ok=True)
    checkpoint = latest_checkpoint(config.output_dir) if resume is True else (resume or None)
    tokenizer = None
    if checkpoint and config.model.source == "new":
        tokenizer = AutoTokenizer.from_pretrained(os.path.join(checkpoint, "tokenizer"))
    vlm = build_training_model(config, tokenizer)
    _check_same_tokenizer(accelerator, vlm)
    pretrain_records = []
    if config.vision_pretrain is not None and not checkpoint:
        pretrain_records = pretrain_vision(vlm, config.vision_pretrain, config.seed)
    maker = BatchMaker(vlm, config)
    objective = make_objective(vlm, config, maker)
    model = apply_trainable(vlm, config, allow_all_frozen=bool(objective.modules))
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    params += [p for module in objective.modules for p in module.parameters()]
    optimizer = torch.optim.AdamW(params, lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config))
    model, *objective.modules, optimizer, scheduler = accelerator.prepare(model, *objective.modules, optimizer,
                                                                          scheduler)
    start_step = 0
    if checkpoint:
        accelerator.load_state(checkpoint)
        with open(os.path.join(checkpoint, "trainer_state.json")) as fh:
            start_step = json.load(fh)["step"]
    summary = {**trainable_summary(model), **objective.summary()}
    log_path = os.path.join(config.output_dir, "training_log.jsonl")
    if accelerator.is_main_process:
        with open(os.path.join(config.output_dir, "train_config.json"), "w") as fh:
            json.dump(config_to_dict(config), fh, indent=2)
        if start_step == 0 and os.path.exists(log_path):
            os.remove(log_path)
        with open(log_path, "a") as fh:
            fh.writelines(json.dumps(record) + "\n" for record in pretrain_records)
    end_step = config.total_steps if max_steps is None else min(config.total_steps, start_step + max_steps)
    bar = tqdm(total=end_step, initial=start_step, disable=not accelerator.is_main_process, desc="train")
    window: list[float] = []
    counts = {"samples": 0, "tokens": 0, "answer_tokens": 0}
    started = time.perf_counter()
    last_loss = float("nan")
    eval_result = None
    for step in range(start_step, end_step):
        stage = config.stage_at(step)
        step_losses = []
        for micro in range(config.optim.grad_accum):
            micro_step = (step * config.optim.grad_accum + micro) * accelerator.num_processes \
                + accelerator.process_index
            with accelerator.accumulate(model):
                loss, info = objective.loss(accelerator, model, micro_step, stage)
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.optim.max_grad_norm:
                    accelerator.clip_grad_norm_(params, config.optim.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            step_losses.append(float(loss.detach()))
            for key in counts:
                counts[key] += info[key]
        scheduler.step()
        last_loss = sum(step_losses) / len(step_losses)
        window.append(last_loss)
        bar.update(1)
        bar.set_postfix(loss=f"{last_loss:.3f}", stage=stage.name)
        done = step + 1
        if done % config.log_every == 0 or done == end_step:
            loss, totals = _across_processes(accelerator, window, counts)  # every process joins the sum
            elapsed = time.perf_counter() - started
            record = {"step": done, "stage": stage.name, "max_length": stage.max_length,
                      "loss": loss, "lr": scheduler.get_last_lr()[0], "elapsed_s": round(elapsed, 2), **totals,
                      "samples_per_s": round(totals["samples"] / max(elapsed, 1e-9), 2),
                      "peak_rss_mb": round(peak_rss_mb()), **summary}
            if accelerator.is_main_process:
                with open(log_path, "a") as fh:
                    fh.write(json.dumps(record) + "\n")
            window = []
        if (config.save_every and done % config.save_every == 0) or done == end_step:
            _save_checkpoint(accelerator, vlm, config, done)
            if config.eval_samples and accelerator.is_main_process:
                eval_result = teacher_forced_accuracy(
                    accelerator.unwrap_model(model), heldout_samples(vlm, config, config.eval_samples),
                    vlm.tokenizer.pad_token_id)
                with open(log_path, "a") as fh:
                    fh.write(json.dumps({"step": done, "eval": eval_result}) + "\n")
    bar.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and end_step == config.total_steps:
        _save_final(accelerator.unwrap_model(model), vlm, config)
        objective.save(accelerator, config.output_dir)
    accelerator.wait_for_everyone()  # the next part of a recipe loads what the main process just saved
    return TrainResult(config.output_dir, end_step, last_loss, eval_result)


def _check_launch(accelerator) -> None:
    """Refuse a multi-process launch that accelerate runs as independent single processes (each would train
    alone and write the same output_dir)."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and accelerator.num_processes != launched:
        raise ConfigError(f"launched as {launched} processes, but accelerate sees {accelerator.num_processes}: "
                          "on a machine without GPUs set ACCELERATE_USE_CPU=true (torchrun --nproc_per_node N)")
    for engine in ("FSDP", "DEEPSPEED"):  # accelerate 1.x builds these engines only on GPUs / accelerators
        asked = os.environ.get(f"ACCELERATE_USE_{engine}", "").lower() in ("1", "true")
        if asked and str(accelerator.distributed_type).rsplit(".", 1)[-1] != engine:
            raise ConfigError(f"the launch asked for {engine}, but accelerate runs {accelerator.distributed_type} "
                              "(its FSDP and DeepSpeed engines need GPUs or other accelerators); on CPU train "
                              "with torchrun --nproc_per_node N and ACCELERATE_USE_CPU=true (data parallel)")


def _check_same_tokenizer(accelerator, vlm: VLM) -> None:
    """Every process must tokenize alike (a tokenizer trained per process must come out the same)."""
    if accelerator.num_processes == 1:
        return
    from accelerate.utils import gather_object

    vocab = json.dumps(sorted(vlm.tokenizer.get_vocab().items()))
    if len(set(gather_object([hashlib.sha256(vocab.encode()).hexdigest()]))) > 1:
        raise ConfigError("the training processes built different tokenizers; build the model once in a "
                          "single-process run and start the multi-process run from its output_dir")


def _across_processes(accelerator, window: list[float], counts: dict[str, int]) -> tuple[float, dict[str, int]]:
    """Mean loss over `window` and summed `counts`, over all processes."""
    local = torch.tensor([sum(window), len(window), *counts.values()], dtype=torch.float64,
                         device=accelerator.device)
    total = accelerator.reduce(local, reduction="sum").tolist()
    return total[0] / max(total[1], 1), {key: int(v) for key, v in zip(counts, total[2:])}


def _save_checkpoint(accelerator, vlm: VLM, config: TrainConfig, step: int) -> None:
    path = os.path.join(config.output_dir, "checkpoints", f"step-{step}")
    accelerator.save_state(path)
    if accelerator.is_main_process:
        vlm.tokenizer.save_pretrained(os.path.join(path, "tokenizer"))
        with open(os.path.join(path, "trainer_state.json"), "w") as fh:
            json.dump({"step": step}, fh)


def _save_final(model, vlm: VLM, config: TrainConfig) -> None:
    """Merge LoRA adapters if any, save model + tokenizer + preprocessor config, and the loss curve."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    vlm.model = model
    vlm.save_pretrained(config.output_dir)
    plot_loss_curve(os.path.join(config.output_dir, "training_log.jsonl"),
                    os.path.join(config.output_dir, "loss_curve.png"))


def plot_loss_curve(log_path: str, png_path: str) -> None:
    """Loss per logged step (and held-out accuracy if logged) from a training_log.jsonl, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, losses, eval_steps, accs = [], [], [], []
    with open(log_path) as fh:
        for line in fh:
            record = json.loads(line)
            if "loss" in record:
                steps.append(record["step"])
                losses.append(record["loss"])
            elif "eval" in record:
                eval_steps.append(record["step"])
                accs.append(record["eval"]["accuracy"])
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, losses, label="train loss (answer tokens)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    if accs:
        twin = ax.twinx()
        twin.plot(eval_steps, accs, "o-", color="tab:green", label="held-out exact accuracy")
        twin.set_ylabel("accuracy")
        twin.set_ylim(0, 1)
    ax.set_title("longvlm training")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)

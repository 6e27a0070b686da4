"""Training configuration: dataclasses loaded from YAML, with clear errors for unknown or bad keys."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from longvlm.compression.oryx import OryxConfig
from longvlm.compression.training import check_factors
from longvlm.errors import ConfigError
from longvlm.memory.bridge import MemoryBridgeConfig


@dataclass
class ModelConfig:
    """What to train. `source`: 'new' (build `architecture` from scratch with a tokenizer trained on the data),
    a tiny preset name, or a local model directory."""

    source: str = "new"
    family: str = "qwen2_vl"
    architecture: dict[str, Any] = field(default_factory=dict)  # kwargs of longvlm.vlm.loading.tiny_config
    vision: dict[str, int] = field(default_factory=dict)  # VisionSpec overrides (min_pixels, max_pixels)
    tokenizer_vocab_size: int = 512
    tokenizer_corpus_samples: int = 2000
    attn_implementation: str | None = None  # default: flash_attention_2 if installed on CUDA, else sdpa
    dtype: str = "float32"  # weights of a loaded `source`: "float32" or "bfloat16" (half the memory)


@dataclass
class TrainableConfig:
    """Which parameters train: `freeze` lists parts kept frozen ('vision', 'merger', 'llm', 'embeddings');
    `lora` (peft LoraConfig kwargs, e.g. {r: 8, lora_alpha: 16, target_modules: [q_proj, v_proj]}) adds LoRA
    adapters to the language model (GIRAFFE recipe: LoRA on the LLM, vision tower and merger frozen)."""

    freeze: list[str] = field(default_factory=list)
    lora: dict[str, Any] | None = None


# MemoryBridgeConfig fields that come from the trained model, not from the config
BRIDGE_FIELDS_FROM_MODEL = ("hidden_size", "model_signature")


@dataclass
class MemoryBridgeSection:
    """Train a memory bridge (`longvlm.memory.bridge`) on video examples. `bridge`: the bridge to build (its
    hidden size and model signature come from the trained model); how examples are cut into segments
    (SceneTilling with `alpha`, forced cut after `max_segment_patches` temporal patches); optionally a saved bridge
    to start from (`init`). The LLM sees the final memory plus the *last* segment, so what the answer needs from
    earlier segments has to pass through the memory. A bridge with `relevance_dim` > 0 has learned relevance
    projections, trained with weight `selection_loss_weight` to pick the cache entry that holds the needle (the
    segment shown at inference). Which VLM parts train is still `trainable` (freeze everything for bridge-only
    training, or add `lora`).

    In YAML the section is one flat mapping: the bridge's fields (num_memory_tokens, num_layers, num_heads,
    ffn_mult, cache_size, dropout, relevance_dim, retrieval_order) next to the training ones."""

    bridge: MemoryBridgeConfig = field(default_factory=MemoryBridgeConfig)
    max_segment_patches: int = 4
    alpha: float = 1.0
    selection_loss_weight: float = 0.0
    init: str | None = None


# OryxConfig fields that come from the trained model, not from the config
ORYX_FIELDS_FROM_MODEL = ("hidden_size",)


@dataclass
class OryxCompressorSection:
    """Train an Oryx compressor (`longvlm.compression.oryx`) with the VLM frozen, like a memory bridge:
    `compressor` is the compressor to build (its hidden size comes from the trained model); example i is
    compressed by `factors[i % len(factors)]` (each >= 2); optionally a saved compressor to start from (`init`).
    Each example's images / frames are encoded by the frozen vision tower and merger at a size whose merged grid
    divides into k x k regions, compressed (with gradients) and given to the LLM at the positions of a k-times
    smaller grid, as at inference; the loss is on the answer tokens (`longvlm.training.trainer.oryx_example_loss`).
    The mixture's length bins count *uncompressed* tokens (the LLM sees about 1/k^2 of the visual ones).
    `trainable.freeze` must hold vision and merger (the LLM may train too, with `lora`).

    In YAML the section is one flat mapping: the compressor's fields (attn_dim, bias, gate, gate_init,
    identity_mode) next to the training ones (factors, init)."""

    compressor: OryxConfig = field(default_factory=OryxConfig)
    factors: list[int] = field(default_factory=lambda: [2])
    init: str | None = None


@dataclass
class VisionPretrainSection:
    """Pretrain the vision tower + merger as a needle shape / colour classifier before the language-model
    stages (`longvlm.training.vision_pretrain`; skipped when resuming): `steps` optimizer steps of
    `batch_size` frame pairs of `frame_size` pixels, AdamW at `lr`; held-out accuracy on `eval_pairs` pairs."""

    steps: int = 400
    batch_size: int = 32
    lr: float = 1e-3
    frame_size: int = 56
    eval_pairs: int = 400
    log_every: int = 50


@dataclass
class DataConfig:
    """Mixture of synthetic sources (name -> weight) over length bins ({name, min_tokens, max_tokens})."""

    sources: dict[str, float] = field(default_factory=dict)
    bins: list[dict[str, Any]] = field(default_factory=list)
    bin_weights: list[float] | None = None
    long_share: float | None = None
    long_threshold: int | None = None
    # per-task length curriculum: a source's own weights over `bins` (instead of bin_weights / long_share);
    # bins a stage's max_length drops are dropped from these weights too; ignored in stages with their own bins
    source_bin_weights: dict[str, list[float]] | None = None


@dataclass
class StageConfig:
    """One stage of the context-length schedule: pack to `max_length` tokens for `steps` optimizer steps."""

    name: str = "stage"
    max_length: int = 1024
    steps: int = 100
    rows_per_step: int | None = None  # overrides optim.rows_per_step for this stage
    sources: dict[str, float] | None = None  # overrides data.sources for this stage (per-task curriculum)
    bins: list[dict[str, Any]] | None = None  # overrides data.bins (and drops data.bin_weights) for this stage


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    # optimizer steps over which the cosine decays from lr to lr * min_lr_ratio (then flat); None: all steps
    decay_steps: int | None = None
    rows_per_step: int = 4  # packed rows of `max_length` tokens per optimizer step (per process)
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    # > 0 adds next-token loss on the prompt's text tokens (weighted, averaged separately) to the answer loss:
    # an auxiliary language-modelling signal that speeds up from-scratch training (copying, counting labels).
    text_loss_weight: float = 0.0


@dataclass
class TrainConfig:
    output_dir: str = "runs/train"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    trainable: TrainableConfig = field(default_factory=TrainableConfig)
    data: DataConfig = field(default_factory=DataConfig)
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])
    optim: OptimConfig = field(default_factory=OptimConfig)
    mixed_precision: str = "no"  # "no" | "bf16" | "fp16" (accelerate)
    gradient_checkpointing: bool = False
    log_every: int = 10
    save_every: int = 0  # 0: only at the end
    eval_samples: int = 0  # held-out samples scored (teacher-forced) at each save and at the end
    torch_threads: int | None = None
    memory_bridge: MemoryBridgeSection | None = None  # set: train a memory bridge (see MemoryBridgeSection)
    vision_pretrain: VisionPretrainSection | None = None  # set: pretrain the vision tower first
    oryx_compressor: OryxCompressorSection | None = None  # set: train an Oryx compressor (see OryxCompressorSection)

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    def stage_at(self, step: int) -> StageConfig:
        """The stage that optimizer step `step` (0-based) belongs to."""
        for stage in self.stages:
            if step < stage.steps:
                return stage
            step -= stage.steps
        return self.stages[-1]


def _build(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    kwargs = {}
    nested = {"model": ModelConfig, "trainable": TrainableConfig, "data": DataConfig, "optim": OptimConfig,
              "vision_pretrain": VisionPretrainSection}
    for key, value in data.items():
        if cls is TrainConfig and key in ("memory_bridge", "vision_pretrain", "oryx_compressor") and value is None:
            kwargs[key] = None
        elif cls is TrainConfig and key == "memory_bridge":
            kwargs[key] = _build_memory_bridge(value, f"{where}.{key}")
        elif cls is TrainConfig and key == "oryx_compressor":
            kwargs[key] = _build_oryx_compressor(value, f"{where}.{key}")
        elif cls is TrainConfig and key in nested:
            kwargs[key] = _build(nested[key], value, f"{where}.{key}")
        elif cls is TrainConfig and key == "stages":
            if not isinstance(value, list) or not value:
                raise ConfigError(f"{where}.stages: expected a non-empty list")
            kwargs[key] = [_build(StageConfig, s, f"{where}.stages[{i}]") for i, s in enumerate(value)]
        else:
            kwargs[key] = value
    return cls(**kwargs)


def _split_section(data: Any, where: str, inner: type, section: type, inner_field: str,
                   from_model: tuple[str, ...]) -> tuple[dict, dict]:
    """A flat YAML section split into the keyword arguments of its module's config (`inner`, without the fields
    that come from the model) and of the section's own training fields; unknown keys are a `ConfigError`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    inner_keys = {f.name for f in dataclasses.fields(inner)} - set(from_model)
    own_keys = {f.name for f in dataclasses.fields(section)} - {inner_field}
    unknown = sorted(set(data) - inner_keys - own_keys)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(inner_keys | own_keys)}")
    return ({k: v for k, v in data.items() if k in inner_keys}, {k: v for k, v in data.items() if k in own_keys})


def _build_memory_bridge(data: Any, where: str) -> MemoryBridgeSection:
    """The memory_bridge section from its flat YAML mapping: the bridge's fields go to its MemoryBridgeConfig."""
    bridge_kwargs, own = _split_section(data, where, MemoryBridgeConfig, MemoryBridgeSection, "bridge",
                                        BRIDGE_FIELDS_FROM_MODEL)
    try:
        bridge = MemoryBridgeConfig(**bridge_kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {str(exc).removeprefix('memory bridge: ')}") from exc
    return MemoryBridgeSection(bridge, **own)


def memory_bridge_to_dict(section: MemoryBridgeSection) -> dict:
    """The memory_bridge section as its flat YAML mapping (what `_build_memory_bridge` reads)."""
    bridge = {k: v for k, v in dataclasses.asdict(section.bridge).items() if k not in BRIDGE_FIELDS_FROM_MODEL}
    return {**bridge, **{f.name: getattr(section, f.name) for f in dataclasses.fields(section) if f.name != "bridge"}}


def _build_oryx_compressor(data: Any, where: str) -> OryxCompressorSection:
    """The oryx_compressor section from its flat YAML mapping: the compressor's fields go to its OryxConfig."""
    compressor_kwargs, own = _split_section(data, where, OryxConfig, OryxCompressorSection, "compressor",
                                            ORYX_FIELDS_FROM_MODEL)
    try:
        compressor = OryxConfig(**compressor_kwargs)
        section = OryxCompressorSection(compressor, **own)
        section.factors = check_factors(section.factors)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {str(exc).removeprefix('OryxConfig: ').removeprefix('oryx_compressor.')}") \
            from exc
    return section


def oryx_compressor_to_dict(section: OryxCompressorSection) -> dict:
    """The oryx_compressor section as its flat YAML mapping (what `_build_oryx_compressor` reads)."""
    compressor = {k: v for k, v in dataclasses.asdict(section.compressor).items() if k not in ORYX_FIELDS_FROM_MODEL}
    return {**compressor, **{f.name: getattr(section, f.name) for f in dataclasses.fields(section)
                             if f.name != "compressor"}}


def _not_positive_ints(section: Any, names: tuple[str, ...]) -> list[str]:
    """The fields of `section` among `names` that are not positive integers (bools excluded), sorted."""
    return sorted(n for n in names if not isinstance(v := getattr(section, n), int) or isinstance(v, bool) or v < 1)


def config_from_dict(data: dict) -> TrainConfig:
    """Build and validate a TrainConfig from a plain dict (e.g. parsed YAML)."""
    config = _build(TrainConfig, data, "config")
    if config.mixed_precision is False:  # YAML 1.1 reads a bare `no` as false
        config.mixed_precision = "no"
    if config.mixed_precision not in ("no", "bf16", "fp16"):
        raise ConfigError(f"config.mixed_precision must be no, bf16 or fp16, got {config.mixed_precision!r}")
    for stage in config.stages:
        if stage.steps <= 0 or stage.max_length <= 0:
            raise ConfigError(f"stage {stage.name!r}: steps and max_length must be positive")
    if config.optim.decay_steps is not None and _not_positive_ints(config.optim, ("decay_steps",)):
        raise ConfigError(f"config.optim.decay_steps must be a positive integer, got {config.optim.decay_steps!r}")
    bridge = config.memory_bridge
    if bridge is not None:
        if _not_positive_ints(bridge, ("max_segment_patches",)):
            raise ConfigError(f"config.memory_bridge: max_segment_patches must be a positive integer, got "
                              f"{bridge.max_segment_patches!r}")
        weight = bridge.selection_loss_weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ConfigError(f"config.memory_bridge: selection_loss_weight must be >= 0, got {weight!r}")
        if weight and not bridge.bridge.relevance_dim:
            raise ConfigError("config.memory_bridge.selection_loss_weight needs relevance_dim > 0 (learned "
                              "relevance projections to train)")
        if not any(s.startswith("video_needle/") or s.startswith("jsonl:") for s in config.data.sources):
            raise ConfigError("config.memory_bridge trains on video examples; data.sources needs a video_needle/* "
                              "source")
        if config.eval_samples:
            raise ConfigError("config.eval_samples is not supported with memory_bridge yet (held-out scoring "
                              "runs the plain model); set it to 0 and use scripts/compare_memory_bridge.py")
    pretrain = config.vision_pretrain
    if pretrain is not None:
        bad_sizes = _not_positive_ints(pretrain, ("steps", "batch_size", "frame_size", "eval_pairs", "log_every"))
        if bad_sizes or not pretrain.lr > 0:
            raise ConfigError(f"config.vision_pretrain: {bad_sizes or ['lr']} must be positive"
                              + (" integers" if bad_sizes else ""))
        if config.memory_bridge is not None:
            raise ConfigError("config.vision_pretrain and config.memory_bridge cannot be combined: pretrain the "
                              "model first, then train its bridge in another run")
    if config.oryx_compressor is not None:
        _check_oryx_compressor(config)
    bad = sorted(set(config.trainable.freeze) - {"vision", "merger", "llm", "embeddings"})
    if bad:
        raise ConfigError(f"trainable.freeze: unknown part(s) {bad}; use vision, merger, llm, embeddings")
    return config


def _check_oryx_compressor(config: TrainConfig) -> None:
    """The oryx_compressor section combines with nothing else that chooses the objective, and needs visual
    examples and a frozen vision tower."""
    others = [name for name in ("memory_bridge", "vision_pretrain") if getattr(config, name) is not None]
    if others:
        raise ConfigError(f"config.oryx_compressor cannot be combined with config.{others[0]}: train them in "
                          "separate runs")
    if config.eval_samples:
        raise ConfigError("config.eval_samples is not supported with oryx_compressor yet (held-out scoring runs the "
                          "uncompressed model); set it to 0")
    sources = set(config.data.sources) | {s for stage in config.stages for s in (stage.sources or {})}
    if "text_passkey" in sources:
        raise ConfigError("config.oryx_compressor trains on images and videos; drop the text_passkey source (its "
                          "examples give the compressor nothing to learn)")
    frozen = {"vision", "merger"} - set(config.trainable.freeze)
    if frozen:
        raise ConfigError(f"config.oryx_compressor encodes with the frozen vision tower: trainable.freeze needs "
                          f"{sorted(frozen)}")


def load_config(path: str | os.PathLike, overrides: dict | None = None) -> TrainConfig:
    """Read a YAML training config; `overrides` (nested dict) replaces values before validation."""
    import yaml

    try:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: training config not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from exc
    return config_from_dict(_merge(data, overrides or {}))


def _merge(base: dict, overrides: dict) -> dict:
    out = dict(base)
    for key, value in overrides.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out


def config_to_dict(config: TrainConfig) -> dict:
    """The config as plain data in the YAML format (`config_from_dict` reads it back)."""
    data = dataclasses.asdict(config)
    if config.memory_bridge is not None:
        data["memory_bridge"] = memory_bridge_to_dict(config.memory_bridge)
    if config.oryx_compressor is not None:
        data["oryx_compressor"] = oryx_compressor_to_dict(config.oryx_compressor)
    return data

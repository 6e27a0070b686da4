"""Build the model to train (new small model, preset or directory) and choose its trainable parameters."""

from __future__ import annotations

import re

import numpy as np
import torch

from longvlm.datasets.examples import Example
from longvlm.datasets.mixture import GENERATORS
from longvlm.processing.spec import VisionSpec
from longvlm.errors import ConfigError
from longvlm.training.config import TrainConfig
from longvlm.vlm.loading import (FAMILIES, VLM, default_attn_implementation, family_vision_spec, load_vlm,
                                 tiny_config)
from longvlm.vlm.prompt import DEFAULT_SYSTEM, example_prompt_parts
from longvlm.vlm.tokenizer import train_bpe_tokenizer

LLM_LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def corpus_texts(sources: list[str], count: int, seed: int) -> list[str]:
    """Texts of `count` small examples from the given sources plus the chat template, for tokenizer training."""
    rng = np.random.default_rng([seed, 7])
    texts = [f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n"]
    for i in range(count):
        make, smallest = GENERATORS[sources[i % len(sources)]]
        example: Example = make(rng, smallest + 1)
        texts.extend(p for p in example_prompt_parts(example, VisionSpec()) if isinstance(p, str))
        texts.append(example.answer)
    return texts


def build_training_model(config: TrainConfig, tokenizer=None) -> VLM:
    """The VLM to train. For source 'new', a tokenizer is trained on the data's texts (unless given, e.g. when
    resuming) and a model of `model.architecture` is initialised with the config's seed."""
    spec_kwargs = config.model.vision
    attn = config.model.attn_implementation or default_attn_implementation()
    if config.model.source != "new":
        if config.model.dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"model.dtype must be float32 or bfloat16, got {config.model.dtype!r}")
        vlm = load_vlm(config.model.source, device="cpu", dtype=getattr(torch, config.model.dtype),
                       attn_implementation=config.model.attn_implementation)
        if spec_kwargs:
            vlm.vision = VisionSpec(**{**vlm.vision.__dict__, **spec_kwargs})
        return vlm
    if config.model.family not in FAMILIES:
        raise ConfigError(f"model.family must be one of {sorted(FAMILIES)}, got {config.model.family!r}")
    if tokenizer is None:
        texts = corpus_texts(sorted(config.data.sources), config.model.tokenizer_corpus_samples, config.seed)
        tokenizer = train_bpe_tokenizer(texts, config.model.tokenizer_vocab_size)
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in [
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")]}
    try:
        model_config = tiny_config(config.model.family, vocab_size=len(tokenizer), token_ids=ids,
                                   **config.model.architecture)
    except TypeError as exc:
        raise ConfigError(f"model.architecture: {exc}") from exc
    model_config.text_config.eos_token_id = tokenizer.eos_token_id
    model_config.text_config.pad_token_id = tokenizer.pad_token_id
    model_config._attn_implementation = attn
    model_cls = FAMILIES[config.model.family].model_class
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        model = model_cls(model_config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    spec = VisionSpec(**{**family_vision_spec(config.model.family).__dict__, **spec_kwargs})
    return VLM(model, tokenizer, spec, config.model.family, "new")


def part_parameters(model, part: str) -> list[tuple[str, torch.nn.Parameter]]:
    """Named parameters of one part: 'vision' (tower without merger), 'merger', 'llm', 'embeddings'."""
    named = list(model.named_parameters())
    if part == "vision":
        return [(n, p) for n, p in named if ".visual." in f".{n}" and ".merger." not in n]
    if part == "merger":
        return [(n, p) for n, p in named if ".merger." in n]
    if part == "llm":
        return [(n, p) for n, p in named if "language_model" in n or n.startswith("lm_head")]
    if part == "embeddings":
        return [(n, p) for n, p in named if "embed_tokens" in n or n.startswith("lm_head")]
    raise ConfigError(f"unknown model part {part!r}")


def apply_trainable(vlm: VLM, config: TrainConfig, *, allow_all_frozen: bool = False):
    """Freeze the configured parts and add LoRA adapters if asked; returns the model to train.
    `allow_all_frozen`: another module (a memory bridge) trains, so a fully frozen VLM is fine."""
    model = vlm.model
    for part in config.trainable.freeze:
        for _, param in part_parameters(model, part):
            param.requires_grad_(False)
    if config.trainable.lora:
        from peft import LoraConfig, get_peft_model

        lora = dict(config.trainable.lora)
        names = lora.pop("target_modules", list(LLM_LINEAR_NAMES))
        if isinstance(names, str):
            names = [names]
        # only the language model's linear layers (the vision tower has its own qkv/proj/MLP names)
        lora["target_modules"] = rf".*language_model.*\.({'|'.join(map(re.escape, names))})"
        try:
            model = get_peft_model(model, LoraConfig(**lora))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"trainable.lora: {exc}") from exc
    if not allow_all_frozen and not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("nothing to train: every parameter is frozen")
    return model


def trainable_summary(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"parameters": total, "trainable": trainable}

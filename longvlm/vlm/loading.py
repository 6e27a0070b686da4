"""Load a Qwen2-VL / Qwen2.5-VL model: from a local directory, or the `tiny` preset built in code."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase, Qwen2_5_VLConfig,
                          Qwen2_5_VLForConditionalGeneration, Qwen2VLConfig, Qwen2VLForConditionalGeneration)

from longvlm.processing.spec import VisionSpec
from longvlm.errors import ConfigError
from longvlm.vlm.tokenizer import build_byte_tokenizer

FAMILIES = {
    "qwen2_vl": (Qwen2VLConfig, Qwen2VLForConditionalGeneration),
    "qwen2_5_vl": (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration),
}
TINY_PRESETS = {"tiny": "qwen2_vl", "tiny-qwen2-vl": "qwen2_vl", "tiny-qwen2.5-vl": "qwen2_5_vl"}
# Trained checkpoints shipped inside the package (saved with save_pretrained by scripts/train.py).
ASSETS = Path(__file__).resolve().parent.parent / "assets"
# "small": the shipped model (earlier versions are in git history and bench/RESULTS.md)
SHIPPED_MODELS = {"small": ASSETS / "longvlm-small"}
PRESETS = (*SHIPPED_MODELS, *TINY_PRESETS)
"""Model names that need no directory: the shipped models and the random-weight tiny presets."""
# Small pixel bounds keep the random tiny model fast on CPU; real models use their own preprocessor config.
TINY_VISION_SPEC = VisionSpec(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 256)


@dataclass
class VLM:
    """A loaded model with what is needed to feed it: tokenizer and vision spec."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    vision: VisionSpec
    family: str  # "qwen2_vl" or "qwen2_5_vl"
    name: str  # preset name or model directory
    is_random: bool = False  # True for presets built with random weights

    @property
    def config(self):
        return self.model.config

    @property
    def max_context(self) -> int:
        """Longest sequence the model was configured for (text_config.max_position_embeddings)."""
        return int(self.model.config.text_config.max_position_embeddings)

    def token_id(self, name: str) -> int:
        """Id of a special token named by its config attribute (e.g. 'video_token_id')."""
        return int(getattr(self.model.config, name))

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write model, tokenizer and preprocessor config so that `load_vlm(path)` reads them back."""
        os.makedirs(path, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        processor = "Qwen2VLImageProcessor"
        with open(os.path.join(path, "preprocessor_config.json"), "w") as fh:
            json.dump(self.vision.to_preprocessor_config(processor), fh, indent=2)


def tiny_config(family: str = "qwen2_vl", vocab_size: int = 264, *, hidden_size: int = 64, layers: int = 2,
                heads: int = 4, kv_heads: int = 2, vision_depth: int = 2, vision_dim: int = 32,
                max_position_embeddings: int = 8192, token_ids: dict[str, int] | None = None):
    """A small config of the real Qwen2-VL / Qwen2.5-VL classes (head_dim 16, mrope_section [2, 3, 3])."""
    if family not in FAMILIES:
        raise ConfigError(f"unknown model family {family!r}; known: {sorted(FAMILIES)}")
    head_dim = hidden_size // heads
    half = head_dim // 2
    section = [half // 4, (half - half // 4) // 2]
    section.append(half - sum(section))
    text = dict(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=hidden_size * 2,
                num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                max_position_embeddings=max_position_embeddings, rms_norm_eps=1e-6,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section},
                bos_token_id=None, eos_token_id=None, pad_token_id=None)
    if family == "qwen2_vl":
        vision = dict(depth=vision_depth, embed_dim=vision_dim, hidden_size=hidden_size, num_heads=2, mlp_ratio=2)
    else:
        vision = dict(depth=vision_depth, hidden_size=vision_dim, out_hidden_size=hidden_size, num_heads=2,
                      intermediate_size=vision_dim * 2, fullatt_block_indexes=[vision_depth - 1],
                      window_size=112, tokens_per_second=2)
    config_cls, _ = FAMILIES[family]
    ids = token_ids or {}
    return config_cls(text_config=text, vision_config=vision, tie_word_embeddings=True, **ids)


def build_tiny(preset: str = "tiny", seed: int = 0, dtype: torch.dtype = torch.float32) -> VLM:
    """A randomly initialised tiny model of the real classes with the offline byte tokenizer (no hub access)."""
    family = TINY_PRESETS[preset]
    tokenizer = build_byte_tokenizer()
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in [
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")]}
    config = tiny_config(family, vocab_size=len(tokenizer), token_ids=ids)
    config.text_config.eos_token_id = tokenizer.eos_token_id
    config.text_config.pad_token_id = tokenizer.pad_token_id
    _, model_cls = FAMILIES[family]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = model_cls(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.to(dtype).eval()
    return VLM(model, tokenizer, TINY_VISION_SPEC, family, preset, is_random=True)


def default_model() -> str:
    """The offline default: the shipped trained small model when installed, else the random tiny preset."""
    return "small" if (SHIPPED_MODELS["small"] / "config.json").is_file() else "tiny"


def default_attn_implementation() -> str:
    """flash_attention_2 when flash-attn is installed and CUDA is available, else PyTorch SDPA."""
    if torch.cuda.is_available():
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            pass
    return "sdpa"


def load_vlm(model: str | os.PathLike = "tiny", *, dtype: torch.dtype | str | None = None,
             device: str | None = None, attn_implementation: str | None = None) -> VLM:
    """Load `model`: 'small' (the project's trained model shipped in the package), a random tiny preset
    ('tiny', 'tiny-qwen2-vl', 'tiny-qwen2.5-vl') or a local directory
    holding a Qwen2-VL / Qwen2.5-VL checkpoint (config.json, weights, tokenizer, preprocessor_config.json).
    Nothing is downloaded."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if str(model) in SHIPPED_MODELS:
        path = SHIPPED_MODELS[str(model)]
        if not (path / "config.json").is_file():
            raise ConfigError(f"the shipped model {model!r} is missing from this installation ({path})")
        vlm = load_vlm(path, dtype=dtype, device=device, attn_implementation=attn_implementation)
        vlm.name = str(model)
        return vlm
    if str(model) in TINY_PRESETS:
        vlm = build_tiny(str(model))
        vlm.model.to(device)
        return vlm
    path = Path(model)
    if not path.is_dir():
        raise ConfigError(f"{model}: not a model directory and not a preset "
                          f"({', '.join([*SHIPPED_MODELS, *TINY_PRESETS])})")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"{model}: no config.json, not a Hugging Face model directory")
    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type not in FAMILIES:
        raise ConfigError(f"{model}: model_type {model_type!r} is not supported (supported: {sorted(FAMILIES)})")
    _, model_cls = FAMILIES[model_type]
    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    net = model_cls.from_pretrained(path, dtype=dtype, attn_implementation=attn_implementation
                                    or default_attn_implementation(), local_files_only=True)
    net.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return VLM(net, tokenizer, VisionSpec.from_model_dir(path), model_type, str(path))

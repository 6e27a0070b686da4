"""Load a model of a supported family (`longvlm.vlm.families`): from a local directory, a shipped model, or a
tiny preset built in code."""

from __future__ import annotations

import json
import os
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from longvlm.processing.spec import VisionSpec
from longvlm.errors import ConfigError
from longvlm.vlm.families import FAMILIES, Family, family_of, tiny_config
from longvlm.vlm.tokenizer import build_byte_tokenizer

TINY_PRESETS = {"tiny": "qwen2_vl", "tiny-qwen2-vl": "qwen2_vl", "tiny-qwen2.5-vl": "qwen2_5_vl",
                "tiny-qwen3-vl": "qwen3_vl", "tiny-qwen3.5": "qwen3_5", "tiny-kimi-k2.5": "kimi_k25"}
# Trained checkpoints shipped inside the package (saved with save_pretrained by scripts/train.py).
ASSETS = Path(__file__).resolve().parent.parent / "assets"
# "small": the shipped model (earlier versions are in git history and bench/RESULTS.md)
SHIPPED_MODELS = {"small": ASSETS / "longvlm-small"}
PRESETS = (*SHIPPED_MODELS, *TINY_PRESETS)
"""Model names that need no directory: the shipped models and the random-weight tiny presets."""
# Small pixel bounds keep the random tiny model fast on CPU; real models use their own preprocessor config.
TINY_VISION_SPEC = VisionSpec(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 256)


def family_vision_spec(family: str, *, tiny: bool = False) -> VisionSpec:
    """A family's vision spec for a new model (`Family.vision`: its released processor's patching and
    normalisation); `tiny`: with the small pixel bounds of the tiny presets (4 to 256 tokens an image)."""
    spec = FAMILIES[family].vision
    if not tiny:
        return spec
    return dataclasses.replace(spec, min_pixels=spec.factor ** 2 * 4, max_pixels=spec.factor ** 2 * 256)


@dataclass
class VLM:
    """A loaded model with what is needed to feed it: tokenizer and vision spec."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    vision: VisionSpec
    family: str  # a key of longvlm.vlm.families.FAMILIES, e.g. "qwen2_vl"
    name: str  # preset name or model directory
    is_random: bool = False  # True for presets built with random weights

    @property
    def config(self):
        return self.model.config

    @property
    def family_spec(self) -> Family:
        """The family's facts (`longvlm.vlm.families.Family`)."""
        return FAMILIES[self.family]

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
        with open(os.path.join(path, "preprocessor_config.json"), "w") as fh:
            json.dump(self.vision.to_preprocessor_config(self.family_spec.image_processor), fh, indent=2)


def build_tiny(preset: str = "tiny", seed: int = 0, dtype: torch.dtype = torch.float32) -> VLM:
    """A randomly initialised tiny model of the real classes with the offline byte tokenizer (no hub access)."""
    family = TINY_PRESETS[preset]
    spec = FAMILIES[family]
    tokenizer = build_byte_tokenizer(spec.chat_tokens)
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in spec.tokens}
    config = tiny_config(family, vocab_size=len(tokenizer), token_ids=ids)
    config.text_config.eos_token_id = tokenizer.eos_token_id
    config.text_config.pad_token_id = tokenizer.pad_token_id
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = FAMILIES[family].model_class(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.to(dtype).eval()
    return VLM(model, tokenizer, family_vision_spec(family, tiny=True), family, preset, is_random=True)


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
    holding a checkpoint of a supported family (`longvlm.vlm.families`; detected from config.json's model_type:
    config.json, weights, tokenizer, preprocessor_config.json).
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
    try:
        family = family_of(str(model_type))
    except ConfigError as exc:
        raise ConfigError(f"{model}: {exc}") from exc
    model_cls = family.model_class
    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    net = model_cls.from_pretrained(path, dtype=dtype, attn_implementation=attn_implementation
                                    or default_attn_implementation(), local_files_only=True)
    net.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return VLM(net, tokenizer, VisionSpec.from_model_dir(path, family.vision), family.name, str(path))

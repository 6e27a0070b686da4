"""What the demo offers, from the registries: the visual compressors (`longvlm.compression`), KV presses
(`longvlm.presses`), position-extension methods (`longvlm.vlm.rope`), and honest labels for the loaded model."""

from __future__ import annotations

from dataclasses import dataclass, field

from longvlm.compression import VISUAL_COMPRESSORS
from longvlm.presses import PRESSES
from longvlm.vlm import loading
from longvlm.vlm.rope import METHODS

NOT_AVAILABLE = "not available in this build"


@dataclass(frozen=True)
class Feature:
    """An optional capability: available or not (with the reason), and the choices it offers."""

    name: str
    available: bool
    reason: str = ""
    choices: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)


def compression_feature() -> Feature:
    """Visual compressors and KV presses, by their registry names ('none' first)."""
    return Feature("compression", True, choices=("none", *VISUAL_COMPRESSORS),
                   extra={"presses": ("none", *sorted(PRESSES))})


def rope_feature() -> Feature:
    """Position-extension methods of `longvlm.vlm.rope` ('none' first)."""
    return Feature("position extension", True, choices=("none", *METHODS))


def default_model_name() -> str:
    """The offline default of this build: the shipped trained 'small' model when installed, else 'tiny'."""
    return loading.default_model()


def model_label(vlm: loading.VLM) -> tuple[str, str]:
    """(short badge, explanation) describing the loaded model honestly for the UI."""
    params = sum(p.numel() for p in vlm.model.parameters())
    size = (f"{params / 1e9:.1f}B" if params >= 1e9 else f"{params / 1e6:.1f}M" if params >= 1e6
            else f"{params / 1e3:.0f}K")
    family = {"qwen2_vl": "Qwen2-VL", "qwen2_5_vl": "Qwen2.5-VL"}.get(vlm.family, vlm.family)
    if vlm.is_random:
        return (f"{vlm.name} · {size} params · random weights",
                f"Tiny {family} test model with random weights: it runs the whole pipeline, but its answers are "
                f"meaningless. Start with `--model DIR` for a real checkpoint.")
    if vlm.name in loading.SHIPPED_MODELS:
        return (f"{vlm.name} · {size} params · small model",
                f"Small {family} model trained by the project: it runs offline on a CPU, but it is a small "
                f"model and far less accurate than a full Qwen2-VL checkpoint (`--model DIR`).")
    return f"{family} · {size} params", f"{family} checkpoint loaded from `{vlm.name}`."

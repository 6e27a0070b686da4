"""What the demo offers, from the registries only: the visual compressors (`longvlm.compression`), KV presses
(`longvlm.presses`), position-extension methods (`longvlm.vlm.rope`); and honest labels for the loaded model."""

from __future__ import annotations

from longvlm.compression import VISUAL_COMPRESSORS
from longvlm.presses import PRESSES
from longvlm.vlm import loading
from longvlm.vlm.rope import METHODS

COMPRESSOR_CHOICES = ("none", *VISUAL_COMPRESSORS)
"""The demo's visual compressor choices ("none" with a ratio above 1: average pooling, as on the CLI)."""
PRESS_CHOICES = ("none", *PRESSES)
"""The demo's KV press choices."""
ROPE_CHOICES = ("none", *METHODS)
"""The demo's position-extension choices."""


def default_model_name() -> str:
    """The offline default of this build: the shipped trained 'small' model when installed, else 'tiny'."""
    return loading.default_model()


def model_label(vlm: loading.VLM) -> tuple[str, str]:
    """(short badge, explanation) describing the loaded model honestly for the UI."""
    params = sum(p.numel() for p in vlm.model.parameters())
    size = (f"{params / 1e9:.1f}B" if params >= 1e9 else f"{params / 1e6:.1f}M" if params >= 1e6
            else f"{params / 1e3:.0f}K")
    family = vlm.family_spec.label
    if vlm.is_random:
        return (f"{vlm.name} · {size} params · random weights",
                f"Tiny {family} test model with random weights: it runs the whole pipeline, but its answers are "
                f"meaningless. Start with `--model DIR` for a real checkpoint.")
    if vlm.name in loading.SHIPPED_MODELS:
        return (f"{vlm.name} · {size} params · small model",
                f"Small {family} model trained by the project: it runs offline on a CPU, but it is a small "
                f"model and far less accurate than a full-size checkpoint (`--model DIR`).")
    return f"{family} · {size} params", f"{family} checkpoint loaded from `{vlm.name}`."

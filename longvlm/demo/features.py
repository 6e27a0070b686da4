"""What this build of longvlm offers the demo: the default offline model, and whether visual compression /
KV pruning (issue 4, `longvlm.compression`) and position extension (issue 3, `longvlm.vlm.rope`) exist.

Nothing is faked: a feature is reported available only when the module exposes exactly the names the demo
calls, and the encoders / `answer()` accept the matching arguments. Otherwise the settings panel shows the
control disabled, labelled "not available in this build", with the reason.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field

from longvlm.vlm import loading

NOT_AVAILABLE = "not available in this build"


@dataclass(frozen=True)
class Feature:
    """An optional capability: available or not (with the reason), and the choices it offers."""

    name: str
    available: bool
    reason: str = ""
    choices: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)


def _accepts(fn, parameter: str) -> bool:
    return parameter in inspect.signature(fn).parameters


def compression_feature() -> Feature:
    """Visual compressors and KV presses from `longvlm.compression`, if the pipeline can use them."""
    try:
        module = importlib.import_module("longvlm.compression")
        from longvlm.vlm import inputs, pipeline
    except ImportError as exc:  # pragma: no cover - import errors of the package itself
        return Feature("compression", False, f"{NOT_AVAILABLE} ({exc})")
    needed = ("Compression", "VISUAL_COMPRESSORS", "PRESSES", "build_press")
    missing = [name for name in needed if not hasattr(module, name)]
    if missing:
        return Feature("compression", False, f"{NOT_AVAILABLE}: longvlm.compression has no {', '.join(missing)}")
    if not (_accepts(inputs.encode_pdf, "compression") and _accepts(inputs.encode_video, "compression")
            and _accepts(pipeline.answer, "kv_press")):
        return Feature("compression", False, f"{NOT_AVAILABLE}: the encoders do not take compression=")
    return Feature("compression", True, choices=("none", *sorted(module.VISUAL_COMPRESSORS)),
                   extra={"presses": ("none", *sorted(module.PRESSES))})


def rope_feature() -> Feature:
    """Position-extension methods from `longvlm.vlm.rope`, if present."""
    try:
        module = importlib.import_module("longvlm.vlm.rope")
    except ImportError:
        return Feature("position extension", False, f"{NOT_AVAILABLE}: longvlm.vlm.rope is not part of it")
    if not (hasattr(module, "METHODS") and hasattr(module, "apply_position_extension")):
        return Feature("position extension", False,
                       f"{NOT_AVAILABLE}: longvlm.vlm.rope has no METHODS / apply_position_extension")
    return Feature("position extension", True, choices=("none", *module.METHODS))


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

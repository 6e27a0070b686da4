"""The demo's one loaded model, swapped from the settings panel.

The app runs loading, answering and model swaps in one Gradio concurrency group of size 1, so they never
overlap; the lock here only keeps two direct `load` calls from interleaving.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from longvlm.demo.features import default_model_name, rope_feature
from longvlm.errors import ConfigError
from longvlm.vlm.loading import VLM, load_vlm


class ModelHolder:
    """Holds the loaded `VLM`. `version` changes on every (re)load, so inputs encoded by an earlier model
    can be told apart and re-encoded instead of being fed to a model they do not fit."""

    def __init__(self, model: str | None = None, *, loader: Callable[[str], VLM] = load_vlm) -> None:
        self._loader = loader
        self.lock = threading.Lock()
        self.version = 0
        self.position_extension = "none"
        self.vlm = self._load(model or default_model_name())

    def _load(self, name: str) -> VLM:
        name = (name or "").strip()
        if not name:
            raise ConfigError("give a model directory or a preset name")
        return self._loader(name)

    def load(self, name: str, *, rope_method: str = "none", rope_scale: float = 1.0) -> VLM:
        """Load `name` (preset or local directory) and apply a position extension if asked; the previous
        model stays in place when loading fails."""
        if rope_method != "none":
            feature = rope_feature()
            if not feature.available:
                raise ConfigError(f"position extension is {feature.reason}")
        with self.lock:
            vlm = self._load(name)
            if rope_method != "none":
                from longvlm.vlm.rope import apply_position_extension

                apply_position_extension(vlm, rope_method, rope_scale)
            self.vlm = vlm
            self.version += 1
            self.position_extension = "none" if rope_method == "none" else f"{rope_method} x{rope_scale:g}"
            return vlm

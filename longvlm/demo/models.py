"""The demo's models: a fixed list of choices, loaded on demand and shared read-only between sessions.

Security design (see README, "Demo"): a client can pick a model only from the choices the server was started
with — the shipped presets plus the directories given at launch (`--model DIR`, and each model directory inside
`--models-dir DIR`) — by their display name. No client can name a server folder, or learn whether one exists.
A choice (and a position extension) applies to the session that made it only: each session keeps its own
model key, and models are loaded once per key and shared by the sessions that chose the same key.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from longvlm.demo.features import ROPE_CHOICES, default_model_name
from longvlm.errors import ConfigError
from longvlm.vlm.loading import PRESETS, VLM, load_vlm
from longvlm.vlm.rope import apply_position_extension

MAX_LOADED_MODELS = 3
"""Models kept loaded at once (the launch model is always kept); a session whose model was dropped gets it
reloaded on its next use."""


@dataclass(frozen=True)
class ModelKey:
    """A model choice of one session: the display name and the position extension applied to it."""

    name: str
    rope_method: str = "none"
    rope_scale: float = 1.0

    @property
    def extension(self) -> str:
        return "none" if self.rope_method == "none" else f"{self.rope_method} x{self.rope_scale:g}"


def model_directories(models_dirs: Sequence[str]) -> dict[str, str]:
    """Display name -> path of each model directory (holding config.json) directly inside `models_dirs`."""
    found: dict[str, str] = {}
    for root in models_dirs:
        base = Path(root).expanduser()
        if not base.is_dir():
            raise ConfigError(f"--models-dir {root}: not a folder")
        for child in sorted(base.iterdir()):
            if (child / "config.json").is_file():
                found.setdefault(child.name, str(child.resolve()))
    return found


class ModelPool:
    """The models this server offers (`choices`, by display name) and the loaded ones (at most
    `MAX_LOADED_MODELS` besides the launch model). Loading and position extensions are per `ModelKey`."""

    def __init__(self, model: str | None = None, *, models_dirs: Sequence[str] = (),
                 loader: Callable[[str], VLM] = load_vlm, max_loaded: int = MAX_LOADED_MODELS) -> None:
        self._loader = loader
        self._max_loaded = max_loaded
        self._lock = threading.Lock()
        self._loaded: OrderedDict[ModelKey, VLM] = OrderedDict()
        launch = (model or default_model_name()).strip()
        self._targets: dict[str, str] = {name: name for name in PRESETS}
        if launch in PRESETS:
            self._targets.setdefault(launch, launch)
            self.default = ModelKey(launch)
        else:  # a directory given at launch, offered by its folder name
            name = Path(launch).name or launch
            self._targets[name] = launch
            self.default = ModelKey(name)
        for name, path in model_directories(models_dirs).items():
            self._targets.setdefault(name, path)
        first = self._loader(self._targets[self.default.name])
        first.name = self.default.name
        self._loaded[self.default] = first

    @property
    def choices(self) -> list[str]:
        """Display names a client may pick, the launch model first."""
        return [self.default.name, *[n for n in self._targets if n != self.default.name]]

    def key(self, name: str, rope_method: str = "none", rope_scale: float = 1.0) -> ModelKey:
        """A validated `ModelKey` (`ConfigError` for a name that is not a choice, or a bad extension)."""
        name = (name or "").strip()
        if name not in self._targets:
            raise ConfigError(f"unknown model {name!r}; this server offers: {', '.join(self.choices)}")
        rope_method = rope_method or "none"
        if rope_method != "none":
            if rope_method not in ROPE_CHOICES:
                raise ConfigError(f"unknown position extension {rope_method!r}")
            if not 1.0 <= float(rope_scale) <= 64.0:
                raise ConfigError(f"extension scale must be in 1..64, got {rope_scale!r}")
        return ModelKey(name, rope_method, float(rope_scale) if rope_method != "none" else 1.0)

    def get(self, key: ModelKey | None = None) -> VLM:
        """The model of `key` (default: the launch model), loading it (and its extension) if needed."""
        key = key or self.default
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            vlm = self._loader(self._targets[key.name])
            if key.rope_method != "none":

                apply_position_extension(vlm, key.rope_method, key.rope_scale)
            vlm.name = key.name
            self._loaded[key] = vlm
            extra = [k for k in self._loaded if k != self.default]
            while len(extra) > self._max_loaded:
                self._loaded.pop(extra.pop(0))
            return vlm

    @property
    def vlm(self) -> VLM:
        """The launch model."""
        return self.get(self.default)

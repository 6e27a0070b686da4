"""Save / load a small trainable module as a JSON config + safetensors weights (no pickle)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict

from safetensors.torch import load_file, save_file
from torch import nn

from longvlm.errors import ConfigError


def save_module(module: nn.Module, config, path: str | os.PathLike, config_name: str, weights_name: str) -> None:
    """Write `config` (a dataclass) as JSON and the module's state dict as safetensors into directory `path`."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, config_name), "w") as fh:
        json.dump(asdict(config), fh, indent=2)
    save_file({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()},
              os.path.join(path, weights_name))


def load_module(cls, config_cls, path: str | os.PathLike, config_name: str, weights_name: str, what: str):
    """Build `cls(config_cls(**json))` from a directory written by `save_module` and load its weights."""
    config_file = os.path.join(path, config_name)
    if not os.path.isfile(config_file):
        raise ConfigError(f"{path}: no {config_name}, not a saved {what}")
    with open(config_file) as fh:
        config = config_cls(**json.load(fh))
    module = cls(config)
    module.load_state_dict(load_file(os.path.join(path, weights_name)))
    return module

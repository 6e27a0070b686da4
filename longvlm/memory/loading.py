"""Memory bridges by name: the one shipped with the small model, a trained one saved in a directory, or an
untrained one ('random', for tests and ablations)."""

from __future__ import annotations

import os

from longvlm.memory.bridge import MemoryBridge, MemoryBridgeConfig
from longvlm.vlm.loading import ASSETS, VLM

SHIPPED_BRIDGES = {"small": ASSETS / "memory-bridge-small"}
"""Memory bridges shipped inside the package, by the name of the shipped model they were trained on."""

UNTRAINED_BRIDGE = "random"


def load_memory_bridge(name_or_path: str | os.PathLike) -> MemoryBridge:
    """A memory bridge shipped with the package (a `SHIPPED_BRIDGES` name) or saved in a directory."""
    return MemoryBridge.from_pretrained(SHIPPED_BRIDGES.get(str(name_or_path), name_or_path))


def build_memory_bridge(name_or_path: str | os.PathLike, vlm: VLM) -> MemoryBridge:
    """The bridge for `vlm` on its device: shipped, saved, or untrained (`UNTRAINED_BRIDGE`)."""
    if str(name_or_path) == UNTRAINED_BRIDGE:
        bridge = MemoryBridge(MemoryBridgeConfig(vlm.config.text_config.hidden_size))
    else:
        bridge = load_memory_bridge(name_or_path)
    return bridge.to(vlm.model.device)

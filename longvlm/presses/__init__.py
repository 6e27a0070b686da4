"""KV presses: prune the KV cache of every attention layer at the end of prefill (kvpress-style).

`PRESSES` is the one registry of press names (CLI `--kv-press`, the demo's dropdown, the lmms-eval model
argument and the benchmarks read it). `generate_pruned` decodes greedily on a pruned cache for any batch.
"""

from __future__ import annotations

from longvlm.errors import ConfigError
from longvlm.presses.base import KVPress, LayerView, PressState
from longvlm.presses.baselines import H2OPress, RandomPress, SnapKVPress, StreamingLLMPress
from longvlm.presses.budget import KVBudget
from longvlm.presses.decode import PrunedGeneration, generate_pruned
from longvlm.presses.lookm import LookMPress

PRESSES = {cls.name: cls for cls in (LookMPress, StreamingLLMPress, H2OPress, SnapKVPress, RandomPress)}
DEFAULT_KV_BUDGET = 0.2
"""KV tokens kept when a press is named without a budget: a ratio of the prompt."""


def build_press(name: str, budget: KVBudget | float | int = DEFAULT_KV_BUDGET, **options) -> KVPress:
    """A press by name ('lookm', 'streaming', 'h2o', 'snapkv', 'random') with a budget (ratio or tokens)."""
    if name not in PRESSES:
        raise ConfigError(f"unknown KV press {name!r}; known: {', '.join(sorted(PRESSES))}")
    return PRESSES[name](budget, **options)


__all__ = ["DEFAULT_KV_BUDGET", "H2OPress", "KVBudget", "KVPress", "LayerView", "LookMPress", "PRESSES",
           "PressState", "PrunedGeneration", "RandomPress", "SnapKVPress", "StreamingLLMPress", "build_press",
           "generate_pruned"]

"""Visual-token compressors and multimodal KV-cache pruning behind one small interface.

Visual compressors (before the LLM, per frame/page grid): `OryxCompressor` (trainable), `AvgPoolCompressor`,
`BilinearCompressor`. KV presses (at prefill): `LookMPress`, and the baselines `StreamingLLMPress`, `H2OPress`,
`SnapKVPress`, `RandomPress`. `Compression` composes a visual compressor and a press.
"""

from longvlm.compression.base import Compression, VisualCompressor
from longvlm.compression.decode import PrunedGeneration, generate_pruned
from longvlm.compression.kv_baselines import H2OPress, RandomPress, SnapKVPress, StreamingLLMPress
from longvlm.compression.lookm import LookMPress
from longvlm.compression.oryx import OryxCompressor, OryxConfig
from longvlm.compression.pooling import AvgPoolCompressor, BilinearCompressor
from longvlm.compression.press import KVPress, PressState
from longvlm.compression.selection import KVBudget
from longvlm.errors import ConfigError

PRESSES = {cls.name: cls for cls in (LookMPress, StreamingLLMPress, H2OPress, SnapKVPress, RandomPress)}
VISUAL_COMPRESSORS = {cls.name: cls for cls in (AvgPoolCompressor, BilinearCompressor)}


def build_press(name: str, budget: KVBudget | float | int, **options) -> KVPress:
    """A press by name ('lookm', 'streaming', 'h2o', 'snapkv', 'random') with a budget (ratio or tokens)."""
    if name not in PRESSES:
        raise ConfigError(f"unknown KV press {name!r}; known: {', '.join(sorted(PRESSES))}")
    return PRESSES[name](budget, **options)


__all__ = ["AvgPoolCompressor", "BilinearCompressor", "Compression", "H2OPress", "KVBudget", "KVPress",
           "LookMPress", "OryxCompressor", "OryxConfig", "PRESSES", "PressState", "PrunedGeneration",
           "RandomPress", "SnapKVPress", "StreamingLLMPress", "VISUAL_COMPRESSORS", "VisualCompressor",
           "build_press", "generate_pruned"]

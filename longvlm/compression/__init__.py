"""Visual compressors: shrink each frame's/page's merged visual tokens k x k before the LLM.

`VISUAL_COMPRESSORS` is the one registry of their names (CLI `--compressor`, the demo's dropdown, the lmms-eval
model argument and the benchmarks read it): `avgpool` and `bilinear` (parameter-free) and `oryx` (trainable
region attention, Oryx's `DynamicCompressor`; untrained it starts as average pooling, see
`longvlm.compression.oryx`; trained with the LLM frozen by a config's `oryx_compressor:` section,
`longvlm.compression.training`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from longvlm.compression.base import VisualCompressor, check_factor, to_regions
from longvlm.compression.oryx import OryxCompressor, OryxConfig, saved_oryx_config
from longvlm.compression.pooling import AvgPoolCompressor, BilinearCompressor
from longvlm.errors import ConfigError


SHIPPED_COMPRESSORS = {"small": Path(__file__).resolve().parent.parent / "assets" / "oryx-compressor-small"}
"""Trained compressors shipped inside the package, by the name of the shipped model they were trained for."""


def _oryx(hidden_size: int | None, weights: str | Path | None) -> VisualCompressor:
    if weights is not None:
        compressor = OryxCompressor.from_pretrained(SHIPPED_COMPRESSORS.get(str(weights), weights))
        if hidden_size is not None and compressor.config.hidden_size != hidden_size:
            raise ConfigError(f"{weights}: an Oryx compressor for hidden size {compressor.config.hidden_size}; this "
                              f"model's visual tokens have {hidden_size} (train one for it: configs/oryx_small.yaml)")
        return compressor
    if hidden_size is None:
        raise ConfigError("an untrained oryx compressor needs the model's hidden size (build it with the model)")
    return OryxCompressor(OryxConfig(hidden_size))


VISUAL_COMPRESSORS: dict[str, Callable[[int | None, str | Path | None], VisualCompressor]] = {
    "avgpool": lambda hidden_size, weights: AvgPoolCompressor(),
    "bilinear": lambda hidden_size, weights: BilinearCompressor(),
    "oryx": _oryx,
}
"""name -> factory(hidden size of the visual tokens or None, weights directory or None)."""

TRAINABLE_COMPRESSORS = ("oryx",)


def build_compressor(name: str, hidden_size: int | None = None, weights: str | Path | None = None) -> VisualCompressor:
    """A visual compressor by registry name; `weights` (a directory saved by `save_pretrained`, or a
    `SHIPPED_COMPRESSORS` name) for trainable ones."""
    if name not in VISUAL_COMPRESSORS:
        raise ConfigError(f"unknown visual compressor {name!r}; known: {', '.join(VISUAL_COMPRESSORS)}")
    if weights is not None and name not in TRAINABLE_COMPRESSORS:
        raise ConfigError(f"the {name} compressor has no weights; --compressor-weights is for "
                          f"{', '.join(TRAINABLE_COMPRESSORS)}")
    return VISUAL_COMPRESSORS[name](hidden_size, weights)


__all__ = ["SHIPPED_COMPRESSORS", "AvgPoolCompressor", "BilinearCompressor", "OryxCompressor", "OryxConfig", "TRAINABLE_COMPRESSORS",
           "VISUAL_COMPRESSORS", "VisualCompressor", "build_compressor", "check_factor", "saved_oryx_config",
           "to_regions"]

"""Training an Oryx compressor (`longvlm.compression.oryx`) with the LLM frozen: the model-independent parts.

What trains. Only the compressor (its projections and gate), on the synthetic needle tasks of a training
config's mixture (`oryx_compressor:` section, `longvlm.training.config.OryxCompressorSection`), like the memory
bridge: each example's images / video frames are resized so that their merged-token grid divides into k x k
regions (`VisionSpec.resized(..., downsample=k)`, as the planner does at inference), encoded by the frozen vision
tower and merger, compressed k x k by the compressor (with gradients), and the frozen LLM gets the compressed
tokens at the positions of a k-times smaller grid (`longvlm.compression.visual.compress_item`, exactly the
inference path); the loss is on the answer tokens. Example i of a run uses factor `factors[i % len(factors)]`
(`factor_for`).

The LLM-facing half (prompt, forward, loss) is `longvlm.training.trainer.oryx_example_loss`: it needs
`longvlm.vlm`, a layer above this package (see `.importlinter`). Here: building the compressor for a model's
hidden size (`build_oryx`), the factor schedule and the compression of encoded items (`compress_items`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import torch

from longvlm.compression.oryx import OryxCompressor, OryxConfig
from longvlm.compression.visual import compress_item
from longvlm.errors import ConfigError

ARCHITECTURE_FIELDS = ("attn_dim", "bias", "gate")
"""OryxConfig fields that shape the weights: a compressor to start from (`init`) must have the config's."""


def build_oryx(hidden_size: int, config: OryxConfig, init: str | os.PathLike | None = None) -> OryxCompressor:
    """A new compressor of `config`'s options for `hidden_size` (seeded by the caller); or, with `init`, the one
    saved there (same hidden size and `ARCHITECTURE_FIELDS` as `config`)."""
    if init:
        compressor = OryxCompressor.from_pretrained(init)
        if compressor.config.hidden_size != hidden_size:
            raise ConfigError(f"oryx_compressor.init: the compressor has hidden size {compressor.config.hidden_size}, "
                              f"the model {hidden_size}")
        differ = [name for name in ARCHITECTURE_FIELDS if getattr(compressor.config, name) != getattr(config, name)]
        if differ:
            raise ConfigError(f"oryx_compressor.init: the saved compressor's {differ} differ from the config's ("
                              + ", ".join(f"{n}: {getattr(compressor.config, n)!r} vs {getattr(config, n)!r}"
                                          for n in differ) + ")")
        return compressor
    return OryxCompressor(dataclasses.replace(config, hidden_size=hidden_size))


def check_factors(factors: Sequence[int]) -> list[int]:
    """The training factors: a non-empty list of integers >= 2 (k = 1 runs no compressor)."""
    if not isinstance(factors, (list, tuple)) or not factors or \
            any(not isinstance(k, int) or isinstance(k, bool) or k < 2 for k in factors):
        raise ConfigError(f"oryx_compressor.factors must be a non-empty list of integers >= 2, got {factors!r}")
    return list(factors)


def factor_for(index: int, factors: Sequence[int]) -> int:
    """The factor of example number `index` of a run: the factors in turn."""
    return factors[index % len(factors)]


def compress_items(tokens: Sequence[torch.Tensor], grids: Sequence[Sequence[int]], compressor: OryxCompressor,
                   factor: int, merge_size: int = 2, *, block_width: int | None = None,
                   ) -> tuple[list[torch.Tensor], list[tuple[int, int, int]]]:
    """Merged tokens [t*h*w, C] of several items with patch grids (t, gh, gw) -> their tokens compressed k x k
    (in the compressor's dtype, with gradients to it) and the grids to report to the LLM (`block_width`: see
    `compress_item`)."""
    dtype = next(compressor.parameters()).dtype
    out = [compress_item(t.to(dtype), grid, compressor, factor, merge_size, block_width=block_width)
           for t, grid in zip(tokens, grids)]
    return [t for t, _ in out], [g for _, g in out]

"""Oryx-style dynamic compressor (trainable): region attention from pooled queries to their own features.

For a frame/page grid F [T, H, W, C] and factor k, each output cell has the k*k features f_1..f_n of its region:

    q      = mean(f_1..f_n)                                  (k x k average pool: the query)
    a_i    = softmax_i( <Wq q, Wk f_i> / sqrt(d) )           (single head, projections to a small dim d)
    output = q + g * sum_i a_i f_i

With g = 1 this is the issue's definition (output = Q + attention-weighted region features). `g` is a learned
scalar gate; `gate_init` = 0 (the default) makes an untrained compressor start as plain average pooling, so
that it is harmless before training, and training opens the gate (the gradient of g is non-zero at 0).
k = 1 returns the grid unchanged. Random weights run and keep shapes/positions right; the weights are learned
by the training issue (save with `save_pretrained`, load with `from_pretrained`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
from torch import nn

from longvlm.compression.base import VisualCompressor, to_regions
from longvlm.serialization import load_module, save_module
from longvlm.errors import ConfigError

CONFIG_NAME = "oryx_compressor.json"
WEIGHTS_NAME = "oryx_compressor.safetensors"


@dataclass
class OryxConfig:
    """`hidden_size`: the LLM hidden size of the visual tokens; `attn_dim`: the query/key projection size."""

    hidden_size: int
    attn_dim: int = 64
    gate_init: float = 0.0

    def __post_init__(self) -> None:
        if self.hidden_size < 1 or self.attn_dim < 1:
            raise ConfigError(f"OryxConfig sizes must be positive, got {self}")


class OryxCompressor(VisualCompressor):
    """Trainable region-attention compressor; see the module docstring for the exact formula."""

    name = "oryx"

    def __init__(self, config: OryxConfig) -> None:
        super().__init__()
        self.config = config
        self.query_proj = nn.Linear(config.hidden_size, config.attn_dim, bias=False)
        self.key_proj = nn.Linear(config.hidden_size, config.attn_dim, bias=False)
        self.gate = nn.Parameter(torch.tensor(float(config.gate_init)))

    def reduce(self, grid: torch.Tensor, factor: int) -> torch.Tensor:
        if grid.shape[-1] != self.config.hidden_size:
            raise ConfigError(f"Oryx compressor built for hidden size {self.config.hidden_size}, "
                              f"got features of size {grid.shape[-1]}")
        regions = to_regions(grid, factor)  # [T, H', W', n, C]
        query = regions.mean(dim=-2)  # [T, H', W', C]
        logits = torch.einsum("thwd,thwnd->thwn", self.query_proj(query), self.key_proj(regions))
        weights = (logits / math.sqrt(self.config.attn_dim)).softmax(dim=-1)
        attended = torch.einsum("thwn,thwnc->thwc", weights, regions)
        return query + self.gate.to(grid.dtype) * attended

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write the config (JSON) and weights (safetensors) to a directory."""
        save_module(self, self.config, path, CONFIG_NAME, WEIGHTS_NAME)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> OryxCompressor:
        """Load a compressor written by `save_pretrained` (no pickle: JSON + safetensors)."""
        return load_module(cls, OryxConfig, path, CONFIG_NAME, WEIGHTS_NAME, "Oryx compressor")

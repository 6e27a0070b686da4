"""Oryx-style dynamic compressor (trainable): region attention from pooled queries to their own features.

A transcription of Oryx's `DynamicCompressor` (github Oryx-mllm/Oryx, oryx/model/multimodal_resampler/
perceiver.py:13-70). For a frame/page grid F [T, H, W, C] and factor k, each output cell has the k*k features
f_1..f_n of its region (row-major inside it, as Oryx's reshape/permute at perceiver.py:40 and :48):

    q      = mean(f_1..f_n)                                            (k x k average pool: the query)
    a_i    = softmax_i( <Wq q + bq, Wk f_i + bk> / sqrt(d) )           (single head, projections to d = attn_dim)
    output = q + g * sum_i a_i f_i

Options (`OryxConfig`), Oryx's choice first where it is the default:

* `bias` (True, Oryx's nn.Linear): the projection biases bq, bk. bk adds the same <Wq q + bq, bk> to every
  logit of a region, so it cancels in the softmax; bq does not (it scores the keys by bq . Wk f_i).
* `attn_dim` (256, Oryx's `mid_channel`): d.
* `gate` ("learned", ours): a learned scalar g, starting at `gate_init` = 0, so that an untrained compressor is
  plain average pooling (harmless before training) and training opens the gate (the gradient of g is non-zero
  at 0). "none" is Oryx's: no gate, g = 1 (untrained, the output is about twice the pooled features).
* `identity_mode` ("x", ours): what k = 1 returns. "x": the grid unchanged, like every compressor (and the
  pipeline never runs a compressor at k = 1: `longvlm.compression.visual.compress_item`). "x+x": the formula on
  1 x 1 regions, x + g x (x + x with g = 1), Oryx's 'image' mode (perceiver.py:42-45, :68). Oryx feeds that to a
  projector trained on it; here the tokens go straight to an LLM that was trained on x.

Placement. Oryx compresses the vision tower's features *before* its projector (oryx/model/oryx_arch.py:149-155:
`vision_resampler`, then `mm_projector`), in the tower's hidden size. Here the compressor runs *after* Qwen2-VL's
patch merger (the merger is the projector), on the merged tokens, in the LLM's hidden size
(`longvlm.compression.visual`): the same formula on other features, so Oryx's trained weights do not transfer.

Weights are trained with the LLM frozen (`oryx_compressor:` section of a training config,
`longvlm.compression.training`), saved with `save_pretrained` and loaded with `from_pretrained` /
`build_compressor("oryx", weights=DIR)`. A config saved before an option existed loads with the behaviour it was
saved with (`saved_oryx_config`: no biases, identity "x", learned gate).
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

IDENTITY_MODES = ("x", "x+x")
GATE_MODES = ("learned", "none")
LEGACY_OPTIONS = {"bias": False, "identity_mode": "x", "gate": "learned"}
"""The behaviour of compressors saved before these options existed: a saved config without a key loads with it."""


@dataclass
class OryxConfig:
    """`hidden_size`: the LLM hidden size of the visual tokens (None in a training config: the trained model's,
    filled in by `longvlm.compression.training.build_oryx`); `attn_dim`: the query/key projection size;
    `gate_init`: the learned gate's start; `bias`: projection biases; `identity_mode`: what k = 1 returns ("x" or
    Oryx's "x+x"); `gate`: "learned" or Oryx's "none" (g = 1). See the module docstring."""

    hidden_size: int | None = None
    attn_dim: int = 256
    gate_init: float = 0.0
    bias: bool = True
    identity_mode: str = "x"
    gate: str = "learned"

    def __post_init__(self) -> None:
        sizes = {"attn_dim": self.attn_dim, **({} if self.hidden_size is None else {"hidden_size": self.hidden_size})}
        bad = sorted(k for k, v in sizes.items() if not isinstance(v, int) or isinstance(v, bool) or v < 1)
        if bad:
            raise ConfigError(f"OryxConfig: {bad} must be positive integers, got {self}")
        if not isinstance(self.bias, bool):
            raise ConfigError(f"OryxConfig: bias must be true or false, got {self.bias!r}")
        if isinstance(self.gate_init, bool) or not isinstance(self.gate_init, (int, float)):
            raise ConfigError(f"OryxConfig: gate_init must be a number, got {self.gate_init!r}")
        if self.identity_mode not in IDENTITY_MODES:
            raise ConfigError(f"OryxConfig: identity_mode must be one of {IDENTITY_MODES}, got {self.identity_mode!r}")
        if self.gate not in GATE_MODES:
            raise ConfigError(f"OryxConfig: gate must be one of {GATE_MODES}, got {self.gate!r}")


def saved_oryx_config(**saved) -> OryxConfig:
    """The config of a saved compressor's JSON; keys it lacks keep the behaviour it was saved with
    (`LEGACY_OPTIONS`), not today's defaults."""
    return OryxConfig(**{**LEGACY_OPTIONS, **saved})


class OryxCompressor(VisualCompressor):
    """Trainable region-attention compressor; see the module docstring for the exact formula."""

    name = "oryx"

    def __init__(self, config: OryxConfig) -> None:
        super().__init__()
        if config.hidden_size is None:
            raise ConfigError("Oryx compressor config without a hidden_size: build it for a model "
                              "(longvlm.compression.training.build_oryx)")
        self.config = config
        self.query_proj = nn.Linear(config.hidden_size, config.attn_dim, bias=config.bias)
        self.key_proj = nn.Linear(config.hidden_size, config.attn_dim, bias=config.bias)
        if config.gate == "learned":
            self.gate = nn.Parameter(torch.tensor(float(config.gate_init)))
        else:
            self.gate = None

    def identity(self, grid: torch.Tensor) -> torch.Tensor:
        return grid if self.config.identity_mode == "x" else self.reduce(grid, 1)

    def reduce(self, grid: torch.Tensor, factor: int) -> torch.Tensor:
        if grid.shape[-1] != self.config.hidden_size:
            raise ConfigError(f"Oryx compressor built for hidden size {self.config.hidden_size}, "
                              f"got features of size {grid.shape[-1]}")
        regions = to_regions(grid, factor)  # [T, H', W', n, C]
        query = regions.mean(dim=-2)  # [T, H', W', C]
        logits = torch.einsum("thwd,thwnd->thwn", self.query_proj(query), self.key_proj(regions))
        weights = (logits / math.sqrt(self.config.attn_dim)).softmax(dim=-1)
        attended = torch.einsum("thwn,thwnc->thwc", weights, regions)
        if self.gate is None:
            return query + attended
        return query + self.gate.to(grid.dtype) * attended

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write the config (JSON) and weights (safetensors) to a directory."""
        save_module(self, self.config, path, CONFIG_NAME, WEIGHTS_NAME)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> OryxCompressor:
        """Load a compressor written by `save_pretrained` (no pickle: JSON + safetensors)."""
        return load_module(cls, saved_oryx_config, path, CONFIG_NAME, WEIGHTS_NAME, "Oryx compressor")

"""KV budgets and the exact top-k selection every press shares.

Layout of a pruned cache. Row b of a (left-padded) batch has n_b real prompt tokens and keeps k_b of them
(`KVBudget.keep`). All rows share one cache length K = max_b k_b, so row b has K - k_b unused slots; they come
first (like left padding) and are masked out during decoding. `Selection.slot_mask` [B, K] marks the used
slots and is the same for every layer and head; which token sits in a slot may differ per head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from longvlm.errors import ConfigError

DEFAULT_KV_BUDGET = 0.2
"""KV tokens kept when a press is named without a budget: a ratio of the prompt."""


@dataclass(frozen=True)
class KVBudget:
    """How many prompt tokens each row keeps: `ratio` of its real tokens (rounded half up, at least 1), or an
    absolute number of `tokens` (all of them when the prompt is shorter)."""

    ratio: float | None = None
    tokens: int | None = None

    def __post_init__(self) -> None:
        if (self.ratio is None) == (self.tokens is None):
            raise ConfigError("a KV budget is either a ratio or a token count, not both or neither")
        if self.ratio is not None and not 0.0 < self.ratio <= 1.0:
            raise ConfigError(f"KV budget ratio must be in (0, 1], got {self.ratio}")
        if self.tokens is not None and self.tokens < 1:
            raise ConfigError(f"KV budget must keep at least 1 token, got {self.tokens}")

    @classmethod
    def parse(cls, value: KVBudget | float | int) -> KVBudget:
        """A float in (0, 1] is a ratio; an int >= 1 a token count."""
        if isinstance(value, KVBudget):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"KV budget must be a ratio (float) or a token count (int), got {value!r}")
        return cls(tokens=value) if isinstance(value, int) else cls(ratio=float(value))

    def keep(self, lengths: torch.Tensor) -> torch.Tensor:
        """Tokens to keep for rows with `lengths` real tokens (long tensor [B])."""
        lengths = lengths.long()
        if self.ratio is not None:
            wanted = torch.floor(lengths.double() * self.ratio + 0.5).long().clamp(min=1)
        else:
            wanted = torch.full_like(lengths, self.tokens)
        return torch.minimum(wanted, lengths)

    def __str__(self) -> str:
        return f"{self.ratio * 100:g}%" if self.ratio is not None else f"{self.tokens} tokens"


@dataclass
class Selection:
    """Which cached token each slot keeps: `indices` [B, H, K] (cache positions, arbitrary in unused slots),
    `slot_mask` [B, K] (True for used slots), `kept` [B, H, L] (True for kept prompt tokens)."""

    indices: torch.Tensor
    slot_mask: torch.Tensor
    kept: torch.Tensor


def select_tokens(priority: torch.Tensor, real: torch.Tensor, counts: torch.Tensor) -> Selection:
    """Keep, per row and head, the `counts[b]` real tokens of highest `priority` [B, H, L] (ties broken by
    torch.topk), laid out in their original order after the unused slots (see the module docstring)."""
    batch, heads, length = priority.shape
    if real.shape != (batch, length):
        raise RuntimeError(f"real-token mask {tuple(real.shape)} does not match priorities {tuple(priority.shape)}")
    counts = counts.to(priority.device)
    if bool((counts > real.sum(-1)).any()) or bool((counts < 1).any()):
        raise RuntimeError("cannot keep more tokens than a row has, or none")
    width = int(counts.max())
    masked = priority.float().masked_fill(~real[:, None, :], float("-inf"))
    top = masked.topk(width, dim=-1).indices  # [B, H, K], best first
    used = torch.arange(width, device=priority.device)[None, :] < counts[:, None]  # [B, K] by rank
    order = torch.where(used[:, None, :], top, torch.full_like(top, -1)).sort(dim=-1).indices
    indices = top.gather(-1, order)
    slot_mask = torch.arange(width, device=priority.device)[None, :] >= (width - counts)[:, None]
    kept = torch.zeros(batch, heads, length, dtype=torch.bool, device=priority.device)
    kept.scatter_(-1, indices, slot_mask[:, None, :].expand(-1, heads, -1))
    return Selection(indices, slot_mask, kept)


def gather_slots(states: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """[B, H, L, D] cache states -> [B, H, K, D] states of the selected slots."""
    return states.gather(2, indices[..., None].expand(-1, -1, -1, states.shape[-1]))

"""KV presses: prune the KV cache of every attention layer at the end of prefill (kvpress-style hooks).

    with press(model) as state:          # forward pre-hook on the model, forward hooks on its attention layers
        model.generate(**inputs)         # batch of 1; or longvlm.presses.decode.generate_pruned for any batch

During the prefill forward (empty cache, whole prompt at once) each attention layer first attends over all its
keys as usual; its hook then scores the cached keys, keeps `budget` of them per row and head (`keep_counts`;
exact unless a press option says otherwise) and writes the smaller tensors back into the `DynamicCache` layer.
The prefill output is therefore unchanged; decoding sees the pruned cache. Which entries are text / image /
video tokens comes from the `mm_token_type_ids` the model is called with; padding from its 2D `attention_mask`
(left padding only).

Decoding must use the ORIGINAL positions: the pruned cache is shorter than the prompt, so positions derived from
the cache length (transformers' `rope_deltas` path) would be wrong. `generate()` tracks `position_ids` itself
(original positions); `generate_pruned` builds them explicitly. The pre-hook refuses decode calls whose positions
or attention mask do not fit the pruned cache, instead of silently decoding with wrong ones.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields

import torch
from torch import nn
from transformers.cache_utils import DynamicLayer

from longvlm.presses.budget import DEFAULT_KV_BUDGET, KVBudget, Selection, gather_slots, select_tokens
from longvlm.errors import ConfigError
from longvlm.encoded import IMAGE, VIDEO


@dataclass
class LayerView:
    """What a press sees of one attention layer at the end of prefill."""

    module: nn.Module  # the attention module (q_proj, head_dim, scaling, layer_idx)
    hidden_states: torch.Tensor  # [B, L, C] input of the attention (after the layer norm)
    cos: torch.Tensor  # [B, L, D] rotary embedding of the prompt positions
    sin: torch.Tensor
    keys: torch.Tensor  # [B, Hkv, L, D] cached (rotated) keys
    values: torch.Tensor  # [B, Hkv, L, D]
    real: torch.Tensor  # [B, L] bool, False for padding
    token_types: torch.Tensor  # [B, L] 0 text, 1 image, 2 video
    counts: torch.Tensor  # [B] tokens to keep per row

    @property
    def length(self) -> int:
        return int(self.keys.shape[2])

    def recent(self, window: int | torch.Tensor) -> torch.Tensor:
        """[B, L] bool: the last `window` real tokens of each row (an int, or a [B] tensor of per-row counts;
        rows are left-padded)."""
        return recent_mask(self.real, window)

    def index_in_row(self) -> torch.Tensor:
        """[B, L] position of each token among its row's real tokens (negative for padding)."""
        start = self.length - self.real.sum(-1, keepdim=True)
        return torch.arange(self.length, device=self.real.device)[None, :] - start

    def visual(self) -> torch.Tensor:
        """[B, L] bool: image or video tokens."""
        return (self.token_types == IMAGE) | (self.token_types == VIDEO)


def recent_mask(real: torch.Tensor, window: int | torch.Tensor) -> torch.Tensor:
    """[B, L] bool: the last `window` (int or [B] tensor) real tokens of each left-padded row of `real` [B, L]."""
    length = real.shape[1]
    window = torch.as_tensor(window, device=real.device).long().reshape(-1, 1)  # [1, 1] or [B, 1]
    return (torch.arange(length, device=real.device)[None, :] >= length - window) & real


def window_tokens(window: int | float, real: torch.Tensor, minimum: int = 0) -> torch.Tensor:
    """[B] recent-window size of each row: `window` tokens (int), or a ratio (float in (0, 1)) of the row's real
    tokens rounded down like the reference's `int(L * recent_ratio)`; at least `minimum`, at most the row."""
    lengths = real.sum(-1).long()
    if isinstance(window, float):
        sizes = torch.floor(lengths.double() * window).long()
    else:
        sizes = torch.full_like(lengths, window)
    return torch.minimum(sizes.clamp(min=minimum), lengths)


def tiered(scores: torch.Tensor, tier: torch.Tensor) -> torch.Tensor:
    """Priorities that rank by `tier` [B, L] (or [B, H, L]) first and by `scores` [B, H, L] inside a tier:
    scores are scaled to [0, 1) per row and head, then the integer tier is added."""
    scores = scores.float()
    low = scores.amin(dim=-1, keepdim=True)
    span = (scores.amax(dim=-1, keepdim=True) - low).clamp(min=1e-12)
    scaled = (scores - low) / span * 0.999
    tier = tier if tier.ndim == 3 else tier[:, None, :]
    return scaled + tier.float()


@dataclass
class PressState:
    """What a press did at prefill, and what decoding needs to know about the pruned cache."""

    press: str
    prompt_length: int = 0  # L, padded prompt length
    real_lengths: torch.Tensor | None = None  # [B] real prompt tokens per row (original lengths)
    keep_counts: torch.Tensor | None = None  # [B] tokens kept per row
    slot_mask: torch.Tensor | None = None  # [B, K] used cache slots (the decode attention mask prefix)
    layers_pruned: int = 0
    time_s: float = 0.0
    kept_indices: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [B, H, K], -1 unused slots

    def reset(self, prompt_length: int, real_lengths: torch.Tensor, keep_counts: torch.Tensor) -> None:
        """Start recording a new prefill."""
        self.prompt_length, self.real_lengths, self.keep_counts = prompt_length, real_lengths, keep_counts
        self.slot_mask, self.layers_pruned, self.time_s, self.kept_indices = None, 0, 0.0, {}

    @property
    def cache_length(self) -> int:
        """K: length of every pruned cache layer."""
        return 0 if self.slot_mask is None else int(self.slot_mask.shape[1])

    @property
    def pruned(self) -> torch.Tensor:
        """[B] prompt tokens removed per row."""
        return self.real_lengths - self.keep_counts


def _runtime(default=None):
    """A field of the per-block runtime state: not a hyperparameter (no init, repr or comparison)."""
    return field(default=default, init=False, repr=False, compare=False)


@dataclass
class KVPress(ABC):
    """Base of all presses: hooks, exact budgets, and the shared select-and-gather (kvpress-style).

    A press is a dataclass of its hyperparameters: repr, ==, hash and `dataclasses.replace` see only those;
    the fields below are the runtime state of one `with press(model)` block. Subclasses provide `budget`,
    `record_indices` and `priority` (higher is kept), and may override `compress` (merging presses) and
    `keep_counts` (tokens kept per row; the exact budget by default).
    """

    name = "press"
    clock = staticmethod(time.perf_counter)  # times `PressState.time_s`; benchmarks may swap in a CPU clock

    state: PressState | None = _runtime()
    _armed: bool = _runtime(False)
    _real: torch.Tensor | None = _runtime()  # [B, L] real (non-padding) prompt tokens of the current prefill
    _types: torch.Tensor | None = _runtime()  # [B, L] token types
    _counts: torch.Tensor | None = _runtime()  # [B] tokens to keep per row
    _length_layer: int = _runtime(0)  # index of a softmax-attention layer: its cache length is the prompt's

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        # `@dataclass` keeps the methods a class defines itself: every press shares this repr and hash.
        for method in ("__repr__", "__hash__"):
            if method not in cls.__dict__:
                setattr(cls, method, getattr(KVPress, method))

    def __post_init__(self) -> None:
        """Validation of the hyperparameters (subclasses extend it)."""

    def hyperparameters(self) -> dict:
        """The fields that define the press (those compared and shown)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.compare}

    def __repr__(self) -> str:
        shown = (f"{f.name}={_show(getattr(self, f.name))}" for f in fields(self) if f.repr)
        return f"{type(self).__name__}({', '.join(shown)})"

    def __hash__(self) -> int:
        return hash((type(self), *self.hyperparameters().values()))

    def keep_counts(self, real: torch.Tensor, token_types: torch.Tensor) -> torch.Tensor:
        """[B] tokens each row keeps, from its real-token mask and token types [B, L]: the budget (exact) unless a
        press overrides it (LOOK-M's `protect_all_text`)."""
        return self.budget.keep(real.sum(-1))

    @abstractmethod
    def priority(self, view: LayerView) -> torch.Tensor:
        """[B, Hkv, L] keep priority of each cached token (higher is kept)."""

    def compress(self, view: LayerView) -> tuple[torch.Tensor, torch.Tensor, Selection]:
        """Pruned (keys, values) [B, Hkv, K, D] of one layer, and the selection made."""
        selection = select_tokens(self.priority(view), view.real, view.counts)
        return gather_slots(view.keys, selection.indices), gather_slots(view.values, selection.indices), selection

    @contextmanager
    def __call__(self, model: nn.Module) -> Iterator[PressState]:
        """Prune at the prefill of every forward of `model` inside the block; yields the state it fills."""
        self.state = PressState(self.name)
        handles = [model.register_forward_pre_hook(self._on_model_call, with_kwargs=True)]
        attentions = attention_modules(model)
        # the cache length that counts: a softmax-attention layer's (a linear-attention layer counts every token)
        self._length_layer = attentions[0].layer_idx if attentions else 0
        for attention in attentions:
            handles.append(attention.register_forward_hook(self._on_attention, with_kwargs=True))
        try:
            yield self.state
        finally:
            for handle in handles:
                handle.remove()
            self._armed = False
            self._real = self._types = self._counts = None

    # -- hooks ---------------------------------------------------------------------------------------------

    def _on_model_call(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        tokens = kwargs.get("input_ids", args[0] if args else None)
        if tokens is None:
            tokens = kwargs.get("inputs_embeds")
        cache = kwargs.get("cache")
        past = cache.get_seq_length(self._length_layer) if cache is not None else 0
        batch, length = int(tokens.shape[0]), int(tokens.shape[1])
        mask = kwargs.get("attention_mask")
        if past == 0:
            types = kwargs.get("mm_token_type_ids")
            if types is None and tokens.dtype == torch.long:  # models without token types (Kimi): from the ids
                types = token_types_from_ids(tokens, module.config)
            self._start_prefill(batch, length, mask, types, tokens.device)
            return
        if length > 1 and self.state.slot_mask is not None:
            raise ConfigError(f"{self.name}: several new tokens on a pruned cache (chunked prefill or a follow-up "
                              "turn); KV pruning needs the whole prompt in one prefill pass")
        self._armed = False
        if self.state.slot_mask is not None and bool(self.state.pruned.any()):
            self._check_decode_call(kwargs, mask, past, length)

    def _start_prefill(self, batch: int, length: int, mask: torch.Tensor | None, types: torch.Tensor | None,
                       device: torch.device) -> None:
        if mask is not None and (not isinstance(mask, torch.Tensor) or mask.ndim != 2):
            raise ConfigError(f"{self.name}: needs a 2D attention mask (or none)")
        real = torch.ones(batch, length, dtype=torch.bool, device=device) if mask is None else mask.bool()
        if bool((real[:, 1:] < real[:, :-1]).any()):
            raise ConfigError(f"{self.name}: rows must be left-padded (tokenizer padding_side='left')")
        self._real = real
        self._types = torch.zeros_like(real, dtype=torch.long) if types is None else types.long().to(device)
        lengths = real.sum(-1)
        self._counts = self.keep_counts(real, self._types).to(device)
        self.state.reset(length, lengths, self._counts)  # the object the context manager yielded
        self._armed = length > 1 and bool((lengths > 0).all())

    def _check_decode_call(self, kwargs: dict, mask: torch.Tensor | None, past: int, length: int) -> None:
        if kwargs.get("position_ids") is None:
            raise ConfigError(f"{self.name}: decoding on a pruned cache needs explicit position_ids (the model would "
                              "derive them from the shorter cache); use generate() or generate_pruned()")
        slots = self.state.slot_mask
        expected = torch.cat([slots, slots.new_ones(slots.shape[0], past + length - slots.shape[1])], dim=1)
        if mask is None:
            if not bool(expected.all()):
                raise ConfigError(f"{self.name}: a padded batch needs the pruned cache's attention mask; "
                                  "decode with generate_pruned()")
        elif mask.ndim != 2 or mask.shape[1] < expected.shape[1] or not torch.equal(
                mask[:, :expected.shape[1]].bool(), expected.to(mask.device)):
            raise ConfigError(f"{self.name}: the attention mask does not match the pruned cache (rows pruned by "
                              "different amounts); decode with generate_pruned()")

    @torch.no_grad()
    def _on_attention(self, module: nn.Module, args: tuple, kwargs: dict, output) -> None:
        if not self._armed:
            return
        cache = kwargs.get("cache")
        if cache is None:
            return
        layer = cache.layers[module.layer_idx]
        if type(layer) is not DynamicLayer:
            raise ConfigError(f"{self.name}: KV pruning supports full-attention DynamicCache layers, "
                              f"got {type(layer).__name__}")
        started = self.clock()
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        cos, sin = kwargs["position_embeddings"]
        if layer.keys.shape[2] != hidden.shape[1]:
            raise ConfigError(f"{self.name}: cache holds {layer.keys.shape[2]} tokens but the prefill had "
                              f"{hidden.shape[1]}; prune only from an empty cache")
        view = LayerView(module, hidden, cos, sin, layer.keys, layer.values, self._real, self._types, self._counts)
        keys, values, selection = self.compress(view)
        layer.keys, layer.values = keys.contiguous(), values.contiguous()
        state = self.state
        if state.slot_mask is None:
            state.slot_mask = selection.slot_mask
        state.layers_pruned += 1
        if self.record_indices:
            state.kept_indices[module.layer_idx] = torch.where(
                selection.slot_mask[:, None, :], selection.indices, torch.full_like(selection.indices, -1))
        state.time_s += self.clock() - started


def _show(value) -> str:
    return str(value) if isinstance(value, KVBudget) else repr(value)


@dataclass
class ScorerPress(KVPress):
    """A press that keeps, per row and head, the `budget` real tokens of highest `priority` (kvpress's
    ScorerPress). `budget`: ratio in (0, 1] or token count (`KVBudget.parse`); `record_indices` stores the
    kept positions per layer in `PressState.kept_indices`."""

    budget: KVBudget | float | int = DEFAULT_KV_BUDGET
    record_indices: bool = field(default=False, kw_only=True, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.budget = KVBudget.parse(self.budget)
        if not isinstance(self.record_indices, bool):
            raise ConfigError(f"record_indices must be a bool, got {self.record_indices!r}")


def require_window(press: KVPress, name: str = "window", minimum: int = 1) -> None:
    """ConfigError unless hyperparameter `name` of `press` is a token count (int >= `minimum`) or a ratio of the
    prompt (float in (0, 1))."""
    value = getattr(press, name)
    if isinstance(value, float):
        if not 0.0 < value < 1.0:
            raise ConfigError(f"{type(press).__name__}: {name} as a ratio of the prompt must be in (0, 1), "
                              f"got {value!r}")
        return
    require_int(press, name, minimum)


def require_choice(press: KVPress, name: str, choices: tuple) -> None:
    """ConfigError unless hyperparameter `name` of `press` is one of `choices`."""
    value = getattr(press, name)
    if isinstance(value, bool) or value not in choices:
        raise ConfigError(f"{type(press).__name__}: {name} must be one of {', '.join(map(repr, choices))}, "
                          f"got {value!r}")


def require_bool(press: KVPress, name: str) -> None:
    """ConfigError unless hyperparameter `name` of `press` is a bool."""
    if not isinstance(getattr(press, name), bool):
        raise ConfigError(f"{type(press).__name__}: {name} must be a bool, got {getattr(press, name)!r}")


def require_int(press: KVPress, name: str, minimum: int | None = None) -> None:
    """ConfigError unless hyperparameter `name` of `press` is an int (not a bool) >= `minimum`."""
    value = getattr(press, name)
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ConfigError(f"{type(press).__name__}: {name} must be an integer{bound}, got {value!r}")


def token_types_from_ids(input_ids: torch.Tensor, config) -> torch.Tensor:
    """[B, L] token types (0 text, 1 image, 2 video) from the placeholder ids of a model config."""
    types = torch.zeros_like(input_ids)
    for kind, name in ((IMAGE, "image_token_id"), (VIDEO, "video_token_id")):
        token = getattr(config, name, None)
        if token is not None:
            types[input_ids == token] = kind
    return types


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The softmax self-attention modules of the language model (in layer order): every layer of Qwen2-VL,
    Qwen2.5-VL, Qwen3-VL and Kimi K2.5 (latent attention: the press prunes the cached latent per token);
    Qwen3.5's full-attention layers only (its linear-attention layers keep a fixed-size recurrent state
    instead of keys and values, so there is nothing to prune there)."""
    language_model = getattr(getattr(model, "model", None), "language_model", None)
    layers = getattr(language_model, "layers", None)
    if layers is None:
        raise ConfigError(f"{type(model).__name__}: no model.language_model.layers; KV presses support "
                          "the model families of longvlm.vlm.families")
    return [layer.self_attn for layer in layers if hasattr(layer, "self_attn")]


__all__ = ["KVPress", "LayerView", "PressState", "ScorerPress", "attention_modules", "recent_mask", "require_bool",
           "require_choice", "require_int", "require_window", "tiered", "token_types_from_ids", "window_tokens"]

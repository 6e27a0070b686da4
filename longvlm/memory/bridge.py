"""VideoLLaMB-style recurrent memory bridge (arXiv 2409.01071), trainable.

For segment k with merged visual tokens V_k [N_k, C] (C = LLM hidden size) and memory m_{k-1} [M, C]:

    w_k     = BridgeLayers([m_{k-1}; V_k])[:M]                  self-attention + FFN (torch TransformerEncoderLayer,
                                                                pre-norm): the written memory
    R(w, K) = w + g * CrossAttn(q = LN(w), kv = LN(K))          retrieval over cache entries K, learned gate g

and the order of retrieval and caching is `MemoryBridgeConfig.retrieval_order`:

* "cache_first" (VideoLLaMB, llava/model/multimodal_projector/rmt_r_transformer_projector.py:390-397, the
  default for new bridges): cache <- cache + [w_k], then m_k = R(w_k, cache): the retrieval sees the current
  memory too and the cache holds the written (pre-retrieval) memories;
* "retrieve_first" (what bridges saved before this option were trained with, so a saved config without the key
  loads as it, e.g. the shipped `memory-bridge-small`): m_k = R(w_k, cache) over the earlier entries only
  (m_k = w_k while the cache is empty), then cache <- cache + [m_k].

m_0 is a learned parameter (`memory_init`). The cache is bounded (`cache_size`, merging adjacent entries, see
`longvlm.memory.state`; VideoLLaMB's grows without bound): with "cache_first" the retrieval sees the bounded
cache plus the new entry, and the merge follows. Each step costs O((M + N_k)^2 + M * cache_size * M), so streaming
a video is linear in its length and the state is constant once the cache is full. (VideoLLaMB's retrieval layer
is post-norm, LN(w + Dense(CrossAttn(w, K))), without a gate: a parameterisation this module does not transcribe.)

The LLM is given m_k (as a small image block of M tokens) and the tokens of one segment: the current one, or one
chosen for the question (`longvlm.memory.streaming`). The choice scores each cache entry against the question
(`relevance_scores`): with `relevance_dim` > 0 by learned projections, trained with a selection loss towards the
entry that holds the answer (`longvlm.memory.training`),

    score_k = max_j  (W_q q) . (W_k LN(c_kj)) / sqrt(d)      q: the question's mean input embedding [C]

otherwise (bridges saved before this existed) by the untrained cosine similarity of q with the entry's mean memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from torch import nn

from longvlm.memory.state import CacheSpan, MemoryState, _merge_adjacent
from longvlm.serialization import load_module, save_module
from longvlm.errors import ConfigError

CONFIG_NAME = "memory_bridge.json"
WEIGHTS_NAME = "memory_bridge.safetensors"

RETRIEVAL_ORDERS = ("cache_first", "retrieve_first")
LEGACY_RETRIEVAL_ORDER = "retrieve_first"
"""The order of bridges saved before `retrieval_order` existed: a saved config without the key loads with it."""


@dataclass
class MemoryBridgeConfig:
    """`hidden_size`: the LLM hidden size (None in a training config: the hidden size of the model the bridge is
    built for, filled in by `longvlm.memory.training.build_bridge`); `num_memory_tokens` M; bridge `num_layers`
    of `num_heads` heads and FFN size `ffn_mult` * hidden; `cache_size`: most memories kept for retrieval;
    `model_signature`: the `model_signature` of the VLM the bridge was trained with (recorded by training; empty:
    not recorded); `relevance_dim`: width of the learned question / cache-entry projections that score entries
    (0: untrained cosine similarity); `retrieval_order`: "cache_first" (VideoLLaMB's: the written memory joins
    the cache, then retrieves over it) or "retrieve_first" (retrieve over earlier memories, then cache the result;
    saved bridges without the key, e.g. the shipped one, load with it). See the module docstring."""

    hidden_size: int | None = None
    num_memory_tokens: int = 32
    num_layers: int = 1
    num_heads: int = 4
    ffn_mult: int = 2
    cache_size: int = 16
    dropout: float = 0.0
    model_signature: list[float] = field(default_factory=list)
    relevance_dim: int = 0
    retrieval_order: str = "cache_first"

    def __post_init__(self) -> None:
        sizes = ["num_memory_tokens", "num_layers", "num_heads", "ffn_mult", "cache_size"]
        if self.hidden_size is not None:
            sizes.insert(0, "hidden_size")
        bad = [name for name in sizes if not _is_int(getattr(self, name)) or getattr(self, name) < 1]
        if bad:
            raise ConfigError(f"memory bridge: {bad} must be positive integers, got "
                              f"{[getattr(self, name) for name in bad]}")
        if not _is_int(self.relevance_dim) or self.relevance_dim < 0:
            raise ConfigError(f"memory bridge: relevance_dim must be an integer >= 0, got {self.relevance_dim!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ConfigError(f"memory bridge: dropout must be in [0, 1), got {self.dropout!r}")
        if self.retrieval_order not in RETRIEVAL_ORDERS:
            raise ConfigError(f"memory bridge: retrieval_order must be one of {RETRIEVAL_ORDERS}, got "
                              f"{self.retrieval_order!r}")
        if self.hidden_size is not None and self.hidden_size % self.num_heads:
            raise ConfigError(f"memory bridge: hidden_size {self.hidden_size} is not divisible by "
                              f"num_heads {self.num_heads}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def saved_bridge_config(**saved) -> MemoryBridgeConfig:
    """The config of a saved bridge's JSON: keys it lacks keep the behaviour it was trained with
    (`retrieval_order`: `LEGACY_RETRIEVAL_ORDER`), not today's defaults."""
    return MemoryBridgeConfig(**{"retrieval_order": LEGACY_RETRIEVAL_ORDER, **saved})


class MemoryBridge(nn.Module):
    """Bridge layers + retrieval attention over a memory cache; see the module docstring for the formulas."""

    def __init__(self, config: MemoryBridgeConfig) -> None:
        super().__init__()
        if config.hidden_size is None:
            raise ConfigError("memory bridge config without a hidden_size: build the bridge for a model "
                              "(longvlm.memory.training.build_bridge)")
        self.config = config
        c = config.hidden_size
        self.memory_init = nn.Parameter(torch.randn(config.num_memory_tokens, c) * 0.02)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(c, config.num_heads, config.ffn_mult * c, config.dropout, activation="gelu",
                                       batch_first=True, norm_first=True) for _ in range(config.num_layers))
        self.query_norm = nn.LayerNorm(c)
        self.cache_norm = nn.LayerNorm(c)
        self.retrieval = nn.MultiheadAttention(c, config.num_heads, dropout=config.dropout, batch_first=True)
        self.retrieval_gate = nn.Parameter(torch.tensor(1.0))
        if config.relevance_dim:
            self.relevance_norm = nn.LayerNorm(c)
            self.relevance_query = nn.Linear(c, config.relevance_dim)
            self.relevance_key = nn.Linear(c, config.relevance_dim)

    @property
    def num_memory_tokens(self) -> int:
        return self.config.num_memory_tokens

    def write(self, memory: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The bridge layers over [memory; segment tokens] -> the written memory w [M, C] (before retrieval)."""
        m = self.num_memory_tokens
        if tokens.ndim != 2 or tokens.shape[-1] != self.config.hidden_size:
            raise ConfigError(f"memory bridge built for hidden size {self.config.hidden_size}, got segment "
                              f"tokens of shape {tuple(tokens.shape)}")
        dtype = self.memory_init.dtype
        x = torch.cat([memory.to(dtype), tokens.to(dtype)])[None]
        for layer in self.layers:
            x = layer(x)
        return x[0, :m]

    def retrieve(self, memory: torch.Tensor, cache: torch.Tensor | None) -> torch.Tensor:
        """R(w, K) = w + g * CrossAttn(LN(w), LN(K)) over cache entries K [K, M, C]; w itself when K is empty."""
        if cache is None or cache.shape[0] == 0:
            return memory
        keys = self.cache_norm(cache.to(memory.dtype).reshape(1, -1, cache.shape[-1]))
        retrieved, _ = self.retrieval(self.query_norm(memory)[None], keys, keys, need_weights=False)
        return memory + self.retrieval_gate * retrieved[0]

    def step_entry(self, memory: torch.Tensor, tokens: torch.Tensor, cache: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """One segment in the configured `retrieval_order`: memory [M, C], segment tokens [N, C] and the cache of
        earlier entries [K, M, C] -> (the new memory [M, C], the entry the segment adds to the cache [M, C])."""
        written = self.write(memory, tokens)
        if self.config.retrieval_order == "cache_first":
            entries = written[None] if cache is None or cache.shape[0] == 0 else \
                torch.cat([cache.to(written.dtype), written[None]])
            return self.retrieve(written, entries), written
        out = self.retrieve(written, cache)
        return out, out

    def step(self, memory: torch.Tensor, tokens: torch.Tensor, cache: torch.Tensor | None = None) -> torch.Tensor:
        """One segment: memory [M, C] and segment tokens [N, C] (and earlier cache entries [K, M, C]) -> memory
        [M, C]."""
        return self.step_entry(memory, tokens, cache)[0]

    def initial_state(self, meta: dict | None = None) -> MemoryState:
        """The state before the first segment: the learned initial memory and an empty cache."""
        init = self.memory_init.detach()
        return MemoryState(init.clone(), init.new_zeros(0, *init.shape), [], dict(meta or {}))

    @torch.no_grad()
    def advance(self, state: MemoryState, tokens: torch.Tensor, span: CacheSpan) -> MemoryState:
        """Streaming update (no gradients): run one segment and push its memory into the state's cache."""
        memory, entry = self.step_entry(state.memory, tokens, state.cache)
        state.push(memory, span, self.config.cache_size, entry=entry)
        return state

    def unroll(self, segments: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, list[CacheSpan]]:
        """Differentiable pass over a list of segments' tokens (training). Returns the final memory [M, C], the
        cache [K, M, C] after the last segment (bounded and merged exactly as in streaming) and the segments
        each cache entry covers (`CacheSpan.first_segment` .. `last_segment`)."""
        memory = self.memory_init
        entries: list[torch.Tensor] = []
        spans: list[CacheSpan] = []
        for k, tokens in enumerate(segments):
            memory, entry = self.step_entry(memory, tokens, torch.stack(entries) if entries else None)
            entries.append(entry)
            spans.append(CacheSpan(float(k), float(k + 1), k, k))
            while len(entries) > self.config.cache_size:
                _merge_adjacent(entries, spans)
        return memory, torch.stack(entries), spans

    def relevance_scores(self, cache: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Score cache entries [K, M, C] against a query vector [C] (e.g. the question's mean input embedding)
        -> [K], differentiable: learned projections when `relevance_dim` > 0, else the cosine similarity of
        the query with each entry's mean memory."""
        if not self.config.relevance_dim:
            means = cache.float().mean(dim=1)
            return torch.nn.functional.cosine_similarity(means, query.float().reshape(1, -1).to(means.device),
                                                         dim=-1)
        dtype = self.relevance_query.weight.dtype
        keys = self.relevance_key(self.relevance_norm(cache.to(dtype)))  # [K, M, d]
        q = self.relevance_query(self.relevance_norm(query.to(keys.device, dtype)))  # [d]
        return (keys @ q).amax(dim=1) / self.config.relevance_dim ** 0.5

    @torch.no_grad()
    def relevance(self, state: MemoryState, query: torch.Tensor) -> torch.Tensor:
        """`relevance_scores` of a streaming state's cache entries (no gradients) -> [K]."""
        if state.cache.shape[0] == 0:
            return torch.zeros(0)
        return self.relevance_scores(state.cache, query).float()

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write the config (JSON) and weights (safetensors) to a directory."""
        save_module(self, self.config, path, CONFIG_NAME, WEIGHTS_NAME)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> MemoryBridge:
        """Load a bridge written by `save_pretrained` (no pickle: JSON + safetensors); a config saved before a
        field existed keeps the behaviour it was trained with (`saved_bridge_config`)."""
        return load_module(cls, saved_bridge_config, path, CONFIG_NAME, WEIGHTS_NAME, "memory bridge")


SIGNATURE_SIZE = 16


def model_signature(model: nn.Module) -> list[float]:
    """A few input-embedding weights at fixed positions: tells a trained model from another one (different
    training gives unrelated values) while surviving a cast to bf16 / fp16 (compared with a 1% tolerance)."""
    weight = model.get_input_embeddings().weight.detach()
    rows = torch.linspace(0, weight.shape[0] - 1, SIGNATURE_SIZE).long()
    cols = torch.arange(SIGNATURE_SIZE) * 7 % weight.shape[1]
    return [round(float(v), 6) for v in weight[rows, cols].float().cpu()]


def check_bridge_size(bridge: MemoryBridge, model: nn.Module) -> None:
    """ConfigError when `bridge` was built for another hidden size than `model`'s."""
    hidden = model.get_input_embeddings().weight.shape[1]
    if bridge.config.hidden_size != hidden:
        raise ConfigError(f"memory bridge of hidden size {bridge.config.hidden_size} for a model of hidden size "
                          f"{hidden}: it was trained with another model")


def check_bridge_model(bridge: MemoryBridge, model: nn.Module) -> None:
    """ConfigError when `bridge` was trained with another model than `model` (sizes, or the recorded signature):
    a bridge writes and reads the hidden states of its own model, and gives meaningless answers on another."""
    check_bridge_size(bridge, model)
    recorded = bridge.config.model_signature
    if recorded:
        current = torch.tensor(model_signature(model))
        expected = torch.tensor(recorded, dtype=torch.float32)
        scale = float(expected.abs().max()) or 1.0
        if len(recorded) != len(current) or not torch.allclose(current, expected, rtol=1e-2, atol=1e-3 * scale):
            raise ConfigError("this memory bridge was trained with another model (its model_signature does not "
                              "match): a bridge only works with the model it was trained on; load that model, or "
                              "train a bridge for this one (see configs/memory_bridge_small.yaml)")


def memory_grid(num_tokens: int, merge_size: int = 2) -> tuple[int, int, int]:
    """grid_thw (in patches) of the image block that places M memory tokens: rows x cols merged tokens with
    rows the largest divisor of M not above sqrt(M)."""
    rows = max(r for r in range(1, int(num_tokens ** 0.5) + 1) if num_tokens % r == 0)
    return 1, rows * merge_size, (num_tokens // rows) * merge_size

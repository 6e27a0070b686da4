"""KV presses: prune the KV cache of every attention layer at the end of prefill (kvpress-style).

Presses are dataclasses of their hyperparameters (`SnapKVPress(0.2, window=16)`, `dataclasses.replace`, ==).
`PRESSES` is the one registry of press names (CLI `--kv-press`, the demo's dropdown, the lmms-eval model
argument and the benchmarks read it); `WRAPPERS` holds the presses that wrap another one (`MergingPress`).
`generate_pruned` decodes greedily on a pruned cache for any batch. Where the reference implementations (LOOK-M's
code, SnapKV, kvpress) differ from a default, the reference behaviour is a named option of the press, reachable
through `build_press(name, budget, **options)`; docs/parity/presses.md lists them.
"""

from __future__ import annotations

from dataclasses import fields

from longvlm.errors import ConfigError
from longvlm.presses.base import KVPress, LayerView, PressState, ScorerPress
from longvlm.presses.baselines import H2OPress, RandomPress, SnapKVPress, StreamingLLMPress
from longvlm.presses.budget import DEFAULT_KV_BUDGET, KVBudget
from longvlm.presses.decode import PrunedGeneration, generate_pruned
from longvlm.presses.lookm import LOOKM_REFERENCE, LookMPress
from longvlm.presses.merging import DEFAULT_MERGE, MERGE_METHODS, MergingPress

PRESSES = {cls.name: cls for cls in (LookMPress, StreamingLLMPress, H2OPress, SnapKVPress, RandomPress)}
WRAPPERS = {"merge": MergingPress}
NO_MERGE = "none"
"""`build_press(..., merge=NO_MERGE)`: evict only, also for LOOK-M (whose default is to merge)."""


def build_press(name: str, budget: KVBudget | float | int = DEFAULT_KV_BUDGET, *, merge: str | None = None,
                **options) -> KVPress:
    """A press by name (`PRESSES`) with a budget (ratio or tokens) and hyperparameters `options`.

    `merge`: one of `MERGE_METHODS` merges the evicted pairs into the kept ones (LOOK-M's own `merge`, a
    `MergingPress` around any other press); `NO_MERGE` ("none") only evicts; None keeps the press's default
    (LOOK-M merges with `DEFAULT_MERGE`, the others evict). `options` are the press's dataclass fields, e.g.
    `build_press("lookm", 0.2, **LOOKM_REFERENCE)`, `build_press("snapkv", 0.2, pooling="avg")`,
    `build_press("h2o", 0.2, window=0, normalize=True)`."""
    if name not in PRESSES:
        raise ConfigError(f"unknown KV press {name!r}; known: {', '.join(sorted(PRESSES))}")
    if merge is not None and merge != NO_MERGE and merge not in MERGE_METHODS:
        raise ConfigError(f"unknown merge method {merge!r}; known: {', '.join((NO_MERGE, *MERGE_METHODS))}")
    cls = PRESSES[name]
    accepted = {f.name for f in fields(cls) if f.init}
    unknown = set(options) - accepted - {"budget"}
    if unknown or "budget" in options:
        raise ConfigError(f"{name}: unknown options {sorted(unknown | (set(options) & {'budget'}))}; "
                          f"known: {', '.join(sorted(accepted - {'budget'}))}")
    own_merge = "merge" in accepted
    if own_merge and merge is not None:
        options["merge"] = None if merge == NO_MERGE else merge
    press = cls(budget, **options)
    if merge is None or merge == NO_MERGE or own_merge:
        return press
    return WRAPPERS["merge"](press, merge)


__all__ = ["DEFAULT_KV_BUDGET", "DEFAULT_MERGE", "H2OPress", "KVBudget", "KVPress", "LOOKM_REFERENCE", "LayerView",
           "LookMPress", "MERGE_METHODS", "MergingPress", "NO_MERGE", "PRESSES", "PressState", "PrunedGeneration",
           "RandomPress", "ScorerPress", "SnapKVPress", "StreamingLLMPress", "WRAPPERS", "build_press",
           "generate_pruned"]

"""Every press of `PRESSES` crossed with every wrapper (none, `MergingPress` with each merge rule) on a tiny
random Qwen2-VL: exact budgets in every layer, decoding, merged values vs bit-equal evicted-only values; plus
the dataclass contract of presses (replace, ==, hash, repr) and the registry's `build_press`."""

import dataclasses

import pytest
import torch
from compression_helpers import MIXED_ROWS, batch_inputs, sharp_vlm
from test_kv_merge import reference_merge
from transformers import DynamicCache

from longvlm.errors import ConfigError
from longvlm.presses import (DEFAULT_MERGE, LOOKM_REFERENCE, MERGE_METHODS, NO_MERGE, PRESSES, WRAPPERS, H2OPress,
                             KVBudget, LookMPress, MergingPress, RandomPress, SnapKVPress, StreamingLLMPress,
                             build_press, generate_pruned)
from longvlm.presses.decode import prompt_position_ids

WRAPS = (NO_MERGE, *MERGE_METHODS)  # build_press(merge=...): no wrapper, or merging with each rule
SMALL = {"window": 8, "query_chunk": 16}  # hyperparameters that keep the tiny prompts interesting


def options(name: str) -> dict:
    """`SMALL` hyperparameters the press `name` has."""
    accepted = {f.name for f in dataclasses.fields(PRESSES[name]) if f.init}
    return {k: v for k, v in SMALL.items() if k in accepted}


@pytest.fixture(scope="module")
def vlm():
    return sharp_vlm("tiny-qwen2-vl")


@pytest.fixture(scope="module")
def batch(vlm):
    return batch_inputs(vlm, MIXED_ROWS)


def prefill(vlm, batch, press=None):
    """The cache after one prefill (pruned by `press` when given) and the press state."""
    cache = DynamicCache(config=vlm.model.config)
    inputs = dict(batch, position_ids=prompt_position_ids(vlm.model, batch), cache=cache, use_cache=True)
    if press is None:
        with torch.no_grad():
            vlm.model(**inputs)
        return cache, None
    with press(vlm.model) as state, torch.no_grad():
        vlm.model(**inputs)
    return cache, state


@pytest.fixture(scope="module")
def full_cache(vlm, batch):
    return prefill(vlm, batch)[0]


@pytest.mark.parametrize("budget", [0.3, 7])
@pytest.mark.parametrize("merge", WRAPS)
@pytest.mark.parametrize("name", sorted(PRESSES))
def test_press_table(vlm, batch, full_cache, name, merge, budget):
    press = build_press(name, budget, merge=merge, record_indices=True, **options(name))
    merged = merge != NO_MERGE
    assert isinstance(press, MergingPress if merged and name != "lookm" else PRESSES[name])
    assert getattr(press, "merge", None) == (merge if merged else None)
    real = batch["attention_mask"].bool()
    counts = KVBudget.parse(budget).keep(real.sum(-1))
    assert bool((counts < real.sum(-1)).all())  # every row evicts something
    cache, state = prefill(vlm, batch, press)
    layers = vlm.config.text_config.num_hidden_layers
    assert state.layers_pruned == layers == len(state.kept_indices)
    assert torch.equal(state.keep_counts, counts) and torch.equal(state.slot_mask.sum(-1), counts)
    width = int(counts.max())
    for layer in range(layers):
        keys, values = cache.layers[layer].keys, cache.layers[layer].values
        full_k, full_v = full_cache.layers[layer].keys, full_cache.layers[layer].values
        assert keys.shape == values.shape == (*full_k.shape[:2], width, full_k.shape[3])
        kept = state.kept_indices[layer]
        changed = False
        heads = keys.shape[1]
        index = torch.arange(heads)[:, None]
        for row in range(real.shape[0]):
            used = state.slot_mask[row]
            assert bool(used[width - int(counts[row]):].all()) and (kept[row][:, ~used] == -1).all()
            chosen = kept[row][:, used]  # [H, K]
            for head in range(heads):
                assert chosen[head].tolist() == sorted(set(chosen[head].tolist()))
                assert bool(real[row, chosen[head]].all())
            original_k, original_v = full_k[row][index, chosen], full_v[row][index, chosen]
            if not merged:  # evicting only: the kept pairs are the original ones, bit for bit
                assert torch.equal(keys[row][:, used], original_k) and torch.equal(values[row][:, used], original_v)
                continue
            real_positions = torch.nonzero(real[row]).flatten().tolist()
            evicted = torch.tensor([[i for i in real_positions if i not in set(chosen[head].tolist())]
                                    for head in range(heads)]).reshape(heads, -1)
            want_k, want_v = reference_merge(original_k, original_v, full_k[row][index, evicted],
                                             full_v[row][index, evicted], merge)
            torch.testing.assert_close(keys[row][:, used], want_k, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(values[row][:, used], want_v, atol=1e-5, rtol=1e-5)
            changed |= not torch.equal(values[row][:, used], original_v)
        assert changed or not merged, f"{press!r} merged nothing in layer {layer}"
    # decoding on the pruned cache (a fresh press of the same hyperparameters)
    result = generate_pruned(vlm.model, batch, dataclasses.replace(press), max_new_tokens=3, eos_token_id=[])
    assert result.tokens.shape == (real.shape[0], 3) and result.decode_steps == 2
    assert result.state.cache_length == width and torch.equal(result.state.keep_counts, counts)


@pytest.mark.parametrize("merge", MERGE_METHODS)
@pytest.mark.parametrize("seed", [0, 1])
def test_lookm_merge_is_merging_press(vlm, merge, seed):
    """LOOK-M's own merging is exactly MergingPress around evict-only LOOK-M (the same code)."""
    inputs = batch_inputs(vlm, MIXED_ROWS, seed=seed)
    own, _ = prefill(vlm, inputs, LookMPress(0.3, window=8, merge=merge))
    wrapped, _ = prefill(vlm, inputs, MergingPress(LookMPress(0.3, window=8, merge=None), merge))
    evicting, _ = prefill(vlm, inputs, LookMPress(0.3, window=8, merge=None))
    for a, b, c in zip(own.layers, wrapped.layers, evicting.layers):
        assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
        assert not torch.equal(a.values, c.values)


@pytest.mark.parametrize("name", sorted(PRESSES))
def test_dataclass_round_trip(vlm, batch, name):
    press = build_press(name, 0.3, **options(name))
    same = PRESSES[name](budget=KVBudget(ratio=0.3), **options(name))
    assert press == same and hash(press) == hash(same) and press is not same
    assert dataclasses.replace(press) == press and dataclasses.replace(press, budget=0.5) != press
    assert repr(press).startswith(f"{type(press).__name__}(budget=30%")
    assert "state" not in repr(press) and "record_indices" not in repr(press)
    hyper = press.hyperparameters()
    assert "state" not in hyper and hyper["budget"] == KVBudget(ratio=0.3)
    generate_pruned(vlm.model, batch, press, max_new_tokens=1)
    assert press.state is not None and press == same  # runtime state is not compared
    changed = dataclasses.replace(press, budget=5, **({"window": 4} if "window" in hyper else {}))
    assert changed != press and changed.budget == KVBudget(tokens=5)
    result = generate_pruned(vlm.model, batch, changed, max_new_tokens=2)
    assert result.state.keep_counts.tolist() == [5, 5]
    # the wrapper: its repr shows what it wraps; budget and record_indices are the inner press's
    inner = press if name != "lookm" else dataclasses.replace(press, merge=None)
    wrapped = MergingPress(inner)
    assert repr(wrapped) == f"MergingPress(press={inner!r}, merge={DEFAULT_MERGE!r})" and wrapped.name.startswith(name)
    assert wrapped.budget == inner.budget and wrapped == MergingPress(inner, DEFAULT_MERGE)
    assert wrapped != MergingPress(inner, "average")
    assert dataclasses.replace(wrapped, merge="pivotal").merge == "pivotal"
    assert MergingPress(dataclasses.replace(inner, record_indices=True)).record_indices


def test_positional_and_keyword_construction():
    assert SnapKVPress(0.2) == SnapKVPress(budget=0.2) == SnapKVPress(budget=0.2, window=32, kernel=7, pooling="max",
                                                                      pool_window=False)
    assert repr(SnapKVPress(budget=0.2, window=16)) == ("SnapKVPress(budget=20%, window=16, kernel=7, pooling='max', "
                                                        "pool_window=False)")
    assert repr(StreamingLLMPress(64)) == "StreamingLLMPress(budget=64 tokens, sinks=4)"
    assert repr(H2OPress(64)) == "H2OPress(budget=64 tokens, window=32, query_chunk=None, normalize=False)"
    assert repr(LookMPress()) == ("LookMPress(budget=20%, window=32, scoring='window', merge='weighted_reference', "
                                  "protect_all_text=False)")
    assert LookMPress().budget == KVBudget(ratio=0.2) and LookMPress().merge == DEFAULT_MERGE == "weighted_reference"
    assert len({SnapKVPress(0.2), SnapKVPress(budget=0.2), SnapKVPress(0.3)}) == 2
    with pytest.raises(TypeError):
        SnapKVPress(0.2, 16)  # hyperparameters after the budget are keyword-only


@pytest.mark.parametrize("make", [
    lambda: SnapKVPress(kernel=4), lambda: SnapKVPress(window=0), lambda: LookMPress(window=0),
    lambda: LookMPress(merge="median"), lambda: H2OPress(query_chunk=0), lambda: H2OPress(window=1.5),
    lambda: StreamingLLMPress(sinks=-1), lambda: RandomPress(seed="x"), lambda: RandomPress(1.5),
    lambda: SnapKVPress(record_indices=1), lambda: MergingPress(SnapKVPress(), "median"),
    lambda: MergingPress(LookMPress()), lambda: MergingPress(MergingPress(SnapKVPress())),
    lambda: MergingPress("snapkv"), lambda: build_press("snapkv", merge="median"),
    lambda: build_press("snapkv", kernel_size=5), lambda: build_press("nope"),
    lambda: SnapKVPress(pooling="mean"), lambda: SnapKVPress(pool_window=1), lambda: SnapKVPress(window=0.1),
    lambda: H2OPress(normalize="observed"), lambda: H2OPress(window=1.0), lambda: H2OPress(window=-1),
    lambda: LookMPress(window=0.0), lambda: LookMPress(window=1.0), lambda: LookMPress(scoring="all"),
    lambda: LookMPress(protect_all_text=1), lambda: build_press("lookm", merge="weighted-reference"),
])
def test_invalid_hyperparameters(make):
    with pytest.raises(ConfigError):
        make()


def test_build_press_merge():
    assert set(WRAPPERS.values()) == {MergingPress}
    assert build_press("snapkv", 0.5) == SnapKVPress(0.5)
    assert build_press("snapkv", 0.5, merge=NO_MERGE) == SnapKVPress(0.5)
    assert build_press("snapkv", 0.5, merge="average", window=8) == MergingPress(SnapKVPress(0.5, window=8), "average")
    assert build_press("lookm") == LookMPress(merge="weighted_reference")  # LOOK-M merges by default
    assert build_press("lookm", merge="pivotal") == LookMPress(merge="pivotal")
    assert build_press("lookm", merge=NO_MERGE) == LookMPress(merge=None)


def test_build_press_reaches_every_option():
    """Every reference option of docs/parity/presses.md is reachable by name through build_press."""
    reference = build_press("lookm", 0.2, **LOOKM_REFERENCE)
    assert reference == LookMPress(0.2, window=0.1, scoring="all_queries", merge="pivotal_reference",
                                   protect_all_text=True)
    assert build_press("lookm", 0.2, merge="weighted", window=0.1).merge == "weighted"
    assert build_press("snapkv", 0.2, window=64, kernel=5, pooling="avg") == SnapKVPress(0.2, window=64, kernel=5,
                                                                                        pooling="avg")
    assert build_press("snapkv", 0.2, pool_window=True).pool_window
    assert build_press("h2o", 0.2, window=0, normalize=True) == H2OPress(0.2, window=0, normalize=True)
    assert build_press("h2o", 0.2, window=0.1).window == 0.1
    for method in MERGE_METHODS:
        assert build_press("snapkv", 0.2, merge=method) == MergingPress(SnapKVPress(0.2), method)
        assert build_press("lookm", 0.2, merge=method).merge == method


def test_protect_all_text_keeps_text_past_the_budget(vlm, batch):
    """On a real model: with protect_all_text every text token and the window are kept in every layer and head,
    rows keep max(budget, |window + text|) tokens, and decoding works on the (longer) cache."""
    from longvlm.vlm.prompt import TEXT

    types, mask = batch["mm_token_type_ids"], batch["attention_mask"].bool()
    press = build_press("lookm", 5, **{**LOOKM_REFERENCE, "window": 4}, record_indices=True)
    text = ((types == TEXT) & mask).sum(-1)
    result = generate_pruned(vlm.model, batch, press, max_new_tokens=2, eos_token_id=[])
    assert result.state.keep_counts.tolist() == torch.maximum(text, torch.tensor(5)).tolist()  # window is text here
    length = mask.shape[1]
    for kept in result.state.kept_indices.values():
        for row in range(mask.shape[0]):
            text_positions = torch.nonzero((types[row] == TEXT) & mask[row]).flatten().tolist()
            want = set(text_positions) | set(range(length - 4, length))
            for head in kept[row]:
                assert set(head[head >= 0].tolist()) == want

"""Numerics of the KV-pruning building blocks against plain reference implementations on random tensors."""

import pytest
import torch
from test_parity import LOOKM_MERGES, lookm_merge_groups

from longvlm.presses import merging as merge_module
from longvlm.presses.merging import assign_to_kept, merge_evicted
from longvlm.presses.budget import KVBudget, gather_slots, select_tokens
from longvlm.errors import ConfigError


def reference_merge(kept_k, kept_v, ev_k, ev_v, method):
    """Loop-by-loop LOOK-M merge of evicted pairs [H, P, D] into kept pairs [H, K, D] (see merging.py's docstring
    for the definitions); the `_reference` rules go through the transcriptions of LOOK-M's code (test_parity)."""
    if method in LOOKM_MERGES:
        return lookm_merge_groups(kept_k, kept_v, ev_k, ev_v, method)
    heads, kept, _ = kept_k.shape
    out_k, out_v = kept_k.clone(), kept_v.clone()
    for h in range(heads):
        groups = {c: [] for c in range(kept)}
        for e in range(ev_k.shape[1]):
            sims = [torch.dot(ev_k[h, e], kept_k[h, c]) / (ev_k[h, e].norm() * kept_k[h, c].norm())
                    for c in range(kept)]
            best = max(range(kept), key=lambda c: float(sims[c]))
            groups[best].append((e, float(sims[best])))
        for c, members in groups.items():
            if not members:
                continue
            if method == "average":
                w_self, weights = 1.0, [1.0] * len(members)
            elif method == "pivotal":
                w_self, weights = float(len(members)), [1.0] * len(members)
            else:
                w_self, weights = 1.0, [max(s, 0.0) for _, s in members]
            total = w_self + sum(weights)
            out_k[h, c] = (w_self * kept_k[h, c] + sum(w * ev_k[h, e] for (e, _), w in zip(members, weights))) / total
            out_v[h, c] = (w_self * kept_v[h, c] + sum(w * ev_v[h, e] for (e, _), w in zip(members, weights))) / total
    return out_k, out_v


@pytest.mark.parametrize("method", merge_module.MERGE_METHODS)
def test_merge_matches_reference(method):
    gen = torch.Generator().manual_seed(1)
    kept_k, kept_v = torch.randn(3, 5, 8, generator=gen), torch.randn(3, 5, 8, generator=gen)
    ev_k, ev_v = torch.randn(3, 17, 8, generator=gen), torch.randn(3, 17, 8, generator=gen)
    got_k, got_v = merge_evicted(kept_k, kept_v, ev_k, ev_v, method)
    want_k, want_v = reference_merge(kept_k, kept_v, ev_k, ev_v, method)
    torch.testing.assert_close(got_k, want_k, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_v, want_v, atol=1e-5, rtol=1e-5)


def test_merge_special_cases():
    gen = torch.Generator().manual_seed(2)
    kept = torch.randn(2, 4, 6, generator=gen)
    # nothing evicted: unchanged
    k, v = merge_evicted(kept, kept, kept[:, :0], kept[:, :0], "weighted")
    assert torch.equal(k, kept) and torch.equal(v, kept)
    # pivotal: the kept pair keeps half the weight whatever the number of merged pairs
    ev = kept[:, :1].repeat(1, 5, 1) * 1.01  # five near-copies of slot 0, all assigned to it
    k, _ = merge_evicted(kept, kept, ev, ev, "pivotal")
    torch.testing.assert_close(k[:, 0], 0.5 * kept[:, 0] + 0.5 * ev[:, 0])
    torch.testing.assert_close(k[:, 1:], kept[:, 1:])
    # weighted: a weighted mean of identical vectors is that vector (normalisation is right)
    same = torch.ones(1, 3, 4)
    k, _ = merge_evicted(same, same, torch.ones(1, 7, 4), torch.ones(1, 7, 4), "weighted")
    torch.testing.assert_close(k, same)
    with pytest.raises(ConfigError):
        merge_evicted(kept, kept, kept, kept, "median")


def test_assignment_chunking(monkeypatch):
    gen = torch.Generator().manual_seed(3)
    ev, kept = torch.randn(2, 50, 8, generator=gen), torch.randn(2, 9, 8, generator=gen)
    whole_t, whole_s = assign_to_kept(ev, kept)
    monkeypatch.setattr(merge_module, "SIMILARITY_CHUNK_ELEMENTS", 2 * 9 * 7)  # chunks of 7 evicted keys
    chunk_t, chunk_s = assign_to_kept(ev, kept)
    assert torch.equal(whole_t, chunk_t) and torch.allclose(whole_s, chunk_s)
    cos = torch.nn.functional.cosine_similarity(ev[:, :, None], kept[:, None], dim=-1)
    assert torch.equal(whole_t, cos.argmax(-1)) and torch.allclose(whole_s, cos.amax(-1), atol=1e-6)


def test_budget_counts():
    lengths = torch.tensor([10, 7, 1, 33])
    assert KVBudget.parse(0.5).keep(lengths).tolist() == [5, 4, 1, 17]  # half up
    assert KVBudget.parse(0.1).keep(lengths).tolist() == [1, 1, 1, 3]
    assert KVBudget.parse(1.0).keep(lengths).tolist() == [10, 7, 1, 33]
    assert KVBudget.parse(8).keep(lengths).tolist() == [8, 7, 1, 8]
    for bad in (0.0, 1.2, 0, -3, True, "0.5"):
        with pytest.raises(ConfigError):
            KVBudget.parse(bad)


def test_selection_matches_reference():
    gen = torch.Generator().manual_seed(4)
    batch, heads, length = 3, 2, 12
    priority = torch.randn(batch, heads, length, generator=gen)
    real_lengths = torch.tensor([12, 9, 5])
    real = torch.arange(length)[None, :] >= (length - real_lengths)[:, None]
    counts = torch.tensor([4, 6, 5])
    sel = select_tokens(priority, real, counts)
    width = 6
    assert sel.indices.shape == (batch, heads, width) and sel.slot_mask.sum(-1).tolist() == counts.tolist()
    for b in range(batch):
        assert sel.slot_mask[b].tolist() == [False] * (width - int(counts[b])) + [True] * int(counts[b])
        for h in range(heads):
            candidates = [i for i in range(length) if real[b, i]]
            best = sorted(sorted(candidates, key=lambda i: -float(priority[b, h, i]))[:int(counts[b])])
            assert sel.indices[b, h, sel.slot_mask[b]].tolist() == best
            assert torch.nonzero(sel.kept[b, h]).flatten().tolist() == best
    states = torch.randn(batch, heads, length, 4, generator=gen)
    gathered = gather_slots(states, sel.indices)
    assert torch.equal(gathered[1, 0, -1], states[1, 0, sel.indices[1, 0, -1]])


def test_merge_selection_matches_reference():
    """One layer's select-and-merge (the per-row loop LOOK-M and MergingPress share) on random left-padded rows
    equals merging, head by head, each row's evicted real tokens into its kept ones with the reference loop."""
    from longvlm.presses.base import LayerView
    from longvlm.presses.merging import compress_merged

    gen = torch.Generator().manual_seed(5)
    batch, heads, length, dim = 3, 2, 14, 6
    real_lengths = torch.tensor([14, 9, 4])
    real = torch.arange(length)[None, :] >= (length - real_lengths)[:, None]
    counts = torch.tensor([5, 3, 4])  # the last row keeps everything: nothing to merge
    keys, values = torch.randn(batch, heads, length, dim, generator=gen), torch.randn(batch, heads, length, dim,
                                                                                      generator=gen)
    priority = torch.randn(batch, heads, length, generator=gen)
    view = LayerView(None, None, None, None, keys, values, real, torch.zeros(batch, length, dtype=torch.long), counts)
    for method in merge_module.MERGE_METHODS:
        got_k, got_v, sel = compress_merged(view, priority, method)
        width = int(counts.max())
        for b in range(batch):
            used = sel.slot_mask[b]
            assert int(used.sum()) == int(counts[b]) and bool(used[width - int(counts[b]):].all())
            kept = sel.indices[b][:, used]  # [H, K] per head, position order
            evicted = torch.tensor([[i for i in range(length) if real[b, i] and i not in kept[h].tolist()]
                                    for h in range(heads)], dtype=torch.long).reshape(heads, -1)
            assert evicted.shape[1] == int(real_lengths[b] - counts[b])
            index = torch.arange(heads)[:, None]
            want_k, want_v = reference_merge(keys[b][index, kept], values[b][index, kept], keys[b][index, evicted],
                                             values[b][index, evicted], method)
            torch.testing.assert_close(got_k[b][:, used], want_k, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(got_v[b][:, used], want_v, atol=1e-5, rtol=1e-5)
        assert torch.equal(got_k[2, :, -4:], keys[2, :, -4:])  # nothing evicted: bit-equal

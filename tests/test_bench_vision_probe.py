"""bench/vision_probe.py: the samples, the probe and the tower features (the figures come from the script)."""

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("bench/vision_probe.py")


def test_needle_pairs_and_probe(bench):
    frames, shapes, hues, maps = bench.needle_pairs(400, seed=1)
    assert frames.shape == (800, 56, 56, 3) and maps.shape == (400, 196)
    assert set(shapes) == {0, 1, 2, 3} and set(hues) <= set(range(6))
    assert (maps.sum(1) > 0).all()  # every needle frame has saturated pixels
    # the probe separates shapes given a colour-invariant pixel map, and is at chance on shuffled labels
    features = torch.from_numpy(maps)
    assert bench.probe_accuracy(features, shapes, 300, steps=300) > 0.85
    shuffled = np.random.default_rng(0).permutation(shapes)
    assert bench.probe_accuracy(features, shuffled, 300, steps=300) < 0.45


def test_tower_features_one_row_per_pair(bench):
    frames, *_ = bench.needle_pairs(6, seed=2)
    features = bench.tower_features("tiny", frames, chunk=4)
    assert features.shape[0] == 6 and features.ndim == 2 and bool(features.isfinite().all())

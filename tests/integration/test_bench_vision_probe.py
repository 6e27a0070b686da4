"""bench/vision_probe.py: the samples, the probe and the tower features (the figures come from the script)."""

import numpy as np
import pytest
import torch

from longvlm.datasets.needles import needle_frame_pairs


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("bench/vision_probe.py")


def test_saturation_maps_and_probe(bench):
    pairs = needle_frame_pairs(np.random.default_rng(1), 400)
    shapes, maps = pairs.shapes, bench.saturation_maps(pairs)
    assert maps.shape == (400, 196)
    assert (maps.sum(1) > 0).all()  # every needle frame has saturated pixels
    # the probe separates shapes given a colour-invariant pixel map, and is at chance on shuffled labels
    features = torch.from_numpy(maps)
    assert bench.probe_accuracy(features, shapes, 300, steps=300) > 0.85
    shuffled = np.random.default_rng(0).permutation(shapes)
    assert bench.probe_accuracy(features, shuffled, 300, steps=300) < 0.45


def test_tower_features_one_row_per_pair(bench):
    frames = needle_frame_pairs(np.random.default_rng(2), 6).frames
    features = bench.tower_features("tiny", frames, chunk=4)
    assert features.shape[0] == 6 and features.ndim == 2 and bool(features.isfinite().all())

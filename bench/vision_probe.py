"""Does a model's vision tower keep the shape of a needle? A linear probe on its output tokens.

Each sample is one temporal patch of a needle video (two 56x56 frames: a haystack frame and a frame with a
saturated shape in one of six colours, in random order), as the synthetic video tasks make them. The
vision tower + merger encode it (`pair_features`, the features the vision pretraining classifies); a logistic-regression
probe on the concatenated merged tokens is trained on the first part of the samples and scored on the rest,
for the shape (4 classes) and the colour (6 classes). Baseline, measured in the same run on the same samples:
the same probe on the needle frame's pixels reduced to a 14x14 map of saturated pixels (what a shape
detector that sees colour-invariant pixels has available).

    python bench/vision_probe.py --model longvlm/assets/longvlm-small [more models] [--samples 3000]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from longvlm.datasets.needles import NeedleFramePairs, needle_frame_pairs, saturated_pixels  # noqa: E402
from longvlm.training.vision_pretrain import pair_features  # noqa: E402
from longvlm.vlm.loading import load_vlm  # noqa: E402

SIZE = 56


def saturation_maps(pairs: NeedleFramePairs) -> np.ndarray:
    """Each pair's needle frame reduced to a 14x14 map of saturated pixels: [pairs, 196]."""
    saturated = saturated_pixels(pairs.needle_frames())
    return saturated.reshape(len(saturated), 14, SIZE // 14, 14, SIZE // 14).mean((2, 4)).reshape(
        len(saturated), -1).astype(np.float32)


@torch.no_grad()
def tower_features(model: str, frames: np.ndarray, chunk: int = 200) -> torch.Tensor:
    """Merged vision tokens of each frame pair, concatenated: [pairs, tokens * hidden] (`pair_features`, what
    the vision pretraining classifies)."""
    return pair_features(load_vlm(model), frames, SIZE, chunk).float()


def probe_accuracy(features: torch.Tensor, labels: np.ndarray, train: int, steps: int = 500) -> float:
    """Held-out accuracy of a logistic-regression probe (standardised features, Adam, full batch)."""
    torch.manual_seed(0)
    mean, std = features[:train].mean(0), features[:train].std(0) + 1e-5
    x = (features - mean) / std
    y = torch.as_tensor(labels)
    probe = torch.nn.Linear(x.shape[1], int(y.max()) + 1)
    optimizer = torch.optim.Adam(probe.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(probe(x[:train]), y[:train]).backward()
        optimizer.step()
    return float((probe(x[train:]).argmax(-1) == y[train:]).float().mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", required=True)
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--train-share", type=float, default=2 / 3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    pairs = needle_frame_pairs(np.random.default_rng(args.seed), args.samples, SIZE)
    frames, shapes, hues = pairs.frames, pairs.shapes, pairs.colors
    train = int(args.samples * args.train_share)
    print(f"{args.samples} needle frame pairs, probe trained on {train}, scored on {args.samples - train}\n")
    print("| features | shape (chance 0.25) | colour (chance 0.17) |")
    print("| --- | --- | --- |")
    raw = torch.from_numpy(saturation_maps(pairs))
    print(f"| saturation map of the needle frame (baseline) | {probe_accuracy(raw, shapes, train):.3f} | n/a |")
    for model in args.model:
        features = tower_features(model, frames)
        print(f"| {model}: vision tower + merger | {probe_accuracy(features, shapes, train):.3f} | "
              f"{probe_accuracy(features, hues, train):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

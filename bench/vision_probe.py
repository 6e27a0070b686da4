"""Does a model's vision tower keep the shape of a needle? A linear probe on its output tokens.

Each sample is one temporal patch of a needle video (two 56x56 frames: a haystack frame and a frame with a
saturated shape in one of six colours, in random order), as the synthetic video tasks make them. The
vision tower + merger encode it (`encode_patches`, the same call the memory bridge uses); a logistic-regression
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

from longvlm.datasets.needles import COLORS, SHAPES, draw_shape, haystack_frame  # noqa: E402
from longvlm.vlm.loading import load_vlm  # noqa: E402
from longvlm.vlm.memory_inputs import encode_patches  # noqa: E402

SIZE = 56


def needle_pairs(count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`count` frame pairs [count*2, H, W, 3], shape labels, colour labels, saturation maps [count, 196]."""
    rng = np.random.default_rng(seed)
    colors = list(COLORS)
    frames, shapes, hues, maps = [], [], [], []
    for _ in range(count):
        shape, color = int(rng.integers(len(SHAPES))), int(rng.integers(len(colors)))
        needle = draw_shape(haystack_frame(rng, SIZE, SIZE), rng, SHAPES[shape], colors[color])
        other = haystack_frame(rng, SIZE, SIZE)
        frames += [needle, other] if rng.uniform() < 0.5 else [other, needle]
        saturated = (needle.max(-1).astype(int) - needle.min(-1)) > 100
        maps.append(saturated.reshape(14, SIZE // 14, 14, SIZE // 14).mean((1, 3)).ravel())
        shapes.append(shape)
        hues.append(color)
    return np.stack(frames), np.array(shapes), np.array(hues), np.array(maps, dtype=np.float32)


@torch.no_grad()
def tower_features(model: str, frames: np.ndarray, chunk: int = 200) -> torch.Tensor:
    """Merged vision tokens of each frame pair, concatenated: [pairs, tokens * hidden]."""
    vlm = load_vlm(model)
    out = [encode_patches(vlm, frames[i:i + chunk], (SIZE, SIZE)).flatten(1).float()
           for i in range(0, len(frames), chunk)]
    return torch.cat(out)


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
    frames, shapes, hues, maps = needle_pairs(args.samples, args.seed)
    train = int(args.samples * args.train_share)
    print(f"{args.samples} needle frame pairs, probe trained on {train}, scored on {args.samples - train}\n")
    print("| features | shape (chance 0.25) | colour (chance 0.17) |")
    print("| --- | --- | --- |")
    raw = torch.from_numpy(maps)
    print(f"| saturation map of the needle frame (baseline) | {probe_accuracy(raw, shapes, train):.3f} | n/a |")
    for model in args.model:
        features = tower_features(model, frames)
        print(f"| {model}: vision tower + merger | {probe_accuracy(features, shapes, train):.3f} | "
              f"{probe_accuracy(features, hues, train):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

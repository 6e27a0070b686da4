"""Supervised pretraining of the vision tower + merger on synthetic needle frames, before language-model training.

Real VLMs start from a pretrained vision encoder; a model trained from scratch here does not, and through the
language-model loss alone its tower keeps a needle's colour but loses most of its shape
(`bench/vision_probe.py`). This stage trains the tower and merger directly: each sample is one temporal patch
of a needle video (`needle_frame_pairs`), its merged tokens are flattened, and two linear heads classify the
needle's shape and colour (summed cross-entropy). The heads are thrown away afterwards; only the tower and
merger weights carry over into the language-model stages.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from longvlm.datasets.needles import COLORS, SHAPES, needle_frame_pairs
from longvlm.training.config import VisionPretrainSection
from longvlm.vlm.loading import VLM
from longvlm.memory.streaming import patch_tokens

TRAIN_SEED_OFFSET, HELDOUT_SEED_OFFSET = 1000, 2000  # frame streams apart from the mixture's


def pair_features(vlm: VLM, frames: np.ndarray, size: int, chunk: int = 200) -> torch.Tensor:
    """Merged vision tokens of each frame pair (temporal patch) of `frames`, flattened: [pairs, tokens * hidden];
    encoded `chunk` frames at a time, with gradients when they are enabled."""
    return torch.cat([patch_tokens(vlm, frames[i:i + chunk], (size, size)).flatten(1)
                      for i in range(0, len(frames), chunk)])


def pretrain_vision(vlm: VLM, section: VisionPretrainSection, seed: int) -> list[dict]:
    """Train `vlm`'s vision tower + merger in place as a shape / colour classifier; returns log records
    (loss every `log_every` steps, then the held-out accuracies)."""
    visual = vlm.model.model.visual
    was_training = visual.training
    visual.train()
    size = section.frame_size
    rng = np.random.default_rng(seed + TRAIN_SEED_OFFSET)
    heldout = needle_frame_pairs(np.random.default_rng(seed + HELDOUT_SEED_OFFSET), section.eval_pairs, size)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        width = pair_features(vlm, needle_frame_pairs(np.random.default_rng(seed), 1, size).frames, size).shape[1]
        heads = torch.nn.ModuleDict({"shape": torch.nn.Linear(width, len(SHAPES)),
                                     "color": torch.nn.Linear(width, len(COLORS))})
    device = next(visual.parameters()).device
    heads = heads.to(device)
    params = list(visual.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=section.lr)
    records, window, started = [], [], time.perf_counter()
    for step in range(1, section.steps + 1):
        pairs = needle_frame_pairs(rng, section.batch_size, size)
        features = pair_features(vlm, pairs.frames, size).to(heads["shape"].weight.dtype)
        shapes, colors = (torch.as_tensor(labels, device=device) for labels in (pairs.shapes, pairs.colors))
        loss = (torch.nn.functional.cross_entropy(heads["shape"](features), shapes)
                + torch.nn.functional.cross_entropy(heads["color"](features), colors))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        window.append(float(loss.detach()))
        if step % section.log_every == 0 or step == section.steps:
            records.append({"vision_pretrain_step": step, "vision_loss": sum(window) / len(window),
                            "elapsed_s": round(time.perf_counter() - started, 2)})
            window = []
    with torch.no_grad():
        visual.eval()
        features = pair_features(vlm, heldout.frames, size).to(heads["shape"].weight.dtype)
        accuracy = {name: float((heads[name](features).argmax(-1).cpu() == torch.as_tensor(labels)).float().mean())
                    for name, labels in (("shape", heldout.shapes), ("color", heldout.colors))}
    visual.train(was_training)
    records.append({"vision_pretrain_step": section.steps, "vision_eval": accuracy, "eval_pairs": section.eval_pairs})
    return records


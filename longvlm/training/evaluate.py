"""Teacher-forced exact-answer accuracy: an answer counts when every answer token is the argmax."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch

from longvlm.training.collate import TokenizedExample, pack_rows
from longvlm.vlm.prompt import IGNORE_INDEX


@torch.no_grad()
def teacher_forced_hits(model, samples: Sequence[TokenizedExample], pad_token_id: int,
                        batch_size: int = 8) -> list[bool]:
    """For each sample: are all its answer tokens (and the closing <|im_end|>) the model's argmax?"""
    was_training = model.training
    model.eval()
    out: list[bool] = []
    for start in range(0, len(samples), batch_size):
        chunk = list(samples[start:start + batch_size])
        batch = pack_rows([[s] for s in chunk], pad_token_id)
        labels = batch.pop("labels")
        batch = {k: v.to(model.device) for k, v in batch.items()}
        logits = model(**batch, use_cache=False).logits
        predicted = logits[:, :-1].argmax(-1).cpu()
        target = labels[:, 1:]
        for row in range(len(chunk)):
            mask = target[row] != IGNORE_INDEX
            out.append(bool((predicted[row][mask] == target[row][mask]).all()))
    if was_training:
        model.train()
    return out


def teacher_forced_accuracy(model, samples: Sequence[TokenizedExample], pad_token_id: int,
                            batch_size: int = 8) -> dict:
    """Per-task and overall share of samples whose answer tokens are all argmax (teacher forcing)."""
    hits: dict[str, list[int]] = defaultdict(list)
    for sample, hit in zip(samples, teacher_forced_hits(model, samples, pad_token_id, batch_size)):
        hits[sample.task].append(int(hit))
    per_task = {task: sum(v) / len(v) for task, v in sorted(hits.items())}
    everything = [h for v in hits.values() for h in v]
    return {"accuracy": sum(everything) / max(1, len(everything)), "samples": len(everything), "per_task": per_task}

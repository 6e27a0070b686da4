"""Exact-answer accuracy of a model on synthetic needle examples, by greedy generation."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable

from longvlm.datasets.examples import Example
from longvlm.datasets.mixture import HELDOUT_STREAM, LengthBin, Mixture
from longvlm.training.collate import example_length
from longvlm.pipeline.encode import encode_example
from longvlm.vlm.loading import VLM
from longvlm.pipeline.answer import answer


# The synthetic needle-retrieval tasks (the small model's training tasks; count/order are not retrieval).
NEEDLE_TASKS = ("video_needle/color", "video_needle/shape", "document_needle/page", "document_needle/color",
                "document_needle/code", "image_grid_needle", "text_passkey")


def heldout_examples(vlm: VLM, task: str, count: int, min_length: int, max_length: int,
                     seed: int = 0) -> list[Example]:
    """`count` examples of one synthetic task (`longvlm.datasets.mixture.GENERATORS`) with target token lengths
    drawn in [min_length, max_length] (actual lengths at most max_length, a few tokens under min_length at
    times: sizes come in whole frames / pages), from the held-out stream the trainer never draws from."""
    mixture = Mixture({task: 1.0}, [LengthBin("eval", min_length, max_length)],
                      lambda e: example_length(e, vlm.tokenizer, vlm.config, vlm.vision),
                      seed=seed, stream=HELDOUT_STREAM)
    return [mixture.draw(i) for i in range(count)]


def normalize_answer(text: str) -> str:
    """Lower-case, strip spaces and a final period: 'Red.' == 'red'."""
    return " ".join(text.strip().lower().rstrip(".").split())


def generation_accuracy(vlm: VLM, examples: Iterable[Example], max_new_tokens: int = 12) -> dict:
    """Greedy-decode each example's question and compare with its exact answer (normalised).

    Returns overall and per-task accuracy plus per-sample records (task, answer, response, length, depth).
    """
    records = []
    hits: dict[str, list[int]] = defaultdict(list)
    started = time.perf_counter()
    for example in examples:
        encoded = encode_example(vlm, example)
        result = answer(vlm, encoded, encoded.stats["question"], max_new_tokens=max_new_tokens)
        correct = int(normalize_answer(result.text) == normalize_answer(example.answer))
        hits[example.task].append(correct)
        records.append({"task": example.task, "answer": example.answer, "response": result.text,
                        "correct": bool(correct), "context_length": result.stats["context_length"],
                        "depth": example.meta.get("depth")})
    everything = [h for v in hits.values() for h in v]
    return {"accuracy": sum(everything) / max(1, len(everything)), "samples": len(everything),
            "per_task": {task: sum(v) / len(v) for task, v in sorted(hits.items())},
            "seconds": time.perf_counter() - started, "records": records}

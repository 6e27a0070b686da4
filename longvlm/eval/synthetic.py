"""Exact-answer accuracy of a model on synthetic needle examples, by greedy generation."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterable

from longvlm.datasets.examples import Example
from longvlm.errors import ConfigError
from longvlm.eval.sharding import Shard, run_sharded
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


def generation_accuracy(vlm: VLM, examples: Iterable[Example], max_new_tokens: int = 12,
                        records_path: str | os.PathLike | None = None) -> dict:
    """Greedy-decode each example's question and compare with its exact answer (normalised).

    Returns overall and per-task accuracy plus per-sample records (task, answer, response, length, depth).
    With `records_path` the records are also kept there as JSONL (a rerun resumes), and under `accelerate
    launch` / `torchrun` the examples are shared out over the processes (`longvlm.eval.sharding`).
    """
    examples = list(examples)
    started = time.perf_counter()

    def score(n: int) -> dict:
        example = examples[n]
        encoded = encode_example(vlm, example)
        result = answer(vlm, encoded, encoded.stats["question"], max_new_tokens=max_new_tokens)
        correct = normalize_answer(result.text) == normalize_answer(example.answer)
        return {"n": n, "task": example.task, "answer": example.answer, "response": result.text,
                "correct": correct, "context_length": result.stats["context_length"],
                "depth": example.meta.get("depth")}

    if records_path is not None:
        records = run_sharded(list(range(len(examples))), records_path, score, key="n")
    elif Shard.from_env().world > 1:
        raise ConfigError("evaluation over several processes keeps its records in a file: give records_path")
    else:
        records = [score(n) for n in range(len(examples))]
    hits: dict[str, list[int]] = defaultdict(list)
    for record in records:
        hits[record["task"]].append(int(record["correct"]))
    everything = [h for v in hits.values() for h in v]
    return {"accuracy": sum(everything) / max(1, len(everything)), "samples": len(everything),
            "per_task": {task: sum(v) / len(v) for task, v in sorted(hits.items())},
            "seconds": time.perf_counter() - started, "records": records}

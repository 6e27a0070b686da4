"""Held-out needle accuracy of a trained model on the synthetic tasks it was trained on (greedy generation,
exact match), per task, at lengths between `--min-length` and `--max-length` tokens.

    python scripts/eval_small_model.py --model models/longvlm-small [--per-task 50] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from longvlm.datasets.mixture import GENERATORS, HELDOUT_STREAM, LengthBin, Mixture
from longvlm.eval.synthetic import generation_accuracy
from longvlm.training.collate import example_length
from longvlm.vlm.loading import load_vlm

RETRIEVAL_TASKS = ("video_needle/color", "video_needle/shape", "document_needle/page", "document_needle/color",
                   "document_needle/code", "image_grid_needle", "text_passkey")


def heldout_examples(vlm, task: str, count: int, min_length: int, max_length: int, seed: int = 0):
    """`count` held-out examples of one task (a stream the trainer never draws from)."""
    mixture = Mixture({task: 1.0}, [LengthBin("eval", min_length, max_length)],
                      lambda e: example_length(e, vlm.tokenizer, vlm.config, vlm.vision),
                      seed=seed, stream=HELDOUT_STREAM)
    return [mixture.draw(i) for i in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/longvlm-small")
    parser.add_argument("--per-task", type=int, default=50)
    parser.add_argument("--tasks", nargs="*", default=None)
    parser.add_argument("--min-length", type=int, default=None, help="default: half the training length")
    parser.add_argument("--max-length", type=int, default=None, help="default: the training length")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    vlm = load_vlm(args.model, device="cpu")
    train_config = {}
    config_file = os.path.join(args.model, "train_config.json")
    if os.path.isfile(config_file):
        with open(config_file) as fh:
            train_config = json.load(fh)
    tasks = args.tasks or list(train_config.get("data", {}).get("sources", GENERATORS))
    max_length = args.max_length or vlm.max_context
    min_length = args.min_length or max_length // 2
    results = {}
    for task in tasks:
        examples = heldout_examples(vlm, task, args.per_task, min_length, max_length, args.seed)
        results[task] = generation_accuracy(vlm, examples)
        print(f"{task:<24} {results[task]['accuracy']:.3f}  ({results[task]['seconds']:.1f}s)", flush=True)
    retrieval = [t for t in tasks if t in RETRIEVAL_TASKS]
    summary = {
        "model": args.model, "lengths": [min_length, max_length], "per_task_samples": args.per_task,
        "per_task": {t: r["accuracy"] for t, r in results.items()},
        "needle_retrieval_accuracy": sum(results[t]["accuracy"] for t in retrieval) / max(1, len(retrieval)),
        "all_tasks_accuracy": sum(r["accuracy"] for r in results.values()) / max(1, len(results)),
        "seconds_per_sample": sum(r["seconds"] for r in results.values()) / max(1, args.per_task * len(results)),
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({**summary, "records": {t: r["records"] for t, r in results.items()}}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

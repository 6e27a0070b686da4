"""Copy a finished training run's model into the package (no optimizer checkpoints).

    python scripts/ship_model.py runs/longvlm-small-part3 longvlm/assets/longvlm-small \
        --earlier-parts runs/longvlm-small runs/longvlm-small-long

The last run gives the model and its records (train_config.json, training_log.jsonl, loss_curve.png); the records
of each earlier part of a multi-part recipe are kept next to them as *_part1, *_part2, ... in the order given.
Files an earlier ship left in the target (another model's records) are removed first.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys

MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
               "tokenizer_config.json", "special_tokens_map.json", "preprocessor_config.json")
RECORD_FILES = ("train_config.json", "training_log.jsonl", "loss_curve.png")


def copy_file(source_dir: str, name: str, target_dir: str, target_name: str) -> None:
    """Copy one file if the run has it, printing its size."""
    path = os.path.join(source_dir, name)
    if os.path.isfile(path):
        shutil.copyfile(path, os.path.join(target_dir, target_name))
        print(f"{target_name}: {os.path.getsize(path)} bytes")


def with_part_suffix(name: str, part: int | str) -> str:
    """`training_log.jsonl` -> `training_log_part1.jsonl`."""
    stem, ext = os.path.splitext(name)
    return f"{stem}_part{part}{ext}"


def remove_shipped_files(target: str) -> None:
    """Remove what an earlier ship put in `target`, so no record of another model (or part) stays behind."""
    patterns = [*MODEL_FILES, *RECORD_FILES, *(with_part_suffix(name, "*") for name in RECORD_FILES)]
    for pattern in patterns:
        for path in glob.glob(os.path.join(glob.escape(target), pattern)):
            os.remove(path)


def ship(source: str, target: str, earlier_parts: list[str]) -> None:
    """Copy the final run's model and records, and the earlier parts' records, into `target`."""
    if not os.path.isfile(os.path.join(source, "model.safetensors")):
        raise SystemExit(f"{source} holds no model.safetensors: is it a finished training run?")
    os.makedirs(target, exist_ok=True)
    remove_shipped_files(target)
    for name in MODEL_FILES + RECORD_FILES:
        copy_file(source, name, target, name)
    for part, run in enumerate(earlier_parts, start=1):
        for name in RECORD_FILES:
            copy_file(run, name, target, with_part_suffix(name, part))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="the final training run's output_dir")
    parser.add_argument("target", help="the directory to ship, e.g. longvlm/assets/longvlm-small")
    parser.add_argument("--earlier-parts", nargs="*", default=[],
                        help="output_dirs of the recipe's earlier parts, first part first (records only)")
    args = parser.parse_args(argv)
    ship(args.source, args.target, args.earlier_parts)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Copy a finished training run's model into the package, and its training records next to it in models/.

    python scripts/ship_model.py runs/longvlm-small-part3 longvlm/assets/longvlm-small \
        --earlier-parts runs/longvlm-small runs/longvlm-small-long

The package directory (`target`) gets only what the model needs: its files and the last run's train_config.json
(`scripts/eval_small_model.py` reads its task list); no optimizer checkpoints. The records go to `--records`
(default: models/<target's name> in the repository, e.g. models/longvlm-small): the last run's training_log.jsonl
and loss_curve.png, and each earlier part of a multi-part recipe's train_config.json, training_log.jsonl and
loss_curve.png as *_part1, *_part2, ... in the order given. Files an earlier ship left in either directory
(another model's files or records) are removed first; other files (e.g. the records' README.md) are kept.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
               "tokenizer_config.json", "special_tokens_map.json", "preprocessor_config.json")
PACKAGE_FILES = (*MODEL_FILES, "train_config.json")  # what ships in the package
RECORD_FILES = ("training_log.jsonl", "loss_curve.png")  # the last run's records, in the records directory
PART_RECORD_FILES = ("train_config.json", *RECORD_FILES)  # each earlier part's, with a _partN suffix


def copy_file(source_dir: str, name: str, target_dir: str, target_name: str) -> None:
    """Copy one file if the run has it, printing where it went and its size."""
    path = os.path.join(source_dir, name)
    if os.path.isfile(path):
        shutil.copyfile(path, os.path.join(target_dir, target_name))
        print(f"{os.path.join(target_dir, target_name)}: {os.path.getsize(path)} bytes")


def with_part_suffix(name: str, part: int | str) -> str:
    """`training_log.jsonl` -> `training_log_part1.jsonl`."""
    stem, ext = os.path.splitext(name)
    return f"{stem}_part{part}{ext}"


def remove_shipped_files(directory: str) -> None:
    """Remove what an earlier ship put in `directory` (the package's model directory or the records directory,
    in this layout or the earlier one that kept the records in the package), so no file of another model (or
    part) stays behind."""
    patterns = [*PACKAGE_FILES, *RECORD_FILES, *(with_part_suffix(name, "*") for name in PART_RECORD_FILES)]
    for pattern in patterns:
        for path in glob.glob(os.path.join(glob.escape(directory), pattern)):
            os.remove(path)


def default_records_dir(target: str) -> str:
    """models/<target's name> in the repository: longvlm/assets/longvlm-small -> models/longvlm-small."""
    return os.path.join(REPO, "models", os.path.basename(os.path.normpath(target)))


def ship(source: str, target: str, earlier_parts: list[str], records: str | None = None) -> None:
    """Copy the final run's model files and train_config.json into `target`, its records and the earlier parts'
    records into `records` (default: `default_records_dir(target)`)."""
    if not os.path.isfile(os.path.join(source, "model.safetensors")):
        raise SystemExit(f"{source} holds no model.safetensors: is it a finished training run?")
    records = records or default_records_dir(target)
    for directory in (target, records):
        os.makedirs(directory, exist_ok=True)
        remove_shipped_files(directory)
    for name in PACKAGE_FILES:
        copy_file(source, name, target, name)
    for name in RECORD_FILES:
        copy_file(source, name, records, name)
    for part, run in enumerate(earlier_parts, start=1):
        for name in PART_RECORD_FILES:
            copy_file(run, name, records, with_part_suffix(name, part))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="the final training run's output_dir")
    parser.add_argument("target", help="the package directory to ship the model to, e.g. longvlm/assets/longvlm-small "
                                       "(model files and train_config.json only)")
    parser.add_argument("--earlier-parts", nargs="*", default=[],
                        help="output_dirs of the recipe's earlier parts, first part first (records only)")
    parser.add_argument("--records", default=None,
                        help="where the training records go (training logs, loss curves, earlier parts' configs); "
                             "default: models/<target's name> in the repository, e.g. models/longvlm-small")
    args = parser.parse_args(argv)
    ship(args.source, args.target, args.earlier_parts, args.records)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train a Qwen2-VL-family model with longvlm's trainer.

    python scripts/train.py --config configs/small_model.yaml [--resume] [--max-steps N] [--set a.b=value ...]
    accelerate launch --config_file configs/accelerate/ddp.yaml scripts/train.py --config ...
    ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 scripts/train.py --config ...   # data-parallel on CPU

Several configs run one after the other (a recipe in parts, each part usually starting from the previous
part's output_dir): `--config configs/small_model.yaml configs/small_model_long.yaml`. With `--resume`, parts
that already finished are skipped and the first unfinished one continues from its latest checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import yaml

from longvlm.errors import LongVLMError
from longvlm.training.config import TrainConfig, load_config
from longvlm.training.trainer import latest_checkpoint, train


def parse_overrides(items: list[str]) -> dict:
    """`a.b=value` pairs (values parsed as YAML scalars) -> nested dict."""
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise LongVLMError(f"--set expects key=value, got {item!r}")
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    return out


def finished(config: TrainConfig) -> bool:
    """Whether `config`'s run already saved its final model (its last checkpoint is at the last step)."""
    checkpoint = latest_checkpoint(config.output_dir)
    return (checkpoint is not None and os.path.basename(checkpoint) == f"step-{config.total_steps}"
            and os.path.isfile(os.path.join(config.output_dir, "config.json")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, nargs="+", help="one config, or the parts of a recipe in order")
    parser.add_argument("--resume", nargs="?", const=True, default=None,
                        help="continue from the latest checkpoint in output_dir, or from the given path")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (for smoke runs)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config values")
    args = parser.parse_args(argv)
    if len(args.config) > 1 and isinstance(args.resume, str):
        parser.error("--resume PATH needs a single --config")
    try:
        overrides = parse_overrides(args.set)
        configs = [load_config(path, overrides) for path in args.config]  # all validated before training
        for path, config in zip(args.config, configs):
            if len(configs) > 1 and args.resume and finished(config):
                print(f"train: {path} already finished in {config.output_dir}, skipped", file=sys.stderr)
                continue
            result = train(config, resume=args.resume, max_steps=args.max_steps)
            if int(os.environ.get("RANK", "0")) == 0:  # one summary per run, not one per process
                print(json.dumps({"config": path, "output_dir": result.output_dir, "steps": result.steps,
                                  "final_loss": result.final_loss, "eval": result.eval}, indent=2))
    except LongVLMError as exc:
        print(f"train: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

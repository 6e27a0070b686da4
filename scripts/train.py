"""Train a Qwen2-VL-family model with longvlm's trainer.

    python scripts/train.py --config configs/small_model.yaml [--resume] [--max-steps N] [--set a.b=value ...]
    accelerate launch --config_file configs/accelerate/ddp.yaml scripts/train.py --config ...
"""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from longvlm.errors import LongVLMError
from longvlm.training.config import load_config
from longvlm.training.trainer import train


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--resume", nargs="?", const=True, default=None,
                        help="continue from the latest checkpoint in output_dir, or from the given path")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (for smoke runs)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config values")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, parse_overrides(args.set))
        result = train(config, resume=args.resume, max_steps=args.max_steps)
    except LongVLMError as exc:
        print(f"train: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"output_dir": result.output_dir, "steps": result.steps, "final_loss": result.final_loss,
                      "eval": result.eval}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

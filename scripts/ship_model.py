"""Copy a finished training run's model into the package (no optimizer checkpoints).

    python scripts/ship_model.py runs/longvlm-small longvlm/assets/longvlm-small
"""

from __future__ import annotations

import os
import shutil
import sys

FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
         "special_tokens_map.json", "preprocessor_config.json", "train_config.json", "training_log.jsonl",
         "loss_curve.png")


def main(source: str, target: str) -> int:
    os.makedirs(target, exist_ok=True)
    for name in FILES:
        path = os.path.join(source, name)
        if os.path.isfile(path):
            shutil.copy2(path, os.path.join(target, name))
            print(f"{name}: {os.path.getsize(path)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))

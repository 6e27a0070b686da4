"""Do the sharded training engines build and take a step on this machine (2 CPU processes, no GPU)?

    python bench/distributed_engines.py [--python PY]

Rows, each launched with `torch.distributed.run --nproc_per_node 2` on the tiny preset (real Qwen2-VL classes):
PyTorch FSDP2 (`fully_shard` per decoder layer, gloo), DeepSpeed ZeRO-2 and ZeRO-3 (`deepspeed.initialize`;
needs `pip install deepspeed`, DS_BUILD_OPS=0 is enough on CPU: `--python` may name a venv that has it), and
the trainer launched by `accelerate launch` with `configs/accelerate/fsdp.yaml` / `deepspeed_zero3.yaml`.
Prints a markdown table: engine, outcome, loss of each process, parameters held per process.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = r'''
import sys, torch, torch.distributed as dist
from longvlm.vlm.loading import load_vlm
engine = sys.argv[1]
model = load_vlm("tiny").model.train()
total = sum(p.numel() for p in model.parameters())
ids = torch.randint(0, 200, (1, 64), generator=torch.Generator().manual_seed(0))
if engine == "fsdp2":
    from torch.distributed.fsdp import fully_shard
    dist.init_process_group("gloo")
    for layer in model.model.language_model.layers:
        fully_shard(layer)
    fully_shard(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    held = sum(p.to_local().numel() for p in model.parameters())
    rank, kind = dist.get_rank(), "FSDPModule"
else:
    import deepspeed
    stage = int(engine[-1])
    config = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": stage},
              "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}}}
    model_engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=config)
    loss = model_engine(input_ids=ids, labels=ids).loss
    model_engine.backward(loss)
    model_engine.step()
    held = sum((p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel()) for p in model.parameters())
    rank, kind = model_engine.global_rank, type(model_engine.optimizer).__name__
print(f"RESULT {engine} rank={rank} kind={kind} loss={float(loss.detach()):.4f} held={held} of {total}")
'''


def launch(python: str, args: list[str], cwd: str) -> tuple[int, str]:
    done = subprocess.run([python, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1"))
    return done.returncode, done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default=sys.executable, help="python with deepspeed installed (default: this one)")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="longvlm-engines-")
    probe = Path(work) / "probe.py"
    probe.write_text(PROBE)
    rows = []
    for engine in ("fsdp2", "zero2", "zero3"):
        code, out = launch(args.python, ["-m", "torch.distributed.run", "--nproc_per_node", "2", str(probe), engine],
                           work)
        results = [line.split(" ", 2)[2] for line in out.splitlines() if line.startswith("RESULT")]
        reason = next((line for line in reversed(out.splitlines()) if "Error" in line), f"exit {code}")
        rows.append((engine, "step taken" if code == 0 and len(results) == 2 else f"failed: {reason[:160]}",
                     "; ".join(results)))
    for name in ("fsdp", "deepspeed_zero3"):
        code, out = launch(args.python, ["-m", "accelerate.commands.launch", "--config_file",
                                         str(ROOT / "configs" / "accelerate" / f"{name}.yaml"), "--num_processes", "2",
                                         "--mixed_precision", "no", str(ROOT / "scripts" / "train.py"), "--config",
                                         str(ROOT / "configs" / "smoke.yaml"), "--set", f"output_dir={work}/{name}",
                                         "mixed_precision=no", "--max-steps", "1"], work)
        message = next((line.split("error: ", 1)[1] for line in out.splitlines() if "train: error:" in line),
                       "trained" if code == 0 else f"exit {code}")
        rows.append((f"trainer via accelerate, configs/accelerate/{name}.yaml", "refused" if code else "ran", message))
    print("| engine | outcome | per process |")
    print("| --- | --- | --- |")
    for engine, outcome, detail in rows:
        print(f"| {engine} | {outcome} | {detail} |")


if __name__ == "__main__":
    main()

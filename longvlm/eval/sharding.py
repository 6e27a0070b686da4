"""Resumable evaluation loops spread over processes: each process scores its share of the samples into its
own JSONL file, the main process gathers them into one file in sample order.

Launch any `longvlm eval ...` with `accelerate launch --cpu --num_processes N -m longvlm.cli eval ...` or
`torchrun --nproc_per_node N -m longvlm.cli eval ...`: the launcher's RANK / WORLD_SIZE decide the share
(sample n, or group n, goes to process n mod N). One process is the plain, unsharded loop.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Record = dict[str, Any]


@dataclass(frozen=True)
class Shard:
    """This process's place among the evaluation processes."""

    rank: int = 0
    world: int = 1

    @classmethod
    def from_env(cls) -> Shard:
        """RANK / WORLD_SIZE as set by `accelerate launch` and `torchrun` (one process when unset)."""
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        rank = int(os.environ.get("RANK", "0") or 0)
        if not 0 <= rank < world:
            raise ValueError(f"RANK {rank} is outside WORLD_SIZE {world}")
        return cls(rank, world)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owns(self, group: int) -> bool:
        return group % self.world == self.rank

    def wait_for_everyone(self) -> None:
        """A barrier across the processes (torch.distributed through accelerate; nothing for one process)."""
        if self.world > 1:
            from accelerate import PartialState

            PartialState().wait_for_everyone()


def read_records(path: str | os.PathLike, key: str) -> dict[Hashable, Record]:
    """The whole records of a JSONL file by `key`; a line that is not a whole record (a run killed while
    writing) is ignored, so its sample is scored again. A file not ending in a newline gets one."""
    done: dict[Hashable, Record] = {}
    path = Path(path)
    if not path.is_file():
        return done
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "ab") as fh:  # the next record must start on its own line
            fh.write(b"\n")
    for line in data.decode("utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get(key) is not None:
            done[_hashable(record[key])] = record
    return done


def _hashable(value: Any) -> Hashable:
    return tuple(value) if isinstance(value, list) else value


def _part_files(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.stem}.part-*-of-*.jsonl"))


def run_sharded(ids: Sequence[Hashable], path: str | os.PathLike, score: Callable[[int], Record], *, key: str,
                group: Callable[[int], int] | None = None, shard: Shard | None = None,
                progress: Callable[[int, int, Record], None] | None = None) -> list[Record]:
    """Score each sample n (id `ids[n]`, `score(n)` -> its record, which carries the id under `key`) that no
    earlier run has scored, appending it at once; returns the records of `ids`, in that order, in every process.

    One process appends to `path`. With several, process r scores the samples whose `group(n)` (default n)
    is r mod N into `<path stem>.part-r-of-N.jsonl`; after a barrier the main process writes `path` from all
    of them in `ids` order and removes the parts; a second barrier lets every process read it. Records in
    `path` or in any part file count as done (a resumed run skips them, whatever the process count)."""
    shard = shard or Shard.from_env()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = read_records(path, key)
    for part in _part_files(path):
        done.update(read_records(part, key))
    mine = path if shard.world == 1 else path.with_name(f"{path.stem}.part-{shard.rank}-of-{shard.world}.jsonl")
    with open(mine, "a") as fh:
        for n, sample_id in enumerate(ids):
            if sample_id in done or not shard.owns(group(n) if group is not None else n):
                continue
            record = score(n)
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            done[sample_id] = record
            if progress is not None:
                progress(n, len(ids), record)
    if shard.world > 1:
        shard.wait_for_everyone()
        if shard.is_main:
            gathered = read_records(path, key)
            for part in _part_files(path):
                gathered.update(read_records(part, key))
            tmp = path.with_name(path.name + ".tmp")
            order = [i for i in ids if i in gathered] + [i for i in gathered if i not in set(ids)]
            with open(tmp, "w") as fh:
                for sample_id in order:  # this run's samples in order, then any others the file held
                    fh.write(json.dumps(gathered[sample_id]) + "\n")
            os.replace(tmp, path)
            for part in _part_files(path):
                part.unlink()
        shard.wait_for_everyone()
        done = read_records(path, key)
    return [done[i] for i in ids if i in done]

"""Evaluation spread over processes (`longvlm.eval.sharding`): 2 processes write the same records as 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SHARED_DATA
from longvlm.eval.sharding import Shard, run_sharded

def _untimed(value):
    """`value` without its wall-clock and memory figures (they differ between any two runs)."""
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items()
                if not any(word in k for word in ("latency", "rss", "seconds"))}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def _records(path: Path) -> list[dict]:
    return [_untimed(json.loads(line)) for line in path.read_text().splitlines()]


def _launch(args: list[str], cwd: Path, processes: int) -> None:
    launcher = [] if processes == 1 else [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                                          str(processes), "--master_port", str(_free_port())]
    command = [*launcher, *([] if launcher else [sys.executable]), "-m", "longvlm.cli", *args]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-3000:]


def _free_port() -> int:
    from longvlm.demo.server import free_port

    return free_port()


def test_shard_from_the_launchers_environment(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert Shard.from_env() == Shard(0, 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    shard = Shard.from_env()
    assert shard == Shard(1, 2) and not shard.is_main and shard.owns(3) and not shard.owns(4)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="outside"):
        Shard.from_env()


def test_one_process_resumes_and_keeps_order(tmp_path):
    calls = []

    def score(n: int) -> dict:
        calls.append(n)
        return {"id": f"s{n}", "value": n * n}

    ids = [f"s{n}" for n in range(5)]
    path = tmp_path / "records.jsonl"
    run_sharded(ids[:3], path, score, key="id", shard=Shard())
    path.write_text(path.read_text() + '{"id": "s3", "val')  # a run killed while writing
    records = run_sharded(ids, path, score, key="id", shard=Shard())
    assert [r["value"] for r in records] == [0, 1, 4, 9, 16] and calls == [0, 1, 2, 3, 4]


def test_two_processes_equal_one_on_a_needle_suite(tmp_path):
    args = ["eval", "niah", "--suite", "document", "--model", "tiny", "--lengths", "4", "8", "--depths", "0", "1",
            "--samples", "2", "--scoring", "both"]
    _launch([*args, "--out", "one"], tmp_path, 1)
    _launch([*args, "--out", "two"], tmp_path, 2)
    one, two = _records(tmp_path / "one" / "document_samples.jsonl"), _records(tmp_path / "two" / "document_samples.jsonl")
    assert len(one) == 8 and one == two  # record by record, in the same order
    assert not list((tmp_path / "two").glob("*.part-*"))  # the parts were gathered and removed
    summaries = [_untimed(json.loads((tmp_path / d / "document_summary.json").read_text())) for d in ("one", "two")]
    assert summaries[0] == summaries[1] and summaries[0]["cells"]


@pytest.mark.skipif(not (SHARED_DATA / "mmlongbench-doc" / "samples.json").is_file(), reason="shared data absent")
def test_two_processes_equal_one_on_mmlongbench_doc(tmp_path):
    """Three real PDFs of the dev subset and their questions: each document is encoded by one process."""
    source = SHARED_DATA / "mmlongbench-doc"
    present = {p.name for p in (source / "documents").iterdir()}
    samples = [s for s in json.loads((source / "samples.json").read_text()) if s["doc_id"] in present]
    chosen = sorted({s["doc_id"] for s in samples})[:3]
    data = tmp_path / "data"
    (data / "documents").mkdir(parents=True)
    for doc in chosen:
        (data / "documents" / doc).symlink_to(source / "documents" / doc)
    (data / "samples.json").write_text(json.dumps([s for s in samples if s["doc_id"] in chosen]))
    args = ["eval", "mmlongbench", "--model", "tiny", "--data", str(data), "--max-pages", "4"]
    _launch([*args, "--out", "one"], tmp_path, 1)
    _launch([*args, "--out", "two"], tmp_path, 2)
    one, two = _records(tmp_path / "one" / "records.jsonl"), _records(tmp_path / "two" / "records.jsonl")
    assert len(one) >= 6 and one == two and not any(r.get("skipped") for r in one)
    results = [_untimed(json.loads((tmp_path / d / "results.json").read_text())) for d in ("one", "two")]
    assert results[0] == results[1] and results[0]["questions"] == len(one)


def test_two_processes_equal_one_for_the_small_models_evaluation(tmp_path):
    """scripts/eval_small_model.py on the shipped model: the same per-sample records and accuracy."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "eval_small_model.py"
    args = ["--per-task", "3", "--tasks", "video_needle/color", "document_needle/page"]
    outs = {}
    for processes in (1, 2):
        launcher = [sys.executable] if processes == 1 else [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port())]
        out = tmp_path / f"summary{processes}.json"
        done = subprocess.run([*launcher, str(script), *args, "--records", str(tmp_path / f"records{processes}"),
                               "--out", str(out)], capture_output=True, text=True, timeout=600,
                              env=dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1"))
        assert done.returncode == 0, done.stderr[-3000:]
        outs[processes] = _untimed(json.loads(out.read_text()))
    assert outs[1] == outs[2] and sum(len(r) for r in outs[1]["records"].values()) == 6

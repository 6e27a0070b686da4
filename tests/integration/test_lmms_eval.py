"""lmms-eval itself (0.7.3) runs longvlm on MMLongBench-Doc over the shared dev PDFs, offline, and prints the
same score as `longvlm eval mmlongbench` on the same questions, with the same answers question by question.

lmms-eval lives in its own environment (`.ci/run` makes it: a venv over the system packages with
`pip install --no-deps lmms-eval==0.7.3` and the few packages its evaluation path imports, filelock < 4);
`LONGVLM_LMMS_PYTHON` names its python. Without it the test is skipped, unless LONGVLM_REQUIRE_LMMS=1.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import SHARED_DATA

LMMS_PYTHON = os.environ.get("LONGVLM_LMMS_PYTHON")
DATA = SHARED_DATA / "mmlongbench-doc"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not LMMS_PYTHON and os.environ.get("LONGVLM_REQUIRE_LMMS") != "1",
    reason="lmms-eval's environment is not given (LONGVLM_LMMS_PYTHON)")]


def _run(command: list[str], cwd, env: dict) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


@pytest.mark.skipif(not (DATA / "samples.json").is_file(), reason="shared data absent")
def test_lmms_eval_prints_the_score_longvlm_eval_gives(tmp_path):
    assert LMMS_PYTHON, "LONGVLM_REQUIRE_LMMS=1 but LONGVLM_LMMS_PYTHON is not set"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    limit = "40"  # the first 40 questions: 14 have their PDF among the 30 shared ones
    _run([sys.executable, "-m", "longvlm.cli", "eval", "lmms-task", "--data", str(DATA), "--out", "tasks",
          "--limit", limit], tmp_path, env)
    printed = _run([LMMS_PYTHON, "-m", "lmms_eval", "--model", "longvlm", "--model_args",
                    "pretrained=small,protocol=mmlongbench", "--tasks", "longvlm_mmlongbench_doc",
                    "--include_path", "tasks", "--output_path", "lmms", "--log_samples"], tmp_path, env)
    _run([sys.executable, "-m", "longvlm.cli", "eval", "mmlongbench", "--model", "small", "--data", str(DATA),
          "--limit", limit, "--out", "longvlm"], tmp_path, env)

    # lmms-eval exits 0 even when evaluation fails: its results file and printed table are the evidence
    row = re.search(r"\|longvlm_mmlongbench_doc\|.*?\|score\s*\|[^|]*\|\s*([0-9.]+)\|", printed)
    assert row, printed[-3000:]
    results = json.loads(next((tmp_path / "lmms").rglob("*_results.json")).read_text())
    lmms_score = results["results"]["longvlm_mmlongbench_doc"]["score,none"]
    ours = json.loads((tmp_path / "longvlm" / "results.json").read_text())
    assert ours["scored"] == 14
    assert lmms_score == pytest.approx(ours["overall"]["accuracy"]) == pytest.approx(float(row.group(1)), abs=1e-4)

    samples = [json.loads(line) for line in next((tmp_path / "lmms").rglob("*_samples_*.jsonl")).open()]
    questions = [json.loads(line) for line in (tmp_path / "tasks" / "longvlm_mmlongbench_doc" / "samples.jsonl").open()]
    records = {r["qid"]: r for r in map(json.loads, (tmp_path / "longvlm" / "records.jsonl").open())}
    assert len(samples) == 14
    for sample in samples:
        record = records[questions[sample["doc_id"]]["qid"]]
        response = sample["filtered_resps"]
        assert (response[0] if isinstance(response, list) else response) == record["response"]
        assert sample["score"] == record["score"]


def test_lmms_eval_needle_task_equals_longvlm_eval_niah(tmp_path):
    """The document needle suite as an lmms-eval task over page images on disk: the shipped small model gets
    the same answers, and lmms-eval the same accuracy, as `longvlm eval niah` (a real score, not 0)."""
    assert LMMS_PYTHON, "LONGVLM_REQUIRE_LMMS=1 but LONGVLM_LMMS_PYTHON is not set"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    spec = ["--lengths", "4", "8", "--depths", "0", "0.5", "1", "--samples", "2"]
    _run([sys.executable, "-m", "longvlm.cli", "eval", "lmms-task", "--niah", "--out", "tasks", *spec],
         tmp_path, env)
    printed = _run([LMMS_PYTHON, "-m", "lmms_eval", "--model", "longvlm", "--model_args",
                    "pretrained=small,protocol=niah", "--tasks", "longvlm_niah_document", "--include_path", "tasks",
                    "--output_path", "lmms", "--log_samples"], tmp_path, env)
    _run([sys.executable, "-m", "longvlm.cli", "eval", "niah", "--suite", "document", "--model", "small",
          "--scoring", "generate", "--out", "longvlm", *spec], tmp_path, env)
    assert "longvlm_niah_document" in printed
    results = json.loads(next((tmp_path / "lmms").rglob("*_results.json")).read_text())
    ours = json.loads((tmp_path / "longvlm" / "document_summary.json").read_text())
    assert results["results"]["longvlm_niah_document"]["accuracy,none"] == pytest.approx(ours["accuracy_generate"])
    assert ours["accuracy_generate"] > 0.5  # the shipped model finds these needles
    samples = [json.loads(line) for line in next((tmp_path / "lmms").rglob("*_samples_*.jsonl")).open()]
    rows = [json.loads(line) for line in (tmp_path / "tasks" / "longvlm_niah_document" / "samples.jsonl").open()]
    records = {r["question_id"]: r for r in map(json.loads, (tmp_path / "longvlm" / "document_samples.jsonl").open())}
    assert len(samples) == len(records) == 12
    for sample in samples:
        response = sample["filtered_resps"]
        record = records[rows[sample["doc_id"]]["qid"]]
        assert (response[0] if isinstance(response, list) else response) == record["response"]

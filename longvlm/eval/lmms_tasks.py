"""lmms-eval task folders over local files: MMLongBench-Doc as `longvlm eval mmlongbench` scores it.

`write_mmlongbench_task(data, out)` writes `out/longvlm_mmlongbench_doc/` (the task YAML, a `utils.py` that
points at the functions below, and `samples.jsonl`: the questions whose PDF is present, with its absolute
path). Run it with

    lmms-eval --model longvlm --model_args pretrained=small,protocol=mmlongbench \\
        --tasks longvlm_mmlongbench_doc --include_path OUT --output_path RESULTS

The score is the official per-answer-format score of the rule-based extraction, averaged: the `accuracy`
of `longvlm eval mmlongbench` (same protocol, same answers with `protocol=mmlongbench`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from longvlm.errors import InputError
from longvlm.eval.extract import rule_based_extract
from longvlm.eval.mmlongbench import load_samples
from longvlm.eval.mmlongbench_run import score_prediction

TASK = "longvlm_mmlongbench_doc"

YAML = f"""# Written by `longvlm eval lmms-task` (longvlm/eval/lmms_tasks.py): MMLongBench-Doc over local PDFs.
task: {TASK}
dataset_path: json
dataset_kwargs:
  data_files:
    test: samples.jsonl
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 64
  do_sample: false
process_results: !function utils.process_results
metric_list:
  - metric: score
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

UTILS = '''"""Written by `longvlm eval lmms-task`: the task's functions live in longvlm.eval.lmms_tasks."""
from longvlm.eval.lmms_tasks import doc_to_text, doc_to_visual, process_results  # noqa: F401
'''


def doc_to_visual(doc: dict) -> list[str]:
    """The question's PDF, by path (the model reads it as `longvlm eval mmlongbench` does)."""
    return [doc["pdf"]]


def doc_to_text(doc: dict) -> str:
    """The question as the benchmark asks it (no added instructions, as `longvlm eval mmlongbench`)."""
    return doc["question"]


def process_results(doc: dict, results: list[str]) -> dict:
    """The official score of the rule-based extraction of the model's response."""
    pred = rule_based_extract(results[0] if results else "", doc["answer_format"])
    return {"score": score_prediction(doc, pred)}


def write_mmlongbench_task(data_dir: str | os.PathLike, out_dir: str | os.PathLike, limit: int | None = None) -> Path:
    """Write the task folder for the questions (the first `limit`) of `data_dir` whose PDF is present (the
    same questions, in the same order, as `longvlm eval mmlongbench --data data_dir --limit N` scores).
    Returns the folder."""
    data = Path(data_dir)
    if not (data / "samples.json").is_file():
        raise InputError(str(data_dir), "no samples.json (point --data at the MMLongBench-Doc data folder)")
    folder = Path(out_dir) / TASK
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for qid, sample in enumerate(load_samples(data / "samples.json")[:limit]):
        pdf = (data / "documents" / sample["doc_id"]).resolve()
        if pdf.is_file():
            rows.append({"qid": qid, "doc_id": sample["doc_id"], "pdf": str(pdf), "question": sample["question"],
                         "answer": str(sample["answer"]), "answer_format": sample["answer_format"]})
    (folder / f"{TASK}.yaml").write_text(YAML)
    (folder / "utils.py").write_text(UTILS)
    (folder / "samples.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder

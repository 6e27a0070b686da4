"""lmms-eval task folders over local files: MMLongBench-Doc as `longvlm eval mmlongbench` scores it, and the
document needle-in-a-haystack suite as `longvlm eval niah` scores it.

`write_mmlongbench_task(data, out)` writes `out/longvlm_mmlongbench_doc/` (the task YAML, a `utils.py` that
points at the functions below, and `samples.jsonl`: the questions whose PDF is present, with its absolute
path). Run it with

    lmms-eval --model longvlm --model_args pretrained=small,protocol=mmlongbench \\
        --tasks longvlm_mmlongbench_doc --include_path OUT --output_path RESULTS

The score is the official per-answer-format score of the rule-based extraction, averaged: the `accuracy`
of `longvlm eval mmlongbench` (same protocol, same answers with `protocol=mmlongbench`).

`write_niah_task(spec, out)` writes `out/longvlm_niah_document/`: every sample of a document NIAH suite, its
pages as PNG files (lossless) and its user turn as a list of parts; `--model_args ...,protocol=niah` answers
each as `longvlm eval niah` does (the same pixels and prompt), so `accuracy` equals its generation accuracy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from longvlm.datasets.examples import Example, ImageItem

from longvlm.errors import InputError
from longvlm.eval.extract import rule_based_extract
from longvlm.eval.mmlongbench import load_samples
from longvlm.eval.mmlongbench_run import score_prediction
from longvlm.eval.niah import SuiteSpec, answer_matches, iter_samples

TASK = "longvlm_mmlongbench_doc"

def task_yaml(task: str, what: str, *, visual: str, text: str, results: str, metric: str, max_new_tokens: int) -> str:
    """An lmms-eval task YAML over `samples.jsonl` next to it, its functions in the folder's `utils.py`."""
    return f"""# Written by `longvlm eval lmms-task` (longvlm/eval/lmms_tasks.py): {what}.
task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: samples.jsonl
test_split: test
output_type: generate_until
doc_to_visual: !function utils.{visual}
doc_to_text: !function utils.{text}
doc_to_target: answer
generation_kwargs:
  max_new_tokens: {max_new_tokens}
  do_sample: false
process_results: !function utils.{results}
metric_list:
  - metric: {metric}
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


YAML = task_yaml(TASK, "MMLongBench-Doc over local PDFs", visual="doc_to_visual", text="doc_to_text",
                 results="process_results", metric="score", max_new_tokens=64)

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


NIAH_TASK = "longvlm_niah_document"

NIAH_YAML = task_yaml(NIAH_TASK, "document NIAH over local page images", visual="niah_visual", text="niah_text",
                      results="niah_results", metric="accuracy", max_new_tokens=12)

NIAH_UTILS = '''"""Written by `longvlm eval lmms-task`: the task's functions live in longvlm.eval.lmms_tasks."""
from longvlm.eval.lmms_tasks import niah_results, niah_text, niah_visual  # noqa: F401
'''


def niah_visual(doc: dict) -> list[str]:
    """The sample's page images, by path."""
    return [part["image"] for part in doc["parts"] if part.get("image")]


def niah_text(doc: dict) -> str:
    """The question (the user turn's last text part)."""
    return next(part["text"] for part in reversed(doc["parts"]) if part.get("text"))


def niah_results(doc: dict, results: list[str]) -> dict:
    """1 when the response gives the needle's answer, as `longvlm eval niah` scores generation."""
    return {"accuracy": float(answer_matches(doc["answer"], results[0] if results else ""))}


def example_from_doc(doc: dict) -> Example:
    """The `Example` a NIAH task row stands for: its parts in order, pages read back from their PNG files."""
    parts: list = []
    for part in doc["parts"]:
        if part.get("image"):
            with Image.open(part["image"]) as image:
                parts.append(ImageItem(np.asarray(image.convert("RGB"))))
        else:
            parts.append(part["text"])
    return Example(parts, doc["answer"], doc["task"], {"depth": doc["depth"]})


def write_niah_task(spec: SuiteSpec, out_dir: str | os.PathLike) -> Path:
    """Write the task folder for every sample of a document NIAH suite (`spec.suite == "document"`): the same
    samples, in the same order, as `longvlm eval niah` with that spec. Returns the folder."""
    if spec.suite != "document":
        raise InputError("lmms-task", f"the lmms-eval needle task is the document suite, not {spec.suite!r}")
    folder = Path(out_dir) / NIAH_TASK
    (folder / "pages").mkdir(parents=True, exist_ok=True)
    rows = []
    for qid, example in iter_samples(spec):
        parts = []
        for item in example.parts:
            if isinstance(item, ImageItem):
                path = (folder / "pages" / f"{qid}-{len(parts)}.png").resolve()
                Image.fromarray(item.pixels).save(path)
                parts.append({"image": str(path), "text": None})
            else:
                parts.append({"image": None, "text": item})
        rows.append({"qid": qid, "parts": parts, "answer": example.answer, "task": example.task,
                     "depth": example.meta.get("depth")})
    (folder / f"{NIAH_TASK}.yaml").write_text(NIAH_YAML)
    (folder / "utils.py").write_text(NIAH_UTILS)
    (folder / "samples.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder

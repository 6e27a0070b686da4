"""lmms-eval task folders over local files (`longvlm eval lmms-task`), without lmms-eval itself."""

import json

import numpy as np
import pytest
import yaml

from conftest import SHARED_DATA
from longvlm.datasets.examples import ImageItem
from longvlm.eval.lmms_tasks import (NIAH_TASK, TASK, example_from_doc, niah_results, niah_text, niah_visual,
                                     process_results, write_mmlongbench_task, write_niah_task)
from longvlm.eval.niah import SuiteSpec, iter_samples


class _TaskLoader(yaml.SafeLoader):
    """Reads lmms-eval's `!function` tags as plain strings."""


_TaskLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def test_needle_rows_rebuild_the_suites_examples_exactly(tmp_path):
    spec = SuiteSpec("document", [3], [0.0, 1.0], samples=1)
    folder = write_niah_task(spec, tmp_path)
    task = yaml.load((folder / f"{NIAH_TASK}.yaml").read_text(), Loader=_TaskLoader)
    assert task["task"] == NIAH_TASK and task["process_results"] == "utils.niah_results"
    rows = [json.loads(line) for line in (folder / "samples.jsonl").open()]
    for row, (qid, example) in zip(rows, iter_samples(spec), strict=True):
        rebuilt = example_from_doc(row)
        assert row["qid"] == qid and rebuilt.answer == example.answer and len(rebuilt.parts) == len(example.parts)
        for a, b in zip(rebuilt.parts, example.parts):
            assert (np.array_equal(a.pixels, b.pixels) if isinstance(b, ImageItem) else a == b)
        assert niah_visual(row) == [p["image"] for p in row["parts"] if p["image"]]
        assert niah_text(row) == example.parts[-1]
        assert niah_results(row, [example.answer]) == {"accuracy": 1.0}
        assert niah_results(row, ["something else"]) == {"accuracy": 0.0}


@pytest.mark.skipif(not (SHARED_DATA / "mmlongbench-doc" / "samples.json").is_file(), reason="shared data absent")
def test_mmlongbench_rows_are_the_present_questions(tmp_path):
    folder = write_mmlongbench_task(SHARED_DATA / "mmlongbench-doc", tmp_path, limit=40)
    rows = [json.loads(line) for line in (folder / "samples.jsonl").open()]
    assert len(rows) == 14 and all(row["pdf"].endswith(row["doc_id"]) for row in rows)
    assert yaml.load((folder / f"{TASK}.yaml").read_text(), Loader=_TaskLoader)["metric_list"][0]["metric"] == "score"
    row = rows[0]
    assert process_results(row, [row["answer"]])["score"] == 1.0
    assert process_results(row, ["certainly not that"])["score"] == 0.0

"""Needle-in-a-haystack suites, MMLongBench-Doc runner and extractors, lmms-eval adapter (tiny model)."""

import json
import sys
import types

import pytest

from longvlm.eval.extract import FAILED, official_extract, parse_extraction, rule_based_extract
from longvlm.eval.mmlongbench_run import run_mmlongbench
from longvlm.eval.niah import SuiteSpec, grid_answer, iter_samples, parse_response, run_suite, vniah_accuracies
from longvlm.vlm.loading import load_vlm


@pytest.fixture(scope="module")
def tiny():
    return load_vlm("tiny")


@pytest.mark.parametrize("suite", ["video", "image", "document"])
def test_suites_write_records_summary_heatmap_and_resume(tiny, tmp_path, suite):
    spec = SuiteSpec(suite, [4, 6], [0.0, 1.0], samples=2)
    summary = run_suite(tiny, spec, str(tmp_path))
    records = [json.loads(x) for x in (tmp_path / f"{suite}_samples.jsonl").read_text().splitlines()]
    assert len(records) == summary["samples"] == 8
    assert {"question_id", "answer", "response", "context_length", "depth", "latency_s", "peak_rss_mb",
            "correct_generate", "correct_teacher"} <= set(records[0])
    assert len(summary["cells"]) == 4 and (tmp_path / f"{suite}_heatmap.png").stat().st_size > 2000
    run_suite(tiny, spec, str(tmp_path))  # resume: nothing new
    assert len((tmp_path / f"{suite}_samples.jsonl").read_text().splitlines()) == 8
    if suite == "image":
        assert {"existence_accuracy", "index_accuracy", "exact_accuracy"} <= set(summary)
    if suite == "video":
        rows = json.loads((tmp_path / "all_accuracies.json").read_text())
        assert {(r["Num. Frame"], r["Frame Depth"]) for r in rows} == {(4, 0.0), (4, 100.0), (6, 0.0), (6, 100.0)}


def test_samples_are_seeded_and_place_the_needle():
    spec = SuiteSpec("video", [10], [0.5], samples=1)
    (qid, a), = iter_samples(spec)
    (_, b), = iter_samples(spec)
    assert a.answer == b.answer and (a.parts[0].frames == b.parts[0].frames).all()
    assert a.meta["needle_frame"] == 4 or a.meta["needle_frame"] == 5
    document = next(iter_samples(SuiteSpec("document", [5], [1.0], samples=1, question="count")))[1]
    assert document.task == "document_needle/count"


def test_vniah_rows_and_parsing():
    records = [{"length": 8, "depth": 0.25, "correct": True}, {"length": 8, "depth": 0.25, "correct": False}]
    assert vniah_accuracies(records) == [{"Num. Frame": 8, "Frame Depth": 20.0, "Score": 0.5}]
    assert parse_response("The answer is B.", "B") == "B"
    assert grid_answer("2, 1, 3") == (2, 1, 3) and grid_answer("-1") is None and grid_answer("none") is None


def test_extractors():
    assert parse_extraction("Extracted answer: 42\nAnswer format: Integer") == "42"
    assert parse_extraction("I think 42") == FAILED
    seen = []
    raw, pred = official_extract("Q?", "It is 42.", "PROMPT", lambda m: seen.append(m) or "Extracted answer: 42\n"
                                 "Answer format: Integer")
    assert pred == "42" and seen[0][0] == {"role": "user", "content": "PROMPT"}
    assert seen[0][1]["content"] == "\n\nQuestion:Q?\nAnalysis:It is 42.\n"
    assert rule_based_extract("There were 1,234 people.", "Int") == "1234"
    assert rule_based_extract("About 3.5%", "Float") == "3.5"
    assert rule_based_extract("red, green and blue", "List") == "['red', 'green', 'blue']"
    assert rule_based_extract("", "Str") == "Not answerable"


def test_mmlongbench_dev_subset_runs_and_skips_missing(tiny, tmp_path, shared_pdfs):
    data = shared_pdfs[0].parent.parent
    results = run_mmlongbench(tiny, str(data), str(tmp_path), limit=30, max_visual_tokens=300,
                              min_tokens_per_page=4, max_new_tokens=4, max_pages=12)
    records = [json.loads(x) for x in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert len(records) == 30 == results["questions"]
    skipped = [r for r in records if r.get("skipped")]
    assert results["skipped"] == len(skipped) and all("score" not in r for r in skipped)
    assert results["scored"] == 30 - len(skipped) > 0
    assert results["extractor"].startswith("rule-based") and "NOT the official" in results["extractor"]
    assert all(r["pages_fed"] > 0 for r in records if "score" in r)


def test_lmms_adapter_with_stub(monkeypatch, tiny, sixty_page_pdf, short_video):
    """The lmms-eval model class, against a minimal stand-in of lmms-eval's API (lmms-eval is optional)."""
    api = types.ModuleType("lmms_eval.api.model")

    class Base:
        def __init__(self):
            self.task_dict = {}

    api.lmms = Base
    for name, module in {"lmms_eval": types.ModuleType("lmms_eval"), "lmms_eval.api": types.ModuleType("lmms_eval.api"),
                         "lmms_eval.api.model": api}.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, "longvlm.eval.lmms_model", raising=False)
    from longvlm.eval.lmms_model import LongVLM

    model = LongVLM(pretrained="tiny", max_visual_tokens=300, max_new_tokens=3)
    docs = {"pdf": sixty_page_pdf, "video": short_video, "text": None}
    model.task_dict = {"t": {"test": docs}}
    requests = [types.SimpleNamespace(args=("What is it?", {"max_new_tokens": 2}, lambda d: [d], key, "t", "test"))
                for key in docs]
    outputs = model.generate_until(requests)
    assert len(outputs) == 3 and all(isinstance(o, str) for o in outputs)
    with pytest.raises(NotImplementedError):
        model.loglikelihood(requests)


# -- held-out synthetic needle accuracy (longvlm.eval.synthetic, scripts/eval_small_model.py) ----------------

def test_normalize_answer():
    from longvlm.eval.synthetic import normalize_answer

    assert normalize_answer(" Red. ") == normalize_answer("red") == "red"
    assert normalize_answer("1,  2, 3") == "1, 2, 3" and normalize_answer("4417") != normalize_answer("4471")


def test_heldout_examples_fit_the_length_bin_and_differ_from_training(tiny):
    from longvlm.datasets.mixture import LengthBin, Mixture
    from longvlm.eval.synthetic import heldout_examples
    from longvlm.training.collate import example_length

    examples = heldout_examples(tiny, "video_needle/color", 6, 100, 300)
    assert [e.task for e in examples] == ["video_needle/color"] * 6
    assert all(100 <= e.meta["target_tokens"] <= 300 and 80 <= e.meta["length"] <= 300 for e in examples)
    assert [e.meta["length"] for e in examples] == [
        e.meta["length"] for e in heldout_examples(tiny, "video_needle/color", 6, 100, 300)]
    train = Mixture({"video_needle/color": 1.0}, [LengthBin("eval", 100, 300)],
                    lambda e: example_length(e, tiny.tokenizer, tiny.config, tiny.vision))
    assert [e.meta["length"] for e in examples] != [train.draw(i).meta["length"] for i in range(6)]


def test_generation_accuracy_scores_each_record(tiny):
    from longvlm.eval.synthetic import generation_accuracy, heldout_examples, normalize_answer

    examples = heldout_examples(tiny, "video_needle/color", 2, 30, 80) + heldout_examples(tiny, "text_passkey", 2,
                                                                                          30, 80)
    result = generation_accuracy(tiny, examples, max_new_tokens=4)
    assert result["samples"] == 4 and set(result["per_task"]) == {"video_needle/color", "text_passkey"}
    for record in result["records"]:
        assert record["correct"] == (normalize_answer(record["response"]) == normalize_answer(record["answer"]))
    assert result["accuracy"] == sum(r["correct"] for r in result["records"]) / 4


def test_eval_script_length_bins(tmp_path, capsys, load_script):
    module = load_script("scripts/eval_small_model.py")
    out = tmp_path / "bins.json"
    assert module.main(["--model", "tiny", "--tasks", "text_passkey", "--per-task", "1", "--length-bins",
                        "30:60", "61:120", "--out", str(out)]) == 0
    assert "| text_passkey |" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert set(saved["accuracy"]["text_passkey"]) == {"30-60", "61-120"}
    with pytest.raises(SystemExit, match="MIN:MAX"):
        module.parse_bin("60-30")

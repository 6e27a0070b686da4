"""Edge cases of every answer format, against values worked out by hand from the public scorer's rules."""

import pytest

from longvlm.eval.mmlongbench import accuracy_and_f1, aggregate, anls, clean_string, levenshtein, score_answer


def test_levenshtein_and_anls():
    assert levenshtein("kitten", "sitting") == 3 and levenshtein("", "abc") == 3 and levenshtein("a", "a") == 0
    assert anls("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert anls("abcd", "abxy") == 0.0  # similarity exactly 0.5 is not above the threshold
    assert anls("abcde", "abcdx") == pytest.approx(0.8)


@pytest.mark.parametrize("gt,pred,score", [
    ("12", "12", 1.0), ("12", "12.0", 1.0), ("12", "12.9", 1.0),  # int(float(pred)) truncates
    ("12", "13", 0.0), ("12", "twelve", 0.0), ("12", "", 0.0), ("0", "0", 1.0),
])
def test_int(gt, pred, score):
    assert score_answer(gt, pred, "Int") == score


@pytest.mark.parametrize("gt,pred,score", [
    ("3.14", "3.14", 1.0), ("3.14", "3.1416", 1.0),       # within 1 %
    ("3.14", "3.2", 0.0), ("25%", "0.25", 1.0),           # percentage read as x/100
    ("0.25", "25", 1.0), ("25", "25%", 1.0),              # x*100 and '%' stripped
    ("$1.5", "1.50", 1.0), ("2.5", "abc", 0.0), ("100.0", "99.5", 1.0), ("100.0", "98", 0.0),
])
def test_float(gt, pred, score):
    assert score_answer(gt, pred, "Float") == score


@pytest.mark.parametrize("gt,pred,expected", [
    ("Less well-off", "less well-off", 1.0),
    ("Less well-off", "Less well off", 1 - 1 / 13),
    ("Republicans (GOP)", "republicans", 1.0),            # parentheses removed
    ("'Yes'", "yes", 1.0),                                 # quotes removed
    ("5 miles", "5", 0.0),                                 # quirk: units kept -> '5 miles' vs '5' (ANLS 0.14)
    ("https://example.com/a", "https://example.com/b", 0.0),  # exact-match class
    ("page 5", "page 5", 1.0), ("555-1234", "5551234", 0.0),
    ("Not answerable", "Not answerable", 1.0), ("Not answerable", "Fail to answer", 0.0),
])
def test_str_and_none(gt, pred, expected):
    assert score_answer(gt, pred, "Str") == pytest.approx(expected)
    assert score_answer(gt, pred, "None") == pytest.approx(expected)


@pytest.mark.parametrize("gt,pred,expected", [
    ("['Circle', 'Rectangle']", "['rectangle', 'circle']", 1.0),  # order-free
    ("['Circle', 'Rectangle']", "['Circle']", 0.0),               # length mismatch
    ("['1.3', '2']", "['2', '1.3']", 1.0),                        # numeric: exact after sort
    ("['1.3', '2']", "['2', '1.30']", 0.0),
    ("['The Economist', 'TIME']", "['The Economist', 'Time magazine']", 0.0),  # min ANLS: 'time' vs ...
    ("['The Economist', 'TIME']", "['The Economst', 'time']", 1 - 1 / 13),
    ("['a', 'b']", "[not a list", 0.0), ("['a', 'b']", "__import__('os')", 0.0),  # never evaluated
    ("['White', '10%']", "['white', '10']", 1.0),
])
def test_list(gt, pred, expected):
    assert score_answer(gt, pred, "List") == pytest.approx(expected)


def test_clean_string():
    assert clean_string(" $1,000 (approx.) ") == "1,000"
    assert clean_string('"Quoted"') == "quoted"


def test_accuracy_and_generalized_f1_by_hand():
    records = [
        {"answer": "a", "pred": "a", "score": 1.0},
        {"answer": "b", "pred": "x", "score": 0.0},
        {"answer": "Not answerable", "pred": "Not answerable", "score": 1.0},
        {"answer": "Not answerable", "pred": "y", "score": 0.0},
        {"answer": "c", "pred": "Not answerable", "score": 0.0},
    ]
    acc, f1 = accuracy_and_f1(records)
    assert acc == pytest.approx(2 / 5)
    recall, precision = 1 / 3, 1 / 3  # mass 1 over 3 answerable; over 3 predictions that are not 'Not answerable'
    assert f1 == pytest.approx(2 * recall * precision / (recall + precision))


def test_aggregate_breakdowns():
    base = {"doc_type": "Report", "evidence_sources": ["Chart"]}
    records = [
        {**base, "answer": "a", "pred": "a", "score": 1.0, "evidence_pages": [3]},
        {**base, "answer": "b", "pred": "c", "score": 0.0, "evidence_pages": [1, 2], "evidence_sources": ["Table", "Chart"]},
        {**base, "answer": "Not answerable", "pred": "Not answerable", "score": 1.0, "evidence_pages": []},
        {"skipped": True, "answer": "z", "evidence_pages": [1]},
    ]
    result = aggregate(records)
    assert result["overall"]["count"] == 3 and result["overall"]["accuracy"] == pytest.approx(2 / 3)
    assert result["single_page"] == {"accuracy": 1.0, "f1": pytest.approx(1.0), "count": 1}
    assert result["cross_page"]["count"] == 1 and result["cross_page"]["accuracy"] == 0.0
    assert result["unanswerable"]["count"] == 1 and result["unanswerable"]["accuracy"] == 1.0
    assert result["evidence_sources"]["Chart"]["count"] == 3 and result["evidence_sources"]["Table"]["count"] == 1
    assert result["skipped"] == 1


# -- totality: any prediction gets a score in [0, 1], quickly ------------------------------------------------

HOSTILE = {
    "nested brackets": "[" * 3000 + "]" * 3000,
    "unary chain": "[" + "-" * 6000 + "1]",          # MemoryError in Python's parser
    "binary chain": "[1" + "+1" * 3000 + "]",         # RecursionError in Python's parser
    "set of dict": "[" + "{" * 150 + "}" * 150 + "]",  # TypeError in ast.literal_eval
    "call": "[__import__('os').system('echo hi')]",
    "huge int": "[" + "9" * 5000 + "]",
    "unclosed": "[" * 20_000,
    "parentheses": "(" * 50_000,
}


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("answer_format", ["Int", "Float", "Str", "None", "List"])
def test_hostile_predictions_score_in_range(name, answer_format):
    import time

    started = time.perf_counter()
    score = score_answer("['Circle', 'Rectangle']" if answer_format == "List" else "12", HOSTILE[name],
                         answer_format)
    assert 0.0 <= score <= 1.0 and time.perf_counter() - started < 1.0


@pytest.mark.parametrize("answer_format,gt", [("Str", "Less well-off"), ("List", "['a', 'b']"), ("Int", "12"),
                                               ("Float", "3.14"), ("None", "Not answerable")])
def test_ten_megabyte_prediction_is_cut_and_noted(answer_format, gt):
    import time

    from longvlm.eval.mmlongbench import MAX_PREDICTION_CHARS, score_with_note

    pred = "why " * 2_500_000
    started = time.perf_counter()
    score, note = score_with_note(gt, pred, answer_format)
    assert score == 0.0 and time.perf_counter() - started < 2.0
    assert f"{MAX_PREDICTION_CHARS:,}" in note and "10,000,000" in note
    assert score_with_note(gt, "short", answer_format)[1] == ""


def test_long_prediction_matching_after_the_cut_scores_its_prefix():
    from longvlm.eval.mmlongbench import MAX_PREDICTION_CHARS

    assert score_answer("12", "12" + " " * MAX_PREDICTION_CHARS * 3, "Int") == 1.0


def test_anls_length_shortcut_is_exact():
    import random

    rng = random.Random(0)
    for _ in range(2000):
        a = "".join(rng.choice("abß ") for _ in range(rng.randint(0, 12)))
        b = "".join(rng.choice("abß ") for _ in range(rng.randint(0, 12)))
        length = max(len(a.upper()), len(b.upper()))
        value = 1.0 - (levenshtein(a, b) / length if length else 0.0)
        assert anls(a, b) == (0.0 if value <= 0.5 else value)


@pytest.mark.parametrize("text", [
    "['Circle', 'Rectangle']", "['1.3', '2']", "[1, -2.5, +3, 1e3, .5, 5., 1_000]", "['a',]", "[]",
    "[\"It's\", 'say \"hi\"', 'tab\\there']", "['a' 'b', 'c']", "[None, True, False]", "[(1, 2), (3,), ()]",
    "[[1, [2, [3]]]]", "[ 'a' , # comment\n 'b' ]", "[b'x', r'\\d', u'y']", "[(1)]",
])
def test_parse_literal_matches_python(text):
    import ast

    from longvlm.eval.mmlongbench import parse_literal

    assert parse_literal(text) == ast.literal_eval(text)


@pytest.mark.parametrize("text", ["[1,,2]", "[1 2]", "['a'", "[x]", "[1] + [2]", "[007]", "[{1}]", "['a' b'b']",
                                  "[" * 17 + "]" * 17, "[1j]", "[-'a']"])
def test_parse_literal_refuses(text):
    from longvlm.eval.mmlongbench import parse_literal

    with pytest.raises(ValueError):
        parse_literal(text)


def test_parse_literal_matches_every_list_answer_of_the_benchmark():
    import ast

    from conftest import SHARED_DATA
    from longvlm.eval.mmlongbench import parse_literal

    path = SHARED_DATA / "mmlongbench-doc" / "samples.json"
    if not path.is_file():
        pytest.skip("MMLongBench-Doc samples.json not here")
    import json

    answers = [s["answer"] for s in json.loads(path.read_text()) if s["answer_format"] == "List"]
    assert answers and all(parse_literal(a) == ast.literal_eval(a) for a in answers)


def test_run_records_survives_a_hostile_prediction_and_a_torn_line_and_resumes(tmp_path):
    from longvlm.eval.mmlongbench_run import run_records, score_prediction
    from longvlm.eval.mmlongbench import prediction_note

    docs = tmp_path / "documents"
    docs.mkdir()
    (docs / "d.pdf").write_bytes(b"%PDF-1.4\n")
    base = {"doc_id": "d.pdf", "doc_type": "Report", "answer_format": "Str", "evidence_pages": [1],
            "evidence_sources": ["Pure-text"]}
    samples = [(0, {**base, "question": "q0", "answer": "yes"}),
               (1, {**base, "question": "q1", "answer": "['a', 'b']", "answer_format": "List"}),
               (2, {**base, "question": "q2", "answer": "no"})]
    preds = {"q0": "yes", "q1": "[" * 6000 + "]" * 6000, "q2": "x" * 10_000_000}
    calls = []

    def answer_one(pdf, sample):
        calls.append(sample["question"])
        pred = preds[sample["question"]]
        out = {"pred": pred[:100], "score": score_prediction(sample, pred)}
        if prediction_note(pred):
            out["score_note"] = prediction_note(pred)
        return out

    out = tmp_path / "run"
    records = run_records(samples[:2], str(docs), str(out), answer_one)
    assert [r["score"] for r in records] == [1.0, 0.0]
    with open(out / "records.jsonl", "a") as fh:
        fh.write('{"qid": 2, "doc_id": "d.p')  # killed while writing
    records = run_records(samples, str(docs), str(out), answer_one)
    assert calls == ["q0", "q1", "q2"]  # resumed: only the unfinished question again
    assert [r["qid"] for r in records] == [0, 1, 2] and records[2]["score"] == 0.0
    assert "10,000,000 characters" in records[2]["score_note"]
    assert len(run_records(samples, str(docs), str(out), answer_one)) == 3 and len(calls) == 3

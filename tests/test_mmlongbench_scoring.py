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

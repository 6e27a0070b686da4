"""Answer normalisers, candidate extraction, spans and the abstention rule on fixed passages (no model)."""

import numpy as np

from longvlm.retrieval.answering import (NOT_ANSWERABLE, AbstentionRule, abstention_features, answer_span,
                                         clean_span, fit_logistic, normalize_list, normalize_number,
                                         normalize_percent, number_candidates, proximity, question_kind)

PASSAGES = ["In 2010, 21% of time was spent with family and friends; in 2005 it was 18 %.",
            "The survey had 1,234 respondents across five regions. Report for 2015-2016."]


def test_question_kind_from_the_question_only():
    assert question_kind("How many organisations does this report introduce?") == "int"
    assert question_kind("What percentage of respondents favor the wall?") == "percent"
    assert question_kind("What year is the report for?") == "year"
    assert question_kind("How much did revenue grow?") == "number"
    assert question_kind("What are the uses of the satellites?") == "list"
    assert question_kind("Where was Gestalt psychology conceived?") == "str"


def test_normalize_number():
    assert normalize_number("1,234") == "1234"
    assert normalize_number("12.50") == "12.5"
    assert normalize_number("$3.0M") == "3"
    assert normalize_number("five") == "5"
    assert normalize_number("7.6", integer=True) == "8"
    assert normalize_number("no digits") is None


def test_normalize_percent():
    assert normalize_percent("21 %") == "21%"
    assert normalize_percent("12.50 per cent") == "12.5%"
    assert normalize_percent("none") is None


def test_clean_span_and_list():
    assert clean_span('  "Berlin   School." ') == "Berlin   School".replace("   ", " ")
    assert normalize_list("Circle, rectangle and circle; Triangle\n") == "['Circle', 'rectangle', 'Triangle']"
    assert normalize_list(["a ", "A", "b."]) == "['a', 'b']"


def test_number_candidates_by_kind():
    assert [c.text for c in number_candidates(PASSAGES, "percent")] == ["21%", "18%"]
    assert [c.text for c in number_candidates(PASSAGES, "int")][:3] == ["2010", "21", "2005"]
    assert "1234" in [c.text for c in number_candidates(PASSAGES, "int")]
    assert "5" in [c.text for c in number_candidates(PASSAGES, "int")]  # 'five'
    assert [c.text for c in number_candidates(PASSAGES, "year")] == ["2010", "2005", "2015-2016"]
    first = number_candidates(PASSAGES, "percent")[0]
    assert PASSAGES[first.passage][first.start:first.start + len(first.surface)] == "21%"


def test_answer_span_offsets():
    text = PASSAGES[0]
    start, end = answer_span("21%", text)
    assert text[start:end] == "21%"
    assert text[slice(*answer_span("FAMILY and  friends", text))] == "family and friends"
    assert text[slice(*answer_span("['family and friends', 'x']", text))] == "family and friends"
    assert answer_span("2", text) is None  # whole numbers only, not a digit inside '2010'
    assert answer_span(NOT_ANSWERABLE, text) is None


def test_proximity_measures_question_words_near_the_answer():
    question = "How much time was spent with family and friends in 2010?"
    near = proximity(question, PASSAGES[0], 9, 12)
    assert near > 0.5
    assert proximity(question, PASSAGES[1], 0, 3) < near


def test_abstention_rule_on_fixed_evidence():
    rule = AbstentionRule({"bias": -4.0, "proximity": 6.0, "found": 1.0}, threshold=0.5)
    strong = abstention_features(top_score=2.5, answer_logprob=-1.0, answer_tokens=2, proximity=0.8, found=True,
                                 kind="percent")
    weak = abstention_features(top_score=0.1, answer_logprob=-12.0, answer_tokens=2, proximity=0.1, found=False,
                               kind="str")
    assert rule.decide(strong) == (False, rule.decide(strong)[1])
    abstain, why = rule.decide(weak)
    assert abstain and why.startswith("not found in the document") and "does not occur" in why
    assert "best passage score 0.10" in why


def test_fit_logistic_separates():
    rng = np.random.default_rng(0)
    x1 = rng.normal(size=200)
    y = (x1 > 0.3).astype(float)
    w = fit_logistic(np.stack([np.ones(200), x1], 1), y, l2=0.1, steps=3000)
    p = 1 / (1 + np.exp(-(w[0] + w[1] * x1)))
    assert w[1] > 0 and ((p > 0.5) == (y > 0.5)).mean() > 0.9

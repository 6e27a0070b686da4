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
    assert abstain and why.startswith("P(right) ") and "does not occur" in why
    assert "best passage score 0.10" in why


def test_fit_logistic_separates():
    rng = np.random.default_rng(0)
    x1 = rng.normal(size=200)
    y = (x1 > 0.3).astype(float)
    w = fit_logistic(np.stack([np.ones(200), x1], 1), y, l2=0.1, steps=3000)
    p = 1 / (1 + np.exp(-(w[0] + w[1] * x1)))
    assert w[1] > 0 and ((p > 0.5) == (y > 0.5)).mean() > 0.9


def test_acronym_expansion():
    from longvlm.retrieval.answering import acronym_expansion

    text = ["Research units: the National Atmospheric Research Laboratory (NARL) at Gadanki, and SDSC SHAR."]
    assert acronym_expansion("What is NARL stand for in this document?", text) == \
        "National Atmospheric Research Laboratory"
    assert acronym_expansion("What does NARL stand for?", text) == "National Atmospheric Research Laboratory"
    assert acronym_expansion("What is the full form of SDSC?", text) is None  # no run of words spells it
    assert acronym_expansion("Where is NARL?", text) is None  # not asked for an expansion
    # small words may sit between the initials, not at the end
    assert acronym_expansion("What does DoH stand for?", ["Department of Health"]) is None  # 'o' is not a capital
    assert acronym_expansion("What does BSE stand for?", ["the Bank of Sweden Enterprises"]) == \
        "Bank of Sweden Enterprises"


def test_year_range_normaliser():
    from longvlm.retrieval.answering import normalize_year_range

    assert normalize_year_range("Annual Report 2015-16") == "2015-2016"
    assert normalize_year_range("2015–2016") == "2015-2016"
    assert normalize_year_range("FY 1999/00") is None  # '2000' would be the century's guess; not a range forward
    assert normalize_year_range("in 2015") is None


def test_labelled_value_reads_the_value_beside_its_label():
    from longvlm.retrieval.answering import labelled_value

    page = ["Isle of Wight\nPO35 5XN\nTel: 01983 873655\nDate of inspection visit: 7 and 10 July 2015"]
    assert labelled_value("What is the telephone no for The Limes Residential Home?", page)[0] == "01983 873655"
    assert labelled_value("what is the CA, Bar no of the report?", ["Dated: 2018 (CA. Bar No. 239516)\n15"]) == \
        ("239516", 1.0)
    # the label on one line, the value on the next
    value, share = labelled_value("Who produced the document?", ["Revised May 2016\nProduced by:\nFlorida "
                                                                 "Department of Health\n4052 Bald Cypress Way"])
    assert value == "Florida Department of Health" and share == 1.0  # "document" is a stop word
    # labels sit on short lines: a question word inside prose is no label
    assert labelled_value("How did revenue change?", [" ".join(["revenue grew"] * 40)]) is None


def test_pattern_answer_by_the_shape_of_the_question():
    from longvlm.retrieval.answering import pattern_answer

    assert pattern_answer("What year is the report for?", ["ISRO Annual Report 2015-16\nContents"]) == \
        ("2015-2016", 0.8)
    assert pattern_answer("What does NARL stand for?", ["National Atmospheric Research Laboratory"])[1] == 1.0
    assert pattern_answer("How many people answered?", ["Respondents: 1,234"]) is None  # numbers: the reader's


def test_abstention_cues_from_the_question():
    from longvlm.retrieval.answering import asks_what_is_shown, unmatched_specifics

    assert asks_what_is_shown("How many cats are there in the images on page 1?")
    assert asks_what_is_shown("What is the color of the bike in the picture?")
    assert not asks_what_is_shown("What does NARL stand for?")
    doc = ["Survey conducted April 25 - May 1, 2018 among 1,503 adults", "Levels of Analytics"]
    assert unmatched_specifics("In the survey of April 25 - May 1 2022, how many adults said yes?", doc) == 0.2
    assert unmatched_specifics('What does "Levels of Analytics" show?', doc) == 0.0
    assert unmatched_specifics("What is the capital of Mars?", doc) == 1.0
    assert unmatched_specifics("what is it?", doc) == 0.0


def test_question_kind_follows_the_format_instruction():
    assert question_kind("How many grams of coffee can be put in the manual insert? Return me an integer.") == "int"
    assert question_kind("What is the gap between the groups? Please write the answer into float format.") == \
        "number"
    assert question_kind('How many male and female are there? Please write the answer in list format, e.g., '
                         '["1","2"]') == "list"
    assert question_kind("What is the final step? Please write down the answer in string format.") == "str"


def test_split_format_instructions():
    from longvlm.retrieval.questions import split_format_instructions

    assert split_format_instructions("How many grams of coffee fit? Return me an integer.") == \
        ("How many grams of coffee fit?", "Return me an integer.")
    assert split_format_instructions("Is CA03 in the Bay Area? Answer 'yes' or 'no'.") == \
        ("Is CA03 in the Bay Area?", "Answer 'yes' or 'no'.")
    assert split_format_instructions('Which operators differ? Please list the names in list format, e.g., ["a","b"]') \
        == ("Which operators differ?", 'Please list the names in list format, e.g., ["a","b"]')
    assert split_format_instructions("List the names of the board members.") == \
        ("List the names of the board members.", "")  # an imperative question is no instruction
    assert split_format_instructions("Name the list of service specifications?") == \
        ("Name the list of service specifications?", "")

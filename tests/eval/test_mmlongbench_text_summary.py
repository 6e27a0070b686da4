"""The text route's MMLongBench-Doc report on fixed records: re-deciding by an abstention rule, the perfect-
abstention bound and the fitted rule (no model)."""

from longvlm.eval.mmlongbench_text import fit_abstention, perfect_abstention, summarize, with_rule
from longvlm.retrieval.answering import FEATURES, AbstentionRule


def record(qid, answer, candidate, right, proximity, fmt="Str"):
    features = {k: 0.0 for k in FEATURES} | {"bias": 1.0, "proximity": proximity, "found": 1.0}
    return {"qid": qid, "answer": answer, "answer_format": fmt, "candidate": candidate, "features": features,
            "response": candidate, "pred": candidate, "score": float(right), "score_candidate": float(right),
            "evidence_pages": [1] if answer != "Not answerable" else [], "evidence_retrieved": [],
            "evidence_sources": ["Pure-text (Plain-text)"], "seconds": 1.0}


RECORDS = [record(0, "Paris", "Paris", True, 0.9), record(1, "Not answerable", "Lyon", False, 0.1),
           record(2, "Rome", "Milan", False, 0.2), record(3, "Oslo", "Oslo", True, 0.8),
           record(4, "Not answerable", "Bern", False, 0.15), record(5, "Bonn", "Bonn", True, 0.95)]


def test_with_rule_redecides_from_the_stored_candidate():
    near = AbstentionRule({"bias": -5.0, "proximity": 10.0}, threshold=0.5)  # answers when proximity > 0.5
    decided = with_rule(RECORDS, near)
    assert [r["pred"] for r in decided] == ["Paris", "Not answerable", "Not answerable", "Oslo", "Not answerable",
                                            "Bonn"]
    assert [r["score"] for r in decided] == [1.0, 1.0, 0.0, 1.0, 1.0, 1.0]


def test_perfect_abstention_keeps_exactly_the_right_candidates():
    bound = perfect_abstention(RECORDS)
    assert [r["pred"] for r in bound] == ["Paris", "Not answerable", "Not answerable", "Oslo", "Not answerable",
                                          "Bonn"]


def test_fitted_rule_separates_and_the_report_has_the_bound():
    rule = fit_abstention(RECORDS)
    assert [r["pred"] != "Not answerable" for r in with_rule(RECORDS, rule)] == [True, False, False, True, False,
                                                                                 True]
    report = summarize(RECORDS, rule=rule)
    names = [row["name"] for row in report["held_out_table"]]
    assert names[0] == "constant 'Not answerable'" and names[-1].startswith("upper bound: perfect abstention")
    held = {row["name"]: row for row in report["held_out_table"]}
    assert held[names[-1]]["accuracy"] == 1.0  # odd qids 1, 3, 5: abstain, Oslo, Bonn

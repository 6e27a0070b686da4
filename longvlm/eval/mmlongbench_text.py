"""MMLongBench-Doc with the text route: retrieval over page text/OCR + SmolLM2-135M-Instruct extracting a short
answer (`longvlm.retrieval.text_route`), scored with the official rules, with calibrated abstention: the
`AbstentionRule` is fitted on the even-qid half of the questions and reported on the odd-qid (held-out) half.

Per-question records go to `records.jsonl` (the run resumes from it); `results.json` has the aggregates.
Questions whose PDF is missing are recorded as skipped, never scored. Pages: the first 120, as in the
official protocol. Retrieval quality is recorded too: whether a retrieved passage came from an evidence page.
"""

from __future__ import annotations

import json
import os
import time

from longvlm.errors import InputError
from collections import defaultdict

import numpy as np

from longvlm.eval.mmlongbench import NOT_ANSWERABLE, accuracy_and_f1, aggregate, load_samples
from longvlm.eval.mmlongbench_run import run_records, score_prediction
from longvlm.ingest.cache import file_sha256
from longvlm.retrieval.page_text import pdf_page_texts
from longvlm.retrieval.ranking import QuestionSelector
from longvlm.retrieval.small_lm import load_small_lm
from longvlm.retrieval.answering import FEATURES, AbstentionRule, fit_logistic
from longvlm.retrieval.text_route import answer_from_items


def answer_one(sample: dict, pdf: str, lm, selector, *, max_pages: int = 120, max_passages: int = 3,
               ocr_max_pages: int | None = None) -> dict:
    """Answer one question with the text route (extraction and abstention included: the answer is scored as
    it is). Only the question text reaches the route: no gold label (answer format, evidence) is used."""

    started = time.perf_counter()
    # a benchmark reads every page: no per-question OCR budget (`longvlm.limits`), so results are comparable
    # (`ocr_max_pages=0`: only pages already OCR'd, from the cache)
    items = pdf_page_texts(pdf, max_pages=max_pages, ocr_max_pages=ocr_max_pages, ocr_budget_s=None)
    result = answer_from_items(sample["question"], items, lm=lm, selector=selector, key=file_sha256(pdf),
                               max_passages=max_passages)
    cited = [e.index for e in result.evidence]
    stats = result.stats
    record = {"response": result.text, "pred": result.text, "cited_pages": cited,
              "evidence_retrieved": sorted(set(cited) & set(sample["evidence_pages"])),
              "kind": stats["kind"], "candidate": stats["candidate_answer"], "features": stats["abstention_features"],
              "abstained": stats["abstained"], "abstain_reason": stats["abstain_reason"],
              "number_candidates": stats.get("number_candidates", []),
              "spans": [p["span"] for p in result.passages]}
    record["score"] = score_prediction(sample, record["pred"])
    record["score_candidate"] = score_prediction(sample, record["candidate"]) if record["candidate"] else 0.0
    record["seconds"] = record["seconds_answer"] = time.perf_counter() - started
    return record


FIT_HALF, HELD_OUT_HALF = "fit (even qid)", "held-out (odd qid)"


def in_fit_half(record: dict) -> bool:
    """The fixed split: questions with an even index (qid) in samples.json fit the abstention rule, odd ones
    are held out."""
    return record["qid"] % 2 == 0


def as_decided(record: dict, keep: bool) -> dict:
    """The record answering its stored candidate when `keep`, else 'Not answerable': `pred`, `score`,
    `abstained`."""
    return {**record, "pred": record["candidate"] if keep else NOT_ANSWERABLE, "abstained": not keep,
            "score": record["score_candidate"] if keep else score_prediction(record, NOT_ANSWERABLE)}


def with_rule(records: list[dict], rule: AbstentionRule) -> list[dict]:
    """The records re-decided by `rule` from their stored candidate answer and features (the same decision the
    text route makes): `pred`, `score`, `abstained`."""
    return [as_decided(r, bool(r["candidate"]) and bool(r["features"]) and not rule.decide(r["features"])[0])
            if "response" in r else r for r in records]


def fit_abstention(records: list[dict], *, label: str = FIT_HALF) -> AbstentionRule:
    """Fit `AbstentionRule` on `records`: a logistic regression of 'the candidate answer is right' (official
    score >= 0.5) on the features, then the threshold that maximises accuracy + generalized F1 on them."""
    usable = [r for r in records if r.get("features")]
    x = np.array([[r["features"][k] for k in FEATURES] for r in usable])
    y = np.array([float(r["score_candidate"] >= 0.5) for r in usable])
    weights = dict(zip(FEATURES, (float(w) for w in fit_logistic(x, y))))
    best = (-1.0, 1.0)
    probe = AbstentionRule(weights, 0.0)
    for threshold in sorted({round(probe.probability(r["features"]), 4) for r in usable} | {1.01}):
        rule = AbstentionRule(weights, threshold)
        acc, f1 = accuracy_and_f1(with_rule(records, rule))
        if acc + f1 > best[0] + 1e-12:
            best = (acc + f1, threshold)
    return AbstentionRule(weights, best[1], fitted_on=label)


def perfect_abstention(records: list[dict]) -> list[dict]:
    """The records as an oracle would decide them: the candidate kept exactly when it scores >= 0.5, else
    'Not answerable'. Not a method (it reads the gold answer): the most any abstention rule over these
    candidates can reach."""
    return [as_decided(r, bool(r.get("candidate")) and r.get("score_candidate", 0.0) >= 0.5) for r in records]


def answer_table_row(name: str, records: list[dict]) -> dict:
    """Accuracy, generalized F1, accuracy per (gold, for reporting only) answer format and evidence source, and
    abstention precision / recall (abstained on a 'Not answerable' question / 'Not answerable' questions
    abstained on)."""
    scored = [r for r in records if "score" in r]
    acc, f1 = accuracy_and_f1(scored)
    abstained = [r for r in scored if r["pred"] == NOT_ANSWERABLE]
    unanswerable = [r for r in scored if r["answer"] == NOT_ANSWERABLE]
    hits = sum(1 for r in abstained if r["answer"] == NOT_ANSWERABLE)
    formats, sources = defaultdict(list), defaultdict(list)
    for r in scored:
        formats[r["answer_format"]].append(r["score"])
        for source in r.get("evidence_sources", []):
            sources[source].append(r["score"])
    return {"name": name, "questions": len(scored), "accuracy": acc, "f1": f1,
            "answered": len(scored) - len(abstained),
            "correct_answers": sum(1 for r in scored if r["pred"] != NOT_ANSWERABLE and r["score"] >= 0.5),
            "abstention_precision": hits / len(abstained) if abstained else 0.0,
            "abstention_recall": hits / len(unanswerable) if unanswerable else 0.0,
            "per_format": {k: {"accuracy": sum(v) / len(v), "count": len(v)} for k, v in sorted(formats.items())},
            "per_source": {k: {"accuracy": sum(v) / len(v), "count": len(v)} for k, v in sorted(sources.items())}}


def summarize(records: list[dict], *, old_records: list[dict] | None = None,
              rule: AbstentionRule | None = None) -> dict:
    """Fit the abstention rule on the fit half (unless `rule` is given), and the answer table of the held-out
    half: constant 'Not answerable', the old text route (`old_records`: its `pred_llm`), the new route without
    abstention, and with it; plus the official aggregates, retrieval hit rate and timing."""
    answered = [r for r in records if "response" in r]
    rule = rule or fit_abstention([r for r in answered if in_fit_half(r)])
    decided = with_rule(answered, rule)
    held = [r for r in decided if not in_fit_half(r)]
    constant = [as_decided(r, False) for r in held]
    never = [as_decided(r, bool(r["candidate"])) for r in held]
    table = [answer_table_row("constant 'Not answerable'", constant)]
    if old_records:
        held_ids = {r["qid"] for r in held}
        old = [{**r, "pred": r["pred_llm"], "score": r["score_llm"]} for r in old_records
               if r["qid"] in held_ids and "pred_llm" in r]
        table.append(answer_table_row("old text route (free answer + constrained extractor)", old))
    table.append(answer_table_row("new text route, no abstention", never))
    table.append(answer_table_row("new text route + abstention", held))
    table.append(answer_table_row("upper bound: perfect abstention (keeps exactly the right candidates)",
                                  perfect_abstention(held)))
    fit = [r for r in decided if in_fit_half(r)]
    out = {"questions": len(records), "answered": len(answered),
           "skipped": sum(1 for r in records if r.get("skipped")),
           "split": "fit: even qid (index in samples.json); held-out: odd qid",
           "abstention_rule": {"weights": rule.weights, "threshold": rule.threshold, "fitted_on": rule.fitted_on},
           "held_out_table": table,
           "fit_half": answer_table_row("new text route + abstention (fit half)", fit),
           "held_out": aggregate(held), "all": aggregate(decided)}
    with_evidence = [r for r in answered if r["evidence_pages"]]
    out["retrieval"] = {
        "questions_with_evidence": len(with_evidence),
        "evidence_page_among_passages": sum(1 for r in with_evidence if r["evidence_retrieved"]) / max(1, len(with_evidence)),
    }
    if answered:
        out["seconds_per_question"] = sum(r["seconds"] for r in answered) / len(answered)
        out["cpu_seconds_per_question"] = sum(r.get("cpu_seconds", 0.0) for r in answered) / len(answered)
    return out


def format_table(table: list[dict]) -> str:
    """The answer table as Markdown."""
    formats = sorted({k for row in table for k in row["per_format"]})
    sources = sorted({k for row in table for k in row["per_source"]})
    head = (["row", "acc", "F1", "answered", "right", "abst. P", "abst. R"] + [f"fmt {f}" for f in formats]
            + [f"src {s.split(' ')[0]}" for s in sources])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table:
        cells = [row["name"], f"{row['accuracy']:.3f}", f"{row['f1']:.3f}", str(row["answered"]),
                 str(row["correct_answers"]), f"{row['abstention_precision']:.2f}", f"{row['abstention_recall']:.2f}"]
        cells += [f"{row['per_format'][f]['accuracy']:.2f}" if f in row["per_format"] else "-" for f in formats]
        cells += [f"{row['per_source'][s]['accuracy']:.2f}" if s in row["per_source"] else "-" for s in sources]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_text_route(data_dir: str, out_dir: str, *, limit: int | None = None, only_present: bool = True,
                   max_pages: int = 120, max_passages: int = 3, progress: bool = True,
                   old_records: str | None = None, rule: AbstentionRule | None = None,
                   ocr_max_pages: int | None = None) -> dict:
    """Run the text route over the question file (questions whose PDF is present; the others are recorded as
    skipped unless `only_present`), resuming from `out_dir/records.jsonl`."""

    samples_path = os.path.join(data_dir, "samples.json")
    documents = os.path.join(data_dir, "documents")
    if not os.path.isfile(samples_path):
        raise InputError(data_dir, "no samples.json (point --data at the MMLongBench-Doc data folder)")
    samples = list(enumerate(load_samples(samples_path)))
    if only_present:
        samples = [(q, s) for q, s in samples if os.path.isfile(os.path.join(documents, s["doc_id"]))]
    samples = samples[:limit]
    models: dict = {}

    def answer(pdf: str, sample: dict) -> dict:
        if not models:
            models.update(lm=load_small_lm(), selector=QuestionSelector())
        cpu = time.process_time()
        record = answer_one(sample, pdf, models["lm"], models["selector"], max_pages=max_pages,
                            max_passages=max_passages, ocr_max_pages=ocr_max_pages)
        return {**record, "cpu_seconds": time.process_time() - cpu}

    def report(n: int, total: int, record: dict) -> None:
        print(f"[{n + 1}/{total}] q{record['qid']} {record.get('kind', '-')} {record.get('candidate', '')!r:.40} "
              f"{record.get('score_candidate', '-')} {record.get('seconds', 0):.1f}s", flush=True)

    records = run_records(samples, documents, out_dir, answer, progress=report if progress else None)
    old = None
    if old_records and os.path.isfile(old_records):
        with open(old_records) as fh:
            old = [json.loads(line) for line in fh if line.strip()]
    results = {"route": "text: BM25 + all-MiniLM-L6-v2 retrieval, SmolLM2-135M-Instruct extracting (numbers "
                        "chosen by likelihood, spans copied), calibrated abstention",
               "protocol": f"page text (text layer, OCR for pages without one), first {max_pages} pages, "
                           f"{max_passages} passages; the gold answer format / evidence are used for scoring "
                           "and reporting only", **summarize(records, old_records=old, rule=rule)}
    with open(os.path.join(out_dir, "results.json"), "w") as fh:
        json.dump(results, fh, indent=2)
    with open(os.path.join(out_dir, "table.md"), "w") as fh:
        fh.write(format_table(results["held_out_table"]) + "\n")
    return results

"""MMLongBench-Doc with the text route: retrieval over page text/OCR + SmolLM2-135M-Instruct, scored with the
official rules, with two extractors side by side (rule-based, and SmolLM2 constrained).

Every question is answered once; both extractors read the same response, so their scores compare directly.
Per-question records go to `records.jsonl` (the run resumes from it); `results.json` has the aggregates.
Questions whose PDF is missing are recorded as skipped, never scored. Pages: the first 120, as in the
official protocol. Retrieval quality is recorded too: whether a retrieved passage came from an evidence page.
"""

from __future__ import annotations

import json
import os
import time

from longvlm.errors import InputError
from longvlm.eval.extract import CONSTRAINED_LABEL, RULE_BASED_LABEL, constrained_extract, rule_based_extract
from longvlm.eval.mmlongbench import aggregate, load_samples
from longvlm.eval.mmlongbench_run import run_records, score_prediction
from longvlm.ingest.cache import file_sha256
from longvlm.retrieval.page_text import pdf_page_texts
from longvlm.retrieval.ranking import QuestionSelector
from longvlm.retrieval.small_lm import load_small_lm
from longvlm.retrieval.text_route import answer_from_items

EXTRACTORS = {"rule": RULE_BASED_LABEL, "llm": CONSTRAINED_LABEL}


def answer_one(sample: dict, pdf: str, lm, selector, *, max_pages: int = 120, max_passages: int = 3) -> dict:
    """Answer one question with the text route and extract/score with both extractors."""

    started = time.perf_counter()
    # a benchmark reads every page: no per-question OCR budget (`longvlm.limits`), so results are comparable
    items = pdf_page_texts(pdf, max_pages=max_pages, ocr_max_pages=None, ocr_budget_s=None)
    result = answer_from_items(sample["question"], items, lm=lm, selector=selector, key=file_sha256(pdf),
                               max_passages=max_passages)
    answered = time.perf_counter()
    cited = [e.index for e in result.evidence]
    record = {"response": result.text, "cited_pages": cited,
              "evidence_retrieved": sorted(set(cited) & set(sample["evidence_pages"])),
              "seconds_answer": answered - started}
    record["pred_rule"] = rule_based_extract(result.text, sample["answer_format"])
    record["score_rule"] = score_prediction(sample, record["pred_rule"])
    t0 = time.perf_counter()
    record["pred_llm"] = constrained_extract(lm, sample["question"], result.text, sample["answer_format"])
    record["seconds_extract_llm"] = time.perf_counter() - t0
    record["score_llm"] = score_prediction(sample, record["pred_llm"])
    record["seconds"] = time.perf_counter() - started
    return record


def summarize(records: list[dict]) -> dict:
    """Aggregates per extractor (official rules), retrieval hit rate, timing, and how the extractors compare."""
    answered = [r for r in records if "response" in r]
    out = {"questions": len(records), "answered": len(answered),
           "skipped": sum(1 for r in records if r.get("skipped"))}
    for name, label in EXTRACTORS.items():
        view = [{**r, "pred": r[f"pred_{name}"], "score": r[f"score_{name}"]} if "response" in r else r
                for r in records]
        out[name] = {"extractor": label, **aggregate(view)}
    with_evidence = [r for r in answered if r["evidence_pages"]]
    out["retrieval"] = {
        "questions_with_evidence": len(with_evidence),
        "evidence_page_among_passages": sum(1 for r in with_evidence if r["evidence_retrieved"]) / max(1, len(with_evidence)),
    }
    out["extractor_comparison"] = {
        "llm_better": sum(1 for r in answered if r["score_llm"] > r["score_rule"]),
        "rule_better": sum(1 for r in answered if r["score_llm"] < r["score_rule"]),
        "same_score": sum(1 for r in answered if r["score_llm"] == r["score_rule"]),
        "same_prediction": sum(1 for r in answered if r["pred_llm"] == r["pred_rule"]),
    }
    if answered:
        out["seconds_per_question"] = sum(r["seconds"] for r in answered) / len(answered)
        out["seconds_answer_per_question"] = sum(r["seconds_answer"] for r in answered) / len(answered)
        out["seconds_llm_extract_per_question"] = sum(r["seconds_extract_llm"] for r in answered) / len(answered)
        out["cpu_seconds_per_question"] = sum(r.get("cpu_seconds", 0.0) for r in answered) / len(answered)
    return out


def run_text_route(data_dir: str, out_dir: str, *, limit: int | None = None, only_present: bool = True,
                   max_pages: int = 120, max_passages: int = 3, progress: bool = True) -> dict:
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
                            max_passages=max_passages)
        return {**record, "cpu_seconds": time.process_time() - cpu}

    def report(n: int, total: int, record: dict) -> None:
        print(f"[{n + 1}/{total}] q{record['qid']} {record.get('score_rule', '-')}/{record.get('score_llm', '-')} "
              f"{record.get('seconds', 0):.1f}s", flush=True)

    records = run_records(samples, documents, out_dir, answer, progress=report if progress else None)
    results = {"route": "text: BM25 + all-MiniLM-L6-v2 retrieval, SmolLM2-135M-Instruct reader",
               "protocol": f"page text (text layer, OCR for pages without one), first {max_pages} pages, "
                           f"{max_passages} passages", **summarize(records)}
    with open(os.path.join(out_dir, "results.json"), "w") as fh:
        json.dump(results, fh, indent=2)
    return results

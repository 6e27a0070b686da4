"""Run a model on MMLongBench-Doc (the full benchmark, or the dev subset) with per-question records.

Pages are rendered with PyMuPDF at `dpi` (default 144) from the first `max_pages` (default 120) pages, as in the
official protocol; the visual-token planner then fits them into the model's budget. Questions whose PDF is
missing are recorded as skipped and never scored. Runs resume from the JSONL of finished questions.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence

from longvlm.errors import InputError, LongVLMError
from longvlm.eval.extract import FAILED, RULE_BASED_LABEL, official_extract, rule_based_extract
from longvlm.eval.mmlongbench import aggregate, load_samples, prediction_note, score_answer
from longvlm.eval.sharding import Shard, run_sharded
from longvlm.encoded import Answer, EncodedInput
from longvlm.options import Options
from longvlm.pipeline.encode import encode_pdf
from longvlm.vlm.loading import VLM
from longvlm.pipeline.answer import answer
from longvlm.vlm.room import fit_room

ORACLE_LABEL = "oracle evidence pages only: NOT comparable with official results"


def run_mmlongbench(vlm: VLM, data_dir: str, out_dir: str, *, max_pages: int = 120, dpi: float = 144.0,
                    max_visual_tokens: int | None = None, min_tokens_per_page: int = 64,
                    max_new_tokens: int | None = None,
                    extractor: Callable[[str, str, str], tuple[str, str]] | None = None,
                    extractor_label: str = RULE_BASED_LABEL, oracle: bool = False,
                    limit: int | None = None) -> dict:
    """Answer, extract and score every question; write `records.jsonl` and `results.json` under `out_dir`.

    `extractor(question, response, answer_format) -> (raw, answer)`; default: the rule-based extractor.
    Budgets left as None are what fits the model (`longvlm.vlm.room`): a document is encoded once for all its
    questions, with room kept for a question and the answer.
    """
    samples_path = os.path.join(data_dir, "samples.json")
    documents = os.path.join(data_dir, "documents")
    if not os.path.isfile(samples_path):
        raise InputError(data_dir, "no samples.json (point --data at the MMLongBench-Doc data folder)")
    samples = list(enumerate(load_samples(samples_path)[:limit]))
    cache: dict[str, object] = {}
    records = run_records(samples, documents, out_dir, lambda pdf, sample: _answer_one(
        vlm, pdf, sample, cache, oracle=oracle, max_pages=max_pages, dpi=dpi, max_visual_tokens=max_visual_tokens,
        max_new_tokens=max_new_tokens, min_tokens_per_page=min_tokens_per_page, extractor=extractor))
    timed = [r for r in records if "seconds" in r]
    results = {"model": vlm.name, "protocol": ORACLE_LABEL if oracle else "official page rendering "
               f"({dpi:g} dpi, first {max_pages} pages)", "extractor": extractor_label,
               "questions": len(records), "scored": sum(1 for r in records if "score" in r),
               "seconds_per_question": sum(r["seconds"] for r in timed) / max(1, len(timed)),
               **aggregate(records)}
    if Shard.from_env().is_main:
        with open(os.path.join(out_dir, "results.json"), "w") as fh:
            json.dump(results, fh, indent=2)
    return results


RECORD_FIELDS = ("doc_id", "doc_type", "question", "answer", "answer_format", "evidence_pages", "evidence_sources")


def run_records(samples: Sequence[tuple[int, dict]], documents: str, out_dir: str,
                answer_one: Callable[[str, dict], dict], *,
                progress: Callable[[int, int, dict], None] | None = None) -> list[dict]:
    """The resumable per-question loop: for each (qid, sample) not yet in `out_dir/records.jsonl`, a record of
    the sample's fields plus `answer_one(pdf_path, sample)` (or `skipped` when its PDF is missing) is appended
    at once. Returns the records of `samples`, in qid order. `progress(n, total, record)` after each one.
    Under `accelerate launch` / `torchrun` the documents are shared out over the processes
    (`longvlm.eval.sharding`): each document is encoded by one process only."""
    ordered = sorted(samples, key=lambda item: item[0])
    documents_order = {doc: k for k, doc in enumerate(dict.fromkeys(s["doc_id"] for _, s in ordered))}

    def score(n: int) -> dict:
        qid, sample = ordered[n]
        record = {"qid": qid, **{k: sample[k] for k in RECORD_FIELDS}}
        pdf = os.path.join(documents, sample["doc_id"])
        if not os.path.isfile(pdf):
            record.update(skipped=True, reason="PDF not present")
        else:
            record.update(answer_one(pdf, sample))
        return record

    return run_sharded([qid for qid, _ in ordered], os.path.join(out_dir, "records.jsonl"), score, key="qid",
                       group=lambda n: documents_order[ordered[n][1]["doc_id"]], progress=progress)


def score_prediction(sample: dict, pred: str) -> float:
    """The official score of an extracted answer (0 when extraction failed)."""
    return 0.0 if pred == FAILED else score_answer(sample["answer"], pred, sample["answer_format"])


def protocol_document(vlm: VLM, pdf: str, cache: dict, *, max_pages: int = 120, dpi: float = 144.0,
                      max_visual_tokens: int | None = None, max_new_tokens: int | None = None,
                      min_tokens_per_page: int = 64) -> EncodedInput:
    """`pdf` encoded as the benchmark's protocol reads it (pages at `dpi`, the first `max_pages`), once for all
    its questions: within what fits the model with room for a question and the answer. `cache` keeps the
    last document (questions come grouped by document)."""
    if pdf not in cache:
        cache.clear()
        room = fit_room(vlm, max_visual_tokens=max_visual_tokens, max_new_tokens=max_new_tokens)
        options = Options(max_visual_tokens=room.visual_tokens, dpi=dpi, max_pages=max_pages)
        cache[pdf] = encode_pdf(vlm, pdf, options, min_tokens_per_page=min_tokens_per_page, context_room=room.context)
    return cache[pdf]


def protocol_answer(vlm: VLM, pdf: str, question: str, cache: dict, **protocol) -> Answer:
    """The answer `run_mmlongbench` gets for `question` about `pdf` (`protocol_document`'s settings), for
    other callers (the lmms-eval model with `protocol=mmlongbench`)."""
    encoded = protocol_document(vlm, pdf, cache, **protocol)
    room = fit_room(vlm, max_visual_tokens=protocol.get("max_visual_tokens"),
                    max_new_tokens=protocol.get("max_new_tokens"))
    return answer(vlm, encoded, question, max_new_tokens=room.new_tokens)


def _answer_one(vlm: VLM, pdf: str, sample: dict, cache: dict, *, oracle: bool, max_pages: int, dpi: float,
                max_visual_tokens: int | None, max_new_tokens: int | None, min_tokens_per_page: int,
                extractor) -> dict:
    started = time.perf_counter()
    try:
        if oracle:
            pages = [p - 1 for p in sample["evidence_pages"]] or [0]
            room = fit_room(vlm, question=sample["question"], max_visual_tokens=max_visual_tokens,
                            max_new_tokens=max_new_tokens)
            options = Options(max_visual_tokens=room.visual_tokens, dpi=dpi, max_pages=max_pages)
            encoded = encode_pdf(vlm, pdf, options, page_order=pages, only_pages=pages,
                                 min_tokens_per_page=min_tokens_per_page, context_room=room.context)
            result = answer(vlm, encoded, sample["question"], max_new_tokens=room.new_tokens)
        else:
            result = protocol_answer(vlm, pdf, sample["question"], cache, max_pages=max_pages, dpi=dpi,
                                     max_visual_tokens=max_visual_tokens, max_new_tokens=max_new_tokens,
                                     min_tokens_per_page=min_tokens_per_page)
        response = result.text
        context = result.stats["context_length"]
        pages_fed = [e.index for e in result.evidence]
    except LongVLMError as exc:
        response, context, pages_fed = "", 0, []
        error = str(exc)
    else:
        error = None
    if extractor is None:
        raw, pred = "", rule_based_extract(response, sample["answer_format"])
    else:
        raw, pred = extractor(sample["question"], response, sample["answer_format"])
    score = score_prediction(sample, pred)
    out = {"response": response, "extracted_res": raw, "pred": pred, "score": score, "context_length": context,
           "pages_fed": len(pages_fed), "evidence_pages_fed": sorted(set(pages_fed) & set(sample["evidence_pages"])),
           "seconds": time.perf_counter() - started}
    if error:
        out["error"] = error
    if prediction_note(pred):  # a runaway prediction: scored on its first MAX_PREDICTION_CHARS characters
        out["score_note"] = prediction_note(pred)
    return out


def official_extractor(prompt_path: str, chat: Callable[[list[dict]], str]):
    """An extractor callable for `run_mmlongbench` using the benchmark's own prompt file and a chat model."""
    with open(prompt_path) as fh:
        prompt = fh.read()
    return lambda question, response, _format: official_extract(question, response, prompt, chat)

"""Evidence-page recall@k of question-aware page ranking on MMLongBench-Doc, and indexing time of a 100-page PDF.

    python bench/page_retrieval.py [--data ../shared/data/mmlongbench-doc] [--ks 1 5 10] [--out FILE.json]
                                   [--skip-timing]

Recall@k of a question = |top-k pages ∩ evidence pages| / |evidence pages| (evidence_pages are 1-based PDF
page positions), averaged over the questions that have evidence pages and whose PDF is present. Rankers, all
at the same k: uniform (k pages evenly spread), BM25 alone, MiniLM alone (every page embedded) and longvlm's
hybrid (BM25 + MiniLM on a BM25 shortlist + explicit page references), plus ablations. Page text is the text
layer, with OCR for pages without one (the hybrid is also run on text layers only).

Timing: indexing the 108-page `User_Manual_1500S_Classic_EN.pdf` for one question (text extraction + BM25 +
dense on the shortlist) with a cold embedding cache, then warm; baseline: embedding every page (MiniLM alone),
cold. Each timing runs in its own process with an empty cache directory; wall and CPU seconds are reported
(the development machine is shared, so wall time depends on its load).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.join(REPO, "..", "shared", "data", "mmlongbench-doc")
TIMING_PDF = "User_Manual_1500S_Classic_EN.pdf"
TIMING_QUESTION = "How do I descale the machine?"


def rankers():
    """Name -> function(question, items, key) -> ranked page positions."""
    from longvlm.ingest import sampling
    from longvlm.retrieval.ranking import QuestionSelector
    from longvlm.retrieval.embeddings import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    bm25 = QuestionSelector(False, reference_weight=0.0)
    dense = QuestionSelector(embedder, lexical_weight=0.0, reference_weight=0.0, shortlist=None)
    hybrid = QuestionSelector(embedder)
    hybrid_all = QuestionSelector(embedder, shortlist=None)
    hybrid_noref = QuestionSelector(embedder, reference_weight=0.0)
    hybrid_32 = QuestionSelector(embedder, shortlist=32)

    def uniform(question, items, key):
        n = len(items)
        first = sampling.indices_by_count(n, min(n, 10))
        return first + [i for i in range(n) if i not in set(first)]

    return {
        "uniform": uniform,
        "BM25 alone": lambda q, items, key: bm25.rank(q, items, key).order,
        "MiniLM alone (all pages)": lambda q, items, key: dense.rank(q, items, key).order,
        "hybrid (longvlm default)": lambda q, items, key: hybrid.rank(q, items, key).order,
        "hybrid, dense on all pages": lambda q, items, key: hybrid_all.rank(q, items, key).order,
        "hybrid, dense on a 32-page shortlist": lambda q, items, key: hybrid_32.rank(q, items, key).order,
        "hybrid, no page references": lambda q, items, key: hybrid_noref.rank(q, items, key).order,
    }


def unreachable(samples: list[dict], documents: str) -> int:
    """Questions whose evidence pages all lie beyond the PDF's last page (no ranker can find them)."""
    from longvlm.ingest.pdf import PdfDocument

    counts: dict[str, int] = {}
    for s in samples:
        if s["doc_id"] not in counts:
            with PdfDocument(os.path.join(documents, s["doc_id"])) as doc:
                counts[s["doc_id"]] = doc.page_count
    return sum(1 for s in samples if all(p > counts[s["doc_id"]] for p in s["evidence_pages"]))


def uniform_at(n: int, k: int) -> list[int]:
    from longvlm.ingest import sampling

    return sampling.indices_by_count(n, min(n, k))


def recall_table(data: str, ks: list[int]) -> dict:
    from longvlm.ingest.cache import file_sha256
    from longvlm.retrieval.page_text import pdf_page_texts
    from longvlm.eval.mmlongbench import load_samples

    samples = load_samples(os.path.join(data, "samples.json"))
    documents = os.path.join(data, "documents")
    present = [s for s in samples if os.path.isfile(os.path.join(documents, s["doc_id"]))]
    with_evidence = [s for s in present if s["evidence_pages"]]
    by_doc = defaultdict(list)
    for s in with_evidence:
        by_doc[s["doc_id"]].append(s)
    ranks = rankers()
    hits: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    ocr_pages = pages = 0
    started = time.perf_counter()
    for doc_id, questions in sorted(by_doc.items()):
        path = os.path.join(documents, doc_id)
        key = file_sha256(path)
        items = pdf_page_texts(path, max_pages=120, ocr_max_pages=None, ocr_budget_s=None)  # every page
        layer_only = pdf_page_texts(path, max_pages=120, ocr="never")
        pages += len(items)
        ocr_pages += sum(1 for it in items if "ocr" in it.source)
        for s in questions:
            evidence = {p - 1 for p in s["evidence_pages"]}
            orders = {name: fn(s["question"], items, key) for name, fn in ranks.items()}
            for name in ("BM25 alone", "MiniLM alone (all pages)", "hybrid (longvlm default)"):
                orders[f"{name}, text layer only (no OCR)"] = ranks[name](s["question"], layer_only, key)
            for name, order in orders.items():
                for k in ks:
                    top = uniform_at(len(items), k) if name == "uniform" else order[:k]
                    hits[name][k].append(len(evidence & set(top)) / len(evidence))
        print(f"{doc_id}: {len(questions)} questions, {len(items)} pages", file=sys.stderr, flush=True)
    return {"questions": len(with_evidence), "documents": len(by_doc), "pages": pages, "ocr_pages": ocr_pages,
            "unreachable": unreachable(with_evidence, documents),
            "skipped_no_evidence": len(present) - len(with_evidence), "seconds": time.perf_counter() - started,
            "recall": {name: {k: sum(v) / len(v) for k, v in per_k.items()} for name, per_k in hits.items()}}


def timing_worker(mode: str, path: str) -> dict:
    """Index `path` for one question in this process; mode: 'dense-all', 'hybrid' (the default 16-page
    shortlist) or 'hybrid-32' (a 32-page shortlist)."""
    from longvlm.ingest.cache import file_sha256
    from longvlm.retrieval.page_text import pdf_page_texts
    from longvlm.retrieval.ranking import QuestionSelector
    from longvlm.retrieval.embeddings import MiniLMEmbedder

    embedder = MiniLMEmbedder()  # model load is not part of indexing (it is loaded once per process)
    embedder.embed(["warm-up"])
    shortlist = {"dense-all": None, "hybrid-32": 32}.get(mode, QuestionSelector().shortlist)
    selector = QuestionSelector(embedder, shortlist=shortlist, lexical_weight=0.0 if mode == "dense-all" else 1.0)
    rows = []
    for attempt in ("cold", "warm"):
        wall, cpu = time.perf_counter(), time.process_time()
        items = pdf_page_texts(path, ocr="never")
        selector.rank(TIMING_QUESTION, items, key=file_sha256(path))
        rows.append({"attempt": attempt, "pages": len(items), "wall_s": time.perf_counter() - wall,
                     "cpu_s": time.process_time() - cpu, **selector.last_stats})
    return {"mode": mode, "rows": rows}


def timing(data: str) -> list[dict]:
    path = os.path.join(data, "documents", TIMING_PDF)
    out = []
    for mode in ("dense-all", "hybrid", "hybrid-32"):
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, LONGVLM_CACHE=cache, PYTHONPATH=REPO)
            proc = subprocess.run([sys.executable, __file__, "--worker", mode, path], env=env, capture_output=True,
                                  text=True, check=True)
            out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--out", default=None, help="write the results as JSON")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--skip-recall", action="store_true")
    parser.add_argument("--timing-from", default=None, help="reuse the timing rows of an earlier --out JSON")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "PDF"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(timing_worker(*args.worker)))
        return
    results = {}
    if not args.skip_recall:
        results["recall"] = recall_table(args.data, args.ks)
        r = results["recall"]
        print(f"\nEvidence-page recall@k, MMLongBench-Doc dev subset: {r['questions']} questions with evidence "
              f"pages, {r['documents']} PDFs, {r['pages']} pages ({r['ocr_pages']} read by OCR)\n")
        print("| ranker | " + " | ".join(f"R@{k}" for k in args.ks) + " |")
        print("| --- | " + " | ".join("---" for _ in args.ks) + " |")
        for name, per_k in r["recall"].items():
            print(f"| {name} | " + " | ".join(f"{per_k[k]:.3f}" for k in args.ks) + " |")
    if args.timing_from:
        with open(args.timing_from) as fh:
            results["timing"] = json.load(fh)["timing"]
    elif not args.skip_timing:
        results["timing"] = timing(args.data)
    if "timing" in results:
        print(f"\nIndexing {TIMING_PDF} for one question (text layer; MiniLM already loaded)\n")
        print("| method | cache | pages | chunks embedded | wall s | CPU s |")
        print("| --- | --- | --- | --- | --- | --- |")
        for run in results["timing"]:
            name = {"dense-all": "MiniLM on every page (baseline)",
                    "hybrid": "hybrid (default): BM25, dense on a 16-page shortlist",
                    "hybrid-32": "hybrid: BM25, dense on a 32-page shortlist"}[run["mode"]]
            for row in run["rows"]:
                print(f"| {name} | {row['attempt']} | {row['pages']} | {row.get('chunks_embedded', 0)} | "
                      f"{row['wall_s']:.2f} | {row['cpu_s']:.2f} |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()

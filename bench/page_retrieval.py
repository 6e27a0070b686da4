"""Evidence-page recall@k of question-aware page ranking on MMLongBench-Doc, and indexing time of a 100-page PDF.

    python bench/page_retrieval.py [--data ../shared/data/mmlongbench-doc] [--ks 1 5 10] [--out FILE.json]
                                   [--skip-timing] [--ocr-cached-only] [--tables]

Split (issue 27): the PDFs sorted by file name; the questions of the first 15 ('tune') chose every setting of
the default ranker, those of the last 15 ('held-out') only check that the choice generalises. The table gives
R@1/5/10 per split and over all questions, one row per ranker variant (each feature added to the issue-9 default
alone, and taken out of the new default). Gold `answer_format`, `evidence_pages` and `evidence_sources` are
labels: only `evidence_pages` is read, to score.

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
DEFAULT_ROW = "**hybrid (longvlm default): labels + neighbours 0.2 + headings + printed page numbers + instructions stripped**"
TIMING_QUESTION = "How do I descale the machine?"


SPLIT_NOTE = ("split: PDFs sorted by file name; the questions of the first 15 ('tune') chose the settings, those "
              "of the last 15 ('held-out') only check them")


def split_of(doc_id: str, doc_ids: list[str]) -> str:
    """'tune' for the first half of the PDFs sorted by name, else 'held-out'."""
    return "tune" if sorted(doc_ids).index(doc_id) < len(doc_ids) // 2 else "held-out"


def rankers():
    """Name -> (text variant, function(question, items, key) -> ranked page positions). Text variants: 'default'
    (text layer + OCR + the default extras), 'plain' (no extras), 'tables' (+ table rows), 'layer' (no OCR)."""
    from longvlm.ingest import sampling
    from longvlm.retrieval.ranking import QuestionSelector
    from longvlm.retrieval.embeddings import MiniLMEmbedder

    embedder = MiniLMEmbedder()

    def uniform(question, items, key):
        n = len(items)
        first = sampling.indices_by_count(n, min(n, 10))
        return first + [i for i in range(n) if i not in set(first)]

    def sel(**kw):
        selector = QuestionSelector(False if kw.pop("lexical_only", False) else embedder, **kw)
        return lambda q, items, key: selector.rank(q, items, key).order

    old = dict(fusion="minmax", neighbour_weight=0.0, label_weight=0.0, cue_weight=0.0, printed_pages=False,
               strip_instructions=False)
    rows = dict(RANKERS(uniform, sel, old))
    from longvlm.retrieval.reranking import QueryLikelihoodReranker
    from longvlm.retrieval.small_lm import load_small_lm

    lm = load_small_lm()
    for weight in (0.5,):
        rows[f"default + query-likelihood rerank (SmolLM2-135M, top 8, weight {weight:g})"] = (
            "default", sel(reranker=QueryLikelihoodReranker(lm, top=8, weight=weight)))
    return rows


def RANKERS(uniform, sel, old):
    """The rows: baselines, the issue-9 default, each feature added to it alone, and the new default with each
    feature taken out (settings chosen on the 'tune' split only)."""
    return {
        "uniform": ("default", uniform),
        "BM25 alone": ("plain", sel(lexical_only=True, reference_weight=0.0, **old)),
        "MiniLM alone (all pages)": ("plain", sel(lexical_weight=0.0, reference_weight=0.0, shortlist=None, **old)),
        "hybrid, issue-9 default (score mix, no extras)": ("plain", sel(**old)),
        "issue-9 + RRF fusion (k=60)": ("plain", sel(**dict(old, fusion="rrf"))),
        "issue-9 + RRF fusion (k=10)": ("plain", sel(**dict(old, fusion="rrf"), rrf_k=10.0)),
        "issue-9 + neighbour smoothing 0.1": ("plain", sel(**dict(old, neighbour_weight=0.1))),
        "issue-9 + neighbour smoothing 0.2": ("plain", sel(**dict(old, neighbour_weight=0.2))),
        "issue-9 + neighbour smoothing 0.4": ("plain", sel(**dict(old, neighbour_weight=0.4))),
        "issue-9 + figure/table labels": ("plain", sel(**dict(old, label_weight=1.0))),
        "issue-9 + question-type cue 0.3": ("plain", sel(**dict(old, cue_weight=0.3))),
        "issue-9 + carried section headings": ("default", sel(**old)),
        "issue-9 + printed page numbers": ("plain", sel(**dict(old, printed_pages=True))),
        "issue-9 + answer-format instructions stripped": ("plain", sel(**dict(old, strip_instructions=True))),
        "issue-9, dense weight 1.5": ("plain", sel(dense_weight=1.5, **old)),
        "issue-9, dense weight 0.7": ("plain", sel(dense_weight=0.7, **old)),
        "**hybrid (longvlm default): labels + neighbours 0.2 + headings + printed page numbers + instructions stripped**": ("default", sel()),
        "default without headings": ("plain", sel()),
        "default without labels": ("default", sel(label_weight=0.0)),
        "default without neighbours": ("default", sel(neighbour_weight=0.0)),
        "default, dense on a 32-page shortlist": ("default", sel(shortlist=32)),
        "default + RRF fusion (k=60)": ("default", sel(fusion="rrf")),
        "default + question-type cue 0.3": ("default", sel(cue_weight=0.3)),
        "default without printed page numbers": ("default", sel(printed_pages=False)),
        "default without stripping answer-format instructions": ("default", sel(strip_instructions=False)),
        "default, text layer only (no OCR)": ("layer", sel()),
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


def recall_table(data: str, ks: list[int], ocr_cached_only: bool = False, tables: bool = False) -> dict:
    import dataclasses

    from longvlm.ingest.cache import file_sha256
    from longvlm.retrieval.page_text import pdf_page_extras, pdf_page_texts
    from longvlm.eval.mmlongbench import load_samples

    samples = load_samples(os.path.join(data, "samples.json"))
    documents = os.path.join(data, "documents")
    present = [s for s in samples if os.path.isfile(os.path.join(documents, s["doc_id"]))]
    with_evidence = [s for s in present if s["evidence_pages"]]
    by_doc = defaultdict(list)
    for s in with_evidence:
        by_doc[s["doc_id"]].append(s)
    doc_ids = sorted(by_doc)
    ranks = rankers()
    hits: dict[str, dict[str, dict[int, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    counts: dict[str, int] = defaultdict(int)
    ocr_pages = pages = 0
    started = time.perf_counter()
    for doc_id in doc_ids:
        questions = by_doc[doc_id]
        split = split_of(doc_id, doc_ids)
        counts[split] += len(questions)
        path = os.path.join(documents, doc_id)
        key = file_sha256(path)
        # every page OCR'd where needed (--ocr-cached-only: only pages already in the OCR cache)
        items = pdf_page_texts(path, max_pages=120, ocr_max_pages=0 if ocr_cached_only else None, ocr_budget_s=None)
        variants = {"default": items, "plain": [dataclasses.replace(it, extra="") for it in items],
                    "layer": pdf_page_texts(path, max_pages=120, ocr="never")}
        if tables:
            ranks["default + table rows (PyMuPDF find_tables)"] = ("tables", ranks[DEFAULT_ROW][1])
            tables = pdf_page_extras(path, len(items), ("tables", "headings"))
            variants["tables"] = [dataclasses.replace(it, extra=t) for it, t in zip(items, tables)]
        pages += len(items)
        ocr_pages += sum(1 for it in items if "ocr" in it.source)
        for s in questions:
            evidence = {p - 1 for p in s["evidence_pages"]}
            for name, (variant, fn) in ranks.items():
                order = fn(s["question"], variants[variant], key)
                for k in ks:
                    top = uniform_at(len(items), k) if name == "uniform" else order[:k]
                    value = len(evidence & set(top)) / len(evidence)
                    hits[name][split][k].append(value)
                    hits[name]["all"][k].append(value)
        print(f"{doc_id}: {len(questions)} questions, {len(items)} pages ({split})", file=sys.stderr, flush=True)
    return {"ocr_cached_only": ocr_cached_only, "questions": len(with_evidence), "questions_per_split": dict(counts), "split": SPLIT_NOTE,
            "documents": len(by_doc), "pages": pages, "ocr_pages": ocr_pages,
            "unreachable": unreachable(with_evidence, documents),
            "skipped_no_evidence": len(present) - len(with_evidence), "seconds": time.perf_counter() - started,
            "recall": {name: {split: {k: sum(v) / len(v) for k, v in per_k.items()} for split, per_k in by_split.items()}
                       for name, by_split in hits.items()}}


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
    parser.add_argument("--ocr-cached-only", action="store_true",
                        help="OCR text only where already cached (no new OCR: pages not cached are ranked without it)")
    parser.add_argument("--tables", action="store_true", help="add a row with table rows as text (~0.4 s a page)")
    parser.add_argument("--skip-recall", action="store_true")
    parser.add_argument("--timing-from", default=None, help="reuse the timing rows of an earlier --out JSON")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "PDF"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(timing_worker(*args.worker)))
        return
    results = {}
    if not args.skip_recall:
        results["recall"] = recall_table(args.data, args.ks, args.ocr_cached_only, args.tables)
        r = results["recall"]
        print(f"\nEvidence-page recall@k, MMLongBench-Doc dev subset: {r['questions']} questions with evidence "
              f"pages, {r['documents']} PDFs, {r['pages']} pages ({r['ocr_pages']} read by OCR)\n")
        splits = ("tune", "held-out", "all")
        n = dict(r["questions_per_split"], all=r["questions"])
        print(r["split"] + "\n")
        print("| ranker | " + " | ".join(f"{sp} ({n[sp]}) R@{k}" for sp in splits for k in args.ks) + " |")
        print("| --- | " + " | ".join("---" for _ in splits for _ in args.ks) + " |")
        for name, per_split in r["recall"].items():
            print(f"| {name} | " + " | ".join(f"{per_split[sp][k]:.3f}" for sp in splits for k in args.ks) + " |")
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

"""MMLongBench-Doc with the text route (retrieval + SmolLM2-135M-Instruct extraction + calibrated abstention),
resumable, per-question JSONL.

    python scripts/eval_mmlongbench_text.py --data ../shared/data/mmlongbench-doc --out artifacts/mmlb_text \
        [--limit N] [--old-records OLD/records.jsonl] [--ocr-max-pages 0]

Writes OUT/records.jsonl (one line per question, appended as it goes: rerun to resume), OUT/results.json (the
abstention rule fitted on the even-qid half, the answer table of the odd-qid held-out half, official
aggregates) and OUT/table.md (the held-out answer table). Only the question text reaches the route; the gold
answer format and evidence are used for scoring and the report's breakdowns only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from longvlm.eval.mmlongbench_text import format_table, run_text_route  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                                       "mmlongbench-doc"))
    parser.add_argument("--out", required=True)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--max-passages", type=int, default=3)
    parser.add_argument("--old-records", default=None, help="records.jsonl of the old text route (a table row)")
    parser.add_argument("--ocr-max-pages", type=int, default=None,
                        help="OCR at most this many new pages per question (0: only pages already in the cache)")
    args = parser.parse_args()
    results = run_text_route(args.data, args.out, limit=args.limit, max_passages=args.max_passages,
                             old_records=args.old_records, ocr_max_pages=args.ocr_max_pages)
    print(json.dumps({k: results[k] for k in ("questions", "answered", "split", "abstention_rule",
                                              "seconds_per_question")}, indent=2))
    print(format_table(results["held_out_table"]))


if __name__ == "__main__":
    main()

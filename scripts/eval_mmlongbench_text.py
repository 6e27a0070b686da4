"""MMLongBench-Doc with the text route (retrieval + SmolLM2-135M-Instruct), resumable, per-question JSONL.

    python scripts/eval_mmlongbench_text.py --data ../shared/data/mmlongbench-doc --out artifacts/mmlb_text [--limit N]

Writes OUT/records.jsonl (one line per question, appended as it goes: rerun to resume) and OUT/results.json
(accuracy, generalized F1 and breakdowns for the rule-based and the constrained SmolLM2 extractor).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from longvlm.eval.mmlongbench_text import run_text_route  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                                       "mmlongbench-doc"))
    parser.add_argument("--out", required=True)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--max-passages", type=int, default=3)
    args = parser.parse_args()
    results = run_text_route(args.data, args.out, limit=args.limit, max_passages=args.max_passages)
    brief = {k: v for k, v in results.items() if k not in ("rule", "llm")}
    for name in ("rule", "llm"):
        brief[name] = {k: results[name][k] for k in ("extractor", "overall", "single_page", "cross_page",
                                                     "unanswerable")}
    print(json.dumps(brief, indent=2))


if __name__ == "__main__":
    main()

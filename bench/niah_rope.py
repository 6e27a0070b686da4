"""Needle-in-a-haystack on the shipped small model beyond its training length, one heatmap per rope method.

    python bench/niah_rope.py --out bench/results/niah_small_v1.8 [--methods yarn,mrope++] [--scale 4]

For every position-extension method in `longvlm.vlm.rope.METHODS` (scale s, default 4: the model then accepts
s x its training length L = 512 tokens), the video (V-NIAH protocol, procedural haystack), image-grid (MMNeedle)
and document suites of `longvlm.eval.niah` run over lengths from below L to about s*L tokens, each with its own
records, summary and heatmap (titles name the model and the method). The table printed at the end (and written
to `<out>/table.md`) gives accuracy per suite, method and context bucket (<= L, L..2L, 2L..4L).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict

from longvlm.eval.niah import SuiteSpec, run_suite
from longvlm.vlm.loading import load_vlm
from longvlm.vlm.rope import METHODS, apply_position_extension

# lengths chosen so the longest sample of each suite fits 4 x 512 tokens with the answer room
LENGTHS = {"video": [32, 64, 128, 256, 512, 768], "image": [4, 8, 16, 32, 64], "document": [8, 16, 32, 64, 128]}
DEPTHS = [0.0, 0.25, 0.5, 0.75, 1.0]


def bucket(tokens: int, train_length: int) -> str:
    if tokens <= train_length:
        return "<= L"
    return "L..2L" if tokens <= 2 * train_length else "2L..4L"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="small")
    parser.add_argument("--out", required=True)
    parser.add_argument("--methods", default=",".join(METHODS), help=f"from: {', '.join(METHODS)}")
    parser.add_argument("--scale", type=float, default=4.0)
    parser.add_argument("--samples", type=int, default=2, help="samples per (length, depth) cell")
    parser.add_argument("--suites", default=",".join(LENGTHS))
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    rows = []
    for method in methods:
        vlm = load_vlm(args.model)
        train_length = vlm.max_context
        apply_position_extension(vlm, method, args.scale)
        for suite in [s for s in args.suites.split(",") if s]:
            out = os.path.join(args.out, method.replace("+", "p"), suite)
            spec = SuiteSpec(suite, LENGTHS[suite], DEPTHS, args.samples, 0, "page")
            run_suite(vlm, spec, out, scoring="both")
            with open(os.path.join(out, f"{suite}_samples.jsonl")) as fh:
                records = [json.loads(line) for line in fh if line.strip()]
            cells = defaultdict(list)
            for r in records:
                cells[bucket(r["context_length"], train_length)].append(float(r["correct"]))
            row = {"suite": suite, "method": f"{method} x{args.scale:g}", "samples": len(records)}
            row.update({b: (sum(v) / len(v), len(v)) for b, v in cells.items()})
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    lines = ["| suite | method | <= L | L..2L | 2L..4L |", "| --- | --- | --- | --- | --- |"]
    for row in rows:
        shown = [f"{row[b][0]:.2f} ({row[b][1]})" if b in row else "-" for b in ("<= L", "L..2L", "2L..4L")]
        lines.append(f"| {row['suite']} | {row['method']} | " + " | ".join(shown) + " |")
    table = "\n".join(lines)
    print(table)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "table.md"), "w") as fh:
        fh.write(f"model {args.model}, L = 512 tokens, accuracy (samples) by context bucket\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

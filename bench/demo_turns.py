"""Chat-turn latency in the demo: a follow-up question that reuses the encoded input (what `longvlm demo`
does) against re-decoding and re-encoding the input for every question (the baseline), on a 1-hour video
and a 100-page PDF, with the tiny model on CPU.

    python bench/demo_turns.py [--minutes 60] [--pages 100] [--tokens 2048] [--new-tokens 16] [--turns 3]

Prints a table. "first token" is the time until the first streamed piece of text; the tiny random model
mostly emits whitespace, which the streamer holds back, so there it is close to the whole answer. Ratios
are against the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def turn(vlm, session, question: str, new_tokens: int) -> tuple[float, float]:
    """(seconds to the first streamed text, seconds for the whole answer) of one chat turn."""
    from longvlm.demo.session import stream_answer

    started = time.perf_counter()
    first = None
    for text, result in stream_answer(vlm, session, question, max_new_tokens=new_tokens):
        if first is None and (text or result is not None):
            first = time.perf_counter() - started
    return first, time.perf_counter() - started


def measure(vlm, path: str, settings, turns: int, new_tokens: int) -> list[tuple[str, float, float]]:
    from longvlm.demo.session import ingest

    questions = [f"Question {i}: what happens here?" for i in range(turns)]
    rows = []
    started = time.perf_counter()
    session = ingest(vlm, path, settings)
    ingest_s = time.perf_counter() - started
    rows.append(("load (decode, plan, encode, thumbnails)", ingest_s, ingest_s))
    reuse = [turn(vlm, session, q, new_tokens) for q in questions]
    baseline = []
    for q in questions:  # a fresh encoding per question, same conversation so the context matches
        started = time.perf_counter()
        fresh = ingest(vlm, path, settings)
        fresh.history = list(session.history[:len(baseline)])
        encode_s = time.perf_counter() - started
        first, total = turn(vlm, fresh, q, new_tokens)
        baseline.append((encode_s + first, encode_s + total))
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    rows.append(("turn, re-encode every question (baseline)", mean([b[0] for b in baseline]),
                 mean([b[1] for b in baseline])))
    rows.append(("turn, reuse encoded input (demo)", mean([r[0] for r in reuse]), mean([r[1] for r in reuse])))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=2048, help="visual-token budget")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--turns", type=int, default=3)
    args = parser.parse_args()

    import torch

    from longvlm.testing import write_barcode_video, write_synthetic_pdf
    from longvlm.demo.settings import DemoSettings
    from longvlm.vlm.loading import load_vlm

    torch.manual_seed(0)
    vlm = load_vlm("tiny")
    settings = DemoSettings(max_visual_tokens=args.tokens)
    with tempfile.TemporaryDirectory() as tmp:
        video = write_barcode_video(os.path.join(tmp, "long.mp4"), args.minutes * 60, fps=4, height=64, width=64)
        pdf = write_synthetic_pdf(os.path.join(tmp, "long.pdf"), args.pages)
        print(f"torch threads: {torch.get_num_threads()}, budget {args.tokens} visual tokens, "
              f"{args.new_tokens} new tokens, {args.turns} turns\n")
        print("| input | step | first token s | whole answer s | x faster than baseline |")
        print("| --- | --- | --- | --- | --- |")
        for label, path in ((f"{args.minutes:g}-min video", video), (f"{args.pages}-page PDF", pdf)):
            rows = measure(vlm, path, settings, args.turns, args.new_tokens)
            base = rows[1][2]
            for name, first, total in rows:
                ratio = f"{base / total:.2f}" if name.startswith("turn") else "n/a"
                print(f"| {label} | {name} | {first:.2f} | {total:.2f} | {ratio} |")


if __name__ == "__main__":
    main()

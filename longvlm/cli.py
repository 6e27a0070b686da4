"""Command line: `longvlm ask ...` and `longvlm info FILE`."""

from __future__ import annotations

import argparse
import json
import os
import sys

from longvlm.errors import LongVLMError

DEFAULT_MODEL = "tiny"


def _ask(args: argparse.Namespace) -> int:
    from longvlm.vlm.loading import load_vlm
    from longvlm.vlm.pipeline import ask

    vlm = load_vlm(args.model)
    result = ask(vlm, args.question, video=args.video, pdf=args.pdf, images=args.image or None,
                 max_visual_tokens=args.max_visual_tokens, max_new_tokens=args.max_new_tokens,
                 sample_fps=args.fps, max_frames=args.max_frames, max_pages=args.max_pages,
                 compression=_compression(args))
    if args.json:
        print(json.dumps({"answer": result.text, "model": result.model, "route": result.route,
                          "random_weights": vlm.is_random,
                          "evidence": [e.__dict__ for e in result.evidence], "stats": result.stats}, indent=2))
        return 0
    note = " (random-weight test model: the answer is meaningless)" if vlm.is_random else ""
    print(f"answer: {result.text!r}")
    print(f"model: {result.model}{note}  route: {result.route}")
    print(f"evidence: {result.citations()}")
    for key, value in result.stats.items():
        print(f"  {key:>22}: {value:.3f}" if isinstance(value, float) else f"  {key:>22}: {value}")
    return 0


def _compression(args: argparse.Namespace):
    """--downsample / --kv-press / --kv-budget -> a `Compression`, or None when neither is asked for."""
    if args.downsample == "1" and args.kv_press is None:
        return None
    from longvlm.compression import Compression, build_press

    downsample = args.downsample if args.downsample == "auto" else int(args.downsample)
    budget = float(args.kv_budget) if "." in args.kv_budget else int(args.kv_budget)
    press = build_press(args.kv_press, budget) if args.kv_press else None
    return Compression(downsample=downsample, kv_press=press)


def _info(args: argparse.Namespace) -> int:
    path = args.file
    if path.lower().endswith(".pdf"):
        from longvlm.datasets.pdf import PdfDocument

        with PdfDocument(path) as doc:
            with_text = sum(1 for i in range(doc.page_count) if doc.page_text(i).strip())
            h, w = doc.page_size(0, 144)
            info = {"type": "pdf", "path": path, "pages": doc.page_count, "pages_with_text_layer": with_text,
                    "first_page_px_at_144dpi": f"{w}x{h}",
                    "page_labels": [doc.page_label(i) for i in range(min(doc.page_count, 8))]}
    else:
        from longvlm.datasets.video import read_video_metadata

        meta = read_video_metadata(path)
        info = {"type": "video", "path": path, "fps": round(meta.fps, 3), "frames": meta.num_frames,
                "duration_s": round(meta.duration, 3), "size": f"{meta.width}x{meta.height}"}
    print(json.dumps(info, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="longvlm", description="Questions about hour-long videos and long PDFs.")
    sub = parser.add_subparsers(dest="command", required=True)
    ask = sub.add_parser("ask", help="answer a question about a video, a PDF or images")
    source = ask.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", help="video file")
    source.add_argument("--pdf", help="PDF file")
    source.add_argument("--image", action="append", help="image file (repeat for several)")
    ask.add_argument("--question", "-q", required=True)
    ask.add_argument("--model", default=os.environ.get("LONGVLM_MODEL", DEFAULT_MODEL),
                     help="local Qwen2-VL/Qwen2.5-VL directory, or a preset: tiny, tiny-qwen2-vl, tiny-qwen2.5-vl")
    ask.add_argument("--max-visual-tokens", type=int, default=4096)
    ask.add_argument("--max-new-tokens", type=int, default=64)
    ask.add_argument("--fps", type=float, default=1.0, help="video sampling rate before budgeting")
    ask.add_argument("--max-frames", type=int, default=None)
    ask.add_argument("--max-pages", type=int, default=None)
    ask.add_argument("--downsample", choices=["1", "2", "4", "auto"], default="1",
                     help="average-pool visual tokens k x k per frame/page (auto: PDFs 1, video 2, long video 4)")
    ask.add_argument("--kv-press", choices=["lookm", "snapkv", "streaming", "h2o", "random"], default=None,
                     help="prune the KV cache at prefill with this method")
    ask.add_argument("--kv-budget", default="0.2", help="KV tokens kept: a ratio (0.2) or a count (2048)")
    ask.add_argument("--json", action="store_true", help="print a JSON record")
    ask.set_defaults(func=_ask)
    info = sub.add_parser("info", help="metadata of a video or PDF")
    info.add_argument("file")
    info.set_defaults(func=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LongVLMError as exc:
        print(f"longvlm: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

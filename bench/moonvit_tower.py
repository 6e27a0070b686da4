"""Speed and memory of the full-size Kimi K2.5 / K2.6 vision encoder (MoonViT, 27 layers, hidden 1152, + the
mm_projector to 7168) on CPU, with random weights in float32 (or `--dtype bfloat16`), on native-resolution inputs sized by
`longvlm.vlm.kimi.kimi_resized`: pages of a scanned PDF (rendered at 144 dpi) and 1280x720 video frames
encoded as Kimi does, in chunks of 4 frames that attend jointly and pool to one frame's worth of tokens.

Items are timed one at a time (one page, or one 4-frame chunk, per tower call) after a small warm-up call.
At the processor's own caps (16384 patches per image, 4096 per video frame) a letter page is ~10k patches
and a 720p chunk ~17k jointly attending patches: minutes each on 2 CPU cores, so the default run times
pages at a few caps below that (the first table also lists what every page plans to at the default cap).
Default run: 1 page per cap (1024, 2048, 4096 patches) and 1 chunk of 4 frames at 1024 patches per frame, about
3 minutes on 2 cores.

    python bench/moonvit_tower.py [--pdf FILE] [--video FILE] [--pages 1] [--chunks 1] [--out DIR]
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import Kimi_K25Model  # noqa: E402

from longvlm.ingest.pdf import PdfDocument  # noqa: E402
from longvlm.ingest.video import VideoReader  # noqa: E402
from longvlm.profiling import RssSampler  # noqa: E402
from longvlm.vlm.kimi import (KIMI_PATCH, kimi_encoder_config, kimi_image_tokens, kimi_padded,  # noqa: E402
                              kimi_resized, kimi_tokens, kimi_video_tokens)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data")
# A scanned document: every page is one full-page image, no text layer to speak of.
DEFAULT_PDF = os.path.join(SHARED, "mmlongbench-doc", "documents", "3276a5b991c49cf5f9a4af0f7d6fce67.pdf")
PAGE_CAPS = (1024, 2048, 4096)  # patches per page (max_pixels = cap * 196)
FRAME_CAP = 1024  # patches per video frame


def find_video() -> str:
    found = sorted(glob.glob(os.path.join(SHARED, "*", "dc_demo.mp4")))
    if not found:
        raise SystemExit(f"no dc_demo.mp4 under {SHARED}/*/")
    return found[0]


def fmt_size(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def fmt_pages(numbers: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pdf", default=DEFAULT_PDF)
    parser.add_argument("--video", default=None, help="default: ../shared/data/*/dc_demo.mp4")
    parser.add_argument("--pages", type=int, default=1, help="pages timed per cap")
    parser.add_argument("--chunks", type=int, default=1, help="4-frame video chunks timed")
    parser.add_argument("--out", default=None, help="also write the printed tables to DIR/table.txt")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="tower weights and pixels (bfloat16 uses the CPU's AMX/AVX-512 bf16 units when present)")
    parser.add_argument("--page-caps", type=int, nargs="+", default=list(PAGE_CAPS),
                        help="patches per page to time (16384: the processor's default, i.e. native for a letter page)")
    parser.add_argument("--frame-cap", type=int, default=FRAME_CAP,
                        help="patches per video frame (4096: the processor's default)")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    video = args.video or find_video()
    lines: list[str] = []

    def emit(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    torch.manual_seed(0)
    start = time.perf_counter()
    with RssSampler(0.02) as build_rss:
        model = Kimi_K25Model(kimi_encoder_config()).to(dtype).eval()
    params = sum(p.numel() for p in model.vision_tower.parameters())
    proj = sum(p.numel() for p in model.mm_projector.parameters())
    emit(f"Kimi K2.5 vision encoder, random weights, {args.dtype}, CPU ({torch.get_num_threads()} threads): "
         f"tower {params / 1e6:.1f} M + mm_projector {proj / 1e6:.1f} M params, built in "
         f"{time.perf_counter() - start:.1f} s, RSS {build_rss.peak_mb:.0f} MiB")

    with PdfDocument(args.pdf) as doc:
        pages = min(len(doc), args.pages)
        emit(f"\nPlanned at the processor's default cap (16384 patches): {os.path.basename(args.pdf)}, "
             f"{len(doc)} pages at 144 dpi")
        plans = {}
        for index in range(len(doc)):
            h, w = doc.page_size(index, 144)
            size = kimi_resized(h, w)
            plans.setdefault((h, w, size), []).append(index + 1)
        for (h, w, size), numbers in plans.items():
            padded = kimi_padded(*size)
            emit(f"  pages {fmt_pages(numbers)} ({len(numbers)}): {h}x{w} -> {fmt_size(size)}, padded "
                 f"{fmt_size(padded)}, {padded[0] // 14 * (padded[1] // 14)} patches, {kimi_tokens(*size)} tokens")
        images = [doc.render(i, dpi=144) for i in range(pages)]
    meta = VideoReader(video).metadata
    vsize = kimi_resized(meta.height, meta.width, video=True)
    emit(f"  {os.path.basename(video)} frame {meta.height}x{meta.width} (video cap 4096): -> {fmt_size(vsize)}, "
         f"padded {fmt_size(kimi_padded(*vsize))}, {kimi_tokens(*vsize)} tokens per 4-frame chunk")

    with torch.inference_mode():
        kimi_image_tokens(model, [np.zeros((56, 56, 3), np.uint8)], [(56, 56)])  # warm-up

        rows = []
        for cap in args.page_caps:
            size = kimi_resized(images[0].height, images[0].width, cap * KIMI_PATCH ** 2)
            with RssSampler(0.02) as rss:
                t0 = time.perf_counter()
                for image in images:
                    out = kimi_image_tokens(model, [image], [kimi_resized(image.height, image.width,
                                                                          cap * KIMI_PATCH ** 2)])
                seconds = time.perf_counter() - t0
            rows.append((f"scanned page {images[0].height}x{images[0].width}", cap, size, len(out[0]), len(images),
                         seconds, rss.peak_mb))

        reader = VideoReader(video)
        step = max(1, round(meta.fps / 2))  # 2 frames per second, the Kimi video processor's default fps
        frames = reader.read(list(range(0, meta.num_frames, step))[:4 * args.chunks]).frames
        size = kimi_resized(meta.height, meta.width, args.frame_cap * KIMI_PATCH ** 2, video=True)
        with RssSampler(0.02) as rss:
            t0 = time.perf_counter()
            for c in range(args.chunks):
                out = kimi_video_tokens(model, list(frames[4 * c:4 * c + 4]), size)
            seconds = time.perf_counter() - t0
        rows.append((f"{os.path.basename(video)} 4-frame chunk {meta.height}x{meta.width}", args.frame_cap, size,
                     len(out[0]), args.chunks, seconds, rss.peak_mb))

    emit("\nTimed (one item per tower call; peak RSS of the process during the row):")
    header = ("input", "cap/frame", "kimi_resized", "padded", "patches", "tokens/item", "items", "items/s",
              "s/item", "peak RSS MiB")
    table = [header]
    for name, cap, size, tokens, items, seconds, peak in rows:
        padded = kimi_padded(*size)
        patches = padded[0] // 14 * (padded[1] // 14) * (4 if "chunk" in name else 1)
        table.append((name, str(cap), fmt_size(size), fmt_size(padded), str(patches), str(tokens), str(items),
                      f"{items / seconds:.3f}", f"{seconds / items:.1f}", f"{peak:.0f}"))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for n, row in enumerate(table):
        emit("| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |")
        if n == 0:
            emit("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    emit(f"\ntotal {time.perf_counter() - start:.0f} s; load average at the end {load} (cores shared with others)")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "table.txt"), "w") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

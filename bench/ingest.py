"""Decoding hour-long real video at the physical limit, and reading scanned PDFs: every row in its own process.

    python bench/ingest.py [--out-dir DIR] [--rows ROW,ROW] [--ocr-pages 60] [--json FILE]

Inputs are built by the bench (in --out-dir, reused when present; nothing is re-encoded unless said):
  hour720   1-hour 1280x720 20 fps H.264 of real content: `dc_demo.mp4` looped by stream copy (~1 GB,
            a key frame every ~5 s, B frames)
  min10_720 / min180_720  the same content, 10 minutes and 3 hours (memory must stay flat with length)
  noise240  1-hour 426x240 25 fps of noise (x264 veryfast, crf 23, looped by stream copy): worst-case bitrate
  min10_1080  10-minute 1920x1080 20 fps: `dc_demo.mp4` upscaled and encoded once (x264 veryfast, crf 20,
            5 s GOP, B frames), then looped by stream copy
  toy64     1-hour 64x64 10 fps barcode video (the old bench's input; a labelled toy row only)
  scanned   the image-only PDFs of the MMLongBench-Doc dev subset (../shared/data/mmlongbench-doc)

Each row runs in a fresh process with its peak RSS sampled every 5 ms; every video ratio is against plain
PyAV sequential decode (one frame kept per second) of the same input in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
CLIP = SHARED / "media" / "dc_demo.mp4"
DOCS = SHARED / "mmlongbench-doc"


# -- inputs ---------------------------------------------------------------------------------------------------
def build_input(name: str, workdir: Path) -> str:
    """Make (or reuse) the bench input `name` in `workdir`; returns its path."""
    from longvlm.testing import loop_video, write_barcode_video, write_video

    path = workdir / f"{name}.mp4"
    if path.exists():
        return str(path)
    minutes = {"hour720": 60, "min10_720": 10, "min180_720": 180}
    if name in minutes:
        return str(loop_video(CLIP, path, minutes[name] * 60))
    if name == "noise240":
        import numpy as np

        rng = np.random.default_rng(0)
        piece = write_video(workdir / "noise240_piece.mp4", (rng.integers(0, 256, (240, 426, 3), np.uint8)
                                                              for _ in range(250)),
                            fps=25, crf=23, gop_seconds=5, preset="veryfast")
        return str(loop_video(piece, path, 3600))
    if name == "min10_1080":
        import av
        import numpy as np

        def upscaled():
            with av.open(str(CLIP)) as src:
                for frame in src.decode(video=0):
                    yield frame.to_ndarray(format="rgb24", width=1920, height=1080, interpolation="BICUBIC")

        piece = write_video(workdir / "min10_1080_piece.mp4", upscaled(), fps=20, crf=20, gop_seconds=5,
                            preset="veryfast")
        del np
        return str(loop_video(piece, path, 600))
    if name == "toy64":
        return write_barcode_video(path, 3600, fps=10, height=64, width=64)
    raise ValueError(name)


def scanned_pages(limit: int) -> list[tuple[str, int]]:
    """(pdf, page) of the image-only dev PDFs (no text layer on any page), the first `limit` pages in turn."""
    import fitz

    pdfs = []
    for pdf in sorted((DOCS / "documents").glob("*.pdf")):
        with fitz.open(pdf) as doc:
            if all(not page.get_text().strip() for page in doc):
                pdfs.append((str(pdf), doc.page_count))
    pages, depth = [], 0
    while len(pages) < limit and any(depth < n for _, n in pdfs):
        pages += [(pdf, depth) for pdf, n in pdfs if depth < n]
        depth += 1
    return pages[:limit]


# -- measured work (inside the worker process) ----------------------------------------------------------------
def _pyav_sequential(path: str, *, skip: str | None = None, keys_only: bool = False) -> tuple[int, int]:
    """Plain PyAV: decode every picture in order (frame threads), convert one per second to RGB.
    `skip="NONREF"` lets FFmpeg drop non-reference pictures (then the frame kept per second is the first
    reference picture at or after it: not the exact 1 fps frames); `keys_only` decodes key frames only."""
    import av

    kept = decoded = 0
    next_second = 0.0
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if keys_only:
            stream.codec_context.skip_frame = "NONKEY"
        elif skip:
            stream.codec_context.skip_frame = skip
        for frame in container.decode(stream):
            decoded += 1
            if keys_only or (frame.time is not None and frame.time + 1e-6 >= next_second):
                frame.to_ndarray(format="rgb24")
                kept += 1
                next_second = (frame.time or 0.0) + 1.0 if skip else next_second + 1.0
    return kept, decoded


def _reader_1fps(path: str, start: float = 0.0, stop: float = 1.0) -> tuple[int, int]:
    """longvlm's `VideoReader`: the 1 fps frames between fractions `start` and `stop` of the video,
    16 frames a chunk."""
    from longvlm.ingest.video import VideoReader

    reader = VideoReader(path)
    indices = reader.indices(fps=1.0)
    part = indices[int(start * len(indices)):int(stop * len(indices))]
    kept = sum(len(chunk.indices) for chunk in reader.iter_chunks(part, chunk_size=16))
    return kept, reader.decoded_pictures or 0


def _two_processes(path: str) -> tuple[int, int]:
    """The reader on each half of the 1 fps frames, in two processes at once."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2) as pool:
        halves = list(pool.map(_reader_1fps, [path, path], [0.0, 0.5], [0.5, 1.0]))
    return sum(h[0] for h in halves), sum(h[1] for h in halves)


def _decord_batches(path: str) -> tuple[int, int]:
    """decord 0.6 `get_batch`, 16 indices at a time (the reader before this bench's rewrite)."""
    import decord

    reader = decord.VideoReader(path, ctx=decord.cpu(0))
    step = reader.get_avg_fps()
    indices = [int(round(k * step)) for k in range(int(len(reader) / step))]
    kept = 0
    for start in range(0, len(indices), 16):
        kept += len(reader.get_batch(indices[start:start + 16]).asnumpy())
    return kept, 0


def _sparse(path: str, count: int = 64) -> tuple[int, int]:
    from longvlm.ingest.video import VideoReader

    reader = VideoReader(path)
    kept = sum(len(chunk.indices) for chunk in reader.iter_chunks(reader.indices(count=count)))
    return kept, reader.decoded_pictures or 0


def _scan(path: str) -> tuple[int, int]:
    from longvlm.ingest.video import VideoReader

    keys = VideoReader(path).scan_key_frames(width=320)
    return len(keys), len(keys)


def _ocr(pages: list[tuple[str, int]], stage: str) -> tuple[int, int]:
    """The scanned pages through `pdf_page_texts` as shipped (render at 144 dpi within 1 MP, then RapidOCR on
    both cores) with an empty cache (`stage="ocr"`), or the rendering alone (`stage="render"`).
    Returns (pages, characters read)."""
    from longvlm.ingest.pdf import PdfDocument
    from longvlm.retrieval.page_text import pdf_page_texts

    depth: dict[str, int] = {}
    for pdf, page in pages:
        depth[pdf] = max(depth.get(pdf, 0), page + 1)
    count = chars = 0
    for pdf, first_pages in depth.items():
        if stage == "render":
            with PdfDocument(pdf) as doc:
                count += sum(1 for i in range(first_pages) if doc.render(i, dpi=144, max_pixels=1_000_000))
            continue
        items = pdf_page_texts(pdf, max_pages=first_pages, ocr_max_pages=None, ocr_budget_s=None)
        count += sum(1 for it in items if "ocr" in it.source)
        chars += sum(len(it.text) for it in items)
    return count, chars


QUESTION = "What is on the screen at 30:00?"


def _text_route(path: str) -> tuple[int, int]:
    """`ask_text` on the video as shipped, with no OCR of it cached (the user cache's models are kept)."""
    from longvlm.ingest.cache import cache_dir, file_sha256
    from longvlm.retrieval.text_route import ask_text

    for old in cache_dir("ocr").glob(f"{file_sha256(path)}-*"):
        old.unlink()
    result = ask_text(QUESTION, video=path)
    return result.stats.get("frames_ocr_read", 0), result.stats.get("frame_runs", 0)


def _vlm_ready(path: str) -> tuple[int, int]:
    """What the demo does on loading a video: the default model loaded, the video encoded (no question yet)."""
    from longvlm import encode, load
    from longvlm.vlm.loading import default_model

    encoded = encode(load(default_model()), path)
    return encoded.stats["frames_encoded"], 0


def _vlm_minute30(path: str) -> tuple[int, int]:
    """The first answer about minute 30 (`ask` as shipped; the model loaded before the clock starts)."""
    from longvlm import ask

    result = ask(_VLM[0], QUESTION, path)
    return result.stats["frames_encoded"], 0


_VLM: list = []
WORK_DECODE = {"pyav", "pyav_nonref", "pyav_keys", "reader", "reader_2proc", "decord", "sparse64", "scan"}
"""The rows that decode frames (their ratio to PyAV sequential decode is printed); the others answer."""


WORK = {
    "pyav": lambda path: _pyav_sequential(path),
    "pyav_nonref": lambda path: _pyav_sequential(path, skip="NONREF"),
    "pyav_keys": lambda path: _pyav_sequential(path, keys_only=True),
    "reader": _reader_1fps,
    "reader_2proc": _two_processes,
    "decord": _decord_batches,
    "sparse64": _sparse,
    "scan": _scan,
    "text_route": _text_route,
    "vlm_ready": _vlm_ready,
    "vlm_minute30": _vlm_minute30,
}


def worker(kind: str, arg: str) -> dict:
    """Run one measurement in this process and return its figures."""
    from longvlm.profiling import RssSampler

    if kind == "vlm_minute30":
        from longvlm import load
        from longvlm.vlm.loading import default_model

        _VLM.append(load(default_model()))
    with RssSampler() as rss:
        started = time.perf_counter()
        if kind in ("ocr", "render"):
            items, extra = _ocr([tuple(p) for p in json.loads(arg)], kind)
        else:
            items, extra = WORK[kind](arg)
        seconds = time.perf_counter() - started
    children = _children_peak_mb() if kind == "reader_2proc" else 0.0
    return {"items": items, "extra": extra, "seconds": seconds, "peak_rss_mb": rss.peak_mb + children}


def _children_peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 * 2  # two children, the larger peak each


def run_worker(kind: str, arg: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", kind, arg], capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the table ------------------------------------------------------------------------------------------------
VIDEO_ROWS = [  # (input, kind, label); the first row of each input is its baseline
    ("hour720", "pyav", "PyAV sequential decode, 1 frame/s kept (baseline)"),
    ("hour720", "reader", "longvlm VideoReader 1 fps (PyAV, seeks across key frames)"),
    ("hour720", "reader_2proc", "VideoReader 1 fps, two halves in two processes"),
    ("hour720", "pyav_nonref", "PyAV skip_frame=NONREF (nearest reference pictures, not exact)"),
    ("hour720", "sparse64", "VideoReader, 64 frames spread over the video"),
    ("hour720", "pyav_keys", "PyAV key frames only (skip_frame=NONKEY)"),
    ("hour720", "scan", "longvlm key-frame scan (320 px thumbnails)"),
    ("hour720", "vlm_ready", "VLM route ready to ask: default model loaded + video encoded"),
    ("hour720", "vlm_minute30", "VLM route: ask about 30:00 (frames focused there), model loaded"),
    ("hour720", "text_route", "text route: ask_text, no OCR cached (items: picture runs OCR'd)"),
    ("min10_720", "pyav", "PyAV sequential decode (baseline)"),
    ("min10_720", "reader", "longvlm VideoReader 1 fps"),
    ("min10_720", "decord", "decord get_batch, 16 at a time (the old reader)"),
    ("min180_720", "reader", "longvlm VideoReader 1 fps (memory flat with length)"),
    ("min10_1080", "pyav", "PyAV sequential decode (baseline)"),
    ("min10_1080", "reader", "longvlm VideoReader 1 fps"),
    ("noise240", "pyav", "PyAV sequential decode (baseline)"),
    ("noise240", "reader", "longvlm VideoReader 1 fps"),
    ("toy64", "pyav", "TOY: PyAV sequential decode (baseline)"),
    ("toy64", "reader", "TOY: longvlm VideoReader 1 fps"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "ARG"), help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", default=None, help="keep the generated videos here (default: a temp dir)")
    parser.add_argument("--inputs", default=None, help="only these inputs, comma-separated (default: all)")
    parser.add_argument("--kinds", default=None, help="only these methods, comma-separated (default: all)")
    parser.add_argument("--ocr-pages", type=int, default=60, help="scanned pages to OCR (0: no OCR rows)")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return

    workdir = Path(args.out_dir or tempfile.mkdtemp(prefix="longvlm-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    chosen = set(args.inputs.split(",")) if args.inputs else None
    kinds = set(args.kinds.split(",")) if args.kinds else None
    rows = [r for r in VIDEO_ROWS if (chosen is None or r[0] in chosen) and (kinds is None or r[1] in kinds)]
    paths = {}
    for name in dict.fromkeys(r[0] for r in rows):
        t0 = time.perf_counter()
        paths[name] = build_input(name, workdir)
        print(f"# {name}: {paths[name]} ({os.path.getsize(paths[name]) / 1e9:.2f} GB, "
              f"{time.perf_counter() - t0:.1f} s to make)", flush=True)
    results = []
    for name, kind, label in rows:
        result = run_worker(kind, paths[name])
        results.append({"input": name, "kind": kind, "label": label, **result})
        print(f"# {name} {kind}: {json.dumps(result)}", flush=True)
    if args.ocr_pages and (chosen is None or "scanned" in chosen):
        pages = scanned_pages(args.ocr_pages)
        os.environ["LONGVLM_CACHE"] = tempfile.mkdtemp(prefix="longvlm-bench-cache-")  # cold OCR cache
        for kind, label in (("render", "PDF page render, 144 dpi within 1 MP (PyMuPDF)"),
                            ("ocr", "render + OCR as shipped (RapidOCR PP-OCRv6 small, 2 threads)")):
            result = run_worker(kind, json.dumps(pages))
            results.append({"input": "scanned", "kind": kind, "label": label, **result})
            print(f"# scanned {kind}: {json.dumps(result)}", flush=True)
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def print_table(results: list[dict]) -> None:
    baselines = {r["input"]: r for r in results if r["kind"] == "pyav" and "error" not in r}
    print()
    print("| input | method | items | pictures decoded | seconds | x PyAV sequential | peak RSS MB |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        if "error" in r:
            print(f"| {r['input']} | {r['label']} | failed: {r['error']} | | | | |")
            continue
        base = baselines.get(r["input"])
        ratio = f"{r['seconds'] / base['seconds']:.2f}" if base is not None and r["kind"] in WORK_DECODE else "n/a"
        pdf = r["kind"] in ("ocr", "render")
        per = f" ({r['seconds'] / max(1, r['items']):.2f} s/page)" if pdf else ""
        decoded = f"{r['extra']:,}" if r["extra"] and not pdf and r["kind"] in WORK_DECODE else ""
        items = f"{r['items']:,} of {r['extra']:,}" if r["kind"] == "text_route" else f"{r['items']:,}"
        print(f"| {r['input']} | {r['label']} | {items} | {decoded} | {r['seconds']:.1f}{per} | {ratio} | "
              f"{r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()

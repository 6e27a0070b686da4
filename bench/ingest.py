"""Ingestion throughput and memory: 1 fps sampling from a 1-hour low-res video (decord vs PyAV) and
rendering a 100-page PDF (PyMuPDF), each measured in its own process so peak RSS is per task.

    python bench/ingest.py [--minutes 60] [--pages 100] [--out-dir DIR]

Prints a table; ratios are against the PyAV sequential-decode baseline measured in the same run. The
decord rows for a 6-minute and a 60-minute video show that memory does not grow with video length.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _prepare(kind: str, path: str):
    """Open the input and return a function that does the measured work and returns the item count."""
    if kind == "decord":  # the longvlm reader: decord seeks to each sampled frame, 16 frames per chunk
        from longvlm.ingest.video import VideoReader

        reader = VideoReader(path)
        indices = reader.indices(fps=1.0)
        return lambda: sum(len(chunk.indices) for chunk in reader.iter_chunks(indices, chunk_size=16))
    if kind == "pyav":  # baseline: sequential decode, keep the first frame of every second
        import av

        def decode_sequentially() -> int:
            count, next_second = 0, 0.0
            with av.open(path) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for frame in container.decode(stream):
                    if frame.time is not None and frame.time + 1e-6 >= next_second:
                        frame.to_ndarray(format="rgb24")
                        count += 1
                        next_second += 1.0
            return count

        return decode_sequentially
    if kind == "pdf":
        from longvlm.ingest.pdf import PdfDocument

        doc = PdfDocument(path)
        return lambda: sum(1 for _ in doc.iter_render(dpi=144))
    raise ValueError(kind)


def worker(kind: str, path: str) -> dict:
    """Run one measurement in this process and return its figures."""
    from longvlm.profiling import RssSampler

    work = _prepare(kind, path)
    with RssSampler() as rss:
        started = time.perf_counter()
        count = work()
        seconds = time.perf_counter() - started
    return {"items": count, "seconds": seconds, "per_second": count / seconds, "peak_rss_mb": rss.peak_mb,
            "rss_growth_mb": rss.growth_mb}


def run_worker(kind: str, path: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", kind, path], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate of the synthetic video")
    parser.add_argument("--out-dir", default=None, help="keep generated files here (default: temp dir)")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return

    from longvlm.testing import write_barcode_video, write_synthetic_pdf

    workdir = args.out_dir or tempfile.mkdtemp(prefix="longvlm-bench-")
    os.makedirs(workdir, exist_ok=True)
    t0 = time.perf_counter()
    long_video = write_barcode_video(os.path.join(workdir, "long.mp4"), args.minutes * 60, fps=args.fps,
                                     height=64, width=64)
    short_video = write_barcode_video(os.path.join(workdir, "short.mp4"), args.minutes * 6, fps=args.fps,
                                      height=64, width=64)
    pdf = write_synthetic_pdf(os.path.join(workdir, "doc.pdf"), args.pages)
    print(f"# fixtures made in {time.perf_counter() - t0:.1f}s in {workdir}: {args.minutes:g}-min and "
          f"{args.minutes / 10:g}-min 64x64 H.264 at {args.fps:g} fps, {args.pages}-page PDF")

    rows = [
        ("video 1 fps, PyAV sequential (baseline)", "pyav", long_video, "frames"),
        ("video 1 fps, decord seek+chunks (longvlm)", "decord", long_video, "frames"),
        (f"video 1 fps, decord, {args.minutes / 10:g}-min video", "decord", short_video, "frames"),
        ("PDF render 144 dpi, PyMuPDF (longvlm)", "pdf", pdf, "pages"),
    ]
    results = [(label, unit, run_worker(kind, path)) for label, kind, path, unit in rows]
    base = results[0][2]
    print()
    print(f"| {'task':<44} | {'items':>6} | {'seconds':>8} | {'items/s':>9} | {'x baseline':>10} | "
          f"{'peak RSS MiB':>12} | {'RSS growth MiB':>14} |")
    print(f"|{'-' * 46}|{'-' * 8}|{'-' * 10}|{'-' * 11}|{'-' * 12}|{'-' * 14}|{'-' * 16}|")
    for label, unit, r in results:
        ratio = f"{r['per_second'] / base['per_second']:.2f}" if unit == "frames" else "n/a"
        print(f"| {label:<44} | {r['items']:>6} | {r['seconds']:>8.2f} | {r['per_second']:>9.1f} | {ratio:>10} | "
              f"{r['peak_rss_mb']:>12.0f} | {r['rss_growth_mb']:>14.1f} |")
    long_rss, short_rss = results[1][2]["rss_growth_mb"], results[2][2]["rss_growth_mb"]
    print(f"\nRSS growth while sampling: {long_rss:.1f} MiB for the {args.minutes:g}-min video vs {short_rss:.1f} "
          f"MiB for the {args.minutes / 10:g}-min one (10x longer video).")


if __name__ == "__main__":
    main()

"""Streaming a long video through the memory bridge: linear time, flat memory.

Synthetic barcode videos (64x64, 1 fps, a new scene colour every minute) of 10, 60 and 180 minutes are
sampled at 0.5 fps and encoded chunk by chunk by the tiny random model's vision tower at the stream size.
`bridge`: online SceneTilling + memory bridge (16 memory tokens, cache of 16); only the open segment's tokens
and the bounded state are held. `all tokens` (baseline, measured in the same run): the same stream keeping
every visual token, as feeding the whole video to the LLM needs. Reports seconds, seconds per video minute,
peak RSS growth (sampled) and the bytes of tensors kept at the end; ratios against the 10-minute run.

    python bench/memory_bridge.py [--minutes 10 60 180] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from longvlm.memory.bridge import MemoryBridge, MemoryBridgeConfig  # noqa: E402
from longvlm.testing import write_barcode_video  # noqa: E402
from longvlm.ingest.video import VideoReader  # noqa: E402
from longvlm.profiling import RssSampler  # noqa: E402
from longvlm.vlm.loading import load_vlm  # noqa: E402
from longvlm.memory.streaming import MemoryOptions, encode_patches, stream_indices, stream_size, stream_video  # noqa: E402

MEMORY_TOKENS, SEGMENT_PATCHES, BUDGET, FPS = 16, 16, 16 + 16 * 16, 0.5


def run_bridge(vlm, path: str, options: MemoryOptions) -> int:
    state, _, patches = stream_video(vlm, path, options, max_visual_tokens=BUDGET, sample_fps=FPS)
    return state.nbytes() + sum(p.tokens.numel() * p.tokens.element_size() for p in patches)


def run_all_tokens(vlm, path: str) -> int:
    reader = VideoReader(path)
    meta = reader.metadata
    height, width, _ = stream_size(vlm, meta.height, meta.width, BUDGET - MEMORY_TOKENS, SEGMENT_PATCHES)
    kept = [encode_patches(vlm, chunk.frames, (height, width))
            for chunk in reader.iter_chunks(stream_indices(meta, FPS, None, 2), 16)]
    return sum(t.numel() * t.element_size() for t in kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, nargs="+", default=[10, 60, 180])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vlm = load_vlm("tiny")
    torch.manual_seed(0)
    options = MemoryOptions(MemoryBridge(MemoryBridgeConfig(vlm.config.text_config.hidden_size, MEMORY_TOKENS,
                                                            cache_size=16)), max_segment_patches=SEGMENT_PATCHES)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            path = write_barcode_video(os.path.join(tmp, f"{minutes}.mp4"), 60 * minutes, fps=1, scene_seconds=60)
            for name, fn in (("bridge", lambda: run_bridge(vlm, path, options)),
                             ("all tokens", lambda: run_all_tokens(vlm, path))):
                with RssSampler() as rss:
                    started = time.perf_counter()
                    kept = fn()
                    seconds = time.perf_counter() - started
                rows.append((name, minutes, seconds, rss.growth_mb, kept))
            os.remove(path)
    base = {name: (s, k) for name, m, s, _, k in rows if m == args.minutes[0]}
    print("| method | video min | seconds | s / video min | x time (10 min) | RSS growth MiB | kept tensors KiB "
          "| x kept (10 min) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, minutes, seconds, growth, kept in rows:
        print(f"| {name} | {minutes} | {seconds:.1f} | {seconds / minutes:.3f} | {seconds / base[name][0]:.2f} | "
              f"{growth:.1f} | {kept / 1024:.0f} | {kept / base[name][1]:.2f} |")


if __name__ == "__main__":
    main()

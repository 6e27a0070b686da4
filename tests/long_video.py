"""Hour-long real-content videos for measurements and demo tests, made in seconds without re-encoding.

`loop_video` repeats a clip's compressed video packets (stream copy with shifted pts/dts), so a 10.8 s
1280x720 H.264 clip becomes a 1-hour, ~1 GB MP4 in a few seconds: real content, real GOP structure, real
decode cost. Audio is dropped. Nothing it writes is meant to be committed: write under a temporary folder.

    python tests/long_video.py /work/shared/data/media/dc_demo.mp4 /tmp/hour.mp4 3600
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path


def loop_video(source: str | os.PathLike, target: str | os.PathLike, seconds: float = 3600.0) -> Path:
    """Write `target`: the video stream of `source` repeated until it lasts at least `seconds` (whole loops).

    Packets are remuxed, not decoded: each loop's pts/dts are shifted by the clip's duration (in the stream's
    time base), so the result plays continuously and seeks like a real long recording. Returns `target`.
    """
    import av

    target = Path(target)
    with av.open(str(source)) as src:
        stream = src.streams.video[0]
        packets = [p for p in src.demux(stream) if p.size > 0 and p.pts is not None]
        if not packets:
            raise ValueError(f"{source}: no video packets")
        step = max(p.pts + (p.duration or 0) for p in packets) - min(p.pts for p in packets)
        loops = max(1, math.ceil(seconds / float(step * stream.time_base)))
        tmp = target.with_name(target.name + ".tmp.mp4")
        with av.open(str(tmp), "w") as out:
            copy = out.add_stream_from_template(stream)
            for loop in range(loops):
                shift = loop * step
                for p in packets:
                    packet = av.Packet(bytes(p))
                    packet.pts, packet.dts = p.pts + shift, (p.dts if p.dts is not None else p.pts) + shift
                    packet.duration, packet.time_base = p.duration, p.time_base
                    packet.is_keyframe = p.is_keyframe
                    packet.stream = copy
                    out.mux(packet)
    os.replace(tmp, target)
    return target


if __name__ == "__main__":
    made = loop_video(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 3600.0)
    print(f"{made}: {made.stat().st_size / 1e9:.2f} GB")

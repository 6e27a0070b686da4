"""M-RoPE context extension: prefill cost at 1x, 4x, 16x the training length for each method, and needle
accuracy beyond the training length (that part needs a trained model).

    python bench/rope_extension.py [--model tiny|DIR] [--train-length L] [--multiples 1 4 16] [--repeats N]
                                   [--methods none extrapolation linear ntk yarn mrope++ mrope++code]
                                   [--needles FILE.jsonl] [--needle-scale S]

Prefill (any model; the default tiny preset has random weights, which is fine for cost): for every method
and length X = multiple * L, one prefill (forward pass that fills the KV cache) over a synthetic multimodal
sequence of X tokens -- a video block of random pre-encoded features (a quarter of the tokens, grid
(T, 8, 8)) between text -- with the method applied at scale s = multiple (so L' = X). L defaults to the
model's `max_position_embeddings` (8192 for the tiny presets). Each row runs in its own process; time is the
prefill alone: wall-clock seconds and the process CPU seconds (all threads; far less sensitive than wall time
to other jobs on a shared machine, so the time ratio uses it), the fastest of --repeats runs. Memory is the
peak RSS during the prefill and its growth over the RSS before it on CPU (peak allocated CUDA memory on GPU).
Ratios are against the unmodified model ("none") at the same length, measured in the same run (on GPU the
time ratio uses wall-clock seconds). The methods only change the rotary frequencies (a [head_dim/2] vector
computed once), so ratios near 1 are expected. "max pos" is the largest M-RoPE position id of the sequence: in
transformers 5.x a video block advances text positions by its spatial extent only, so it is below the token
count.

The methods are `longvlm.vlm.rope.METHODS` (default: all of them): `mrope++` is M-RoPE++ as the GIRAFFE paper
writes it, `mrope++code` as GIRAFFE's published code computes it (docs/parity/rope.md). At 2L and 4L on the
shipped small model: `python bench/rope_extension.py --model small --multiples 2 4 --repeats 3`.

Needle accuracy: `needle_accuracy(vlm, samples, ...)` answers every sample once per method, with the method
applied at a scale that fits the longest sample, and counts answers that contain the expected text. It only
means something with the project's trained small model (`--model DIR`, see the training issue): the tiny
presets have random weights, so the script skips this part for them instead of printing numbers. Samples are
JSON lines {"video": path | "pdf": path, "question": str, "answer": str, "max_visual_tokens": int (optional)}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from longvlm.vlm.rope import METHODS  # noqa: E402  (after the path setup)

BASELINE = "none"
ALL_METHODS = [BASELINE, *METHODS]  # every registered method, mrope++code (GIRAFFE's published code) included
FILLER = "The quick brown fox jumps over the lazy dog while the clock on the wall keeps ticking. "


# -- prefill cost -----------------------------------------------------------------------------------------
def synthetic_inputs(vlm, length: int, seed: int = 0) -> dict:
    """Model kwargs for a `length`-token sequence: text, a video block of random features, text."""
    import torch
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    from longvlm.vlm.prompt import TEXT, VIDEO

    config = vlm.config
    merge = config.vision_config.spatial_merge_size
    per_step = (8 // merge) ** 2
    steps = max(1, length // 4 // per_step)
    video_tokens = steps * per_step
    filler = vlm.tokenizer(FILLER, add_special_tokens=False)["input_ids"]
    text_tokens = length - video_tokens - 2
    head = text_tokens // 8
    text = (filler * (text_tokens // len(filler) + 1))[:text_tokens]
    ids = (text[:head] + [config.vision_start_token_id] + [config.video_token_id] * video_tokens
           + [config.vision_end_token_id] + text[head:])
    types = [TEXT] * (head + 1) + [VIDEO] * video_tokens + [TEXT] * (len(text) - head + 1)
    gen = torch.Generator().manual_seed(seed)
    device, dtype = vlm.model.device, vlm.model.dtype
    features = torch.randn(video_tokens, config.text_config.hidden_size, generator=gen) * 0.02
    kwargs = {"input_ids": torch.tensor([ids], device=device),
              "attention_mask": torch.ones(1, len(ids), dtype=torch.long, device=device),
              "mm_token_type_ids": torch.tensor([types], dtype=torch.int32, device=device),
              "video_grid_thw": torch.tensor([[steps, 8, 8]], device=device),
              "mm_encoder_outputs": {"video": BaseModelOutputWithPooling(pooler_output=[features.to(device, dtype)])}}
    if vlm.family == "qwen2_5_vl":
        kwargs["second_per_grid_ts"] = torch.tensor([2.0], device=device)
    return kwargs


def prefill_worker(model: str, method: str, multiple: float, train_length: int | None, repeats: int = 1) -> dict:
    """Load the model, apply `method` at scale `multiple`, prefill `multiple * L` tokens `repeats` times;
    return the fastest time and the largest memory figures."""
    import torch

    from longvlm.profiling import RssSampler
    from longvlm.vlm.loading import load_vlm
    from longvlm.vlm.rope import apply_position_extension

    vlm = load_vlm(model)
    length_l = int(train_length or vlm.max_context)
    if method != BASELINE:
        apply_position_extension(vlm, method, float(multiple), train_length=length_l)
    length = int(round(multiple * length_l))
    cuda = vlm.model.device.type == "cuda"
    times, cpu_times, peaks, growths = [], [], [], []
    with torch.no_grad():
        vlm.model(**synthetic_inputs(vlm, 256, seed=1), logits_to_keep=1)  # warm-up
        kwargs = synthetic_inputs(vlm, length)
        positions, _ = vlm.model.model.get_rope_index(
            kwargs["input_ids"], kwargs["mm_token_type_ids"], video_grid_thw=kwargs["video_grid_thw"],
            **({"second_per_grid_ts": kwargs["second_per_grid_ts"]} if "second_per_grid_ts" in kwargs else {}))
        for _ in range(max(1, repeats)):
            vlm.model.model.rope_deltas = None
            out = None
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            with RssSampler() as rss:
                started, cpu_started = time.perf_counter(), time.process_time()
                out = vlm.model(**kwargs, use_cache=True, logits_to_keep=1)
                if cuda:
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - started)
                cpu_times.append(time.process_time() - cpu_started)
            peaks.append(torch.cuda.max_memory_allocated() / 2**20 if cuda else rss.peak_mb)
            growths.append(peaks[-1] if cuda else rss.growth_mb)
    return {"method": method, "multiple": multiple, "tokens": int(kwargs["input_ids"].shape[1]),
            "max_position": int(positions.max()), "seconds": min(times), "cpu_seconds": min(cpu_times),
            "peak_mb": max(peaks),
            "prefill_mb": max(growths), "repeats": len(times),
            "memory": "CUDA peak allocated" if cuda else "peak RSS", "finite": bool(torch.isfinite(out.logits).all()),
            "train_length": length_l, "kv_cache_tokens": int(out.cache.get_seq_length())}


def run_prefill_row(model: str, method: str, multiple: float, train_length: int | None, repeats: int = 1) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", method, str(multiple), "--model", model,
           "--repeats", str(repeats)]
    if train_length:
        cmd += ["--train-length", str(train_length)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"prefill worker {method} x{multiple} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def prefill_table(rows: list[dict]) -> str:
    """Markdown table with time and memory ratios against the unmodified model at the same length."""
    base = {r["multiple"]: r for r in rows if r["method"] == BASELINE}
    memory = rows[0]["memory"] if rows else "peak RSS"
    growth = "peak allocated" if memory.startswith("CUDA") else "RSS growth"
    clock = "seconds" if memory.startswith("CUDA") else "cpu_seconds"
    lines = [f"| method | x train length | tokens | max pos | prefill s | CPU s | x none ({clock}) | {memory} MiB | "
             f"prefill {growth} MiB | x none | finite |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: (r["multiple"], ALL_METHODS.index(r["method"]))):
        b = base.get(r["multiple"])
        t_ratio = f"{r[clock] / b[clock]:.2f}" if b else "n/a"
        m_ratio = f"{r['prefill_mb'] / b['prefill_mb']:.2f}" if b and b["prefill_mb"] > 0 else "n/a"
        lines.append(f"| {r['method']} | {r['multiple']:g} | {r['tokens']} | {r['max_position']} | {r['seconds']:.2f} "
                     f"| {r['cpu_seconds']:.2f} | {t_ratio} | {r['peak_mb']:.0f} | {r['prefill_mb']:.0f} | {m_ratio} | "
                     f"{'yes' if r['finite'] else 'NO'} |")
    return "\n".join(lines)


# -- needle accuracy (needs trained weights) --------------------------------------------------------------
@dataclass(frozen=True)
class NeedleSample:
    """A question whose answer is a short text hidden somewhere in a long video or PDF."""

    question: str
    answer: str
    video: str | None = None
    pdf: str | None = None
    max_visual_tokens: int = 16384


def load_needles(path: str) -> list[NeedleSample]:
    """Read JSON lines (see the module docstring)."""
    with open(path) as fh:
        return [NeedleSample(**json.loads(line)) for line in fh if line.strip()]


def needle_accuracy(vlm, samples: list[NeedleSample], *, methods: list[str] | None = None,
                    scale: float | None = None, train_length: int | None = None,
                    max_new_tokens: int = 16) -> list[dict]:
    """Accuracy of each method on `samples` (answer counted right when it contains the expected text,
    case-insensitively). Each sample is encoded once; every method is applied at `scale` (default: the
    smallest that fits the longest sample's context over the training length L) and the model's own rope is
    restored afterwards. Only meaningful with trained weights."""
    from longvlm.options import Options
    from longvlm.pipeline.encode import encode_pdf, encode_video
    from longvlm.pipeline.answer import answer, model_inputs
    from longvlm.vlm.rope import apply_position_extension, position_extension

    methods = [m for m in (methods or ALL_METHODS) if m != BASELINE]  # none == extrapolation past L
    length_l = int(train_length or vlm.max_context)
    encoded = []
    for s in samples:
        if (s.video is None) == (s.pdf is None):
            raise ValueError(f"needle sample needs exactly one of video / pdf: {s}")
        options = Options(max_visual_tokens=s.max_visual_tokens)
        enc = encode_video(vlm, s.video, options) if s.video else encode_pdf(vlm, s.pdf, options)
        context = int(model_inputs(vlm, enc, s.question)["input_ids"].shape[1])
        encoded.append((s, enc, context))
    longest = max(c for _, _, c in encoded) + max_new_tokens
    scale = scale or max(1.0, float(math.ceil(longest / length_l)))
    rows = []
    before, before_length = position_extension(vlm), vlm.max_context
    try:
        for method in methods:
            apply_position_extension(vlm, method, scale, train_length=length_l)
            right, started = 0, time.perf_counter()
            for sample, enc, _ in encoded:
                reply = answer(vlm, enc, sample.question, max_new_tokens=max_new_tokens)
                right += sample.answer.strip().lower() in reply.text.lower()
            rows.append({"method": method, "scale": scale, "train_length": length_l, "samples": len(encoded),
                         "beyond_train_length": sum(c > length_l for _, _, c in encoded),
                         "min_context": min(c for _, _, c in encoded), "max_context": longest - max_new_tokens,
                         "accuracy": right / len(encoded), "seconds": time.perf_counter() - started})
    finally:  # leave the model as it was given
        if before is None:
            apply_position_extension(vlm, None, train_length=before_length)
        else:
            apply_position_extension(vlm, before.method, before.scale, train_length=before.train_length)
    return rows


def needle_table(rows: list[dict]) -> str:
    lines = ["| method | scale | L | samples | beyond L | context tokens | accuracy | seconds |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['scale']:g} | {r['train_length']} | {r['samples']} | "
                     f"{r['beyond_train_length']} | {r['min_context']}..{r['max_context']} | {r['accuracy']:.3f} | "
                     f"{r['seconds']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", nargs=2, metavar=("METHOD", "MULTIPLE"), help=argparse.SUPPRESS)
    parser.add_argument("--model", default="tiny", help="tiny preset or a model directory (default: tiny)")
    parser.add_argument("--train-length", type=int, default=None,
                        help="training length L (default: the model's max_position_embeddings)")
    parser.add_argument("--multiples", type=float, nargs="+", default=[1, 4, 16])
    parser.add_argument("--repeats", type=int, default=1, help="prefills per row; the fastest is reported")
    parser.add_argument("--methods", nargs="+", default=ALL_METHODS, choices=ALL_METHODS)
    parser.add_argument("--needles", default=None, help="JSON lines of needle samples (needs a trained model)")
    parser.add_argument("--needle-scale", type=float, default=None)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(prefill_worker(args.model, args.worker[0], float(args.worker[1]), args.train_length,
                                        args.repeats)))
        return
    methods = [BASELINE] + [m for m in args.methods if m != BASELINE]
    rows = []
    for multiple in args.multiples:
        for method in methods:
            row = run_prefill_row(args.model, method, multiple, args.train_length, args.repeats)
            print(f"# {method} x{multiple:g}: {row['tokens']} tokens in {row['seconds']:.2f}s, {row['peak_mb']:.0f} MiB",
                  flush=True)
            rows.append(row)
    print(f"\nPrefill, model {args.model}, training length L = {rows[0]['train_length']}, "
          f"fastest of {args.repeats} run(s) per row\n")
    print(prefill_table(rows))
    from longvlm.vlm.loading import load_vlm

    vlm = load_vlm(args.model)
    if vlm.is_random or not args.needles:
        reason = "random-weight preset" if vlm.is_random else "no --needles file"
        print(f"\nNeedle accuracy: skipped ({reason}); it needs the trained model (--model DIR) and needle samples.")
        return
    table = needle_accuracy(vlm, load_needles(args.needles), methods=methods, scale=args.needle_scale,
                            train_length=args.train_length)
    print(f"\nNeedle accuracy, model {args.model}\n")
    print(needle_table(table))


if __name__ == "__main__":
    main()

"""KV-cache compression at prefill: KV bytes, prefill time and decode speed for budgets 100/50/20/10%, with
ratios against the full (unpruned) cache measured in the same run, interleaved and repeated.

    python bench/kv_compression.py                                   # CPU: random 'cpu-512' config, 4K context
    python bench/kv_compression.py --config tiny --context 2048
    python bench/kv_compression.py --model DIR                        # a saved model (load_vlm), + needle accuracy
    python bench/kv_compression.py --config qwen2-vl-7b --context 32768 65536 131072   # GPU machines only

Configs (random weights, real transformers Qwen2-VL classes, built in code):
  tiny         the `tiny` preset (hidden 64, 2 layers)
  cpu-512      hidden 512, 4 layers, 8 heads, 4 KV heads (head_dim 64), MLP 1024: small enough for a CPU; at 4K
               context its KV cache is about as large relative to its weights as Qwen2-VL-7B's at ~200K
  qwen2-vl-7b  the full-size Qwen2-VL-7B language model (hidden 3584, 28 layers, 28 heads, 4 KV heads, MLP 18944,
               vocab 152064 untied, rope_theta 1e6, mrope_section [16, 24, 24]) in bf16, for 32K-128K contexts on a GPU;
               the vision tower is cut to one block because the bench feeds pre-encoded visual features.
               It does not fit a CPU machine (refused there).

The prompt is a chat turn holding one video of random pre-encoded features (256 merged tokens per temporal
patch) filling `--context` tokens, then a question. Each row runs `generate_pruned` (greedy, EOS disabled,
`--new-tokens` tokens); prefill time includes the press's scoring/merging, decode tokens/s covers the steps
after prefill, KV bytes are the cache right after prefill. Timings are medians over `--repeats` interleaved
rounds, so all rows see the same machine load.

Needle accuracy needs TRAINED weights (the project's small model from the training issue, `--model DIR`):
`needle_accuracy` answers held-out synthetic needle questions of the tasks the model was trained on (video
colour / shape, document page / colour / code, image grid, text passkey; `--needles` per task, lengths in the
upper half of the model's training length) with each press, exact match after normalisation. With random
weights the column says n/a; no accuracy number is ever made up.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from transformers.modeling_outputs import BaseModelOutputWithPooling  # noqa: E402

from longvlm.presses import PRESSES, KVPress, build_press, generate_pruned  # noqa: E402
from longvlm.errors import ConfigError  # noqa: E402
from longvlm.vlm.loading import FAMILIES, TINY_VISION_SPEC, VLM, load_vlm, tiny_config  # noqa: E402
from longvlm.vlm.prompt import VisualSlot, build_chat_inputs  # noqa: E402
from longvlm.vlm.tokenizer import build_byte_tokenizer  # noqa: E402

BUDGETS = (1.0, 0.5, 0.2, 0.1)
TOKENS_PER_TEMPORAL_PATCH = 256  # a 448 x 448 frame pair: 16 x 16 merged tokens
CONFIGS = {
    "cpu-512": dict(hidden_size=512, layers=4, heads=8, kv_heads=4, intermediate=1024, vocab=None,
                    rope_theta=10000.0, section=None, max_positions=65536, tied=True),
    "qwen2-vl-7b": dict(hidden_size=3584, layers=28, heads=28, kv_heads=4, intermediate=18944, vocab=152064,
                        rope_theta=1000000.0, section=[16, 24, 24], max_positions=131072, tied=False),
}


def random_vlm(name: str, device: str, dtype: torch.dtype) -> VLM:
    """A randomly initialised Qwen2-VL of one of `CONFIGS`, with the offline byte tokenizer."""
    spec = CONFIGS[name]
    if name == "qwen2-vl-7b" and device == "cpu":
        raise ConfigError("the qwen2-vl-7b config needs a GPU (about 16 GB of bf16 weights plus 32K-128K "
                          "contexts); run it with --device cuda")
    tokenizer = build_byte_tokenizer()
    ids = {key: tokenizer.convert_tokens_to_ids(tok) for key, tok in [
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")]}
    config = tiny_config("qwen2_vl", vocab_size=spec["vocab"] or len(tokenizer), hidden_size=spec["hidden_size"],
                         layers=spec["layers"], heads=spec["heads"], kv_heads=spec["kv_heads"], vision_depth=1,
                         max_position_embeddings=spec["max_positions"], token_ids=ids)
    text = config.text_config
    text.intermediate_size = spec["intermediate"]
    text.rope_parameters["rope_theta"] = spec["rope_theta"]
    if spec["section"]:
        text.rope_parameters["mrope_section"] = spec["section"]
    text.eos_token_id, text.pad_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    config.tie_word_embeddings = spec["tied"]
    config._attn_implementation = "sdpa"
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = FAMILIES["qwen2_vl"].model_class(config)
    finally:
        torch.set_default_dtype(previous)
    model.eval()
    return VLM(model, tokenizer, TINY_VISION_SPEC, "qwen2_vl", name, is_random=True)


def long_prompt(vlm: VLM, context: int, seed: int = 0) -> dict:
    """One row: a video of random features (`context` minus the text, rounded to whole temporal patches)."""
    question = "Which code was shown on the screen right after the red car appeared? Answer with the code."
    text_only = build_chat_inputs(vlm.tokenizer, vlm.config, ["Video:", "\n", question])["input_ids"].shape[1]
    patches = max(1, (context - text_only - 2) // TOKENS_PER_TEMPORAL_PATCH)
    tokens = patches * TOKENS_PER_TEMPORAL_PATCH
    inputs = build_chat_inputs(vlm.tokenizer, vlm.config, ["Video:", VisualSlot("video", tokens), "\n", question])
    device = vlm.model.device
    inputs = {k: v.to(device) for k, v in inputs.items()}
    embed = vlm.model.get_input_embeddings().weight
    generator = torch.Generator(device=device).manual_seed(seed)
    features = torch.randn(tokens, embed.shape[1], generator=generator, device=device, dtype=torch.float32)
    features = (features * embed.float().std()).to(embed.dtype)
    inputs["video_grid_thw"] = torch.tensor([[patches, 32, 32]], device=device)
    inputs["mm_encoder_outputs"] = {"video": BaseModelOutputWithPooling(pooler_output=[features])}
    if vlm.family == "qwen2_5_vl":
        inputs["second_per_grid_ts"] = torch.tensor([1.0], device=device)
    return inputs


# -- needle accuracy (needs a trained model) --------------------------------------------------------------------

@dataclass
class NeedleSample:
    """An encoded input, a question about one planted fact, and its exact answer."""

    encoded: object  # longvlm.pipeline.encode.EncodedInput
    question: str
    answer: str


def synthetic_needle_samples(vlm: VLM, per_task: int = 8, tasks: tuple[str, ...] | None = None,
                             seed: int = 0) -> list[NeedleSample]:
    """Held-out examples of the synthetic needle tasks (default: all of `NEEDLE_TASKS`), lengths in the upper
    half of the training length."""
    from longvlm.eval.synthetic import NEEDLE_TASKS, heldout_examples
    from longvlm.pipeline.encode import encode_example

    length = vlm.max_context
    samples = []
    for task in tasks or NEEDLE_TASKS:
        for example in heldout_examples(vlm, task, per_task, length // 2, length - 16, seed):
            encoded = encode_example(vlm, example)
            samples.append(NeedleSample(encoded, encoded.stats["question"], example.answer))
    return samples


def needle_accuracy(vlm: VLM, samples: list[NeedleSample], press: KVPress | None,
                    max_new_tokens: int = 12) -> float:
    """Fraction of exact (normalised) answers with `press` pruning the KV cache. Meaningful only for a trained
    model; random weights answer at chance."""
    from longvlm.eval.synthetic import normalize_answer
    from longvlm.pipeline.answer import answer

    hits = sum(normalize_answer(answer(vlm, s.encoded, s.question, max_new_tokens=max_new_tokens,
                                       kv_press=press).text) == normalize_answer(s.answer) for s in samples)
    return hits / len(samples) if samples else float("nan")


# -- speed and memory -----------------------------------------------------------------------------------------

CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def measure(vlm: VLM, inputs: dict, press_name: str | None, budget: float, new_tokens: int, window: int,
            clock: str = "wall") -> dict:
    press = None if press_name is None else make_press(press_name, budget, window)
    if press is not None:
        press.clock = CLOCKS[clock]
    result = generate_pruned(vlm.model, inputs, press, max_new_tokens=new_tokens, eos_token_id=[],
                             clock=CLOCKS[clock])
    kept = int(result.state.keep_counts[0]) if result.state is not None else int(inputs["input_ids"].shape[1])
    return {"prefill_s": result.prefill_s, "decode_tps": result.decode_tokens_per_s,
            "kv_bytes": result.cache_bytes, "kept": kept, "press_s": result.state.time_s if result.state else 0.0}


def _options(press_name: str, window: int) -> dict:
    """The window for the presses that have one (a field of their dataclass; h2o: O(L^2) scoring)."""
    return {"window": window} if "window" in {f.name for f in dataclasses.fields(PRESSES[press_name])} else {}


def _value(text: str):
    """A press option's value from the command line: none, true/false, an int, a float, else the text."""
    lowered = text.lower()
    if lowered in ("none", "true", "false"):
        return {"none": None, "true": True, "false": False}[lowered]
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_press_spec(spec: str) -> tuple[str, dict]:
    """'snapkv' or 'lookm[merge=pivotal_reference;window=0.1]' -> (registry name, options); `merge` wraps the
    press (`build_press(..., merge=)`), every other key is a field of the press's dataclass."""
    name, _, rest = spec.partition("[")
    options = {}
    for item in rest.rstrip("]").split(";") if rest else []:
        key, _, value = item.partition("=")
        options[key.strip()] = _value(value.strip())
    return name.strip(), options


def make_press(spec: str, budget: float, window: int) -> KVPress:
    """The press a spec names, with the bench's --window unless the spec sets its own."""
    name, options = parse_press_spec(spec)
    return build_press(name, budget, **{**_options(name, window), **options})


def run(vlm: VLM, context: int, presses: list[str], budgets: tuple[float, ...], new_tokens: int, repeats: int,
        window: int, clock: str = "wall") -> list[dict]:
    inputs = long_prompt(vlm, context)
    length = int(inputs["input_ids"].shape[1])
    rows = [(None, 1.0)] + [(p, b) for p in presses for b in budgets]
    measure(vlm, long_prompt(vlm, 600), presses[0] if presses else None, 0.5, 4, window)  # warm-up
    samples: dict[tuple, list[dict]] = {row: [] for row in rows}
    for _ in range(repeats):
        for row in rows:
            samples[row].append(measure(vlm, inputs, row[0], row[1], new_tokens, window, clock))
    full = samples[(None, 1.0)]
    full_prefill = statistics.median(s["prefill_s"] for s in full)
    full_tps = statistics.median(s["decode_tps"] for s in full)
    full_bytes = full[0]["kv_bytes"]
    table = []
    for (name, budget), runs in samples.items():
        prefill = statistics.median(s["prefill_s"] for s in runs)
        tps = statistics.median(s["decode_tps"] for s in runs)
        table.append({"context": length, "press": name or "full cache", "budget": budget, "kept": runs[0]["kept"],
                      "kv_mib": runs[0]["kv_bytes"] / 2**20, "kv_x": runs[0]["kv_bytes"] / full_bytes,
                      "prefill_s": prefill, "prefill_x": prefill / full_prefill,
                      "press_s": statistics.median(s["press_s"] for s in runs),
                      "decode_tps": tps, "decode_x": tps / full_tps})
    return table


def print_table(rows: list[dict]) -> None:
    print("| context | press | budget | kept tokens | KV MiB | KV x full | prefill s | (press s) | prefill x full "
          "| decode tok/s | decode x full | needle acc |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        acc = r.get("accuracy")
        acc = "n/a (random weights)" if acc is None else f"{acc:.2f}"
        print(f"| {r['context']} | {r['press']} | {r['budget']:.0%} | {r['kept']} | {r['kv_mib']:.1f} | "
              f"{r['kv_x']:.2f} | {r['prefill_s']:.2f} | {r['press_s']:.2f} | {r['prefill_x']:.2f} | "
              f"{r['decode_tps']:.1f} | {r['decode_x']:.2f} | {acc} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a saved model directory (load_vlm); overrides --config")
    parser.add_argument("--config", default="cpu-512", choices=["tiny", *CONFIGS])
    parser.add_argument("--context", type=int, nargs="+", default=[4096])
    parser.add_argument("--presses", default="lookm,snapkv,streaming",
                        help=f"comma-separated names from the registry ({', '.join(PRESSES)}), each optionally with "
                             "options: 'lookm[merge=pivotal_reference;window=0.1],snapkv[pool_window=true]'")
    parser.add_argument("--budgets", type=float, nargs="+", default=list(BUDGETS))
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall",
                        help="wall clock, or CPU time of the calling thread (use with --threads 1 on a shared "
                             "machine: it does not count time spent waiting for a core)")
    parser.add_argument("--needles", type=int, default=8, help="needle questions per task and budget (trained model only)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    if args.model:
        vlm = load_vlm(args.model, device=args.device, dtype=None if args.model.startswith("tiny") else dtype)
    elif args.config == "tiny":
        vlm = load_vlm("tiny", device=args.device)
    else:
        vlm = random_vlm(args.config, args.device, dtype)
    presses = [p for p in args.presses.split(",") if p]
    unknown = [p for p in presses if parse_press_spec(p)[0] not in PRESSES]
    if unknown:
        parser.error(f"unknown press(es) {', '.join(unknown)}; known: {', '.join(PRESSES)}")
    for spec in presses:  # options checked before any measurement
        make_press(spec, 0.5, args.window)
    rows = []
    for context in args.context:
        rows += run(vlm, context, presses, tuple(args.budgets), args.new_tokens, args.repeats, args.window,
                    args.clock)
    if not vlm.is_random and args.needles > 0:
        samples = synthetic_needle_samples(vlm, per_task=args.needles)
        for row in rows:
            press = None if row["press"] == "full cache" else make_press(row["press"], row["budget"], args.window)
            row["accuracy"] = needle_accuracy(vlm, samples, press)
    threads = torch.get_num_threads()
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {threads} threads"
    print(f"model: {vlm.name} ({sum(p.numel() for p in vlm.model.parameters()) / 1e6:.0f}M params, "
          f"{'random' if vlm.is_random else 'trained'} weights), {device}, {args.new_tokens} new tokens, "
          f"median of {args.repeats}, {args.clock} clock")
    print_table(rows)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

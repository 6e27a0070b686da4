"""The newer families at full size on CPU: KV bytes per 1K visual tokens and LLM prefill time at 8K / 32K
context, without and with KV presses (random weights, real transformers classes, bfloat16).

    python bench/families.py                          # both models, 8K and 32K, every row (tens of minutes)
    python bench/families.py --models qwen3.5-0.8b --contexts 8192

Configs (the released sizes' config.json values, written out below; the vision towers are cut to one block
because the bench feeds pre-encoded visual features, and Qwen3-VL's three DeepStack feature blocks travel
with them):
  qwen3-vl-2b    Qwen3-VL-2B-Instruct: hidden 2048, 28 layers, 16 heads / 8 KV heads of 128, MLP 6144, vocab
                 151936 tied, rope_theta 5e6, interleaved mrope_section [24, 20, 20], DeepStack at vision
                 layers 5 / 11 / 17 (out hidden 2048)
  qwen3.5-0.8b   Qwen3.5-0.8B: hidden 1024, 24 layers (every 4th full attention: 6 with a KV cache, 18 Gated
                 DeltaNet), 8 heads / 2 KV heads of 256 (partial rotary 0.25, mrope_section [11, 11, 10]),
                 linear attention 16 key / 16 value heads of 128, MLP 3584, vocab 248320 tied

The prompt is a chat turn holding one video of random pre-encoded features (256 merged tokens per temporal
patch, each patch after its time as text, as the family writes it) filling the context, then a question. Each
row runs `generate_pruned` for one new token after a warm-up prefill (of the same prompt up to 8K, of 1K
tokens above): prefill time includes the press's scoring; KV bytes are the cache right after prefill; "state"
is the linear-attention layers' fixed-size state (not KV, not pruned). Each (model, context) runs in its own process; rows within it are interleaved over `--repeats` rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from longvlm.presses import build_press, generate_pruned  # noqa: E402
from longvlm.profiling import peak_rss_mb  # noqa: E402
from longvlm.vlm.families import FAMILIES  # noqa: E402
from longvlm.vlm.loading import VLM, family_vision_spec  # noqa: E402
from longvlm.vlm.prompt import build_chat_inputs, video_slot  # noqa: E402
from longvlm.vlm.tokenizer import build_byte_tokenizer  # noqa: E402
from longvlm.vlm.vision import deepstack_layers, model_features  # noqa: E402

TOKENS_PER_PATCH = 256
VISION_STUB = dict(depth=1, hidden_size=1024, intermediate_size=4096, num_heads=16, patch_size=16,
                   num_position_embeddings=2304)
CONFIGS = {
    "qwen3-vl-2b": ("qwen3_vl", dict(
        text_config=dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                         num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=262144,
                         rms_norm_eps=1e-6, tie_word_embeddings=True,
                         rope_parameters={"rope_type": "default", "rope_theta": 5000000.0,
                                          "mrope_section": [24, 20, 20], "mrope_interleaved": True}),
        vision_config=dict(VISION_STUB, out_hidden_size=2048, deepstack_visual_indexes=[5, 11, 17]),
        tie_word_embeddings=True)),
    "qwen3.5-0.8b": ("qwen3_5", dict(
        text_config=dict(vocab_size=248320, hidden_size=1024, intermediate_size=3584, num_hidden_layers=24,
                         num_attention_heads=8, num_key_value_heads=2, head_dim=256, max_position_embeddings=262144,
                         rms_norm_eps=1e-6, tie_word_embeddings=True, linear_num_key_heads=16,
                         linear_num_value_heads=16, linear_key_head_dim=128, linear_value_head_dim=128,
                         linear_conv_kernel_dim=4,
                         layer_types=["full_attention" if (i + 1) % 4 == 0 else "linear_attention"
                                      for i in range(24)],
                         rope_parameters={"rope_type": "default", "rope_theta": 10000000.0, "partial_rotary_factor": 0.25,
                                          "mrope_section": [11, 11, 10], "mrope_interleaved": True}),
        vision_config=dict(VISION_STUB, hidden_size=768, intermediate_size=3072, num_heads=12, out_hidden_size=1024),
        tie_word_embeddings=True)),
}
PRESS_ROWS = (None, ("snapkv", 0.25), ("streaming", 0.25))
LONG_PRESS_ROWS = PRESS_ROWS[:2]  # above 8K: no press and SnapKV only (each row is a full prefill on 2 cores)


def build(name: str) -> VLM:
    """The full-size model of `name` (random weights, bf16) with the byte tokenizer for the prompt text."""
    family, kwargs = CONFIGS[name]
    spec = FAMILIES[family]
    tokenizer = build_byte_tokenizer()
    config = spec.config_class(**kwargs)
    config.text_config.eos_token_id = tokenizer.eos_token_id
    torch.manual_seed(0)
    model = spec.model_class._from_config(config, dtype=torch.bfloat16).eval()
    return VLM(model, tokenizer, family_vision_spec(family), family, name, is_random=True)


def prompt(vlm: VLM, context: int) -> dict:
    """Chat inputs with one video filling about `context` tokens, and its random pre-encoded features."""
    def length(patches: int) -> int:
        slot = video_slot(patches * TOKENS_PER_PATCH, [0.5 * i for i in range(2 * patches)])
        return int(build_chat_inputs(vlm.tokenizer, vlm.config, ["Video:", slot, "\n", "What happens?"])[
            "input_ids"].shape[1])

    per_patch = length(2) - length(1)  # a patch's tokens, its block markers and its time text
    patches = max(1, (context - length(1)) // per_patch + 1)
    tokens = patches * TOKENS_PER_PATCH
    stamps = [0.5 * i for i in range(2 * patches)]
    inputs = build_chat_inputs(vlm.tokenizer, vlm.config, ["Video:", video_slot(tokens, stamps), "\n",
                                                            "What happens?"])
    width = vlm.config.text_config.hidden_size * (1 + deepstack_layers(vlm))
    features = torch.randn(tokens, width, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    grid = torch.tensor([[patches, 32, 32]])  # 16 x 16 merged tokens per temporal patch (512 x 512 frames)
    inputs.update(video_grid_thw=grid, mm_encoder_outputs={"video": model_features(vlm, [features], "cpu")})
    return inputs


def run_one(name: str, context: int, repeats: int) -> list[dict]:
    """All press rows for one model and context, interleaved over `repeats` rounds."""
    torch.set_num_threads(os.cpu_count() or 1)
    started = time.perf_counter()
    vlm = build(name)
    build_s = time.perf_counter() - started
    inputs = prompt(vlm, context)
    # warm-up: kernels and buffers of this size (a full prefill up to 8K; above, 1K: the first call's overhead is
    # then small next to a prefill of minutes)
    warm = inputs if context <= 8192 else prompt(vlm, 1024)
    generate_pruned(vlm.model, warm, None, max_new_tokens=1, eos_token_id=[])
    length = int(inputs["input_ids"].shape[1])
    visual = int(inputs["video_grid_thw"].prod()) // 4
    press_rows = PRESS_ROWS if context <= 8192 else LONG_PRESS_ROWS
    times: dict = {row: [] for row in press_rows}
    results: dict = {}
    for _ in range(repeats):
        for row in press_rows:
            press = None if row is None else build_press(row[0], row[1])
            out = generate_pruned(vlm.model, inputs, press, max_new_tokens=1, eos_token_id=[])
            times[row].append(out.prefill_s)
            results[row] = out
    rows = []
    for row in press_rows:
        out = results[row]
        rows.append({"model": name, "context": length, "visual_tokens": visual,
                     "press": "none" if row is None else f"{row[0]} {row[1]:.0%}",
                     "prefill_s": statistics.median(times[row]), "kv_bytes": out.cache_bytes,
                     "kv_bytes_per_1k_tokens": out.cache_bytes / length * 1000 if row is None else None,
                     "state_bytes": out.recurrent_bytes, "peak_rss_mb": peak_rss_mb(), "build_s": build_s})
    return rows


def markdown_table(rows: list[dict]) -> str:
    """The rows as the markdown table RESULTS.md shows."""
    lines = ["| model | context | press | prefill s | KV MiB | KV MiB per 1K tokens | linear-attn state MiB | "
             "peak RSS MiB |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        per_k = f"{r['kv_bytes_per_1k_tokens'] / 2 ** 20:.1f}" if r["kv_bytes_per_1k_tokens"] else ""
        lines.append(f"| {r['model']} | {r['context']:,} | {r['press']} | {r['prefill_s']:.1f} | "
                     f"{r['kv_bytes'] / 2 ** 20:.1f} | {per_k} | {r['state_bytes'] / 2 ** 20:.1f} | "
                     f"{r['peak_rss_mb']:,.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--contexts", nargs="+", type=int, default=[8192, 32768])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", default="bench/results/families")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "CONTEXT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one[0], int(args.one[1]), args.repeats)))
        return 0
    os.makedirs(args.out, exist_ok=True)
    rows: list[dict] = []
    for name in args.models:
        for context in args.contexts:
            done = subprocess.run([sys.executable, __file__, "--one", name, str(context), "--repeats",
                                   str(args.repeats)], capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{name} at {context}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            rows += json.loads(done.stdout.strip().splitlines()[-1])
            with open(os.path.join(args.out, "rows.json"), "w") as fh:
                json.dump(rows, fh, indent=1)
    table = markdown_table(rows)
    print(table)
    with open(os.path.join(args.out, "table.md"), "w") as fh:
        fh.write(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

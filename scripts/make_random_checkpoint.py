"""Write a model directory with a released model's exact architecture and random weights, loadable with
`--model DIR` and as a training `model.source`: for measuring memory and speed of real sizes offline.

    python scripts/make_random_checkpoint.py qwen2-vl-2b /tmp/qwen2-vl-2b-random [--dtype bfloat16]

The architecture numbers are Qwen2-VL-2B-Instruct's / Qwen2-VL-7B-Instruct's `config.json` (vocabulary,
widths, depths, heads, rope theta and M-RoPE sections, vision tower); the tokenizer is longvlm's offline
byte tokenizer (its special-token ids replace the released ones; the embedding keeps the released
vocabulary size, so memory is the real model's). Nothing is downloaded. The weights are random: this
measures cost, not quality.
"""

from __future__ import annotations

import argparse
import time

import torch

from longvlm.processing.spec import VisionSpec
from longvlm.vlm.loading import FAMILIES, VLM
from longvlm.vlm.tokenizer import build_byte_tokenizer

def _released(vocab: int, hidden: int, intermediate: int, heads: int, kv_heads: int, tied: bool) -> dict:
    """A Qwen2-VL release: 28 text layers, rope theta 1e6, M-RoPE sections [16, 24, 24], the 32-block ViT."""
    return dict(
        text=dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=28,
                  num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=32768,
                  rms_norm_eps=1e-6,
                  rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]}),
        vision=dict(depth=32, embed_dim=1280, hidden_size=hidden, mlp_ratio=4, num_heads=16, in_chans=3,
                    patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        tie_word_embeddings=tied)


RELEASED = {
    "qwen2-vl-2b": _released(151936, 1536, 8960, 12, 2, tied=True),
    "qwen2-vl-7b": _released(152064, 3584, 18944, 28, 4, tied=False),
}


def released_config(name: str):
    """The transformers config of a released architecture, with the byte tokenizer's special-token ids."""
    spec = RELEASED[name]
    tokenizer = build_byte_tokenizer()
    ids = {key: tokenizer.convert_tokens_to_ids(token) for key, token in [
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")]}
    text = dict(spec["text"], bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    config_cls = FAMILIES["qwen2_vl"].config_class
    return config_cls(text_config=text, vision_config=spec["vision"], tie_word_embeddings=spec["tie_word_embeddings"],
                      **ids), tokenizer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(RELEASED))
    parser.add_argument("out")
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    config, tokenizer = released_config(args.name)
    model_cls = FAMILIES["qwen2_vl"].model_class
    torch.manual_seed(args.seed)
    torch.set_default_dtype(getattr(torch, args.dtype))  # initialise in the target dtype (half the memory)
    try:
        model = model_cls(config)
    finally:
        torch.set_default_dtype(torch.float32)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    params = sum(p.numel() for p in model.parameters())
    VLM(model, tokenizer, VisionSpec(), "qwen2_vl", args.name, is_random=True).save_pretrained(args.out)
    print(f"{args.name}: {params / 1e9:.2f}B parameters ({args.dtype}) written to {args.out} in "
          f"{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

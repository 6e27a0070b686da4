"""An offline byte-level tokenizer with Qwen2-VL's special tokens, for tiny and project-trained models."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from transformers import PreTrainedTokenizerFast

# Qwen2-VL's chat and vision special tokens (same strings as the real tokenizer).
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
]


def build_byte_tokenizer(extra_special: Sequence[str] = ()) -> PreTrainedTokenizerFast:
    """Byte-level BPE with no merges: 256 byte tokens + the special tokens (+ `extra_special`, e.g. Kimi's chat
    and media tokens, after them). Needs no files or hub access."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    return _wrap(core, extra_special)


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer (all 256 bytes kept, so any text encodes) with Qwen2-VL's special
    tokens on `texts`. Deterministic for the same texts in the same order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    core = Tokenizer(models.BPE())
    # digits stay single tokens, so numbers (codes, page numbers, counts) are read and copied digit by digit
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                  pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(texts, trainer=trainer)
    return _wrap(core)


def _wrap(core, extra_special: Sequence[str] = ()) -> PreTrainedTokenizerFast:
    """A transformers tokenizer around a `tokenizers.Tokenizer`, with Qwen2-VL's eos/pad/special tokens."""
    others = [t for t in SPECIAL_TOKENS if t not in ("<|endoftext|>", "<|im_end|>")] + list(extra_special)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=others)

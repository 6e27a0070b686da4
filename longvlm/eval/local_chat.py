"""A local Hugging Face chat model as a `chat(messages) -> text` function (greedy), e.g. for answer extraction."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from longvlm.errors import ConfigError


def load_chat_model(path: str | os.PathLike, max_new_tokens: int = 256) -> Callable[[list[dict]], str]:
    """Load a causal LM with a chat template from a local directory (nothing is downloaded)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not os.path.isdir(path):
        raise ConfigError(f"{path}: not a model directory")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"{path}: the tokenizer has no chat template")
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()

    @torch.no_grad()
    def chat(messages: list[dict]) -> str:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
        return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)

    return chat

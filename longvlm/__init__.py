"""longvlm: vision-language models for hour-long videos and 100+ page PDFs.

    import longvlm

    vlm = longvlm.load("small")                       # or a local Qwen2-VL / Qwen2.5-VL directory
    result = longvlm.ask(vlm, "What is on page 3?", "report.pdf")
    options = longvlm.build_options(vlm, kv_press="snapkv", downsample="2")
    encoded = longvlm.encode(vlm, "talk.mp4", options)
    print(longvlm.answer(vlm, encoded, "When does the speaker start?").text)

The names below are loaded on first use (like transformers' lazy module), so `import longvlm` and the CLI's
argument errors stay fast; the heavy libraries (torch, transformers) load with the first model.
"""

import importlib
import os

# OpenMP threads that wait for work sleep instead of spinning. The demo encodes one session's input while it
# answers another's question, and the text route runs OCR (onnxruntime) beside torch: with spinning threads on
# a 2-core machine, 48 tokens of SmolLM2 took 13-82 s instead of 1-3 s. Only a default: a value set by the
# user wins, and it has no effect when torch was imported before longvlm.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from longvlm.errors import BudgetError, ConfigError, InputError, InputWarning, LongVLMError  # noqa: E402

__version__ = "0.1.0"

_PUBLIC = {
    "load": ("longvlm.vlm.loading", "load_vlm"),
    "VLM": ("longvlm.vlm.loading", "VLM"),
    "ask": ("longvlm.pipeline.ask", "ask"),
    "encode": ("longvlm.pipeline.encode", "encode"),
    "answer": ("longvlm.pipeline.answer", "answer"),
    "ask_text": ("longvlm.retrieval.text_route", "ask_text"),
    "Options": ("longvlm.options", "Options"),
    "Compression": ("longvlm.options", "Compression"),
    "build_options": ("longvlm.options", "build_options"),
    "Answer": ("longvlm.encoded", "Answer"),
    "EncodedInput": ("longvlm.encoded", "EncodedInput"),
    "Evidence": ("longvlm.encoded", "Evidence"),
    "PRESSES": ("longvlm.presses", "PRESSES"),
    "build_press": ("longvlm.presses", "build_press"),
    "KVPress": ("longvlm.presses", "KVPress"),
    "LookMPress": ("longvlm.presses", "LookMPress"),
    "SnapKVPress": ("longvlm.presses", "SnapKVPress"),
    "H2OPress": ("longvlm.presses", "H2OPress"),
    "StreamingLLMPress": ("longvlm.presses", "StreamingLLMPress"),
    "RandomPress": ("longvlm.presses", "RandomPress"),
    "MergingPress": ("longvlm.presses", "MergingPress"),
    "MERGE_METHODS": ("longvlm.presses", "MERGE_METHODS"),
    "VISUAL_COMPRESSORS": ("longvlm.compression", "VISUAL_COMPRESSORS"),
    "apply_position_extension": ("longvlm.vlm.rope", "apply_position_extension"),
}


def __getattr__(name: str):
    """Load a public name from its module on first use."""
    if name in _PUBLIC:
        module, attribute = _PUBLIC[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'longvlm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])


__all__ = ["BudgetError", "ConfigError", "InputError", "InputWarning", "LongVLMError", "__version__", *_PUBLIC]

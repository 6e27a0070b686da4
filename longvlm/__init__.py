"""longvlm: vision-language models for hour-long videos and 100+ page PDFs."""

import os

# OpenMP threads that wait for work sleep instead of spinning. The demo encodes one session's input while it
# answers another's question, and the text route runs OCR (onnxruntime) beside torch: with spinning threads on
# a 2-core machine, 48 tokens of SmolLM2 took 13-82 s instead of 1-3 s. Only a default: a value set by the
# user wins, and it has no effect when torch was imported before longvlm.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from longvlm.errors import BudgetError, ConfigError, InputError, LongVLMError  # noqa: E402

__version__ = "0.1.0"

__all__ = ["BudgetError", "ConfigError", "InputError", "LongVLMError", "__version__"]

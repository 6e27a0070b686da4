"""longvlm: vision-language models for hour-long videos and 100+ page PDFs."""

from longvlm.errors import BudgetError, ConfigError, InputError, LongVLMError

__version__ = "0.1.0"

__all__ = ["BudgetError", "ConfigError", "InputError", "LongVLMError", "__version__"]

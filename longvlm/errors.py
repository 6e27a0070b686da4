"""Error types raised by longvlm for problems a user can fix (bad files, budgets, configs)."""

from __future__ import annotations


class LongVLMError(Exception):
    """Base class of every error longvlm raises on purpose."""


class InputError(LongVLMError):
    """An input file (video, PDF, image) cannot be used: missing, unreadable, encrypted, corrupt or empty.

    The message always names the file and the problem.
    """

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class InputWarning(UserWarning):
    """An input file is used only in part (e.g. a truncated video: the frames that decode). Issued with
    `warnings.warn`; the CLI prints it as `longvlm: warning: <file>: <problem>`. The message names the file as
    given and says what was used."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class BudgetError(LongVLMError):
    """A request cannot fit the visual-token or context budget it was given."""


class ConfigError(LongVLMError):
    """A model directory or setting is wrong (unknown model type, missing files, bad values)."""


def short_reason(exc: BaseException) -> str:
    """First line of an exception's message (at most 200 chars), for error messages shown to users."""
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__

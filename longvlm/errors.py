"""Error types raised by longvlm for problems a user can fix.

* `InputError`: what the user gave is unusable (a file: missing, corrupt, encrypted, empty; a question: empty or
  too long). Names the file as given.
* `ConfigError` (also a `ValueError`): a setting or argument is wrong (unknown name, bad value, options that do
  not go together, a model directory that is not a model).
* `BudgetError`: a request cannot fit the visual-token or context budget it was given.

Internal invariants (a bug, not the user's mistake) raise plain exceptions (`RuntimeError`, `AssertionError`),
which the CLI does not dress up as a user error. Causes are chained (`raise ... from exc`).
"""

from __future__ import annotations


class LongVLMError(Exception):
    """Base class of every error longvlm raises on purpose."""


class InputError(LongVLMError):
    """What the user gave cannot be used: a file (video, PDF, image: missing, unreadable, encrypted, corrupt or
    empty) or a question (empty, too long).

    `InputError(path, problem)` names the file as given: "<path>: <problem>"; `InputError(problem)` is for
    inputs that are not files (the question).
    """

    def __init__(self, path: object, problem: str | None = None) -> None:
        if problem is None:
            path, problem = None, str(path)
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(problem if self.path is None else f"{self.path}: {problem}")


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


class ConfigError(LongVLMError, ValueError):
    """A setting or argument is wrong: unknown name, bad value, options that do not go together, a model
    directory that is not a model."""


def short_reason(exc: BaseException) -> str:
    """First line of an exception's message (at most 200 chars), for error messages shown to users."""
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__

"""The project's error types: a user's mistake raises one of these, the CLI prints it and exits 2."""

from __future__ import annotations


class TunesmithError(Exception):
    """A problem the user can fix. `hint` says what to do; `exit_code` is what the CLI returns."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ConfigError(TunesmithError):
    """A config file or override is wrong. `problems` holds every problem found, one line each."""

    def __init__(self, message: str, problems: list[str] | None = None, hint: str | None = None):
        super().__init__(message, hint)
        self.problems = problems or []

    def __str__(self) -> str:
        lines = [self.message, *(f"  {p}" for p in self.problems)]
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


class DataError(TunesmithError):
    """Input data cannot be read or does not fit the declared format."""


class ModelError(TunesmithError):
    """A model or tokenizer cannot be found or loaded."""


class TrainingError(TunesmithError):
    """Training stopped for a reason the user can act on (NaN loss, out of memory, bad launch)."""

    exit_code = 1


class ExportError(TunesmithError):
    """Export or its verification failed."""

    exit_code = 1

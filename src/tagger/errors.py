"""One exception family: every error a user can cause ends up as a one-line CLI message."""

from __future__ import annotations


class TaggerError(Exception):
    """Base class. `str(err)` is the whole message shown to the user: problem, then fix."""

    exit_code = 2


class InputError(TaggerError):
    """The input data cannot be used as given."""


class ConfigError(TaggerError):
    """An option, prompt template or setting is invalid."""


class ModelError(TaggerError):
    """A model, engine or encoder could not be loaded or did not answer."""

    exit_code = 3


class OutputError(TaggerError):
    """The output folder cannot be written as asked."""


class EngineDown(ModelError):
    """The engine stopped answering mid-call. `partial` holds one Completion per chat of that
    call (with `error` set where no answer came), so the answers that did arrive are cached."""

    def __init__(self, message: str, partial: list):
        super().__init__(message)
        self.partial = partial

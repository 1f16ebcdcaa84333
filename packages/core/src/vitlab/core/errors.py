"""vitlab's own error classes: expected failures that the CLI reports in one line.

Every failure a user can cause and fix (a malformed dataset file, a config key with a wrong value, a
checkpoint that is not the one the config builds, a run that diverged) raises a subclass of
:class:`VitlabError`. ``vitlab`` prints its message as one line (plus its ``hint`` when it has one) and
exits non-zero; the traceback is shown only with ``--traceback`` or ``VITLAB_DEBUG=1``. Anything else is a
bug and keeps its traceback.

The classes also derive from the builtin exception a caller would expect (``ValueError`` for bad input,
``RuntimeError`` for unreadable checkpoints), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DatasetFormatError",
    "VitlabError",
]


class VitlabError(Exception):
    """An expected failure with a message that names the file or key and what was expected.

    ``hint`` (optional) is a second line telling the user what to do.
    """

    hint: str | None = None

    def __init__(self, *args: object, hint: str | None = None) -> None:
        super().__init__(*args)
        if hint is not None:
            self.hint = hint


class DatasetFormatError(VitlabError, ValueError):
    """A data file or folder exists but is not in the layout, encoding or value range its format prescribes."""


class ConfigError(VitlabError, ValueError):
    """A config file or a constructor argument has a value that cannot work (names the key and the value)."""


class CheckpointError(VitlabError, RuntimeError):
    """A checkpoint file that cannot be used: missing, truncated, corrupt, or of another kind."""

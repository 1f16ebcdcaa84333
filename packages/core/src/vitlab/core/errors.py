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

import os
import re

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DatasetFormatError",
    "VitlabError",
    "expected_failure",
    "format_error",
    "show_traceback",
]

#: environment variable that makes ``vitlab`` show the traceback of expected failures too
DEBUG_ENV = "VITLAB_DEBUG"


class VitlabError(Exception):
    """An expected failure with a message that names the file or key and what was expected.

    ``hint`` (optional) is a second line telling the user what to do.
    """

    hint: str | None = None

    def __init__(self, *args: object, hint: str | None = None) -> None:
        super().__init__(*args)
        if hint is not None:
            self.hint = hint
            # a note travels inside the formatted traceback, so the hint survives a DataLoader worker,
            # which re-raises the error in the main process from that text alone (Python >= 3.11)
            if hasattr(self, "add_note"):
                self.add_note(f"hint: {hint}")


class DatasetFormatError(VitlabError, ValueError):
    """A data file or folder exists but is not in the layout, encoding or value range its format prescribes."""


class ConfigError(VitlabError, ValueError):
    """A config file or a constructor argument has a value that cannot work (names the key and the value)."""


class CheckpointError(VitlabError, RuntimeError):
    """A checkpoint file that cannot be used: missing, truncated, corrupt, or of another kind."""


# torch.utils.data re-raises a worker's exception as ``type(msg)`` with msg = "Caught <Name> in DataLoader worker
# process N.\nOriginal Traceback (most recent call last): ..." (torch._utils.ExceptionWrapper)
_WORKER = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback", re.S)


def _worker_report(err: VitlabError, text: str) -> tuple[str, str | None]:
    """The original message and hint out of the traceback text a DataLoader worker sent back."""
    cls = type(err)
    heads = (f"{cls.__module__}.{cls.__qualname__}: ", f"{cls.__qualname__}: ")
    lines = text.splitlines()
    start = max((i for i, ln in enumerate(lines) if ln.startswith(heads)), default=None)
    if start is None:
        return lines[-1] if lines else cls.__name__, None
    first = lines[start]
    body = [first[next(len(h) for h in heads if first.startswith(h)):]]
    hint = None
    for ln in lines[start + 1:]:
        if ln.startswith("hint: "):
            hint = ln[len("hint: "):]
            break
        body.append(ln)
    return " ".join(part.strip() for part in body if part.strip()), hint


def format_error(err: BaseException) -> list[str]:
    """The lines ``vitlab`` prints for an expected failure: the message on one line, then its hint if any.

    Multi-line messages are joined into one line; an error re-raised from a DataLoader worker is reported
    with its original message (not torch's wrapper with the worker's traceback).
    """
    text = str(err) or type(err).__name__
    hint = getattr(err, "hint", None)
    if isinstance(err, VitlabError) and _WORKER.match(text):
        text, hint = _worker_report(err, text)
        hint = hint or type(err).hint
    line = " ".join(part.strip() for part in text.splitlines() if part.strip())
    if not re.match(r"vitlab( \w+)?: ", line):  # messages may name the program already ("vitlab predict: ...")
        line = f"vitlab: {line}"
    return [line] + ([f"hint: {hint}"] if hint else [])


def expected_failure(err: BaseException) -> VitlabError | None:
    """The :class:`VitlabError` behind ``err``: itself, or the first one it was raised ``from``.

    jsonargparse re-raises an error of a constructor it instantiates as its own ``ValueError`` ("Does not
    validate against any of the Union subtypes") raised from the original, which is what the user must see.
    """
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, VitlabError):
            return err
        seen.add(id(err))
        err = err.__cause__
    return None


def show_traceback(args: list[str] | None = None) -> bool:
    """True when the user asked for tracebacks: ``--traceback`` among ``args`` or ``VITLAB_DEBUG`` set (not 0)."""
    flag = os.environ.get(DEBUG_ENV, "").strip().lower()
    return bool(args and "--traceback" in args) or flag not in ("", "0", "false", "no")

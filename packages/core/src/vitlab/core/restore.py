"""Rebuilding a module from a checkpoint must not need the files its weights were first loaded from.

A config records ``backbone.init_args.pretrained: /path/mae.pth``; the checkpoint of the run trained
from it holds the weights already. While a module is rebuilt to receive a checkpoint
(``Module.load_from_checkpoint``, ``vitlab fit|validate|test|predict --ckpt_path``), backbones skip their
``pretrained`` loading, so a moved or deleted pretrained file does not stop a resume or an evaluation.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("vitlab")
_RESTORING = contextvars.ContextVar("vitlab_restoring_from_checkpoint", default=False)


@contextmanager
def restoring_from_checkpoint() -> Iterator[None]:
    """Within this block, :func:`skip_pretrained` is true."""
    token = _RESTORING.set(True)
    try:
        yield
    finally:
        _RESTORING.reset(token)


def restoring() -> bool:
    """True inside :func:`restoring_from_checkpoint`."""
    return _RESTORING.get()


def skip_pretrained(source: str) -> bool:
    """True (and says so) when ``source`` need not be loaded because a checkpoint will overwrite it."""
    if _RESTORING.get():
        log.info("vitlab: not loading %s: the weights come from the checkpoint being restored", source)
        return True
    return False

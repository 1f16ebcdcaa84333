"""Checkpoint files that are never half-written, and loading errors that name the file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

_TMP_SUFFIX = ".tmp"


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}."


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the destination folder, fsync, then ``os.replace``.

    The rename is atomic on the destination filesystem, so a job killed mid-write leaves the previous
    file intact (a temporary file in the system temp dir would need a cross-filesystem copy, which is not
    atomic). Leftover temporary files of an earlier killed write of the same target are removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f"{_tmp_prefix(path)}*{_TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            stale.unlink()
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=_TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load_checkpoint_file(path: str | os.PathLike, weights_only: bool = True) -> dict[str, Any]:
    """``torch.load`` on CPU whose errors say which file is unreadable and why."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as err:  # truncated zip, pickle errors, wrong format ...
        raise RuntimeError(
            f"checkpoint {path} cannot be read ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            "it is corrupt, truncated or not a PyTorch checkpoint"
        ) from err
    if not isinstance(ckpt, dict):
        raise RuntimeError(f"checkpoint {path} holds a {type(ckpt).__name__}, expected a dict")
    return ckpt


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO that writes with :func:`atomic_torch_save` and loads with file-naming errors.

    The CLI installs it on every trainer (unless the config brings its own ``CheckpointIO`` plugin).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path, *args: Any, **kwargs: Any) -> dict[str, Any]:
        path = Path(path)
        try:
            return super().load_checkpoint(path, *args, **kwargs)
        except FileNotFoundError:
            raise
        except Exception as err:
            raise RuntimeError(
                f"checkpoint {path} cannot be read ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
                "it is corrupt, truncated or not a PyTorch checkpoint"
            ) from err

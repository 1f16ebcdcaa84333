"""Checkpoint files that are never half-written, carry a content hash, and fail to load with a sentence.

Every checkpoint a vitlab run writes (every ``.ckpt`` through :class:`AtomicCheckpointIO`, i.e.
:func:`atomic_torch_save` with ``write_hash``) gets a SHA-256 beside it, ``<file>.sha256`` in ``sha256sum`` format (``sha256sum
-c last.ckpt.sha256`` checks it by hand). Loading through vitlab (``--ckpt_path``, :func:`load_checkpoint_file`,
``VitlabModule.load_from_checkpoint``) verifies it first, so a bit flipped on disk or in a copy is a
:class:`~vitlab.core.errors.CheckpointError` naming the file instead of a run that silently starts from damaged
weights. A checkpoint without a ``.sha256`` (written by another tool, or renamed) loads unverified.

Cost. Writing: the digest is computed from the bytes as they stream to disk, so saving reads nothing back;
it adds the hashing time (SHA-256 runs at roughly 0.5-2 GB/s on one core, depending on SHA extensions; a
0.5 GiB checkpoint took 0.4-0.7 s longer to save on a busy 2-core machine). Loading: one sequential pass over
the file before ``torch.load`` (0.8 s for that 0.5 GiB file there). When the file fits in the page cache that
pass is the only disk read, because ``torch.load`` then reads the cached pages. A file verified once is not
hashed again in the same process while its size, mtime and inode are unchanged (the CLI reads a checkpoint's
hyper-parameters before the trainer restores it).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from vitlab.core.errors import CheckpointError

__all__ = [
    "AtomicCheckpointIO",
    "MissingCheckpointError",
    "atomic_torch_save",
    "hash_file",
    "load_checkpoint_file",
    "require_lightning_checkpoint",
    "verify_checkpoint",
]

_TMP_SUFFIX = ".tmp"
HASH_SUFFIX = ".sha256"
#: ``format`` value of the tuner files vitlab.peft writes (trainable tensors only, no training state)
_TUNER_FORMAT_PREFIX = "vitlab.peft.trainable"
_CHUNK = 16 << 20


class MissingCheckpointError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist (still a ``FileNotFoundError``)."""


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}."


def hash_path(path: str | os.PathLike) -> Path:
    """Where the content hash of ``path`` is kept: ``<path>.sha256`` beside it."""
    path = Path(path)
    return path.with_name(path.name + HASH_SUFFIX)


class _HashingWriter:
    """A write-only file object that feeds every byte written through it into a SHA-256."""

    def __init__(self, f) -> None:
        self._f = f
        self.digest = hashlib.sha256()

    def write(self, data) -> int:
        self.digest.update(data)
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()


def _replace_small(path: Path, text: str) -> None:
    """Write a small text file atomically (temporary file in the same folder, then rename)."""
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=_TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj: Any, path: str | os.PathLike, write_hash: bool = False) -> None:
    """``torch.save`` to a temporary file in the destination folder, fsync, then ``os.replace``.

    The rename is atomic on the destination filesystem, so a job killed mid-write leaves the previous
    file intact (a temporary file in the system temp dir would need a cross-filesystem copy, which is not
    atomic). Leftover temporary files of an earlier killed write of the same target are removed.

    With ``write_hash`` (what :class:`AtomicCheckpointIO` asks for) the SHA-256 of the bytes, computed while
    they stream to disk, lands in ``<path>.sha256``. Any old hash file is removed before the rename and the
    new one written after it, so a job killed in between leaves a checkpoint without a hash (loaded
    unverified), never a checkpoint with a hash of other content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f"{_tmp_prefix(path)}*{_TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            stale.unlink()
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=_TMP_SUFFIX, dir=path.parent)
    sidecar = hash_path(path)
    try:
        with os.fdopen(fd, "wb") as f:
            writer = _HashingWriter(f)
            torch.save(obj, writer)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileNotFoundError):
            sidecar.unlink()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if write_hash:
        _replace_small(sidecar, f"{writer.digest.hexdigest()}  {path.name}\n")


def hash_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read once sequentially."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


# (real path, inode, size, mtime_ns) -> digest already checked in this process
_VERIFIED: dict[tuple[str, int, int, int], str] = {}


def _expected_digest(path: Path) -> tuple[Path, str] | None:
    # Lightning's `save_last: link` points last.ckpt at a top-k file: the target's hash describes it (a
    # last.ckpt.sha256 left from when last.ckpt was a file does not)
    sidecar = hash_path(path.resolve() if path.is_symlink() else path)
    if not sidecar.is_file():
        return None
    words = sidecar.read_text(errors="replace").split()
    digest = words[0].lower() if words else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise CheckpointError(
            f"checkpoint hash file {sidecar} is not a SHA-256 line ('<64 hex digits>  <file name>')",
            hint=f"delete {sidecar.name} to load {path.name} unverified",
        )
    return sidecar, digest


def verify_checkpoint(path: str | os.PathLike) -> bool:
    """Check ``path`` against its ``.sha256``; True if verified, False if it has none. Raises on a mismatch."""
    path = Path(path)
    expected = _expected_digest(path)
    if expected is None:
        return False
    sidecar, digest = expected
    st = path.stat()
    key = (os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if _VERIFIED.get(key) == digest:
        return True
    actual = hash_file(path)
    if actual != digest:
        raise CheckpointError(
            f"checkpoint {path} does not match its content hash in {sidecar.name} (sha256 {actual[:12]}..., "
            f"expected {digest[:12]}...): the file changed after vitlab wrote it (disk or copy corruption)",
            hint=f"resume from another checkpoint of the run or copy the file again; delete {sidecar.name} "
                 "to load it anyway",
        )
    _VERIFIED[key] = digest
    return True


def _unreadable(path: Path, err: BaseException) -> CheckpointError:
    """A one-line error for a file ``torch.load`` cannot read, saying what it found."""
    size = path.stat().st_size if path.is_file() else None
    if size == 0:
        return CheckpointError(
            f"checkpoint {path} is empty (0 bytes): the write that made it never finished",
            hint="resume from another checkpoint of the run (e.g. <run>/checkpoints/last.ckpt)",
        )
    detail = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), "")
    detail = f"{type(err).__name__}: {detail[:200]}" if detail else type(err).__name__
    return CheckpointError(
        f"checkpoint {path} cannot be read ({detail}); it is corrupt, truncated or not a PyTorch checkpoint"
    )


def load_checkpoint_file(path: str | os.PathLike, weights_only: bool = True, verify: bool = True) -> dict[str, Any]:
    """``torch.load`` on CPU after the hash check (``verify``), with errors that say which file and why."""
    path = Path(path)
    if not path.is_file():
        raise MissingCheckpointError(f"checkpoint {path} does not exist")
    if verify:
        verify_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as err:  # truncated zip, pickle errors, wrong format ...
        raise _unreadable(path, err) from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(ckpt).__name__}, expected a dict")
    return ckpt


def require_lightning_checkpoint(ckpt: dict[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    """Refuse, naming the file, a checkpoint that Lightning cannot restore a training state from."""
    if "pytorch-lightning_version" in ckpt:
        return ckpt
    fmt = ckpt.get("format")
    if isinstance(fmt, str) and fmt.startswith(_TUNER_FORMAT_PREFIX):
        raise CheckpointError(
            f"checkpoint {path} is a tuner file (trainable weights only, format {fmt!r}), not a training "
            "checkpoint: --ckpt_path needs a file written by `vitlab fit` (<run>/checkpoints/last.ckpt)",
            hint=f"load tuner weights with vitlab.peft.load_trainable(model, {str(path)!r}) onto a model built "
                 "from the same config",
        )
    keys = ", ".join(sorted(map(str, ckpt))[:6]) or "none"
    raise CheckpointError(
        f"checkpoint {path} is not a Lightning training checkpoint (no 'pytorch-lightning_version'; keys: "
        f"{keys}): --ckpt_path needs a file written by `vitlab fit`",
        hint="load plain weights through `backbone.init_args.pretrained` instead",
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO: atomic hashed writes (:func:`atomic_torch_save`), verified loads, and errors
    that name the file.

    The CLI installs it on every trainer (unless the config brings its own ``CheckpointIO`` plugin).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        atomic_torch_save(checkpoint, path, write_hash=True)

    def load_checkpoint(self, path, *args: Any, **kwargs: Any) -> dict[str, Any]:
        path = Path(path)
        if not path.is_file():
            raise MissingCheckpointError(f"checkpoint {path} does not exist")
        verify_checkpoint(path)
        try:
            ckpt = super().load_checkpoint(path, *args, **kwargs)
        except Exception as err:
            raise _unreadable(path, err) from err
        if not isinstance(ckpt, dict):
            raise CheckpointError(f"checkpoint {path} holds a {type(ckpt).__name__}, expected a dict")
        return require_lightning_checkpoint(ckpt, path)

    def remove_checkpoint(self, path) -> None:
        super().remove_checkpoint(path)
        with contextlib.suppress(FileNotFoundError):
            hash_path(path).unlink()

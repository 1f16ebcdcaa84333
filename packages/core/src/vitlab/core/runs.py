"""Run folders: every output of one ``vitlab`` invocation lands in one folder of its own.

``trainer.default_root_dir`` names the *root* of a config's runs (``runs/quickstart``); each ``fit`` gets
``<root>/version_N`` (the next free N) holding the logger files (``wandb/``), ``checkpoints/``,
``config.yaml`` and any callback output (tuner files, predictions). So re-running a config never piles
``last-v1.ckpt`` files or several W&B runs into one folder, and ``--ckpt_path last`` is unambiguous:

* ``fit --ckpt_path last`` resumes the newest run of the root that has ``checkpoints/last.ckpt`` and keeps
  writing into that run's folder (and the same W&B run id);
* ``--ckpt_path <run folder>`` means ``<run folder>/checkpoints/last.ckpt``;
* ``validate`` / ``test`` / ``predict`` write into ``<run>/<subcommand>/version_N`` of the run the
  checkpoint came from (or ``<root>/<subcommand>/version_N``), never over the training run's config.

Processes started by a launcher for the same job (torchrun, SLURM) agree on the folder without talking:
it is named after the job id (``job-<id>``); processes spawned by Lightning's DDP launcher (``LOCAL_RANK``
> 0) inherit ``VITLAB_RUN_DIR`` from rank 0.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from vitlab.core.errors import VitlabError

RUN_DIR_ENV = "VITLAB_RUN_DIR"
_VERSION = re.compile(r"^version_(\d+)$")


class RunFolderError(VitlabError, ValueError):
    """A ``--ckpt_path`` that names no usable checkpoint (one line from ``vitlab``; still a ``ValueError``)."""


def _launcher_job_id() -> str | None:
    for key in ("TORCHELASTIC_RUN_ID", "SLURM_JOB_ID"):
        value = os.environ.get(key)
        if value and value != "none":
            return re.sub(r"[^A-Za-z0-9_.-]", "_", value)
    return None


def next_version(parent: Path) -> Path:
    """``parent/version_N`` with N one past the largest existing version (0 for a new parent)."""
    versions = [int(m.group(1)) for p in parent.glob("version_*") if (m := _VERSION.match(p.name))]
    return parent / f"version_{max(versions) + 1 if versions else 0}"


def find_last_run(root: Path) -> Path | None:
    """The run folder under ``root`` whose ``checkpoints/last.ckpt`` was written most recently."""
    candidates = [p for p in root.glob("*/checkpoints/last.ckpt") if p.is_file()]
    if not candidates:
        return None
    return max(candidates, key=lambda p: p.stat().st_mtime).parent.parent


def run_of_checkpoint(ckpt: Path) -> Path | None:
    """The run folder a checkpoint belongs to (``<run>/checkpoints/x.ckpt``), if it is laid out that way."""
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else None


def resolve_ckpt_path(ckpt_path: str | None, root: Path, checkpoint_dirs: tuple[Path, ...] = ()) -> Path | None:
    """Turn ``last`` / a run folder / a file into a checkpoint file, or raise naming what was looked at.

    ``checkpoint_dirs``: folders a config's ``ModelCheckpoint`` writes to explicitly (``dirpath``); ``last``
    also finds a ``last.ckpt`` there.
    """
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        run = find_last_run(root)
        explicit = [d / "last.ckpt" for d in checkpoint_dirs if (d / "last.ckpt").is_file()]
        if explicit and (run is None or max(p.stat().st_mtime for p in explicit)
                         > (run / "checkpoints" / "last.ckpt").stat().st_mtime):
            return max(explicit, key=lambda p: p.stat().st_mtime)
        if run is None:
            raise RunFolderError(
                f"--ckpt_path last: no run under {root} has checkpoints/last.ckpt; start a run without "
                "--ckpt_path, or pass the checkpoint file or run folder to resume"
            )
        return run / "checkpoints" / "last.ckpt"
    path = Path(ckpt_path)
    if path.is_dir():
        last = path / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise RunFolderError(f"--ckpt_path {path}: a run folder must contain checkpoints/last.ckpt")
        return last
    if ckpt_path in ("best", "hpc", "registry") or ckpt_path.startswith("registry:"):
        return None  # Lightning's own keywords
    if not path.is_file():
        raise RunFolderError(f"--ckpt_path {path}: no such file or run folder")
    return path


def choose_run_dir(subcommand: str, root: Path, ckpt: Path | None) -> Path:
    """The folder this invocation writes to (see the module docstring)."""
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited and int(os.environ.get("LOCAL_RANK", "0") or 0) > 0:
        return Path(inherited)  # a process Lightning's DDP launcher started for rank 0's run
    job = _launcher_job_id()
    source_run = run_of_checkpoint(ckpt) if ckpt is not None else None
    if subcommand == "fit":
        if source_run is not None:
            return source_run  # resuming continues in the run's own folder
        return root / f"job-{job}" if job else next_version(root)
    parent = (source_run or root) / subcommand
    return parent / f"job-{job}" if job else next_version(parent)


def wandb_run_id(run_dir: Path) -> str | None:
    """The id of the W&B run already logged in ``run_dir`` (so a resumed fit continues that run)."""
    runs = sorted((run_dir / "wandb").glob("*run-*-*"), key=lambda p: p.stat().st_mtime)
    return runs[-1].name.rsplit("-", 1)[-1] if runs else None

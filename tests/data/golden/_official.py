"""Shared helpers of the golden-value regeneration scripts (not imported by the test suite).

Each ``tests/data/golden/<method>/regenerate.py`` runs the *official* research code from a checkout given with
``--official-root`` on small fixed inputs and stores only numbers (inputs, seeds, tiny state dicts, outputs) in a
``.pt`` file beside it, together with the repository name and the commit the numbers came from. The tests never
import official code; they compare vitlab against the stored numbers.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch


def parse_args(repo: str, description: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--official-root", required=True, type=Path, help=f"a checkout of github.com/{repo}")
    ap.add_argument("--commit", default=None,
                    help="commit of the checkout (read with `git rev-parse HEAD` when the root is a git work tree)")
    ap.add_argument("--site", action="append", default=[], type=Path,
                    help="extra import paths for the official code's dependencies (e.g. einops)")
    args = ap.parse_args()
    args.repo = repo
    if args.commit is None:
        try:
            args.commit = subprocess.check_output(["git", "-C", str(args.official_root), "rev-parse", "HEAD"],
                                                  text=True, stderr=subprocess.DEVNULL).strip()
        except (subprocess.CalledProcessError, FileNotFoundError):
            ap.error("--official-root is not a git work tree: pass --commit")
    for p in [*args.site, args.official_root]:
        sys.path.insert(0, str(p))
    torch.set_num_threads(1)
    return args


def shim_timm_block() -> None:
    """Official MAE/SBAM/SimMIM code calls timm ``Block(..., qk_scale=None)`` (timm 0.3/0.4); newer timm
    dropped the argument. Patch the symbol at run time so the official modules import unchanged."""
    import timm.models.vision_transformer as tv

    base = tv.Block
    if getattr(base, "_golden_shim", False):
        return

    class Block(base):  # type: ignore[misc, valid-type]
        _golden_shim = True

        def __init__(self, *a, qk_scale=None, **kw):
            if qk_scale is not None:
                raise ValueError("qk_scale other than None is not supported by the shim")
            super().__init__(*a, **kw)

    tv.Block = Block


def save(path: Path, args: argparse.Namespace, data: dict, **meta) -> None:
    record = {"official_repo": args.repo, "official_commit": args.commit, "torch": str(torch.__version__), **meta,
              "data": data}
    torch.save(record, path)
    size = path.stat().st_size
    print(f"wrote {path} ({size / 1024:.1f} KiB) from {args.repo}@{args.commit}")


def shim_numpy() -> None:
    """Official MAE's ``util/pos_embed.py`` uses ``np.float`` (removed in NumPy 1.24)."""
    import numpy as np

    if not hasattr(np, "float"):
        np.float = float  # type: ignore[attr-defined]

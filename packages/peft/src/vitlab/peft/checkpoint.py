"""Tuner checkpoints: only the trainable tensors, loadable onto a frozen pretrained backbone.

A PEFT run's useful output is small (LoRA factors, adapters, prompts, a head). :func:`save_trainable`
writes every parameter with ``requires_grad`` plus the tuner's ``{class_path, init_args}``;
:func:`load_trainable` puts them back into a model built the same way (pretrained backbone, same tuner,
same head), checking names and shapes. :class:`SaveTrainable` writes one at the end of ``fit``.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from torch import nn

from vitlab.core.tuner import Tuner
from vitlab.peft.lora import LoRALinear

FORMAT = "vitlab.peft.trainable/1"


def trainable_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """``{name: tensor}`` of every trainable parameter and of the buffers of the trained layers.

    Buffers matter as much as weights for trained layers with state: a probe's BatchNorm running
    statistics, a head's norm statistics, LoRA's merged flag. A buffer belongs to a trained layer when its
    module (or, for a parameter-free module such as ``BatchNorm1d(affine=False)``, the nearest ancestor
    with parameters) has a trainable parameter. Detached CPU copies.
    """
    state = {n: p.detach().cpu().clone() for n, p in module.named_parameters() if p.requires_grad}
    trains: dict[str, bool | None] = {}
    for prefix, sub in module.named_modules():
        params = list(sub.parameters())
        trains[prefix] = any(p.requires_grad for p in params) if params else None
    for prefix, sub in module.named_modules():
        owner, trained = prefix, trains[prefix]
        while trained is None and owner:
            owner = owner.rpartition(".")[0]
            trained = trains.get(owner)
        if not trained:
            continue
        for name, buf in sub.named_buffers(recurse=False):
            if buf is not None and name not in sub._non_persistent_buffers_set:
                state[f"{prefix}.{name}" if prefix else name] = buf.detach().cpu().clone()
    return state


def save_trainable(module: nn.Module, path: str | os.PathLike, tuner: Tuner | None = None,
                   extra: dict[str, Any] | None = None) -> Path:
    """Write the trainable parameters of ``module`` (a tuned backbone or a whole task module) to ``path``."""
    if any(m.merged for m in module.modules() if isinstance(m, LoRALinear)):
        raise RuntimeError("save_trainable: LoRA weights are merged into the frozen weights; unmerge first")
    state = trainable_state_dict(module)
    if not state:
        raise ValueError("save_trainable: the module has no trainable parameters")
    payload = {"format": FORMAT, "state_dict": state, "num_parameters": sum(p.numel() for p in module.parameters() if p.requires_grad),
               "tuner": tuner.config() if tuner is not None and hasattr(tuner, "config") else None,
               "extra": extra or {}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def read_trainable(path: str | os.PathLike) -> dict[str, Any]:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a vitlab.peft tuner checkpoint (expected key 'format' == {FORMAT!r})")
    return payload


@torch.no_grad()
def load_trainable(module: nn.Module, path: str | os.PathLike, strict: bool = True) -> list[str]:
    """Copy a tuner checkpoint into ``module``; returns the loaded names.

    ``strict``: every trainable parameter of ``module`` must be in the file. Names in the file that the
    module lacks, and shape mismatches, are always errors (they mean a different tuner or backbone).
    """
    state = read_trainable(path)["state_dict"]
    params = dict(module.named_parameters())
    params.update(dict(module.named_buffers()))
    unknown = sorted(set(state) - set(params))
    if unknown:
        raise KeyError(f"{path}: {len(unknown)} tensors have no parameter in the model (different tuner or "
                       f"backbone?): {unknown[:5]}")
    wrong = [f"{n}: file {tuple(t.shape)} vs model {tuple(params[n].shape)}"
             for n, t in state.items() if t.shape != params[n].shape]
    if wrong:
        raise ValueError(f"{path}: shape mismatch: {wrong[:5]}")
    if strict:
        missing = sorted(n for n, p in module.named_parameters() if p.requires_grad and n not in state)
        if missing:
            raise KeyError(f"{path}: trainable parameters missing from the file: {missing[:5]}")
    for n, t in state.items():
        params[n].copy_(t.to(params[n].dtype))
    for m in module.modules():  # keep LoRA's Python mirror of the restored merged flag in step
        if isinstance(m, LoRALinear):
            m.merged = bool(m.lora_merged)
    return sorted(state)


def tuner_from_config(config: dict[str, Any]) -> Tuner:
    """Rebuild a tuner from the ``{class_path, init_args}`` stored in a tuner checkpoint."""
    try:
        module_name, cls_name = config["class_path"].rsplit(".", 1)
    except (KeyError, AttributeError, ValueError) as err:
        raise ValueError(f"tuner config needs 'class_path' = 'package.module.Class', got {config!r}") from err
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(**config.get("init_args", {}))


class SaveTrainable(Callback):
    """Write the module's trainable parameters (tuner + head) to ``dirpath/filename`` after ``fit``.

    Args:
        dirpath: output folder (default: the trainer's ``default_root_dir``).
        filename: file name (``tuner.pt``).
    """

    def __init__(self, dirpath: str | None = None, filename: str = "tuner.pt") -> None:
        self.dirpath = dirpath
        self.filename = filename
        self.path: Path | None = None

    @rank_zero_only
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        out = Path(self.dirpath or trainer.default_root_dir) / self.filename
        self.path = save_trainable(pl_module, out, tuner=getattr(pl_module, "tuner", None),
                                   extra={"module": type(pl_module).__name__, "global_step": trainer.global_step})

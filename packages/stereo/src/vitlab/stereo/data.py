"""A DataModule mixing stereo datasets with repeat factors (CroCo-Stereo's training recipe)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch.utils.data import ConcatDataset, Dataset, default_collate

from vitlab.core.data import BatchColorAugment, VitlabDataModule

from .augment import StereoAugmentor

__all__ = ["StereoDataModule", "collate_common"]


class _Augmented(Dataset):
    def __init__(self, base: Dataset, augmentor: StereoAugmentor | None) -> None:
        self.base, self.augmentor = base, augmentor

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        s = self.base[i]
        return self.augmentor(s) if self.augmentor is not None else s


def _mix(datasets: Sequence[Dataset], repeats: Sequence[int] | None, what: str) -> Dataset:
    repeats = list(repeats) if repeats else [1] * len(datasets)
    if len(repeats) != len(datasets):
        raise ValueError(f"{what}: {len(repeats)} repeat factors for {len(datasets)} datasets")
    parts = [ds for ds, r in zip(datasets, repeats) for _ in range(int(r))]
    if not parts:
        raise ValueError(f"{what}: no datasets given")
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def collate_common(samples: list[dict]) -> dict:
    """Default collation of the keys every sample has (a mix may hold datasets with and without masks)."""
    keys = [k for k in samples[0] if all(k in s for s in samples)]
    return default_collate([{k: s[k] for k in keys} for s in samples])


class StereoDataModule(VitlabDataModule):
    """Any mix of stereo datasets; ``30 x ETH3D + 50 x Middlebury`` style repeat factors (CroCo-Stereo recipe).

    Args:
        train_datasets: datasets yielding the stereo sample dict (e.g. ``vitlab.stereo.SceneFlowStereo``).
        train_repeats: per-dataset repeat factor (default 1 each).
        val_datasets, test_datasets, predict_datasets: evaluated at full resolution (batch size 1 unless
            every image has the same size; use tiled inference in the module for large frames).
        crop_size: training crop (352 x 704 for CroCo-Stereo), applied by :class:`StereoAugmentor`.
        augment: use the full :class:`StereoAugmentor` (otherwise only the random crop).
        color_on_device: with ``augment``, the workers only do the geometric part and the asymmetric colour
            runs batched on the training device (:class:`vitlab.core.data.BatchColorAugment`, the same law drawn
            per image with no host sync; default off = per sample in the workers, as CroCo-Stereo). The GPU
            recipes turn it on: it takes the per-pixel colour work off the CPU workers.
        batch_size, eval_batch_size, num_workers, seed: loader settings.

    Loaders, training order, per-sample seeding, uint8 transfer and device normalisation come from core's
    :class:`~vitlab.core.data.VitlabDataModule`. Without ``val_datasets`` there is no validation.
    """

    image_keys = ("image", "right")

    def __init__(
        self,
        train_datasets: list[Dataset] | None = None,
        train_repeats: list[int] | None = None,
        val_datasets: list[Dataset] | None = None,
        test_datasets: list[Dataset] | None = None,
        predict_datasets: list[Dataset] | None = None,
        crop_size: list[int] = (352, 704),
        augment: bool = True,
        batch_size: int = 6,
        eval_batch_size: int = 1,
        num_workers: int = 4,
        seed: int = 0,
        color_on_device: bool = False,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed, val_batch_size=eval_batch_size)
        self.color_on_device = bool(color_on_device) and bool(augment)
        self.color_augment = BatchColorAugment(("image", "right")) if self.color_on_device else None
        self.train_datasets, self.train_repeats = train_datasets or [], train_repeats
        self.val_datasets, self.test_datasets = val_datasets or [], test_datasets or []
        self.predict_datasets = predict_datasets or []
        self.crop_size = tuple(crop_size)
        self.augment = augment
        self.eval_batch_size = self.val_batch_size

    def _augmentor(self) -> StereoAugmentor:
        if self.augment:
            return StereoAugmentor(self.crop_size, seed=self.seed, color=not self.color_on_device)
        return StereoAugmentor(self.crop_size, scale_prob=0.0, vflip_prob=0.0, right_jitter_prob=0.0,
                               color_one_prob=1.0, asym_prob=0.0, seed=self.seed)

    def make_dataset(self, split: str) -> Dataset | None:
        if split == "train":
            if not self.train_datasets:
                raise ValueError("StereoDataModule: no train_datasets configured")
            return _Augmented(_mix(self.train_datasets, self.train_repeats, "train_datasets"), self._augmentor())
        datasets = {"val": self.val_datasets, "test": self.test_datasets,
                    "predict": self.predict_datasets or self.test_datasets}[split]
        return _mix(datasets, None, f"{split}_datasets") if datasets else None

    def collate_fn(self, split: str) -> Any:
        return collate_common

    def device_augment(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The asymmetric colour augmentation, batched on the device, when ``color_on_device``."""
        return self.color_augment(batch) if self.color_augment is not None else batch

"""DataModules of the procedural scenes: :class:`SyntheticScenesDataModule` and :class:`SyntheticStereoDataModule`.

Both are :class:`~vitlab.core.data.VitlabDataModule` subclasses; they only say which scene stream each split is.
"""

from __future__ import annotations

from typing import Any

from vitlab.core.data.base import VitlabDataModule
from vitlab.core.data.render import CLASS_NAMES, NUM_CLASSES, NUM_PARTS, check_int, parse_domain
from vitlab.core.data.synthetic import SyntheticScenes
from vitlab.core.data.synthetic_stereo import SyntheticStereo

__all__ = ["SyntheticScenesDataModule", "SyntheticStereoDataModule"]

#: dataset seed offsets ``16 * seed + k`` of the splits (4: the unlabelled-target training stream)
_OFFSETS = {"train": 0, "val": 1, "test": 2, "predict": 3, "target": 4}


class SyntheticScenesDataModule(VitlabDataModule):
    """Train/val/test/predict splits of :class:`SyntheticScenes` with disjoint scene streams.

    Splits use dataset seeds ``16 * seed + k`` with k = 0 (train), 1 (val), 2 (test), 3 (predict) and
    4 (unlabelled-target train stream), so runs with different seeds never share scenes across splits. With
    ``normalize=True`` the ``image``/``right`` tensors are normalised with ImageNet mean/std on the device (they
    travel as uint8); task modules de-normalise with the same constants for visualisation.

    ``target_domain`` (domain adaptation): when set, the train loader is a ``CombinedLoader`` in
    ``max_size_cycle`` mode yielding ``{"source": batch, "target": batch}`` (the target batch carries its
    labels too, for diagnostics only), and val/test/predict run on ``target_domain``: adaptation is
    judged on the domain it adapts to.
    """

    image_keys = ("image", "right")
    dataset_class: type = SyntheticScenes
    setup_check_samples = 0  # rendered in memory: no files to check

    def __init__(
        self,
        modalities: list[str] | None = None,
        size: int | tuple[int, int] = 128,
        batch_size: int = 16,
        num_workers: int = 0,
        train_samples: int = 2000,
        val_samples: int = 200,
        test_samples: int = 200,
        predict_samples: int = 16,
        seed: int = 0,
        domain: str = "source",
        target_domain: str | None = None,
        normalize: bool = True,
        min_objects: int = 2,
        max_objects: int = 5,
        max_disparity: float | None = None,
    ) -> None:
        self._init_splits(batch_size, num_workers, seed, normalize, train_samples, val_samples, test_samples,
                          predict_samples)
        if target_domain is not None:
            parse_domain(target_domain, "target_domain")
        self.target_domain = target_domain
        self.domain = domain
        self._kwargs: dict[str, Any] = dict(size=size, modalities=modalities, min_objects=min_objects,
                                            max_objects=max_objects, max_disparity=max_disparity)
        self._probe(domain=domain)
        self.save_hyperparameters()

    def _init_splits(self, batch_size, num_workers, seed, normalize, train_samples, val_samples, test_samples,
                     predict_samples) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed, normalize=normalize)
        self.train_samples = check_int("train_samples", train_samples, 1)
        if self.train_samples < self.batch_size:
            raise ValueError(
                f"`train_samples` ({train_samples}) must be >= `batch_size` ({batch_size}): the train loader "
                "drops incomplete batches"
            )
        self.val_samples = check_int("val_samples", val_samples, 1)
        self.test_samples = check_int("test_samples", test_samples, 1)
        self.predict_samples = check_int("predict_samples", predict_samples, 1)

    def _probe(self, **extra: Any) -> None:
        """Build a one-sample dataset now so that every dataset argument is validated at construction."""
        probe = self.dataset_class(num_samples=1, seed=self.seed, **extra, **self._kwargs)
        self.modalities = probe.modalities
        self.size = (probe.height, probe.width)
        self.max_disparity = probe.max_disparity

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES

    @property
    def num_parts(self) -> int:
        return NUM_PARTS

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASS_NAMES

    def _make(self, n: int, split: str, domain: str) -> SyntheticScenes:
        return SyntheticScenes(num_samples=n, seed=self.seed * 16 + _OFFSETS[split], domain=domain, **self._kwargs)

    def make_dataset(self, split: str) -> Any:
        n = {"train": self.train_samples, "val": self.val_samples, "test": self.test_samples,
             "predict": self.predict_samples}[split]
        if split == "train":
            source = self._make(n, "train", self.domain)
            if self.target_domain is None:
                return source
            return {"source": source, "target": self._make(n, "target", self.target_domain)}
        return self._make(n, split, self.target_domain or self.domain)


class SyntheticStereoDataModule(SyntheticScenesDataModule):
    """Train/val/test/predict splits of :class:`SyntheticStereo` (dataset seeds ``16 * seed + k``, k = 0..3).

    Batches look like ``SyntheticScenesDataModule``'s stereo modality, so every stereo task module trains on
    it unchanged; ``image``/``right`` are ImageNet-normalised on the device when ``normalize`` is set.
    The dataset arguments are those of :class:`SyntheticStereo`.
    """

    dataset_class = SyntheticStereo

    def __init__(
        self,
        size: int | tuple[int, int] = (64, 128),
        batch_size: int = 16,
        num_workers: int = 0,
        train_samples: int = 2000,
        val_samples: int = 200,
        test_samples: int = 200,
        predict_samples: int = 16,
        seed: int = 0,
        normalize: bool = True,
        modalities: list[str] | None = None,
        min_objects: int = 6,
        max_objects: int = 16,
        max_disparity: float | None = None,
        photometric: bool = True,
        vertical_shift: float = 0.0,
    ) -> None:
        self._init_splits(batch_size, num_workers, seed, normalize, train_samples, val_samples, test_samples,
                          predict_samples)
        self.target_domain = None
        self.domain = "source"
        self._kwargs = dict(size=size, modalities=modalities, min_objects=min_objects, max_objects=max_objects,
                            max_disparity=max_disparity, photometric=photometric, vertical_shift=vertical_shift)
        self._probe()
        self.save_hyperparameters()

    def _make(self, n: int, split: str, domain: str) -> SyntheticStereo:
        return SyntheticStereo(num_samples=n, seed=self.seed * 16 + _OFFSETS[split], **self._kwargs)

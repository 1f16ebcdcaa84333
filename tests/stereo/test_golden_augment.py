"""StereoAugmentor against the law of CroCo-Stereo's ``stereoflow/augmentor.py`` (`naver/croco`) colour
asymmetry, and its per-process random streams (DataLoader workers / DDP ranks draw differently, a seed
reproduces)."""

from __future__ import annotations

import math
import random

import torch
from torch.utils.data import DataLoader, Dataset

from vitlab.stereo import StereoAugmentor


def test_colour_asymmetry_follows_the_official_law():
    """CroCo draws each colour op for the left view (p 0.5) and, only for an op that fired, re-samples the right
    view's parameter with p 0.5: same ops, same order; the right view never changes alone."""
    aug = StereoAugmentor((32, 64), seed=0)
    n, fired, resampled, none = 4000, 0, 0, 0
    for _ in range(n):
        params = aug._sample_color()
        none += not params
        for op, vl, vr in params:
            fired += 1
            resampled += vl != vr
            lo, hi = {"contrast": (0.8, 1.2), "gamma": (0.7, 1.5), "brightness": (0.5, 2.0), "hue": (-0.1, 0.1),
                      "saturation": (0.8, 1.2)}[op]
            assert lo <= vl <= hi and lo <= vr <= hi
    # P(no op) = 0.5 * 0.5 (single op) + 0.5 * 0.5^5 (all five) = 0.265625
    assert abs(none / n - 0.265625) < 4 * math.sqrt(0.265625 * 0.734375 / n)
    assert abs(resampled / fired - 0.5) < 4 * math.sqrt(0.25 / fired)
    sym = StereoAugmentor((32, 64), asym_prob=0.0, seed=0)
    assert all(vl == vr for _ in range(200) for _, vl, vr in sym._sample_color())
    typo = StereoAugmentor((32, 64), asym_prob=1.0, right_saturation=(-0.8, 1.2), seed=0)
    sat = [vr for _ in range(400) for op, _, vr in typo._sample_color() if op == "saturation"]
    assert min(sat) < 0.8  # the official right-view saturation range (-0.8, 1.2) is reproducible


def test_images_left_unchanged_implies_right_unchanged():
    aug = StereoAugmentor((32, 64), scale_prob=0.0, vflip_prob=0.0, right_jitter_prob=0.0, seed=1)
    img = torch.rand(3, 32, 64) * 0.8 + 0.1
    for _ in range(60):
        out = aug({"image": img.clone(), "right": img.clone(), "disparity": torch.ones(1, 32, 64)})
        if torch.equal(out["image"], img):
            assert torch.equal(out["right"], img)


class _Same(Dataset):
    def __init__(self, aug):
        self.aug = aug

    def __len__(self):
        return 4

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(0)  # the same input for every index
        img = torch.rand(3, 48, 96, generator=g)
        out = self.aug({"image": img, "right": img.clone(), "disparity": torch.full((1, 48, 96), 4.0)})
        return out["image"]


def _draw(seed, aug_seed=None):
    torch.manual_seed(seed)
    loader = DataLoader(_Same(StereoAugmentor((32, 64), seed=aug_seed)), batch_size=1, num_workers=2)
    return [x[0] for x in loader]  # items 0, 2 from worker 0; 1, 3 from worker 1


def test_workers_draw_differently_and_a_seed_reproduces():
    for aug_seed in (None, 5):
        a = _draw(0, aug_seed)
        assert not torch.equal(a[0], a[1]), "two workers produced the same augmentation"
        assert not torch.equal(a[0], a[2]), "one worker repeated its draw"
        b = _draw(0, aug_seed)
        assert all(torch.equal(x, y) for x, y in zip(a, b)), "the same seed must reproduce the run"
    assert not torch.equal(_draw(0)[0], _draw(1)[0])


def test_ranks_draw_differently_without_workers(monkeypatch):
    """``num_workers=0`` under DDP: the main-process stream of an explicitly seeded augmentor folds the rank in."""
    draws = {}
    for rank in (0, 1):
        monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
        monkeypatch.setattr(torch.distributed, "get_rank", lambda r=rank: r)
        aug = StereoAugmentor((32, 64), seed=3)
        draws[rank] = [aug.rng.random() for _ in range(4)]
        again = StereoAugmentor((32, 64), seed=3)
        assert draws[rank] == [again.rng.random() for _ in range(4)]
    assert draws[0] != draws[1]
    monkeypatch.undo()
    ref = random.Random(3)
    assert draws[0] == [ref.random() for _ in range(4)]

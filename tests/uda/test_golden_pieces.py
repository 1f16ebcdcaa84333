"""DACS/DAFormer and MIC pieces against stored outputs of the official code (``tests/data/golden/dacs/pieces.pt``
from ``lhoyer/DAFormer``, ``tests/data/golden/mic/mic.pt`` from ``lhoyer/MIC``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from vitlab.uda import transforms as T
from vitlab.uda.dacs import THING_CLASSES
from vitlab.uda.model import MeanTeacher, poly_warmup

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


@pytest.fixture(scope="module")
def pieces():
    return torch.load(GOLDEN / "dacs" / "pieces.pt", weights_only=False)["data"]


def test_golden_label_downscale_and_feature_distance(pieces):
    """Exact labels; the distance to fp32 rounding (1e-6)."""
    ref = pieces["feature_distance"]
    down = T.downscale_label_ratio(ref["labels"], 8, 0.75, 19)
    assert torch.equal(down, ref["down"])
    mask = (down[..., None] == torch.tensor(THING_CLASSES)).any(-1)
    fd = T.masked_feature_distance(ref["feat"], ref["ref"], mask)
    torch.testing.assert_close(fd, ref["fd"], rtol=1e-6, atol=1e-6)


def test_golden_weighted_ce(pieces):
    """mmseg CE after the bilinear resize, pixel weights, mean over all pixels incl. ignored (1e-6)."""
    ref = pieces["ce"]
    loss = T.ce_loss(ref["logits"], ref["target"], ref["weight"])
    torch.testing.assert_close(loss, ref["loss"], rtol=1e-6, atol=1e-6)


def test_golden_ema_teacher(pieces):
    """``DACS._update_ema``: steps 1..4 after the step-0 copy, parameters only (BN buffers kept): 1e-6."""
    ref = pieces["ema"]
    student = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    student.load_state_dict(ref["init"])
    mt = MeanTeacher(student, alpha=ref["alpha"])
    mt.step(student, 0)
    for step, (s, t) in enumerate(zip(ref["students"], ref["teachers"], strict=True), start=1):
        student.load_state_dict(s)
        mt.step(student, step)
        got = mt.teacher.state_dict()
        for k, v in t.items():
            torch.testing.assert_close(got[k], v, rtol=1e-6, atol=1e-6, msg=f"step {step} {k}")


def test_golden_poly_warmup(pieces):
    """mmcv ``PolyLrUpdaterHook`` with linear warm-up: relative 1e-9."""
    ref = pieces["poly"]
    fn = poly_warmup(ref["max_iters"], 1500, 1e-6, 1.0, 0.0)
    got = torch.tensor([ref["base_lr"] * fn(i) for i in ref["iters"]], dtype=torch.float64)
    torch.testing.assert_close(got, ref["lr"], rtol=1e-9, atol=0)


def test_golden_classmix_candidates(pieces):
    """``get_class_masks``: candidates are the batch-wide classes incl. 255, ceil(n/2) of them picked per image.
    The draws themselves come from different generators, so the counts and the mask law are compared."""
    ref = pieces["classmix"]
    labels = ref["labels"]
    masks = T.class_mix_masks(labels, 19, faithful=True, generator=torch.Generator().manual_seed(0))[:, 0]
    n_batch = labels.unique().numel()
    assert ref["candidates"] == [n_batch] * labels.shape[0]
    for i, k in enumerate(ref["picked"]):
        assert k == (n_batch + n_batch % 2) // 2
        official = labels[i][ref["masks"][i].bool()].unique()
        assert official.numel() <= k  # picked classes absent from image i leave no pixel
        mine = labels[i][masks[i].bool()].unique()
        assert mine.numel() <= k and torch.equal(masks[i].bool(), torch.isin(labels[i], mine))


def test_golden_mic_block_mask():
    """MIC ``BlockMaskGenerator`` under the same global seed: identical masks (rounded grid included)."""
    ref = torch.load(GOLDEN / "mic" / "mic.pt", weights_only=False)["data"]
    for case in ref["cases"]:
        torch.manual_seed(case["seed"])
        mask = T.mic_mask(tuple(case["shape"]), ref["block_size"], ref["ratio"])
        assert torch.equal(mask.bool(), case["mask"])

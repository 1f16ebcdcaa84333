"""The normals and saliency metrics and the saliency loss against the official MTLoRA code
(``tests/data/golden/mtl_metrics``, scale-lab/MTLoRA@333a375 ``evaluation/eval_normals_v1.py`` / ``_v2.py``,
``evaluation/eval_sal.py``, ``mtl_loss_schemes.py``)."""

import pytest
import torch

from vitlab.mtl import NormalsMetric, SaliencyMetric
from vitlab.mtl.losses import balanced_bce

from ._golden import load

GOLDEN = load("mtl_metrics")["data"]
DATA = GOLDEN["normals"]


def run(**kw):
    m = NormalsMetric(**kw)
    for b in DATA["batches"]:
        gt = torch.where(b["gt"] == 255, torch.zeros_like(b["gt"]), b["gt"])  # vitlab: zero = invalid
        m.update(b["pred"], gt)
    return m.compute()


def test_default_is_the_reported_v1_mean():
    out = run()
    assert out["mean"].item() == pytest.approx(DATA["mean_v1"], abs=1e-4)
    for k in ("11.25", "22.5", "30"):
        assert out[k].item() == pytest.approx(DATA[k], abs=1e-3)


def test_normalize_target_is_v2():
    assert run(normalize_target=True)["mean"].item() == pytest.approx(DATA["mean_v2"], abs=1e-4)
    assert abs(DATA["mean_v1"] - DATA["mean_v2"]) > 1e-3  # the two quantities really differ on 8-bit GT


def saliency(**kw):
    m = SaliencyMetric(**kw)
    for b in GOLDEN["saliency"]["batches"]:
        m.update(b["logits"], b["gt"])
    return m.compute()


def test_saliency_meters():
    """maxIoU = MTLoRA's "mIoU", maxF = MTI-Net's maxF, maxF_beta = "Beta maxF" (second sigmoid on): to 1e-4 (in %)."""
    sal, out = GOLDEN["saliency"], saliency()
    assert out["maxIoU"].item() == pytest.approx(100 * sal["mIoU"], abs=1e-4)
    assert out["maxF"].item() == pytest.approx(100 * sal["maxF"], abs=1e-4)
    assert out["maxF_beta"].item() == pytest.approx(100 * sal["beta_maxF"], abs=1e-4)


def test_saliency_beta_once_is_a_different_quantity():
    once = saliency(beta_sigmoid="once")["maxF_beta"].item()
    assert abs(once - 100 * GOLDEN["saliency"]["beta_maxF"]) > 0.05  # another threshold wins the max


def test_saliency_bce_equals_the_official_loss():
    """Without 255 in the target vitlab's balanced BCE is the official one (1e-6). With 255 the official loss counts
    those pixels as salient; vitlab leaves them out (what ``fill: ignore`` asks for), so the values differ."""
    loss = GOLDEN["sal_loss"]
    assert balanced_bce(loss["logits"], loss["target"]).item() == pytest.approx(loss["loss"], abs=1e-6)
    ours = balanced_bce(loss["logits"], loss["target_255"]).item()
    assert abs(ours - loss["loss_255"]) > 1e-3
    valid = loss["target_255"] != 255
    assert ours == pytest.approx(balanced_bce(loss["logits"][valid], loss["target_255"][valid]).item(), abs=1e-6)

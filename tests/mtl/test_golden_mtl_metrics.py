"""The normals metric against the official MTLoRA meters (``tests/data/golden/mtl_metrics``,
scale-lab/MTLoRA@333a375 ``evaluation/eval_normals_v1.py`` / ``_v2.py``)."""

import pytest
import torch

from vitlab.mtl import NormalsMetric

from ._golden import load

DATA = load("mtl_metrics")["data"]["normals"]


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

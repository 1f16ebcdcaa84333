"""Task modules: outputs, losses, tuner wiring, optimizer groups, prediction images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from torch import nn

from vitlab.core import (
    DepthEstimation,
    ImageClassification,
    PredictionImageLogger,
    SemanticSegmentation,
    Tuner,
    ViT,
)
from vitlab.core.data import SyntheticScenesDataModule


def vit(**kw) -> ViT:
    torch.manual_seed(0)
    return ViT(size="tiny", embed_dim=48, depth=4, num_heads=3, img_size=32, **kw)


class NormOnly(Tuner):
    """Trains LayerNorms only: enough to exercise the protocol without vitlab.peft."""

    def apply(self, backbone: nn.Module) -> nn.Module:
        for name, p in backbone.named_parameters():
            p.requires_grad_(".norm" in f".{name}" or name.startswith("norm"))
        return backbone


@pytest.mark.parametrize("head", ["dpt", "linear", "pup"])
def test_segmentation_output_and_loss(head):
    m = SemanticSegmentation(backbone=vit(), num_classes=7, head=head)
    x = torch.randn(2, 3, 32, 64)
    out = m(x)
    assert out.shape == (2, 7, 32, 64)
    target = torch.randint(0, 7, (2, 32, 64))
    target[:, :4] = 255  # ignored pixels do not change the loss
    loss = m.loss(out, {"semantic": target})
    ref = nn.functional.cross_entropy(out[:, :, 4:], target[:, 4:])
    torch.testing.assert_close(loss, ref)


def test_depth_output_range_and_silog():
    m = DepthEstimation(backbone=vit(), max_depth=5.0, head="linear")
    out = m(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 1, 32, 32) and (out > 0).all() and (out < 5.0).all()
    # SILog is scale-invariant up to lambda: a prediction off by a constant factor with lambda = 1 gives 0
    m.silog_lambda = 1.0
    gt = torch.rand(1, 1, 8, 8) * 4 + 0.5
    loss = m.loss(gt * 1.3, {"depth": gt})
    assert float(loss) == pytest.approx(0.0, abs=2e-3)
    m.silog_lambda = 0.85
    g = math.log(1.3)
    assert float(m.loss(gt * 1.3, {"depth": gt})) == pytest.approx(10 * math.sqrt(g * g * 0.15), rel=1e-4)
    inf_gt = torch.full_like(gt, float("inf"))
    assert float(m.loss(gt, {"depth": inf_gt})) == 0.0, "no valid pixel: zero loss, no NaN"


def test_tuner_protocol_and_freeze():
    m = ImageClassification(backbone=vit(), num_classes=5, tuner=NormOnly())
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable and all("norm" in n or n.startswith("head") for n in trainable)
    stats = NormOnly().trainable_parameters(m.backbone)
    assert 0 < stats["percent"] < 5 and stats["trainable"] < stats["total"]
    probe = ImageClassification(backbone=vit(), num_classes=5, freeze_backbone=True, probe_batchnorm=True)
    assert not any(p.requires_grad for p in probe.backbone.parameters())
    probe.train()
    assert not probe.backbone.training, "a frozen backbone stays in eval mode"
    with pytest.raises(ValueError, match="exclusive"):
        ImageClassification(backbone=vit(), num_classes=5, tuner=NormOnly(), freeze_backbone=True)


def test_frozen_backbone_unchanged_after_training(tmp_path):
    m = ImageClassification(backbone=vit(), num_classes=5, freeze_backbone=True, lr=0.1)
    before = {k: v.clone() for k, v in m.backbone.state_dict().items()}
    dm = SyntheticScenesDataModule(modalities=["image", "label"], size=32, batch_size=4, train_samples=8,
                                   val_samples=4)
    Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0,
            limit_val_batches=0).fit(m, datamodule=dm)
    for k, v in m.backbone.state_dict().items():
        assert torch.equal(v, before[k]), f"frozen {k} changed"


def test_layer_decay_groups_from_task():
    m = ImageClassification(backbone=vit(), num_classes=5, layer_decay=0.5, lr=1.0)
    spec = m.layer_decay_spec()
    assert spec is not None
    layer_id, depth = spec
    assert depth == 4 and layer_id("backbone.blocks.0.mlp.fc1.weight") == 1 and layer_id("head.1.weight") == 5
    assert layer_id("backbone.patch_embed.proj.weight") == 0


def test_prediction_images_written_without_logger(tmp_path):
    m = SemanticSegmentation(backbone=vit(), num_classes=7, head="linear")
    dm = SyntheticScenesDataModule(modalities=["image", "semantic"], size=32, batch_size=2, train_samples=4,
                                   val_samples=4)
    trainer = Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                      callbacks=[PredictionImageLogger(max_images=2)], num_sanity_val_steps=0)
    trainer.fit(m, datamodule=dm)
    pngs = sorted((tmp_path / "predictions").glob("*.png"))
    assert len(pngs) == 2
    from PIL import Image

    pic = np.asarray(Image.open(pngs[0]))
    assert pic.shape == (32, 3 * 32 + 2 * 2, 3), "image | prediction | target panel"


def test_prediction_images_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from lightning.pytorch.loggers import TensorBoardLogger

    m = DepthEstimation(backbone=vit(), head="linear")
    dm = SyntheticScenesDataModule(modalities=["image", "depth"], size=32, batch_size=2, train_samples=4,
                                   val_samples=4)
    logger = TensorBoardLogger(tmp_path, name="tb")
    Trainer(max_epochs=1, accelerator="cpu", logger=logger, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, callbacks=[PredictionImageLogger(max_images=2)],
            num_sanity_val_steps=0).fit(m, datamodule=dm)
    events = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert "val/predictions/0" in acc.Tags()["images"]


def test_classification_accuracy_is_over_images():
    m = ImageClassification(backbone=vit(), num_classes=5)
    logits = torch.zeros(4, 5)
    logits[:, 0] = 1.0  # always class 0
    m.val_metrics.update(logits, torch.tensor([0, 0, 0, 1]))
    assert float(m.val_metrics.compute()["val/acc1"]) == pytest.approx(0.75)
    assert "val/acc5" not in m.val_metrics.compute(), "top-5 of 5 classes is always 1"


def test_compile_flag_compiles_backbone_in_place():
    """`compile: true` compiles the backbone's blocks in place once (state-dict keys keep their names);
    tests/core/test_compile.py runs the compiled code."""
    m = SemanticSegmentation(backbone=vit(), num_classes=7, head="linear", compile=True)
    keys = set(m.state_dict())
    m.configure_model()
    m.configure_model()
    assert all(b._compiled_call_impl is not None for b in m.backbone.blocks)
    assert set(m.state_dict()) == keys
    plain = SemanticSegmentation(backbone=vit(), num_classes=7, head="linear")
    plain.configure_model()
    assert all(b._compiled_call_impl is None for b in plain.backbone.blocks)

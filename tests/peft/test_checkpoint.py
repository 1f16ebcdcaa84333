"""Tuner checkpoints hold only trainable tensors and load onto a frozen pretrained backbone."""

from __future__ import annotations

import pytest
import torch

from vitlab.core import SemanticSegmentation, ViT
from vitlab.core.backbones import save_checkpoint
from vitlab.peft import LoRA, iConFormer, load_trainable, read_trainable, save_trainable, tuner_from_config

VIT = dict(embed_dim=64, depth=4, num_heads=4, patch_size=8, img_size=32)


def _train(model, steps=3):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for s in range(steps):
        g = torch.Generator().manual_seed(s)
        batch = {"image": torch.randn(2, 3, 32, 32, generator=g), "semantic": torch.randint(0, 4, (2, 32, 32), generator=g)}
        opt.zero_grad()
        model.loss(model(batch["image"]), batch).backward()
        opt.step()


@pytest.mark.parametrize("make_tuner", [lambda: LoRA(rank=4, targets=["qkv", "fc1"]), lambda: iConFormer(bottleneck=8)])
def test_round_trip_onto_pretrained_backbone(make_tuner, tmp_path):
    torch.manual_seed(0)
    pretrained = ViT(**VIT)
    save_checkpoint(pretrained, tmp_path / "backbone.pth")

    model = SemanticSegmentation(ViT(**VIT, pretrained=str(tmp_path / "backbone.pth")), num_classes=4,
                                 tuner=make_tuner(), head="linear")
    _train(model)
    path = save_trainable(model, tmp_path / "tuner.pt", tuner=model.tuner)
    full = tmp_path / "full.pt"
    torch.save(model.state_dict(), full)
    assert path.stat().st_size < 0.25 * full.stat().st_size
    payload = read_trainable(path)
    assert payload["num_parameters"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert not any(k.endswith("attn.qkv.weight") for k in payload["state_dict"])

    # a fresh model: pretrained backbone + the tuner rebuilt from the file's config, new random head
    torch.manual_seed(123)
    fresh = SemanticSegmentation(ViT(**VIT, pretrained=str(tmp_path / "backbone.pth")), num_classes=4,
                                 tuner=tuner_from_config(payload["tuner"]), head="linear")
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    fresh.eval()
    assert not torch.allclose(fresh(x), model(x))
    loaded = load_trainable(fresh, path)
    assert len(loaded) == len(payload["state_dict"])
    torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)


def test_mismatches_are_reported(tmp_path):
    model = SemanticSegmentation(ViT(**VIT), num_classes=4, tuner=LoRA(rank=4), head="linear")
    path = save_trainable(model, tmp_path / "t.pt", tuner=model.tuner)
    other = SemanticSegmentation(ViT(**VIT), num_classes=4, tuner=LoRA(rank=2), head="linear")
    with pytest.raises(ValueError, match="shape mismatch"):
        load_trainable(other, path)
    other = SemanticSegmentation(ViT(**VIT), num_classes=4, tuner=iConFormer(bottleneck=4), head="linear")
    with pytest.raises(KeyError, match="no parameter"):
        load_trainable(other, path)
    torch.save({"weights": 1}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="bad.pt.*format"):
        load_trainable(model, tmp_path / "bad.pt")
    LoRA.merge(model)
    with pytest.raises(RuntimeError, match="unmerge"):
        save_trainable(model, tmp_path / "m.pt")


def test_trainable_file_keeps_running_statistics_of_trained_layers(tmp_path):
    """A linear probe's BatchNorm statistics travel with the tuner file: eval logits survive a reload."""
    from vitlab.core import ImageClassification
    from vitlab.peft import LinearProbe

    def build():
        torch.manual_seed(0)
        vit = ViT(embed_dim=32, depth=2, num_heads=2, patch_size=8, img_size=32)
        return ImageClassification(vit, num_classes=3, probe_batchnorm=True, tuner=LinearProbe())

    model = build()
    model.train()
    with torch.no_grad():
        for _ in range(3):  # the probe BN collects statistics
            model(torch.randn(8, 3, 32, 32) * 3 + 1)
    save_trainable(model, tmp_path / "probe.pt")
    fresh = build()
    load_trainable(fresh, tmp_path / "probe.pt")
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    fresh.eval()
    torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)


def test_lora_merged_state_survives_a_state_dict_round_trip():
    from vitlab.peft.lora import LoRALinear

    torch.manual_seed(0)
    layer = LoRALinear(8, 8, rank=2, scale=1.0)
    torch.nn.init.normal_(layer.lora_B)
    x = torch.randn(3, 8)
    expected = layer(x)
    layer.merge()
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    again = LoRALinear(8, 8, rank=2, scale=1.0)
    again.load_state_dict(state)
    assert again.merged
    again.merge()  # a no-op: the update is already in the weight
    torch.testing.assert_close(again(x), expected, rtol=1e-5, atol=1e-6)
    again.unmerge()
    torch.testing.assert_close(again(x), expected, rtol=1e-5, atol=1e-6)

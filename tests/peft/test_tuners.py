"""Behaviour of every tuner: what trains, gradients, zero-init identity, optimizer steps, counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vitlab.core import ImageClassification, SemanticSegmentation, ViT
from vitlab.core.optim import param_groups
from vitlab.peft import VPT, Adapter, AdaptFormer, BitFit, LoRA, LoRALinear, iConFormer, tuner_from_config

NAMES = ["linear_probe", "full", "bitfit", "lora", "adapter", "adaptformer", "vpt_shallow", "vpt_deep", "iconformer"]


def _seg_model(make_vit, tuner):
    return SemanticSegmentation(make_vit(), num_classes=5, tuner=tuner, head="linear")


def _batch(seed=0, size=32):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(2, 3, size, size, generator=g),
            "semantic": torch.randint(0, 5, (2, size, size), generator=g)}


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_exactly_the_trainable_parameters(name, make_vit, tuners):
    """Only tuner parameters (and the head) get gradients, and every one of them does in a single step,
    so DDP needs no ``find_unused_parameters``. Holds for dense heads and for a class-token classifier."""
    for model in (_seg_model(make_vit, tuners[name]()),
                  ImageClassification(make_vit(), num_classes=3, tuner=tuners[name]())):
        batch = _batch()
        if isinstance(model, ImageClassification):
            loss = F.cross_entropy(model(batch["image"]), torch.tensor([0, 2]))
        else:
            loss = model.loss(model(batch["image"]), batch)
        loss.backward()
        for n, p in model.named_parameters():
            if p.requires_grad:
                assert p.grad is not None, f"{name}: trainable {n} got no gradient (DDP would need find_unused_parameters)"
            else:
                assert p.grad is None, f"{name}: frozen {n} got a gradient"


@pytest.mark.parametrize("name", NAMES)
def test_frozen_weights_bit_identical_after_steps(name, make_vit, tuners):
    model = _seg_model(make_vit, tuners[name]())
    frozen = {n: p.detach().clone() for n, p in model.backbone.named_parameters() if not p.requires_grad}
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW(param_groups(model, lr=1e-2, weight_decay=0.05), betas=(0.9, 0.95))
    for step in range(3):
        opt.zero_grad()
        batch = _batch(step)
        model.loss(model(batch["image"]), batch).backward()
        opt.step()
    for n, p in model.backbone.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), f"{name}: frozen {n} changed"
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, trainable[n])]
    assert len(changed) == len(trainable), f"{name}: never updated: {sorted(set(trainable) - set(changed))[:5]}"
    if name == "linear_probe":
        assert not any(p.requires_grad for p in model.backbone.parameters())
    else:
        assert any(p.requires_grad for p in model.backbone.parameters())


@pytest.mark.parametrize("name", ["lora", "adapter", "adaptformer", "iconformer"])
def test_zero_initialised_tuners_reproduce_the_backbone(name, make_vit, tuners):
    x = torch.randn(2, 3, 32, 48)
    vit = make_vit()
    ref_maps, ref_pool = vit.forward_intermediates(x), vit(x)
    tuners[name]().apply(vit)
    assert torch.equal(vit(x), ref_pool)
    for a, b in zip(vit.forward_intermediates(x), ref_maps, strict=True):
        assert torch.equal(a, b)


def test_trainable_counts_match_hand_computation(make_vit):
    D, depth, r = 48, 4, 4
    vit = make_vit()
    base = sum(p.numel() for p in vit.parameters())
    t = LoRA(rank=r, targets=["qkv", "fc2"])
    t.apply(vit)
    lora = depth * r * ((D + 3 * D) + (4 * D + D))
    stats = t.trainable_parameters(vit)
    assert stats["trainable"] == lora and stats["base"] == base and stats["added"] == lora
    assert stats["percent_of_base"] == pytest.approx(100 * lora / base)
    assert stats["percent"] == pytest.approx(100 * lora / (base + lora))

    vit = make_vit()
    t = AdaptFormer(bottleneck=8)
    t.apply(vit)
    assert t.trainable_parameters(vit)["trainable"] == depth * (D * 8 + 8 + 8 * D + D)

    vit = make_vit()
    BitFit().apply(vit)
    names = [n for n, p in vit.named_parameters() if p.requires_grad]
    assert names and all(n.endswith(".bias") for n in names)
    # patch embed + per block (norm1, qkv, proj, norm2, fc1, fc2) + final norm
    assert sum(vit.get_parameter(n).numel() for n in names) == D + depth * (D + 3 * D + D + D + 4 * D + D) + D

    vit = make_vit()
    t = VPT(num_prompts=5, deep=True)
    t.apply(vit)
    assert t.trainable_parameters(vit)["trainable"] == depth * 5 * D


def test_lora_layer_numerics_and_scaling():
    torch.manual_seed(0)
    base = torch.nn.Linear(6, 5)
    for scaling, expected in (("alpha/rank", 16.0 / 4), ("multiplier", 16.0)):
        layer = LoRALinear.from_linear(base, rank=4, scale=LoRA(rank=4, alpha=16.0, scaling=scaling).scale)
        assert layer.scale == expected and layer.weight is base.weight
        torch.nn.init.normal_(layer.lora_B)
        x = torch.randn(3, 6)
        want = x @ base.weight.T + base.bias + expected * x @ layer.lora_A.T @ layer.lora_B.T
        torch.testing.assert_close(layer(x), want)


def test_lora_merge_equals_unmerged(make_vit):
    vit = make_vit()
    LoRA(rank=4, targets=["qkv", "proj", "fc1", "fc2"], dropout=0.0).apply(vit)
    for m in LoRA.lora_layers(vit):
        torch.nn.init.normal_(m.lora_B, std=0.05)
    vit.eval()
    x = torch.randn(2, 3, 32, 32)
    w0 = vit.blocks[0].attn.qkv.weight.detach().clone()
    out = vit.forward_intermediates(x)
    LoRA.merge(vit)
    assert all(m.merged for m in LoRA.lora_layers(vit))
    assert not torch.equal(vit.blocks[0].attn.qkv.weight, w0)
    for a, b in zip(vit.forward_intermediates(x), out, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    LoRA.unmerge(vit)
    torch.testing.assert_close(vit.blocks[0].attn.qkv.weight, w0, atol=1e-6, rtol=0)
    for a, b in zip(vit.forward_intermediates(x), out, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_lora_keeps_pretrained_parameter_names(make_vit):
    vit = make_vit()
    names = set(vit.state_dict())
    LoRA(targets=["qkv", "fc1"]).apply(vit)
    new = set(vit.state_dict())
    assert names <= new
    assert all(".lora_" in n for n in new - names)


def test_adapter_placements(make_vit):
    """Houlsby: sequential adapter output added to the branch output; AdaptFormer: parallel to the MLP."""
    vit = make_vit()
    Adapter(bottleneck=4).apply(vit)
    blk = vit.blocks[1]
    assert blk.attn.adapter.placement == "sequential" and blk.mlp.adapter.placement == "sequential"
    assert blk.norm1.weight.requires_grad  # Houlsby trains the LayerNorms
    torch.nn.init.normal_(blk.mlp.adapter.up.weight)
    h = torch.randn(2, 5, 48)
    a = blk.mlp.adapter
    base = blk.mlp.fc2(blk.mlp.act(blk.mlp.fc1(h)))
    torch.testing.assert_close(blk.mlp(h), base + a.up(a.act(a.down(base))))

    vit = make_vit()
    AdaptFormer(bottleneck=4).apply(vit)
    blk = vit.blocks[0]
    assert not hasattr(blk.attn, "adapter")
    a = blk.mlp.adapter
    torch.nn.init.normal_(a.up.weight)
    base = blk.mlp.fc2(blk.mlp.act(blk.mlp.fc1(h)))
    torch.testing.assert_close(blk.mlp(h), base + 0.1 * a.up(torch.relu(a.down(h))))


@pytest.mark.parametrize("pos_embed", ["sincos", "learned", "rope"])
@pytest.mark.parametrize("deep", [False, True])
def test_vpt_prompts_are_prefix_tokens(pos_embed, deep, make_vit):
    vit = make_vit(pos_embed=pos_embed)
    VPT(num_prompts=3, deep=deep).apply(vit)
    assert vit.num_prefix_tokens == 1 + 3
    x = torch.randn(2, 3, 32, 48)  # not the 32x32 default grid: positions resized/recomputed
    feats = vit.forward_features(x)
    assert feats.shape == (2, 1 + 3 + 4 * 6, 48)
    maps = vit.forward_intermediates(x)
    assert [m.shape for m in maps] == [(2, 48, 4, 6)] * 4
    toks = vit.forward_intermediates(x, return_tokens=True, keep_prefix=True)
    assert toks[0].shape == (2, 4 + 24, 48)
    assert vit(x).shape == (2, 48)
    # the class token stays first and the patch maps differ from the untuned backbone's
    ref = make_vit(pos_embed=pos_embed)
    assert not torch.allclose(maps[-1], ref.forward_intermediates(x)[-1])
    if deep:  # a deep prompt of block 2 changes block 2's output but not block 1's
        before = vit.forward_intermediates(x, indices=[1, 2])
        with torch.no_grad():
            vit.blocks[2].vpt_prompt.add_(1.0)
        after = vit.forward_intermediates(x, indices=[1, 2])
        assert torch.equal(after[0], before[0]) and not torch.allclose(after[1], before[1])


def test_vpt_position_table_matches_untuned_layout(make_vit):
    """Patch tokens get the same positions as without prompts: with zero prompts and no attention to them
    the embedding stage differs only by the inserted prompt slots."""
    vit = make_vit(pos_embed="learned")
    ref_tokens, _, _ = vit.prepare_tokens(torch.ones(1, 3, 32, 32))
    VPT(num_prompts=2).apply(vit)
    tokens, _, _ = vit.prepare_tokens(torch.ones(1, 3, 32, 32))
    assert torch.equal(tokens[:, :1], ref_tokens[:, :1])
    assert torch.equal(tokens[:, 3:], ref_tokens[:, 1:])
    assert torch.equal(tokens[:, 1:3], vit.vpt_prompt)


def test_tuner_config_round_trip():
    t = iConFormer(bottleneck=16, kernel_size=5, branches=["attn", "mlp"], placement="sequential")
    t2 = tuner_from_config(t.config())
    assert type(t2) is iConFormer and repr(t2) == repr(t)
    assert repr(tuner_from_config(LoRA(rank=2, targets=["fc1"]).config())) == repr(LoRA(rank=2, targets=["fc1"]))


def test_bad_arguments_are_rejected(make_vit):
    with pytest.raises(ValueError, match="targets"):
        LoRA(targets=["q"])
    with pytest.raises(ValueError, match="scaling"):
        LoRA(scaling="sqrt")
    with pytest.raises(ValueError, match="branches"):
        iConFormer(branches=["ffn"])
    with pytest.raises(ValueError, match="kernel_size"):
        iConFormer(kernel_size=4)
    vit = make_vit()
    LoRA().apply(vit)
    with pytest.raises(RuntimeError, match="already tuned"):
        AdaptFormer().apply(vit)
    with pytest.raises(TypeError, match="blocks"):
        LoRA().apply(torch.nn.Linear(3, 3))


def test_vit_tuned_twice_forward_backward_with_rope(make_vit):
    vit = make_vit(pos_embed="rope")
    iConFormer(bottleneck=8, branches=["attn", "mlp"]).apply(vit)
    out = vit.forward_intermediates(torch.randn(2, 3, 40, 32))
    assert out[-1].shape == (2, 48, 5, 4)
    sum(o.sum() for o in out).backward()
    assert isinstance(vit, ViT)

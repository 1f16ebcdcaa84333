"""MTLoRA / TADFormer / MTL full FT: exact parameter counts (Swin-T, 4 PASCAL tasks, HRNet heads, 448, on the
meta device), frozen weights bit-identical after steps, gradients on every trainable tensor, zero-init LoRA,
input-dependent DTF kernels."""

import pytest
import torch

from vitlab.core import Swin
from vitlab.mtl import MTLoRA, MultiTaskFineTune, TADFormer
from vitlab.mtl.tadformer import TALinear

from .conftest import PASCAL, fake_batch, tiny_swin


def trainable(m):
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


@pytest.mark.parametrize("rank,expected", [(16, 4_953_146), (32, 6_083_642), (64, 8_344_634)])
def test_mtlora_parameter_count(rank, expected):
    with torch.device("meta"):
        assert trainable(MTLoRA(Swin(img_size=448), PASCAL, rank=rank)) == expected


@pytest.mark.parametrize("rank,expected", [(16, 3_551_550), (32, 4_770_174), (64, 7_373_310)])
def test_tadformer_dynamic_dtf_parameter_count(rank, expected):
    with torch.device("meta"):
        assert trainable(TADFormer(Swin(img_size=448), PASCAL, rank=rank)) == expected


def test_decoder_and_variant_counts():
    with torch.device("meta"):
        assert trainable(MultiTaskFineTune(Swin(img_size=448), PASCAL, freeze_backbone=True)) == 1_946_624
        # MTLoRA+: reductions frozen and LoRA'd (derived 3.47M at r=16); static filter (released code) r=64: 6.94M
        assert trainable(MTLoRA(Swin(img_size=448), PASCAL, rank=16, mtlora_plus=True)) == 3_469_370
        assert trainable(TADFormer(Swin(img_size=448), PASCAL, rank=64, task_filter="static")) == 6_940_926


@pytest.mark.parametrize("cls", [MTLoRA, TADFormer, MultiTaskFineTune])
def test_frozen_bit_identical_and_every_trainable_gets_grad(cls):
    kwargs = {"rank": 4} if cls is not MultiTaskFineTune else {}
    m = cls(tiny_swin(), PASCAL, **kwargs)
    m.train()
    frozen = {n: p.detach().clone() for n, p in m.named_parameters() if not p.requires_grad}
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.05)
    batch = fake_batch()
    for step in range(3):
        opt.zero_grad()
        loss, _ = m.criterion(m(batch["image"]), batch)
        loss.backward()
        # step 0: every trainable tensor is in the graph (LoRA A's gradient is 0 while B = 0);
        # step 2: every one of them has a non-zero gradient (TS-LoRA fc1 needs fc2's B to move first)
        missing = [n for n, p in m.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing, missing
        if step == 2:
            # the shared fc2 LoRA of the very last block feeds no output (tied in with weight 0, see MTLoRASwin)
            dead = "backbone.swin.layers.3.blocks.1.mlp.fc2.lora_"
            zero = [n for n, p in m.named_parameters()
                    if p.requires_grad and not p.grad.abs().sum() > 0 and not n.startswith(dead)]
            assert not zero, zero
        opt.step()
    for n, p in m.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    if cls is not MultiTaskFineTune:
        assert frozen, "PEFT methods freeze the pretrained weights"


def test_mtlora_zero_init_reproduces_frozen_backbone():
    x = torch.randn(2, 3, 56, 56)
    ref = tiny_swin().eval().forward_stages(x)
    m = MTLoRA(tiny_swin(), PASCAL, rank=4).eval()
    feats = m.encode(x)
    for t in PASCAL:
        for a, b in zip(feats[t], ref):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # once the task LoRA moves, task features differ from each other but the shared path does not move
    with torch.no_grad():
        m.backbone.swin.stage_blocks(0)[-1].mlp.fc2.task_B["sal"].normal_()
    feats = m.encode(x)
    assert not torch.allclose(feats["sal"][0], ref[0], atol=1e-4)
    torch.testing.assert_close(feats["semseg"][0], ref[0], atol=1e-5, rtol=1e-5)


def test_tadformer_dtf_kernels_depend_on_input():
    layer = TALinear(8, 8, rank=4, scale=4.0)
    u1, u2 = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5)
    k1, k2 = layer.dtf(u1), layer.dtf(u2)
    assert k1.shape == (2, 4, 3, 3)
    assert not torch.allclose(k1, k2)
    assert not torch.allclose(k1[0], k1[1])  # per sample
    static = TALinear(8, 8, rank=4, scale=4.0, task_filter="static", tasks=["a"])
    assert sum(p.numel() for p in static.static.parameters()) == 10 * 4


def test_tadformer_gate_ablation_and_output_shapes():
    m = TADFormer(tiny_swin(), ["semseg", "depth"], rank=4, gate="average").eval()
    assert not m.backbone.prompt_gates.requires_grad
    out = m(torch.randn(1, 3, 56, 56))
    assert out["semseg"].shape == (1, 21, 56, 56) and out["depth"].shape == (1, 1, 56, 56)
    with pytest.raises(ValueError, match="gate"):
        TADFormer(tiny_swin(), ["semseg"], gate="max")


def test_visualize_panels_per_task():
    m = MultiTaskFineTune(tiny_swin(), PASCAL).eval()
    batch = fake_batch()
    with torch.no_grad():
        pics = m.visualize(batch, m(batch["image"]), max_images=1)
    assert len(pics) == 4 and all(p.shape == (56, 3 * 56 + 4, 3) and p.dtype.name == "uint8" for p in pics.values())

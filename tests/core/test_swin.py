"""Swin backbone: equality with timm's own forward, stage shapes, prefix-token attention and the 2-window
prompt average, LoRA through vitlab.peft, official checkpoint key map."""

import pytest
import torch
from torch import nn

from vitlab.core.backbones.swin import Swin, average_over_windows, window_attention


def tiny(**kw):
    torch.manual_seed(0)
    return Swin(img_size=56, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(2, 2, 4, 4), drop_path_rate=0.0,
                window_size=7, **kw).eval()


def test_matches_timm_forward_and_stage_shapes():
    m = tiny()
    x = torch.randn(2, 3, 56, 56)
    outs = m.forward_stages(x)
    assert [o.shape[1] for o in outs] == m.out_channels == [32, 64, 128, 128]
    assert [o.shape[-1] for o in outs] == [7, 4, 2, 2]
    ref = nn.Sequential(*m.layers)(m.patch_embed(x))  # timm's own stage forward
    torch.testing.assert_close(outs[-1].permute(0, 2, 3, 1), ref, atol=1e-5, rtol=1e-5)


def test_swin_t_448_shapes_and_count_on_meta():
    with torch.device("meta"):
        m = Swin("tiny", img_size=448)
        outs = m.forward_stages(torch.empty(1, 3, 448, 448))
    assert [tuple(o.shape[1:]) for o in outs] == [(192, 56, 56), (384, 28, 28), (768, 14, 14), (768, 14, 14)]
    # Swin-T without its classifier norm (1,536) = 27,519,354 - 1,536
    assert sum(p.numel() for p in m.parameters()) == 27_517_818


def test_shifted_block_mask_matches_timm_block():
    m = tiny()
    blk = m.stage_blocks(0)[1]
    assert any(blk.shift_size)
    x = torch.randn(2, 14, 14, 16)
    out, _ = m.block_forward(blk, x)
    torch.testing.assert_close(out, blk(x), atol=1e-5, rtol=1e-5)


def test_prefix_tokens_logits_and_patch_block_only_bias():
    m = tiny()
    attn = m.stage_blocks(0)[1].attn
    tokens, mask, part = m.partition(m.stage_blocks(0)[1], torch.randn(1, 14, 14, 16))
    z0, _, _ = window_attention(attn, tokens, mask)
    prefix = torch.randn(tokens.shape[0], 3, 16)
    z, zp, logits = window_attention(attn, tokens, mask, prefix=prefix, return_logits=True)
    assert zp.shape == (4, 3, 16) and logits.shape == (4, 2, 3, 49)
    # raw logits: q_p . k_x with no scale and no bias
    qkv = attn.qkv(torch.cat([prefix, tokens], 1)).reshape(4, 52, 3, 2, 8).permute(2, 0, 3, 1, 4)
    torch.testing.assert_close(logits, qkv[0][:, :, :3] @ qkv[1][:, :, 3:].transpose(-2, -1))
    # SDPA and explicit paths agree; with a prompt whose keys are hugely negative the patches ignore it
    z_sdpa, zp_sdpa, _ = window_attention(attn, tokens, mask, prefix=prefix)
    torch.testing.assert_close(z, z_sdpa, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(z, z0, atol=1e-4)  # prompts change the patch outputs


def test_prompt_outputs_averaged_over_two_windows():
    torch.manual_seed(0)
    m = Swin(img_size=(28, 56), embed_dim=16, depths=(2, 2, 2, 2), num_heads=(2, 2, 4, 4), drop_path_rate=0.0).eval()
    blk = m.stage_blocks(0)[0]  # unshifted, 7x14 map = 2 windows side by side
    x = torch.randn(1, 7, 14, 16)
    p = torch.randn(1, 2, 16)
    _, p_out = m.block_forward(blk, x, prefix=p)
    # by hand: each window separately, then the mean
    pn = blk.norm1(p)
    xn = blk.norm1(x)
    per_window = []
    for w in (xn[:, :, :7], xn[:, :, 7:]):
        _, zp, _ = window_attention(blk.attn, w.reshape(1, 49, 16), None, prefix=pn)
        per_window.append(blk.attn.proj(zp))
    torch.testing.assert_close(p_out, (per_window[0] + per_window[1]) / 2, atol=1e-5, rtol=1e-5)
    assert average_over_windows(torch.ones(6, 2, 3), 2).shape == (2, 2, 3)


def test_peft_lora_replaces_swin_linears():
    from vitlab.peft import LoRA

    m = tiny()
    x = torch.randn(1, 3, 56, 56)
    ref = m.forward_stages(x)[-1]
    LoRA(rank=4, alpha=4.0, scaling="multiplier", targets=["qkv", "proj", "fc1", "fc2"]).apply(m)
    assert type(m.stage_blocks(2)[0].mlp.fc2).__name__ == "LoRALinear"
    torch.testing.assert_close(m.forward_stages(x)[-1], ref)  # B = 0 at init


def test_official_checkpoint_key_map(tmp_path):
    src = tiny()
    official = {}
    for k, v in src.state_dict().items():  # timm -> official: merging belongs to the previous stage
        if ".downsample." in k:
            s = int(k.split(".")[1])
            k = k.replace(f"layers.{s}.downsample", f"layers.{s - 1}.downsample")
        official[k] = v.clone()
    official["norm.weight"] = torch.ones(128)
    path = tmp_path / "swin_official.pth"
    torch.save({"model": official}, path)
    dst = tiny(pretrained=str(path))
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        tiny(pretrained=str(tmp_path / "missing.pth"))


def test_swin_serves_core_segmentation():
    from vitlab.core import SemanticSegmentation

    m = SemanticSegmentation(backbone=tiny(), num_classes=5, head="linear")
    assert m(torch.randn(1, 3, 56, 56)).shape == (1, 5, 56, 56)
    m = SemanticSegmentation(backbone=tiny(), num_classes=5, head="pup")
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 5, 64, 64)

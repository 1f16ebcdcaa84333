"""Tests for vitlab.core.backbones: ViT, sin-cos / RoPE2D positions, CrossBlock, checkpoint loading."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch

from vitlab.core.backbones import (
    VIT_SIZES,
    CrossBlock,
    RoPE2D,
    RoPEAttention,
    ViT,
    convert_croco_decoder,
    get_2d_sincos_pos_embed,
    load_checkpoint,
    save_checkpoint,
)
from vitlab.core.optim import param_groups

torch.manual_seed(0)

TINY = dict(embed_dim=32, depth=4, num_heads=4, img_size=32)


def tiny_vit(**kw) -> ViT:
    cfg = {**TINY, **kw}
    return ViT(**cfg).eval()


def mae_sincos_reference(embed_dim: int, h: int, w: int, cls_token: bool) -> np.ndarray:
    """MAE's 2-D sin-cos table written from the formula (facebookresearch/mae util/pos_embed.py semantics)."""

    def one_d(dim, pos):
        omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
        omega = 1.0 / 10000**omega
        out = np.einsum("m,d->md", pos.reshape(-1).astype(np.float64), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))  # xy indexing: (h, w)
    emb = np.concatenate([one_d(embed_dim // 2, grid[0]), one_d(embed_dim // 2, grid[1])], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros([1, embed_dim]), emb], axis=0)
    return emb


# ----------------------------------------------------------------------------- sizes / construction
def test_size_table_and_overrides():
    assert VIT_SIZES == {
        "tiny": (192, 12, 3),
        "small": (384, 12, 6),
        "base": (768, 12, 12),
        "large": (1024, 24, 16),
        "huge": (1280, 32, 16),
    }
    m = ViT("tiny", img_size=32)
    assert (m.embed_dim, m.depth, m.num_heads, len(m.blocks)) == (192, 12, 3, 12)
    assert m.blocks[0].attn.num_heads == 3 and m.norm.normalized_shape == (192,)
    assert m.out_indices == [2, 5, 8, 11]
    m = ViT("large", embed_dim=32, depth=2, num_heads=2, img_size=32)
    assert (m.embed_dim, m.depth, m.num_heads, len(m.blocks)) == (32, 2, 2, 2)
    assert ViT("tiny", depth=24, embed_dim=32, num_heads=2, img_size=32).out_indices == [5, 11, 17, 23]
    with pytest.raises(ValueError, match="unknown ViT size"):
        ViT("gigantic")
    with pytest.raises(ValueError, match="pos_embed"):
        ViT(**TINY, pos_embed="cosine")


def test_mae_init():
    m = tiny_vit(mask_token=True)
    blk = m.blocks[0]
    assert torch.all(blk.attn.qkv.bias == 0) and torch.all(blk.mlp.fc1.bias == 0)
    assert torch.all(blk.norm1.weight == 1) and torch.all(blk.norm1.bias == 0)
    fan_in, fan_out = 32, 96  # xavier bound for qkv
    bound = math.sqrt(6 / (fan_in + fan_out))
    assert blk.attn.qkv.weight.abs().max() <= bound + 1e-6
    assert blk.attn.qkv.weight.abs().max() > 0.5 * bound
    w = m.patch_embed.proj.weight
    assert w.abs().max() <= math.sqrt(6 / (w[0].numel() + w.shape[0])) + 1e-6
    assert 0.005 < m.cls_token.std() < 0.05 and 0.005 < m.mask_token.std() < 0.05


# ----------------------------------------------------------------------------- input sizes / positions
@pytest.mark.parametrize("pos_embed", ["sincos", "learned", "rope", "none"])
@pytest.mark.parametrize("patch,H,W", [(16, 48, 80), (14, 28, 42), (8, 40, 24)])
def test_any_multiple_of_patch(pos_embed, patch, H, W):
    m = tiny_vit(patch_size=patch, pos_embed=pos_embed, depth=2)
    x = torch.randn(2, 3, H, W)
    out = m.forward_features(x)
    assert out.shape == (2, 1 + (H // patch) * (W // patch), 32)
    assert torch.isfinite(out).all()
    assert m(x).shape == (2, 32)
    maps = m.forward_intermediates(x)
    assert [f.shape for f in maps] == [(2, 32, H // patch, W // patch)] * 4
    with pytest.raises(ValueError, match="multiple of patch_size"):
        m.forward_features(torch.randn(1, 3, H + 1, W))


def test_sincos_matches_mae_formula_and_is_fixed():
    m = tiny_vit(img_size=64)  # grid 4x4
    ref = torch.from_numpy(mae_sincos_reference(32, 4, 4, cls_token=True)).float()
    assert torch.allclose(m.pos_embed[0], ref, atol=1e-6)
    assert "pos_embed" not in dict(m.named_parameters()) and "pos_embed" not in m.state_dict()
    assert not m.pos_embed.requires_grad
    # another (rectangular) grid: recomputed for that grid, not interpolated
    ref_rect = torch.from_numpy(mae_sincos_reference(32, 3, 5, cls_token=True)).float()
    assert torch.allclose(m.abs_pos_embed(3, 5)[0], ref_rect, atol=1e-6)
    assert torch.allclose(get_2d_sincos_pos_embed(32, (3, 5), 0), ref_rect[1:], atol=1e-6)


def _timm_vit(**kw):
    from timm.models.vision_transformer import VisionTransformer

    cfg = dict(
        img_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=4, num_classes=10, global_pool="token"
    )
    cfg.update(kw)
    return VisionTransformer(**cfg).eval()


def test_learned_pos_resize_matches_timm_dynamic_img_size():
    src = _timm_vit(dynamic_img_size=True)
    with torch.no_grad():
        src.pos_embed.normal_(std=0.5)
    m = ViT(embed_dim=32, depth=2, num_heads=4, img_size=32, pos_embed="learned").eval()
    missing, unexpected = load_checkpoint(m, src.state_dict(), format="timm")
    assert missing == [] and unexpected == []
    x = torch.randn(2, 3, 48, 80)
    with torch.no_grad():
        assert torch.allclose(m.forward_features(x), src.forward_features(x), atol=1e-5)
    # a checkpoint on a 2x2 grid loaded into a model built for a 4x4 grid is resized at load time
    m64 = ViT(embed_dim=32, depth=2, num_heads=4, img_size=64, pos_embed="learned").eval()
    load_checkpoint(m64, src.state_dict(), strict=True)
    assert m64.pos_embed.shape == (1, 17, 32)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(m64.forward_features(x), src.forward_features(x), atol=1e-5)


# ----------------------------------------------------------------------------- ids_keep / mask
@pytest.mark.parametrize("pos_embed", ["sincos", "learned", "rope"])
def test_ids_keep(pos_embed):
    m = tiny_vit(pos_embed=pos_embed, img_size=48)
    x = torch.randn(2, 3, 48, 64)
    L = 3 * 4
    with torch.no_grad():
        full = m.forward_features(x)
        all_in_order = torch.arange(L).expand(2, L)
        assert torch.allclose(m.forward_features(x, ids_keep=all_in_order), full, atol=1e-6)
        # a permutation of all tokens: attention is permutation-equivariant, so the output is the permuted full
        # output *only if* every token kept its true position
        perm = torch.stack([torch.randperm(L), torch.randperm(L)])
        out = m.forward_features(x, ids_keep=perm)
        expected = torch.gather(full[:, 1:], 1, perm[..., None].expand(-1, -1, 32))
        assert torch.allclose(out[:, 1:], expected, atol=1e-5)
        assert torch.allclose(out[:, 0], full[:, 0], atol=1e-5)
        # dropping: length prefix + L_keep, and the result differs from the full forward
        keep = torch.argsort(torch.rand(2, L), dim=1)[:, :5]
        out = m.forward_features(x, ids_keep=keep)
        assert out.shape == (2, 1 + 5, 32)
        assert not torch.allclose(
            out[:, 1:], torch.gather(full[:, 1:], 1, keep[..., None].expand(-1, -1, 32)), atol=1e-3
        )
        tok = m.forward_intermediates(x, indices=[1], return_tokens=True, ids_keep=keep)[0]
        assert tok.shape == (2, 5, 32)
    with pytest.raises(ValueError):
        m.forward_intermediates(x, ids_keep=keep)  # maps need all tokens


def test_mask_token_replacement():
    m = tiny_vit(mask_token=True, img_size=64)
    x = torch.randn(2, 3, 64, 64)
    L = 16
    none = torch.zeros(2, L, dtype=torch.bool)
    mask = torch.zeros(2, L, dtype=torch.bool)
    mask[0, [1, 5]] = True
    mask[1, 7] = True
    with torch.no_grad():
        base = m.forward_features(x)
        assert torch.equal(m.forward_features(x, mask=none), base)
        assert not torch.allclose(m.forward_features(x, mask=mask), base)
        t_plain, _, _ = m.prepare_tokens(x)
        t_mask, _, _ = m.prepare_tokens(x, mask=mask)
        pos = m.pos_embed[0, 1:]
        patch_plain, patch_mask = t_plain[:, 1:], t_mask[:, 1:]
        assert torch.equal(patch_mask[~mask], patch_plain[~mask])
        # masked patches = mask token + their position (replacement happens before the position embedding)
        idx = mask.nonzero()
        for b, i in idx.tolist():
            assert torch.allclose(patch_mask[b, i], m.mask_token[0, 0] + pos[i], atol=1e-6)
        # (B, h, w) masks are accepted too
        assert torch.equal(m.forward_features(x, mask=mask.view(2, 4, 4)), m.forward_features(x, mask=mask))
    with pytest.raises(ValueError, match="mask_token=True"):
        tiny_vit().forward_features(x, mask=mask)


# ----------------------------------------------------------------------------- intermediates / pooling
def test_forward_intermediates():
    m = tiny_vit(img_size=64)
    assert m.out_indices == [0, 1, 2, 3]
    x = torch.randn(2, 3, 64, 96)
    calls = []
    for i, blk in enumerate(m.blocks):
        blk.register_forward_hook(lambda mod, inp, out, i=i: calls.append(i))
    with torch.no_grad():
        maps = m.forward_intermediates(x, indices=[0, -3])
        assert calls == [0, 1]  # stops after max(indices)
        assert [f.shape for f in maps] == [(2, 32, 4, 6)] * 2
        calls.clear()
        feats = m.forward_features(x)
        last = m.forward_intermediates(x, indices=[3])[0]
        assert torch.allclose(last, feats[:, 1:].transpose(1, 2).reshape(2, 32, 4, 6), atol=1e-6)
        raw = m.forward_intermediates(x, indices=[3], norm=False, return_tokens=True, keep_prefix=True)[0]
        assert raw.shape == (2, 1 + 24, 32)
        assert torch.allclose(m.norm(raw), feats, atol=1e-6)
        tok = m.forward_intermediates(x, indices=[3], return_tokens=True)[0]
        assert torch.allclose(tok, feats[:, 1:], atol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        m.forward_intermediates(x, indices=[4])


def test_pooling():
    x = torch.randn(2, 3, 32, 32)
    m = tiny_vit()
    with torch.no_grad():
        f = m.forward_features(x)
        assert torch.allclose(m(x), f[:, 0])
        m.global_pool = "avg"
        assert torch.allclose(m(x), f[:, 1:].mean(1), atol=1e-6)
        m2 = tiny_vit(class_token=False)
        assert m2.num_prefix_tokens == 0
        f2 = m2.forward_features(x)
        assert f2.shape == (2, 4, 32) and torch.allclose(m2(x), f2.mean(1), atol=1e-6)


# ----------------------------------------------------------------------------- optimiser helpers / freezing
def test_layer_id_and_param_groups():
    m = tiny_vit(mask_token=True, pos_embed="learned")
    assert m.layer_id("patch_embed.proj.weight") == 0
    for n in ("cls_token", "pos_embed", "mask_token"):
        assert m.layer_id(n) == 0
    assert m.layer_id("blocks.0.attn.qkv.weight") == 1
    assert m.layer_id("blocks.3.mlp.fc2.bias") == 4
    assert m.layer_id("backbone.blocks.2.norm1.weight") == 3
    assert m.layer_id("norm.weight") == 5 and m.layer_id("head.weight") == 5
    assert m.num_layer_ids == 6
    assert m.no_weight_decay() == {"pos_embed", "cls_token", "mask_token"}
    assert tiny_vit().no_weight_decay() == {"cls_token"}
    groups = param_groups(m, lr=1.0, weight_decay=0.05, layer_decay=0.5, layer_id=m.layer_id, num_layers=m.depth)
    n_params = sum(len(g["params"]) for g in groups)
    assert n_params == len(list(m.parameters()))
    by_name = {n: g for g in groups for n in g["names"]}
    assert by_name["norm.weight"]["lr_scale"] == 1.0 and by_name["norm.weight"]["weight_decay"] == 0.0
    assert by_name["patch_embed.proj.weight"]["lr_scale"] == 0.5**5
    assert by_name["patch_embed.proj.weight"]["weight_decay"] == 0.05
    assert by_name["blocks.0.attn.qkv.bias"]["weight_decay"] == 0.0
    assert by_name["pos_embed"]["weight_decay"] == 0.0, "no_weight_decay() names must not be decayed"


def test_freeze_unfreeze():
    m = tiny_vit(freeze=True, mask_token=True, pos_embed="learned")
    assert m.frozen and not any(p.requires_grad for p in m.parameters())
    m.unfreeze_()
    assert all(p.requires_grad for p in m.parameters())
    m.freeze_()
    assert not any(p.requires_grad for p in m.parameters())
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(m, lr=1.0, weight_decay=0.05)


def test_grad_checkpointing_same_gradients():
    x = torch.randn(2, 3, 32, 32)
    m = tiny_vit(pos_embed="rope").train()
    m.forward_features(x).pow(2).mean().backward()
    g_ref = m.blocks[0].attn.qkv.weight.grad.clone()
    m.zero_grad()
    m.set_grad_checkpointing(True)
    m.forward_features(x).pow(2).mean().backward()
    assert torch.allclose(m.blocks[0].attn.qkv.weight.grad, g_ref, atol=1e-6)


# ----------------------------------------------------------------------------- RoPE2D
def test_rope_formula_layout():
    rope = RoPE2D(base=100.0)
    dh = 8  # D = 4 per axis, frequencies i = 0, 1
    u = torch.randn(1, 1, 1, dh)
    y, x = 3.0, 5.0
    out = rope(u, torch.tensor([[[y, x]]]))

    def rope1d(v, p):
        D = v.shape[-1]
        theta = torch.tensor([p * 100.0 ** (-2 * i / D) for i in range(D // 2)])
        f = torch.cat([theta, theta])
        a, b = v[: D // 2], v[D // 2 :]
        return v * f.cos() + torch.cat([-b, a]) * f.sin()

    v = u[0, 0, 0]
    expected = torch.cat([rope1d(v[:4], y), rope1d(v[4:], x)])
    assert torch.allclose(out[0, 0, 0], expected, atol=1e-6)
    # position (0, 0) is the identity
    assert torch.allclose(rope(u, torch.zeros(1, 1, 2, dtype=torch.long)), u)


def test_rope_scores_depend_only_on_offset():
    torch.manual_seed(1)
    rope = RoPE2D(100.0)
    B, H, N, Dh = 2, 3, 10, 16
    q, k = torch.randn(B, H, N, Dh), torch.randn(B, H, N, Dh)
    pq = torch.randint(0, 8, (B, N, 2))
    pk = torch.randint(0, 8, (B, N, 2))

    def scores(a, b):
        return rope(q, a) @ rope(k, b).transpose(-1, -2)

    s = scores(pq, pk)
    shift = torch.tensor([5, 11])
    assert torch.allclose(scores(pq + shift, pk + shift), s, atol=1e-4)
    assert torch.allclose(scores(pq - 3, pk - 3), s, atol=1e-4)  # negative positions are fine
    assert not torch.allclose(scores(pq + shift, pk), s, atol=1e-2)  # different offsets -> different scores
    assert not torch.allclose(scores(pq, pk.flip(-1)), s, atol=1e-2)  # axes are not interchangeable


def test_rope_attention_cross_uses_each_side_positions():
    torch.manual_seed(2)
    attn = RoPEAttention(32, num_heads=2, qkv_bias=True, rope=RoPE2D()).eval()
    x, y = torch.randn(2, 6, 32), torch.randn(2, 9, 32)
    px, py = torch.randint(0, 5, (2, 6, 2)), torch.randint(0, 5, (2, 9, 2))
    out = attn(x, pos=px, context=y, context_pos=py)
    assert out.shape == (2, 6, 32)
    assert torch.allclose(attn(x, pos=px + 7, context=y, context_pos=py + 7), out, atol=1e-5)
    assert not torch.allclose(attn(x, pos=px + 7, context=y, context_pos=py), out, atol=1e-3)
    # with the context equal to x, cross-attention is self-attention
    assert torch.allclose(attn(x, pos=px, context=x, context_pos=px), attn(x, pos=px), atol=1e-5)
    with pytest.raises(ValueError, match="positions"):
        attn(x)


def test_rope_vit_translation_invariant_without_prefix():
    m = tiny_vit(pos_embed="rope", class_token=False)
    x = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        tokens, pos, _ = m.prepare_tokens(x)
        a = tokens
        for blk in m.blocks:
            a = blk(a, pos)
        b = tokens
        for blk in m.blocks:
            b = blk(b, pos + 4)
        assert torch.allclose(a, b, atol=1e-4)
        assert torch.allclose(m.norm(a), m.forward_features(x), atol=1e-5)


# ----------------------------------------------------------------------------- CrossBlock
@pytest.mark.parametrize("use_rope", [False, True])
def test_cross_block(use_rope):
    torch.manual_seed(3)
    blk = CrossBlock(32, 4, rope=RoPE2D() if use_rope else None).eval()
    x, y = torch.randn(2, 12, 32), torch.randn(2, 12, 32)
    y_copy = y.clone()
    xpos = (
        torch.stack(torch.meshgrid(torch.arange(3), torch.arange(4), indexing="ij"), -1)
        .reshape(1, 12, 2)
        .expand(2, -1, -1)
    )
    ypos = xpos.clone()
    out, y_out = blk(x, y, xpos, ypos)
    assert out.shape == x.shape
    assert y_out is y and torch.equal(y, y_copy)
    x2, y2 = blk(out, y_out, xpos, ypos)  # chaining: same memory
    assert y2 is y
    if use_rope:
        out_shift, _ = blk(x, y, xpos + 3, ypos + 3)
        assert torch.allclose(out_shift, out, atol=1e-5)
        out_rel, _ = blk(x, y, xpos, ypos + torch.tensor([0, 2]))
        assert not torch.allclose(out_rel, out, atol=1e-3)
    # the memory matters and gradients reach the cross-attention
    out_other, _ = blk(x, torch.randn(2, 12, 32), xpos, ypos)
    assert not torch.allclose(out_other, out, atol=1e-3)
    blk.train()
    blk(x, y, xpos, ypos)[0].sum().backward()
    assert blk.cross_attn.qkv.weight.grad.abs().sum() > 0 and blk.norm_y.weight.grad.abs().sum() > 0


def test_convert_croco_decoder_round_trip():
    torch.manual_seed(4)
    blk = CrossBlock(32, 4, rope=RoPE2D()).eval()
    croco = {}
    for k, v in blk.state_dict().items():
        if k.startswith("cross_attn.qkv."):
            kind = k.rsplit(".", 1)[1]
            for name, part in zip("qkv", v.chunk(3, dim=0)):
                croco[f"dec_blocks.0.cross_attn.proj{name}.{kind}"] = part
        else:
            croco[f"dec_blocks.0.{k}"] = v
    croco["dec_norm.weight"] = torch.ones(32)
    converted = convert_croco_decoder(croco, dst_prefix="")
    fresh = CrossBlock(32, 4, rope=RoPE2D()).eval()
    sd = {k[len("0.") :]: v for k, v in converted.items()}
    fresh.load_state_dict(sd, strict=True)
    x, y, p = torch.randn(1, 4, 32), torch.randn(1, 4, 32), torch.randint(0, 3, (1, 4, 2))
    assert torch.allclose(fresh(x, y, p, p)[0], blk(x, y, p, p)[0])


# ----------------------------------------------------------------------------- checkpoints
def _mae_state_from_timm(src) -> dict:
    """Official facebookresearch/mae pre-training key names around a timm-built encoder."""
    state = dict(src.state_dict())
    state.pop("head.weight"), state.pop("head.bias")  # MAE pre-training has no head
    dec = 16
    state.update(
        {
            "mask_token": torch.randn(1, 1, dec),
            "decoder_embed.weight": torch.randn(dec, 32),
            "decoder_embed.bias": torch.zeros(dec),
            "decoder_pos_embed": torch.zeros(1, 5, dec),
            "decoder_blocks.0.norm1.weight": torch.ones(dec),
            "decoder_blocks.0.attn.qkv.weight": torch.randn(3 * dec, dec),
            "decoder_norm.weight": torch.ones(dec),
            "decoder_pred.weight": torch.randn(16 * 16 * 3, dec),
        }
    )
    return state


def test_load_official_mae_checkpoint_matches_timm(tmp_path):
    src = _timm_vit()
    with torch.no_grad():  # MAE: fixed sin-cos table with a zero class slot
        src.pos_embed.copy_(torch.from_numpy(mae_sincos_reference(32, 2, 2, cls_token=True)).float()[None])
        for p in src.parameters():
            if p.ndim == 1:
                p.normal_(std=0.1)  # non-trivial norms / biases
    state = _mae_state_from_timm(src)
    assert {
        "cls_token",
        "pos_embed",
        "patch_embed.proj.weight",
        "blocks.1.attn.qkv.weight",
        "norm.weight",
    } <= set(state)
    path = tmp_path / "mae_pretrain_tiny.pth"
    torch.save({"model": state, "epoch": 3, "args": argparse.Namespace(mask_ratio=0.75)}, path)

    m = ViT(embed_dim=32, depth=2, num_heads=4, img_size=32).eval()
    missing, unexpected = load_checkpoint(m, path, format="auto")
    assert missing == [] and unexpected == []
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(m.forward_features(x), src.forward_features(x), atol=1e-5)
    # explicit format and the constructor path give the same weights
    m2 = ViT(
        embed_dim=32, depth=2, num_heads=4, img_size=32, pretrained=str(path), checkpoint_format="mae"
    ).eval()
    with torch.no_grad():
        assert torch.allclose(m2.forward_features(x), src.forward_features(x), atol=1e-5)
    # MAE's mask_token is decoder-side (16-d): not mapped onto a 32-d encoder mask token
    m3 = ViT(embed_dim=32, depth=2, num_heads=4, img_size=32, mask_token=True)
    missing, unexpected = load_checkpoint(m3, path)
    assert missing == ["mask_token"] and unexpected == []


def test_load_mae_finetuned_fc_norm_and_module_prefix():
    src = _timm_vit()
    state = {
        ("module." + k.replace("norm.", "fc_norm.") if k.startswith("norm.") else "module." + k): v
        for k, v in src.state_dict().items()
    }
    m = ViT(embed_dim=32, depth=2, num_heads=4, img_size=32, pos_embed="learned")
    missing, unexpected = load_checkpoint(m, {"model": state}, format="mae")
    assert missing == [] and unexpected == []
    assert torch.equal(m.norm.weight, src.norm.weight)
    assert torch.equal(m.blocks[1].mlp.fc2.weight, src.blocks[1].mlp.fc2.weight)


def test_safetensors_round_trip_and_lightning_nesting(tmp_path):
    m = tiny_vit(pos_embed="rope", mask_token=True)
    x = torch.randn(1, 3, 32, 48)
    path = tmp_path / "vit.safetensors"
    save_checkpoint(m, path)
    fresh = tiny_vit(pos_embed="rope", mask_token=True)
    missing, unexpected = load_checkpoint(fresh, path, strict=True)
    assert missing == [] and unexpected == []
    with torch.no_grad():
        assert torch.equal(fresh.forward_features(x), m.forward_features(x))
    # Lightning-style: {"state_dict": {"backbone.<key>": ..., "head.<key>": ...}}
    ckpt = {
        "state_dict": {
            **{"backbone." + k: v for k, v in m.state_dict().items()},
            "head.weight": torch.zeros(3),
        }
    }
    torch.save(ckpt, tmp_path / "last.ckpt")
    fresh = tiny_vit(pos_embed="rope", mask_token=True)
    load_checkpoint(fresh, tmp_path / "last.ckpt", strict=True)
    with torch.no_grad():
        assert torch.equal(fresh.forward_features(x), m.forward_features(x))


def test_bad_checkpoints(tmp_path):
    m = tiny_vit()
    bad = tmp_path / "not_a_vit.pth"
    torch.save({"conv1.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(ValueError, match="not_a_vit.pth"):
        load_checkpoint(m, bad)
    other = tmp_path / "wider.safetensors"
    save_checkpoint(ViT(embed_dim=64, depth=4, num_heads=4, img_size=32), other)
    with pytest.raises(
        ValueError,
        match=r"wider\.safetensors: shape mismatch for .*'blocks\.0\.attn\.qkv\.weight': model expects \(96, 32\), checkpoint has \(192, 64\)",
    ):
        load_checkpoint(m, other)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(m, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="format"):
        load_checkpoint(m, {}, format="caffe")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="garbage.pth"):
        load_checkpoint(m, garbage)
    # strict reports missing keys
    sd = {k: v for k, v in m.state_dict().items() if not k.startswith("blocks.3.")}
    with pytest.raises(RuntimeError, match="blocks.3"):
        load_checkpoint(tiny_vit(), sd, strict=True)


def test_load_croco_encoder_keys():
    src = tiny_vit(pos_embed="rope", class_token=False)
    croco = {}
    for k, v in src.state_dict().items():
        k = k.replace("blocks.", "enc_blocks.", 1) if k.startswith("blocks.") else k
        croco[k.replace("norm.", "enc_norm.", 1) if k.startswith("norm.") else k] = v
    croco.update(
        {
            "mask_token": torch.zeros(1, 1, 16),  # decoder width
            "decoder_embed.weight": torch.zeros(16, 32),
            "dec_blocks.0.cross_attn.projq.weight": torch.zeros(16, 16),
            "dec_norm.weight": torch.ones(16),
            "prediction_head.weight": torch.zeros(768, 16),
        }
    )
    assert "enc_blocks.0.attn.qkv.weight" in croco and "enc_norm.weight" in croco
    m = tiny_vit(pos_embed="rope", class_token=False)
    missing, unexpected = load_checkpoint(m, {"model": croco, "croco_kwargs": {"enc_depth": 4}})
    assert missing == [] and unexpected == []
    x = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        assert torch.equal(m.forward_features(x), src.forward_features(x))


@pytest.mark.parametrize("pos_embed", ["rope", "sincos"])
def test_inference_mode_then_training(pos_embed):
    """`vitlab predict`/`validate` run under inference_mode; cached positions must not leak into training."""
    m = tiny_vit(pos_embed=pos_embed)
    x = torch.randn(2, 3, 48, 32)  # off the default grid, so the sin-cos table is computed and cached
    with torch.inference_mode():
        ref = m.forward_features(x)
    out = m.forward_features(x)
    out.sum().backward()
    torch.testing.assert_close(out.detach(), ref)
    with torch.inference_mode():
        torch.testing.assert_close(m.forward_features(x), ref)

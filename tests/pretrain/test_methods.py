"""Module-level behaviour of MAE, SimMIM, SG-MIM, MTO and the noise-in-encoder method."""

from __future__ import annotations

import pytest
import torch

from vitlab.core.backbones import get_2d_sincos_pos_embed
from vitlab.pretrain import MAE, MTO, SGMIM, BlockRandomMask, NoiseMIM, RandomPatchMask, SalienceMask, SimMIM
from vitlab.pretrain.base import attention_probs
from vitlab.pretrain.masking import mask_from_shuffle


def _mae(vit, **kw):
    return MAE(vit(), decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2, **kw)


def test_mae_encoder_sees_only_visible_patches(tiny_vit):
    torch.manual_seed(0)
    model = _mae(tiny_vit).eval()
    x = torch.randn(2, 3, 32, 32)
    masks = RandomPatchMask(0.75)(2, (4, 4), "cpu", 8)
    lat = model.encode(x, masks, {})["latent"]
    assert lat.shape == (2, 1 + 4, 32)  # cls + 25% of 16 patches
    # scribbling over masked patches does not change the encoding
    y = x.clone()
    pix = masks.pixel_mask(8).bool().expand_as(y)
    y[pix] = 100.0
    assert torch.allclose(model.encode(y, masks, {})["latent"], lat, atol=1e-6)
    out = model.decode({"latent": lat}, masks, {})
    assert out["pred"].shape == (2, 16, 8 * 8 * 3)


def _official_state(model: MAE) -> dict[str, torch.Tensor]:
    """The model's weights under facebookresearch/mae ``models_mae.py`` names (with pos tables)."""
    enc, dec = model.encoder, model.decoder
    out = {k: v.clone() for k, v in enc.state_dict().items()}
    out["pos_embed"] = get_2d_sincos_pos_embed(enc.embed_dim, enc.grid_size, 1)[None]
    for k, v in dec.state_dict().items():
        if k == "mask_token":
            out["mask_token"] = v.clone()
        else:
            head, rest = k.split(".", 1)
            out[f"decoder_{head}.{rest}"] = v.clone()
    out["decoder_pos_embed"] = get_2d_sincos_pos_embed(dec.embed_dim, enc.grid_size, 1)[None]
    return out


def test_official_mae_key_map_loads_exactly(tiny_vit):
    torch.manual_seed(0)
    src = _mae(tiny_vit).eval()
    state = _official_state(src)
    assert {"cls_token", "pos_embed", "mask_token", "decoder_embed.weight", "decoder_pos_embed",
            "decoder_blocks.0.attn.qkv.weight", "decoder_norm.weight", "decoder_pred.bias"} <= set(state)
    torch.manual_seed(1)
    dst = _mae(tiny_vit).eval()
    res = dst.load_official_mae({"model": state})
    assert res.missing == [] and res.unexpected == []
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(5)
    a, _, _ = src({"image": x})
    torch.manual_seed(5)
    b, _, _ = dst({"image": x})
    assert torch.equal(a["loss"], b["loss"])
    # an unknown key is reported
    state["junk.weight"] = torch.zeros(1)
    assert "junk.weight" in dst.load_official_mae(state).unexpected


def test_mae_init_checkpoint_file(tiny_vit, tmp_path):
    torch.manual_seed(0)
    src = _mae(tiny_vit)
    torch.save({"model": _official_state(src)}, tmp_path / "mae_pretrain.pth")
    dst = _mae(tiny_vit, init_checkpoint=str(tmp_path / "mae_pretrain.pth"))
    assert torch.equal(dst.decoder.pred.weight, src.decoder.pred.weight)
    assert torch.equal(dst.encoder.blocks[1].mlp.fc2.weight, src.encoder.blocks[1].mlp.fc2.weight)


def test_per_image_amr_padding_matches_single_image_runs(tiny_vit):
    torch.manual_seed(0)
    model = _mae(tiny_vit).eval()
    x = torch.randn(3, 3, 32, 32)
    ids = torch.stack([torch.randperm(16) for _ in range(3)])
    keep = torch.tensor([4, 7, 2])
    masks = mask_from_shuffle(ids, keep, (4, 4), torch.tensor([0.75, 0.56, 0.875]))
    assert not masks.uniform
    full = model.encode(x, masks, {})["latent"]
    pred = model.decode({"latent": full}, masks, {})["pred"]
    for b in range(3):
        single = mask_from_shuffle(ids[b : b + 1], keep[b : b + 1], (4, 4), masks.ratio[b : b + 1])
        lat = model.encode(x[b : b + 1], single, {})["latent"]
        assert torch.allclose(full[b, : 1 + keep[b]], lat[0], atol=1e-5)
        p1 = model.decode({"latent": lat}, single, {})["pred"]
        assert torch.allclose(pred[b], p1[0], atol=1e-5)


def test_sbam_mae_per_image_trains(tiny_vit):
    torch.manual_seed(0)
    model = _mae(tiny_vit, masking=SalienceMask(per_batch_ratio=False))
    losses, _, masks = model({"image": torch.randn(4, 3, 32, 32)})
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"]) and model.encoder.blocks[0].attn.qkv.weight.grad is not None


def test_simmim_requires_mask_token_and_shapes(tiny_vit):
    with pytest.raises(ValueError, match="mask token"):
        SimMIM(tiny_vit())
    model = SimMIM(tiny_vit(mask_token=True), masking=BlockRandomMask(16, 0.6))
    x = torch.randn(2, 3, 32, 32)
    losses, out, masks = model({"image": x})
    assert out["pred"].shape == x.shape
    # only masked pixels count: a perfect prediction there gives zero loss
    out["pred"] = torch.where(masks.pixel_mask(8).bool(), x, torch.zeros_like(x))
    assert model.loss(out, x, masks, {})["loss"].abs() < 1e-6


def test_attention_probs_reproduce_the_block(tiny_vit):
    blk = tiny_vit().blocks[0]
    x = torch.randn(2, 5, 32)
    A = attention_probs(blk, x)
    attn = blk.attn
    qkv = attn.qkv(blk.norm1(x)).reshape(2, 5, 3, 2, 16).permute(2, 0, 3, 1, 4)
    ref = attn.proj((A @ qkv[2]).transpose(1, 2).reshape(2, 5, 32))
    assert torch.allclose(ref, attn(blk.norm1(x)), atol=1e-5)
    assert torch.allclose(A.sum(-1), torch.ones(2, 2, 5))


def test_mto_terms(tiny_vit):
    mto = MTO(recalib_strength=2.0, recalib_fraction=0.5)
    assert mto.beta(0.0) == 2.0 and mto.beta(0.25) == 1.0 and mto.beta(0.6) == 0.0
    is_mask = torch.tensor([[False, True, False, True]])
    bias = mto.attn_bias(is_mask, 0.0)
    assert bias.shape == (1, 1, 4, 4)
    assert bias[0, 0, 0, 1] == -2.0 and bias[0, 0, 1, 0] == 0 and bias[0, 0, 1, 3] == 0
    blocks = tiny_vit().blocks
    x = torch.randn(1, 4, 32)
    A = attention_probs(blocks[0], x)
    out = MTO(lambda_e=0, lambda_r=0).losses(blocks, {0: x}, is_mask)
    vis = ~is_mask[0]
    spa = A[0][:, vis][:, :, is_mask[0]].sum(-1).mean()
    assert torch.isclose(out["mto_spa"], spa, atol=1e-6)
    assert torch.isclose(out["mto"], 0.1 * spa, atol=1e-6)
    none = MTO().losses(blocks, {0: x}, torch.zeros(1, 4, dtype=torch.bool))
    assert none["mto_spa"] == 0


def test_sgmim_depth_input_is_zero_exactly_where_image_visible(tiny_vit):
    torch.manual_seed(0)
    model = SGMIM(tiny_vit(mask_token=True), masking=BlockRandomMask(16, 0.5), depth_embed_dim=8)
    depth = torch.rand(2, 1, 32, 32) + 0.5
    masks = model.masking(2, (4, 4), "cpu", 8)
    y = model.depth_encoder.masked_embed(depth, masks.mask, (4, 4))  # (B, 8, 8, C): 2x2 depth tokens per patch
    assert y.shape == (2, 8, 8, 8)
    per_patch = y.abs().sum(-1).reshape(2, 4, 2, 4, 2).sum((2, 4)).reshape(2, 16)
    assert (per_patch[masks.mask == 0] == 0).all()
    assert (per_patch[masks.mask == 1] > 0).all()
    # loss uses complementary masks: image L1 on masked pixels, depth L1 on visible pixels
    x = torch.randn(2, 3, 32, 32)
    losses, out, masks = model({"image": x, "depth": depth})
    assert out["pred_depth"].shape == depth.shape
    out["pred"] = x.clone()
    out["pred_depth"] = torch.zeros_like(depth)
    vis = 1 - masks.pixel_mask(8)
    ref = (depth * vis).sum() / (vis.sum() + 1e-5)
    got = model.loss(out, x, masks, {})
    assert got["loss_img"] < 1e-6 and torch.isclose(got["loss_depth"], ref)
    with pytest.raises(KeyError, match="depth"):
        model({"image": x})


def test_sgmim_invalid_depth_is_excluded(tiny_vit):
    model = SGMIM(tiny_vit(mask_token=True), masking=BlockRandomMask(16, 0.5), depth_embed_dim=8)
    d = torch.rand(1, 1, 32, 32)
    d[..., :16, :] = float("inf")
    losses, out, _ = model({"image": torch.randn(1, 3, 32, 32), "depth": d})
    assert torch.isfinite(losses["loss"]) and (out["depth"][..., :16, :] == 0).all()


def test_noise_tokens_are_disjoint_and_hidden_from_masked_queries(tiny_vit):
    torch.manual_seed(0)
    model = NoiseMIM(tiny_vit(mask_token=True), noise_ratio=0.5)
    masks = RandomPatchMask(0.5)(3, (4, 4), "cpu", 8)
    noised = model.noise_selection(masks)
    assert (noised.sum(1) == 4).all() and not (noised & (masks.mask > 0)).any()
    pre = torch.zeros(3, 1, dtype=torch.bool)
    is_mask, is_noised = torch.cat([pre, masks.mask > 0], 1), torch.cat([pre, noised], 1)
    am = model._attn_mask(is_mask, is_noised)
    A = attention_probs(model.encoder.blocks[0], torch.randn(3, 17, 32), am)
    blocked = A * is_mask[:, None, :, None] * is_noised[:, None, None, :]
    assert blocked.abs().max() == 0
    assert (A * is_noised[:, None, None, :]).sum() > 0  # visible queries still see noised tokens
    losses, _, _ = model({"image": torch.randn(3, 3, 32, 32)})
    assert set(losses) == {"loss", "loss_mim", "loss_den"} and torch.isfinite(losses["loss"])


def test_noise_penalty_mode_and_switches(tiny_vit):
    torch.manual_seed(0)
    pen = NoiseMIM(tiny_vit(mask_token=True), disrupt_mode="penalty", denoise_target="pixel", lambda_dis=1.0)
    losses, _, _ = pen({"image": torch.randn(2, 3, 32, 32)})
    assert losses["loss_dis"] > 0
    assert torch.isclose(losses["loss"], losses["loss_mim"] + losses["loss_den"] + losses["loss_dis"])
    off = NoiseMIM(tiny_vit(mask_token=True), noise_ratio=0.0, disrupt_mode="none")
    losses, _, _ = off({"image": torch.randn(2, 3, 32, 32)})
    assert losses["loss_den"] == 0 and torch.equal(losses["loss"], losses["loss_mim"])
    with pytest.raises(ValueError, match="disrupt_mode"):
        NoiseMIM(tiny_vit(mask_token=True), disrupt_mode="bogus")


@pytest.mark.parametrize("kind", ["mae", "simmim"])
def test_visualize_panels(tiny_vit, kind):
    model = _mae(tiny_vit) if kind == "mae" else SimMIM(tiny_vit(mask_token=True), masking=BlockRandomMask(16, 0.5))
    batch = {"image": torch.randn(3, 3, 32, 32)}
    losses, out, masks = model(batch)
    output = {"recon": model.reconstruct(out, batch["image"], masks), "mask": masks.pixel_mask(8)}
    pics = model.visualize(batch, output, max_images=2)
    assert len(pics) == 2
    for pic in pics.values():
        assert pic.shape == (32, 3 * 32 + 2 * 2, 3) and pic.dtype.name == "uint8"
    if kind == "mae":  # norm-pix predictions are mapped back to pixels with the true patch statistics
        from vitlab.pretrain import patchify
        t = patchify(batch["image"], 8)
        out["pred"] = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6) ** 0.5
        assert torch.allclose(model.reconstruct(out, batch["image"], masks), batch["image"], atol=1e-4)


def test_mae_decays_tokens_like_the_official_optimizer(tiny_vit):
    from vitlab.core.optim import param_groups

    model = _mae(tiny_vit)
    groups = param_groups(model, lr=1.0, weight_decay=0.05, decay_tokens=model.decay_tokens)
    wd = {n: g["weight_decay"] for g in groups for n in g["names"]}
    assert wd["encoder.cls_token"] == 0.05 and wd["decoder.mask_token"] == 0.05
    assert wd["encoder.blocks.0.norm1.weight"] == 0.0

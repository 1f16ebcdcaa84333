"""Golden values from the official SimMIM code (`microsoft/SimMIM`): mask law, decoder + masked L1 loss,
initialisation and weight-decay groups. Numbers produced by ``tests/data/golden/simmim/regenerate.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vitlab.core import ViT
from vitlab.core.optim import param_groups
from vitlab.pretrain import SimMIM
from vitlab.pretrain.losses import masked_l1
from vitlab.pretrain.masking import BlockRandomMask, MaskOutput
from vitlab.pretrain.simmim import PixelShuffleDecoder

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "golden" / "simmim" / "simmim.pt"


@pytest.fixture(scope="module")
def golden():
    rec = torch.load(FIXTURE, weights_only=True)
    assert rec["official_repo"] == "microsoft/SimMIM" and len(rec["official_commit"]) == 40
    return rec["data"]


@pytest.mark.parametrize("case", [0, 1, 2], ids=["32-16-8", "192-32-4", "224-32-16"])
def test_block_mask_law_matches_official(golden, case):
    """Same law as ``MaskGenerator``: ``ceil(cells * r)`` cells masked, each cell a constant block of patches.
    (SimMIM draws with numpy in the data loader, vitlab with torch on the device: the draws differ, the law not.)"""
    g = golden["masks"][case]
    s = g["mask_patch"] // g["model_patch"]
    side = g["input_size"] // g["model_patch"]
    torch.manual_seed(0)
    out = BlockRandomMask(g["mask_patch"], g["ratio"])(8, (side, side), "cpu", patch_size=g["model_patch"])
    ours = out.mask.reshape(8, side, side).long()
    ref = g["masks"].long()
    assert ours.shape == ref.shape
    cells = ours[:, ::s, ::s]
    assert torch.equal(ours, cells.repeat_interleave(s, 1).repeat_interleave(s, 2)), "not constant per cell"
    assert torch.equal(ref, ref[:, ::s, ::s].repeat_interleave(s, 1).repeat_interleave(s, 2))
    assert (cells.flatten(1).sum(1) == g["mask_count"]).all()
    assert (ref[:, ::s, ::s].flatten(1).sum(1) == g["mask_count"]).all()


def test_decoder_and_loss_match_official(golden):
    g = golden["forward"]
    dec = PixelShuffleDecoder(g["z"].shape[1], g["stride"], 3)
    dec.load_state_dict(g["decoder_state"])
    with torch.no_grad():
        x_rec = dec(g["z"])
    assert (x_rec - g["x_rec"]).abs().max() <= 1e-6
    B = g["mask"].shape[0]
    side = g["mask"].shape[-1]
    flat = g["mask"].reshape(B, -1).float()
    masks = MaskOutput(flat, torch.zeros_like(flat).long(), torch.zeros_like(flat).long(),
                       (flat < 0.5).sum(1), (side, side), flat.mean(1))
    loss = masked_l1(x_rec, g["x"], masks.pixel_mask(g["stride"]))
    assert abs(float(loss - g["loss"])) <= 1e-5 * abs(float(g["loss"]))


def _simmim(golden, **kw) -> SimMIM:
    a = golden["init_arch"]
    torch.manual_seed(0)
    enc = ViT(embed_dim=a["embed_dim"], depth=a["depth"], num_heads=a["num_heads"], patch_size=a["patch_size"],
              img_size=a["img_size"], pos_embed="learned", mask_token=True, layer_scale_init=a["init_values"])
    return SimMIM(enc, masking=BlockRandomMask(16, 0.6), **kw)


def test_initialisation_matches_official_statistics(golden):
    """Truncated normal at +-0.02 (std ~0.0108) and the 1/sqrt(2 l) rescale of attn.proj / mlp.fc2."""
    enc = _simmim(golden).encoder
    ours = dict(enc.named_parameters())
    for name, (std, amax) in golden["init_stats"].items():
        p = ours[name].detach()
        assert p.abs().max() <= amax + 1e-7 or abs(float(p.abs().max()) - amax) <= 0.05 * amax, name
        tol = 0.25 if p.numel() < 1000 else 0.05  # sampling error of the std
        assert abs(float(p.std()) - std) <= tol * std, f"{name}: std {float(p.std()):.5f} vs official {std:.5f}"


def test_weight_decay_groups_match_official(golden):
    model = _simmim(golden)
    groups = param_groups(model, lr=1.0, weight_decay=0.05)
    decayed = {n for grp in groups if grp["weight_decay"] > 0 for n in grp["names"]}
    official = set(golden["decay"])
    # SimMIM's ViT has q_bias / v_bias instead of a qkv bias and an fc_norm; compare the names both have
    for name in ("encoder.mask_token", "encoder.cls_token", "encoder.pos_embed", "encoder.patch_embed.proj.weight",
                 "encoder.blocks.0.attn.qkv.weight", "decoder.0.weight", "decoder.0.bias"):
        assert (name in decayed) == (name in official), name
    off = _simmim(golden, decay_mask_token=False)
    groups = param_groups(off, lr=1.0, weight_decay=0.05)
    assert "encoder.mask_token" not in {n for grp in groups if grp["weight_decay"] > 0 for n in grp["names"]}

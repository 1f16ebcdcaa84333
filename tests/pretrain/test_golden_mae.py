"""Golden values from the official MAE (`facebookresearch/mae`) and SBAM (`doihye/SBAM`) code: forward, norm-pix
loss, random masking, the warmup + cosine schedule, salience masking and the adaptive ratio. Numbers produced by
``tests/data/golden/{mae,sbam}/regenerate.py``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from vitlab.core import ViT
from vitlab.core.optim import param_groups, warmup_cosine
from vitlab.pretrain import MAE
from vitlab.pretrain.masking import RandomPatchMask, SalienceMask, salience_scores

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


def _load(name: str, repo: str):
    rec = torch.load(GOLDEN / name / f"{name}.pt", weights_only=True)
    assert rec["official_repo"] == repo and len(rec["official_commit"]) == 40
    return rec["data"]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@pytest.fixture(scope="module")
def mae():
    return _load("mae", "facebookresearch/mae")


@pytest.fixture(scope="module")
def sbam():
    return _load("sbam", "doihye/SBAM")


def _mae_module(g) -> MAE:
    a = g["arch"]
    enc = ViT(embed_dim=a["embed_dim"], depth=a["depth"], num_heads=a["num_heads"], patch_size=a["patch_size"],
              img_size=a["img_size"], pos_embed="sincos")
    model = MAE(enc, masking=RandomPatchMask(g["mask_ratio"]), decoder_embed_dim=a["decoder_embed_dim"],
                decoder_depth=a["decoder_depth"], decoder_num_heads=a["decoder_num_heads"],
                norm_pix_loss=a["norm_pix_loss"]).eval()
    res = model.load_official_mae(g["state_dict"])
    assert res.missing == [] and res.unexpected == []
    return model


def test_mae_forward_and_loss_match_official(mae):
    model = _mae_module(mae)
    torch.manual_seed(mae["mask_seed"])
    with torch.no_grad():
        losses, out, masks = model({"image": mae["images"]})
    assert torch.equal(masks.mask, mae["mask"]), "random_masking law differs"
    assert torch.equal(masks.ids_restore, mae["ids_restore"])
    with torch.no_grad():
        latent = model.encode(mae["images"], masks, {})["latent"]
    assert _rel(latent, mae["latent"]) <= 1e-5
    assert _rel(out["pred"], mae["pred"]) <= 1e-5
    assert _rel(losses["loss"], mae["loss"]) <= 1e-5


def test_weight_decay_groups_match_official(mae):
    """Every >= 2-D tensor is decayed, the class and mask tokens included (fixed sin-cos tables are frozen)."""
    model = _mae_module(mae)
    dec = {"decoder_embed.": "decoder.embed.", "decoder_blocks.": "decoder.blocks.", "decoder_norm.": "decoder.norm.",
           "decoder_pred.": "decoder.pred.", "mask_token": "decoder.mask_token"}

    def ours(name: str) -> str:
        for src, dst in dec.items():
            if name.startswith(src):
                return dst + name[len(src):]
        return "encoder." + name

    groups = param_groups(model, lr=1.0, weight_decay=0.05, decay_tokens=model.decay_tokens)
    decayed = {n for grp in groups if grp["weight_decay"] > 0 for n in grp["names"]}
    assert decayed == {ours(n) for n in mae["decayed"]}


def test_warmup_cosine_matches_official_schedule(mae):
    s = mae["lr"]
    spe = s["steps_per_epoch"]
    fn = warmup_cosine(s["epochs"] * spe, s["warmup_epochs"] * spe, s["min_lr"] / s["lr"])
    ours = torch.tensor([s["lr"] * fn(i) for i in range(len(s["values"]))], dtype=torch.float64)
    assert ours[0] == 0.0
    assert (ours - s["values"]).abs().max() <= 1e-12


@pytest.mark.parametrize("case", [0, 1], ids=["delta0.5", "delta0.2"])
def test_sbam_salience_mask_and_ratio_match_official(sbam, case):
    g = sbam["cases"][case]
    x = g["tokens"]
    sal = salience_scores(x)
    aff = g["affinity_colsum"]
    ref = (aff - aff.min(1, keepdim=True).values) / (aff.max(1, keepdim=True).values - aff.min(1, keepdim=True).values)
    assert (sal - ref).abs().max() <= 1e-5  # only the 1e-6 eps of the denominator differs
    gen = SalienceMask(mask_ratio=g["base"], variation=g["variation"], delta=g["delta"])
    torch.manual_seed(g["seed"])
    masks = gen(x.shape[0], (7, 7), "cpu", tokens=x)
    assert int(masks.len_keep[0]) == g["len_keep"], "adaptive masking ratio differs"
    assert torch.equal(masks.mask, g["mask"]), "salience-guided masking differs"


def test_sbam_degenerate_salience_official_switch(sbam):
    """One-hot self-affinity: the official code divides 0 by 0 (NaN salience), keeps a fixed set of patches and
    uses the ratio r_base - v. ``salience_eps=0`` reproduces that; the default eps masks at random instead."""
    g = sbam["cases"][2]
    x = g["tokens"]
    assert torch.isnan(salience_scores(x, eps=0.0)).all()
    official = SalienceMask(mask_ratio=g["base"], variation=g["variation"], delta=g["delta"], salience_eps=0.0)
    torch.manual_seed(g["seed"])
    m = official(x.shape[0], (7, 7), "cpu", tokens=x)
    assert int(m.len_keep[0]) == g["len_keep"] == int(49 * (1 - (g["base"] - g["variation"])))
    assert torch.equal(m.mask, g["mask"])
    default = SalienceMask(mask_ratio=g["base"], variation=g["variation"], delta=g["delta"])
    torch.manual_seed(g["seed"])
    d = default(x.shape[0], (7, 7), "cpu", tokens=x)
    assert torch.isfinite(salience_scores(x)).all()
    assert int(d.len_keep[0]) == g["len_keep"]
    assert not torch.equal(d.mask[0], d.mask[1]), "default: random masks differ per image"
    assert math.isclose(float(d.mask.mean()), 1 - g["len_keep"] / 49, rel_tol=1e-6)

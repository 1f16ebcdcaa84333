"""Golden values from the official CroCo code (`naver/croco`): RoPE2D, the CroCo-Stereo binocular forward and
the layout of official checkpoints. The numbers were produced by ``tests/data/golden/croco/regenerate.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vitlab.core.backbones.rope import RoPE2D
from vitlab.stereo import BinocularViT

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "golden" / "croco" / "croco.pt"


@pytest.fixture(scope="module")
def golden():
    rec = torch.load(FIXTURE, weights_only=True)
    assert rec["official_repo"] == "naver/croco" and len(rec["official_commit"]) == 40
    return rec["data"]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def _binocular(g) -> BinocularViT:
    a = g["arch"]
    return BinocularViT(
        enc_embed_dim=a["enc_embed_dim"], enc_depth=a["enc_depth"], enc_num_heads=a["enc_num_heads"],
        dec_embed_dim=a["dec_embed_dim"], dec_depth=a["dec_depth"], dec_num_heads=a["dec_num_heads"],
        patch_size=a["patch_size"], img_size=a["img_size"], rope_base=float(a["pos_embed"][4:]),
        hooks=g["hooks"], layer_dims=g["layer_dims"], feature_dim=g["feature_dim"], last_dim=g["last_dim"],
    ).eval()


def test_rope2d_matches_official(golden):
    g = golden["rope"]
    out = RoPE2D(base=g["base"])(g["tokens"], g["pos"])
    assert _rel(out, g["out"]) <= 1e-6


def test_binocular_forward_matches_official(golden):
    g = golden["binocular"]
    net = _binocular(g)
    report = net.load_croco(g["state_dict"], strict=True)  # an official CroCo-Stereo state dict
    assert report.missing == [] and report.unexpected == []
    with torch.no_grad():
        out = net(g["left"], g["right"])
    assert out.shape == g["out"].shape
    assert _rel(out[:, 0], g["out"][:, 0]) <= 1e-5, "disparity differs from CroCo-Stereo"
    assert _rel(out[:, 1], g["out"][:, 1]) <= 1e-5, "confidence differs from CroCo-Stereo"


def test_official_pretraining_checkpoint_leaves_only_the_new_head_missing(golden):
    """A CroCo pre-training checkpoint (no DPT head, with the pretext ``mask_token`` / ``prediction_head``): every
    key has a place and only the new DPT head is missing."""
    g = golden["binocular"]
    net = _binocular(g)
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=gen) for k, s in golden["pretrain_keys"].items()}
    report = net.load_croco(state)
    assert report.unexpected == []
    assert report.missing and all(k.startswith("head.") for k in report.missing)
    assert torch.equal(net.mask_token, state["mask_token"])
    assert torch.equal(net.prediction_head.weight, state["prediction_head.weight"])


def test_strict_still_catches_a_missing_key(golden):
    g = golden["binocular"]
    state = dict(g["state_dict"])
    state.pop("dec_blocks.1.mlp.fc2.weight")
    state["unrelated.weight"] = torch.zeros(1)
    report = _binocular(g).load_croco(state, strict=False)
    assert "dec_blocks.1.mlp.fc2.weight" in report.missing and "unrelated.weight" in report.unexpected
    with pytest.raises(RuntimeError, match="missing"):
        _binocular(g).load_croco(state, strict=True)

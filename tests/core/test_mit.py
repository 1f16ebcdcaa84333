"""MiT (SegFormer) encoder: stage shapes, sizes, drop path, SegFormer key map."""

from __future__ import annotations

import re

import pytest
import torch

from vitlab.core.backbones import MIT_SIZES, MiT, convert_segformer_state_dict, load_segformer_checkpoint


def _to_segformer_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse key map: write a vitlab MiT state dict the way SegFormer's ``mit_b*.pth`` names it."""
    out = {}
    for k, v in state.items():
        k = k.replace("mlp.dwconv.", "mlp.dwconv.dwconv.")
        k = re.sub(r"^stages\.(\d)\.patch_embed\.", lambda m: f"patch_embed{int(m[1]) + 1}.", k)
        k = re.sub(r"^stages\.(\d)\.blocks\.(\d+)\.", lambda m: f"block{int(m[1]) + 1}.{m[2]}.", k)
        k = re.sub(r"^stages\.(\d)\.norm\.", lambda m: f"norm{int(m[1]) + 1}.", k)
        out[k] = v
    return out


def test_stage_shapes_and_strides():
    m = MiT("b0").eval()
    feats = m(torch.randn(2, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(2, 32, 16, 24), (2, 64, 8, 12), (2, 160, 4, 6), (2, 256, 2, 3)]
    assert m.out_channels == [32, 64, 160, 256]


@pytest.mark.parametrize("size,millions", [("b0", 3.4), ("b1", 13.1)])
def test_parameter_counts_match_segformer(size, millions):
    # SegFormer paper, Table 1 encoder sizes: MiT-B0 3.4 M, MiT-B1 13.1 M parameters
    assert sum(p.numel() for p in MiT(size).parameters()) / 1e6 == pytest.approx(millions, abs=0.1)


def test_b5_layout():
    dims, depths = MIT_SIZES["b5"]
    assert dims == (64, 128, 320, 512) and depths == (3, 6, 40, 3)
    m = MiT("b5", drop_path_rate=0.1, embed_dims=(8, 16, 40, 64))  # B5 depths, narrow widths (fast)
    blocks = [b for s in m.stages for b in s.blocks]
    assert len(blocks) == 52
    assert blocks[0].drop_path.__class__.__name__ == "Identity"  # rate 0 at the first block
    assert blocks[-1].drop_path.drop_prob == pytest.approx(0.1)
    assert blocks[0].norm1.eps == 1e-6 and m.stages[3].norm.eps == 1e-6
    assert [s.blocks[0].attn.sr_ratio for s in m.stages] == [8, 4, 2, 1]
    assert [s.blocks[0].attn.num_heads for s in m.stages] == [1, 2, 5, 8]


def test_segformer_checkpoint_roundtrip(tmp_path):
    ref = MiT("b0")
    official = _to_segformer_layout(ref.state_dict())
    assert "block1.0.attn.sr.weight" in official and "block4.1.mlp.dwconv.dwconv.weight" in official
    assert "patch_embed1.proj.weight" in official and "norm4.weight" in official
    official["head.weight"] = torch.randn(1000, 256)  # the ImageNet classifier is dropped
    official["head.bias"] = torch.randn(1000)
    path = tmp_path / "mit_b0.pth"
    torch.save({"state_dict": official}, path)
    m = MiT("b0", pretrained=str(path)).eval()
    ref.eval()
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(m(x), ref(x), strict=True):
        torch.testing.assert_close(a, b)


def test_wrong_size_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "mit_b1.pth"
    torch.save(_to_segformer_layout(MiT("b1").state_dict()), path)
    with pytest.raises(ValueError, match="mit_b1.pth.*MiT-b0"):
        MiT("b0", pretrained=str(path))


def test_convert_drops_head_and_prefix():
    state, dropped = convert_segformer_state_dict({"backbone.block2.3.attn.q.weight": torch.zeros(1),
                                                  "head.weight": torch.zeros(1)})
    assert list(state) == ["stages.1.blocks.3.attn.q.weight"] and dropped == ["head.weight"]


def test_missing_keys_rejected():
    state = _to_segformer_layout(MiT("b0").state_dict())
    del state["norm4.weight"]
    with pytest.raises(ValueError, match="missing"):
        load_segformer_checkpoint(MiT("b0"), state)

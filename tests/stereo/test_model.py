"""BinocularViT: presets and hooks, shapes, the CroCo decoder wiring, RoPE2D, official key map."""

from __future__ import annotations

import pytest
import torch

from vitlab.core.backbones import RoPE2D
from vitlab.stereo import BinocularViT, croco_hooks, decoder_hooks, patchify, unpatchify


def test_preset_hooks_match_croco_stereo():
    assert croco_hooks(24, 12) == [23, 27, 31, 35]  # L-B
    assert croco_hooks(12, 12) == [11, 15, 19, 23]  # B-B
    assert croco_hooks(12, 8) == [10, 13, 16, 19]  # B-S
    assert decoder_hooks(12, 12) == [13, 16, 19, 23] and decoder_hooks(24, 12) == [25, 28, 31, 35]


@pytest.mark.parametrize("preset,dims", [("B-S", (768, 12, 12, 512, 8, 16)), ("B-B", (768, 12, 12, 768, 12, 12)),
                                         ("L-B", (1024, 24, 16, 768, 12, 12))])
def test_presets(preset, dims):
    assert BinocularViT.resolve_sizes(preset) == dims
    assert BinocularViT.resolve_sizes(preset, 64, 2)[:3] == (64, 2, dims[2])
    with pytest.raises(ValueError, match="preset"):
        BinocularViT.resolve_sizes("H-S")


def test_head_widths_follow_the_hooks(tiny_net):
    m = tiny_net(enc_embed_dim=48, enc_num_heads=3)
    assert m.hooks == croco_hooks(3, 2) == [1, 2, 3, 4]
    assert m.head.in_dims == [48, 48, 32, 32]


@pytest.mark.parametrize("hw", [(64, 64), (64, 96), (96, 160)])
def test_output_is_full_resolution_for_multiples_of_32(tiny_net, hw):
    m = tiny_net()
    x = torch.randn(2, 3, *hw)
    out = m(x, torch.randn_like(x))
    assert out.shape == (2, 2, *hw)


def test_one_shared_decoder_embed_and_memory_unchanged(tiny_net):
    m = tiny_net()
    calls = []
    m.decoder_embed.register_forward_hook(lambda mod, i, o: calls.append(i[0].shape))
    seen = []
    for blk in m.dec_blocks:
        blk.register_forward_hook(lambda mod, i, o: seen.append((i[1], o[1])))
    x = torch.randn(1, 3, 64, 64)
    m(x, x.flip(-1))
    assert len(calls) == 2  # once for the left queries, once for the right memory: one module
    assert all(i is o for i, o in seen)  # the memory passes through every block untouched
    assert seen[0][0] is seen[1][0]  # and it is the same tensor for every block


def test_head_reads_normed_last_encoder_and_decoder_entries(tiny_net):
    m = tiny_net(hooks=[2, 3, 4, 4])  # last encoder (index E-1 = 2), decoder 0, decoder 1 (last)
    feats = {}
    m.head.register_forward_pre_hook(lambda mod, args: feats.update(f=args[0]))
    x = torch.randn(1, 3, 64, 64)
    m(x, x)
    f = feats["f"]
    for t in (f[0], f[3]):  # enc-normed / dec-normed with unit LayerNorm init: zero mean per token
        assert torch.allclose(t.mean(-1), torch.zeros(()), atol=1e-5)
    assert not torch.allclose(f[1].mean(-1), torch.zeros(()), atol=1e-3)  # a raw decoder block output


def test_rope2d_scores_depend_only_on_offsets():
    rope = RoPE2D(100.0)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(pq, pk):
        return (rope(q, torch.tensor([pq])) * rope(k, torch.tensor([pk]))).sum()

    assert torch.allclose(score((3, 5), (1, 2)), score((10, 7), (8, 4)), atol=1e-5)
    assert not torch.allclose(score((3, 5), (1, 2)), score((3, 5), (2, 2)), atol=1e-3)


def test_patchify_roundtrip():
    x = torch.randn(2, 3, 32, 48)
    t = patchify(x, 16)
    assert t.shape == (2, 6, 768)
    assert torch.equal(t[0, 1].view(16, 16, 3)[:, :, 0], x[0, 0, :16, 16:32])
    assert torch.equal(unpatchify(t, 16, (2, 3)), x)


def _official_state(m: BinocularViT) -> dict[str, torch.Tensor]:
    """A state dict with naver/croco names (CroCoNet + CroCo-Stereo head), built from random tensors."""
    g = torch.Generator().manual_seed(0)
    sd = {}
    for k, v in m.state_dict().items():
        r = torch.randn(v.shape, generator=g)
        if k.startswith("encoder."):
            k2 = k[len("encoder."):]
            k2 = k2.replace("blocks.", "enc_blocks.", 1) if k2.startswith("blocks.") else k2
            k2 = "enc_norm." + k2[len("norm."):] if k2.startswith("norm.") else k2
            sd[k2] = r
        elif ".cross_attn.qkv." in k:
            d = v.shape[0] // 3
            for j, n in enumerate("qkv"):
                sd[k.replace("cross_attn.qkv.", f"cross_attn.proj{n}.")] = r[j * d:(j + 1) * d]
        elif k.startswith("head."):
            rest = k[len("head."):]
            for a, b in (("layer_rn.", "scratch.layer{}_rn."), ("refinenet.", "scratch.refinenet{}.")):
                if rest.startswith(a):
                    i, tail = rest[len(a):].split(".", 1)
                    rest = b.format(int(i) + 1) + tail.replace("res1.", "resConfUnit1.").replace("res2.", "resConfUnit2.")
            sd["head.dpt." + rest] = r
        else:
            sd[k] = r
    sd["head.dpt.scratch.refinenet4.resConfUnit1.conv1.weight"] = torch.zeros(1)  # CroCo's unused unit
    sd["enc_pos_embed"] = torch.zeros(1)
    return sd


def test_official_croco_key_map_loads_every_weight(tiny_net):
    m = tiny_net()
    sd = _official_state(m)
    assert "enc_blocks.0.attn.qkv.weight" in sd and "dec_blocks.1.cross_attn.projk.weight" in sd
    assert "head.dpt.scratch.refinenet2.resConfUnit1.conv2.bias" in sd
    rep = m.load_croco({"model": sd, "croco_kwargs": {}})
    assert rep.missing == [] and rep.unexpected == []
    own = m.state_dict()
    assert torch.equal(own["encoder.blocks.2.mlp.fc1.weight"], sd["enc_blocks.2.mlp.fc1.weight"])
    assert torch.equal(own["encoder.norm.weight"], sd["enc_norm.weight"])
    q, k, v = (sd[f"dec_blocks.0.cross_attn.proj{n}.weight"] for n in "qkv")
    assert torch.equal(own["dec_blocks.0.cross_attn.qkv.weight"], torch.cat([q, k, v]))
    assert torch.equal(own["head.refinenet.1.res1.conv2.bias"], sd["head.dpt.scratch.refinenet2.resConfUnit1.conv2.bias"])
    assert torch.equal(own["mask_token"], sd["mask_token"])


def test_croco_pretraining_checkpoint_leaves_only_the_head_missing(tiny_net, tmp_path):
    m = tiny_net()
    sd = {k: v for k, v in _official_state(m).items() if not k.startswith("head.")}
    path = tmp_path / "CroCo_tiny.pth"
    torch.save({"model": sd}, path)
    rep = BinocularViT(**{**dict(m.__dict__.get("_kw", {}))}, enc_embed_dim=32, enc_depth=3, enc_num_heads=2,
                       dec_embed_dim=32, dec_depth=2, dec_num_heads=2, layer_dims=(16, 16, 32, 32),
                       feature_dim=16, last_dim=8).load_croco(str(path))
    assert rep.missing and all(k.startswith("head.") for k in rep.missing)
    with pytest.raises(ValueError, match="shape mismatch"):
        tiny_net(dec_embed_dim=64, dec_num_heads=4).load_croco(str(path))
    with pytest.raises(ValueError, match="not a CroCo checkpoint"):
        m.load_croco({"blocks.0.attn.qkv.weight": torch.zeros(3)})


def test_masked_encode_decode_shapes(tiny_net):
    m = tiny_net(hook_mode="decoder")
    assert min(m.hooks) >= m.enc_depth
    x = torch.randn(2, 3, 64, 64)
    keep = torch.tensor([[0, 3, 5, 9], [1, 2, 14, 15]])
    enc, pos, hw = m.encode(x, keep)
    assert enc[-1].shape == (2, 4, 32) and pos.shape == (2, 4, 2) and hw == (4, 4)
    assert torch.equal(pos[1, 2], torch.tensor([3, 2]))  # token 14 of a 4x4 grid is (y=3, x=2)
    dec = m.decode(enc[-1], m.encode(x)[0][-1], hw, keep)
    assert dec[-1].shape == (2, 16, 32)
    assert m.dense_head([None] * m.enc_depth + dec, (64, 64)).shape == (2, 2, 64, 64)
    assert m.reconstruct(dec[-1]).shape == (2, 16, 16 * 16 * 3)


def test_prediction_depends_on_the_right_view(tiny_net):
    m = tiny_net().eval()
    g = torch.Generator().manual_seed(0)
    left, right = torch.randn(1, 3, 64, 64, generator=g), torch.randn(1, 3, 64, 64, generator=g)
    with torch.no_grad():
        assert not torch.allclose(m(left, right), m(left, left), atol=1e-4)
    right.requires_grad_(True)
    m(left, right)[:, 0].sum().backward()
    assert right.grad.abs().sum() > 0


def _shifted_pair(d: int, h: int = 64, w: int = 128, seed: int = 0):
    """Right view = left view moved by a global disparity ``d`` px (left(x) = right(x - d)), random texture."""
    g = torch.Generator().manual_seed(seed)
    wide = torch.nn.functional.interpolate(torch.rand(1, 3, h // 2, (w + d) // 2, generator=g), size=(h, w + d),
                                           mode="bilinear", align_corners=False)
    return wide[..., :w], wide[..., d:]


@pytest.mark.parametrize("d", [0, 8, 20])
def test_correlation_matches_a_global_shift_before_training(d):
    """Siamese features match identical content at initialisation: the arg-max candidate is the true disparity
    (d / 4) on nearly every pixel whose match is inside the frame, and with right = left it is 0."""
    from vitlab.stereo.correlation import EpipolarCorrelation

    torch.manual_seed(0)
    corr = EpipolarCorrelation(32, dim=16, token_dim=32, patch_size=16)
    assert corr.num_candidates == 8
    left, right = _shifted_pair(d)
    with torch.no_grad():
        best = corr.cost_volume(left, right).argmax(1)[0]  # (16, 32)
        assert (best[:, 8:] == d // 4).float().mean() > 0.9
        assert (corr.cost_volume(left, left).argmax(1) == 0).float().mean() > 0.95
        # a candidate whose right pixel leaves the frame gets no probability
        assert corr(left, right)[0].shape == (1, 1, 64, 128)
        prob = corr.cost_volume(left, right).softmax(1)
        assert prob[0, 5, :, :5].max() < 1e-6


def test_correlation_feeds_the_disparity_and_starts_neutral_in_the_decoder(tiny_net):
    """The disparity channel = DPT output + the soft-argmin disparity; the token offset starts at exactly 0, so
    the decoder sees what a CroCo-Stereo network sees; the right view moves the disparity through it."""
    torch.manual_seed(0)
    m = tiny_net(corr_disparities=16).eval()
    base = tiny_net()
    assert not any(k.startswith("corr.") for k in base.state_dict())
    assert set(m.state_dict()) - set(base.state_dict()) == {k for k in m.state_dict() if k.startswith("corr.")}
    plain = tiny_net(corr_disparities=16).eval()
    plain.load_state_dict(m.state_dict())
    plain.corr = None  # the same weights without the correlation
    left, right = _shifted_pair(8, 64, 64)
    with torch.no_grad():
        coarse, tokens = m.corr(left, right)
        assert torch.equal(tokens, torch.zeros_like(tokens)) and tokens.shape == (1, 16, 32)
        assert coarse.shape == (1, 1, 64, 64) and 0 <= coarse.min() and coarse.max() <= 12
        out, ref = m(left, right), plain(left, right)
        assert torch.allclose(out[:, :1], ref[:, :1] + coarse, atol=1e-5)
        assert torch.allclose(out[:, 1:], ref[:, 1:], atol=1e-6)
        assert (m(left, left)[:, 0] - out[:, 0]).abs().mean() > 0.1
    with pytest.raises(ValueError, match="patch size divisible"):
        tiny_net(corr_disparities=16, patch_size=10)


def test_croco_pretraining_checkpoint_into_a_correlation_model(tiny_net, tmp_path):
    m = tiny_net()
    sd = {k: v for k, v in _official_state(m).items() if not k.startswith("head.")}
    rep = tiny_net(corr_disparities=16).load_croco({"model": sd})
    assert rep.missing and all(k.startswith(("head.", "corr.")) for k in rep.missing)
    assert any(k.startswith("corr.") for k in rep.missing) and rep.unexpected == []


def test_forward_masked_unmasked_is_the_forward(tiny_net):
    """Nothing masked: the masked forward's disparity is the supervised forward's (one shared code path)."""
    torch.manual_seed(0)
    m = tiny_net(hook_mode="decoder", corr_disparities=16).eval()
    left, right = _shifted_pair(8, 64, 64)
    with torch.no_grad():
        s = m.forward_masked(left, right)
        assert torch.equal(s.disparity, m(left, right))
    assert s.recon_right is None and s.recon_left.shape == (1, 16, 16 * 16 * 3)
    assert s.feat_left.shape == s.feat_right.shape == (1, 16, 32) and len(s.decoder) == m.dec_depth


def test_forward_masked_runs_the_correlation_on_the_full_views(tiny_net):
    """Masked views: the correlation (on the unmasked views) still sets the disparity and feeds only the visible
    left tokens; masked tokens read zeros from the encoder features; both views masked gives pass B."""
    from vitlab.core.backbones import random_masking

    torch.manual_seed(0)
    m = tiny_net(hook_mode="decoder", corr_disparities=16)
    with torch.no_grad():
        m.corr.to_tokens.weight.normal_()  # non-zero match tokens
    left, right = _shifted_pair(8, 64, 64)
    ml, mr = (random_masking(1, (4, 4), 0.5, count="mask") for _ in range(2))
    s = m.forward_masked(left, right, keep_left=ml.ids_keep, keep_right=mr.ids_keep)
    assert s.disparity.shape == (1, 2, 64, 64) and s.recon_right.shape == s.recon_left.shape == (1, 16, 768)
    hidden_l, hidden_r = ml.mask[0] > 0.5, mr.mask[0] > 0.5
    assert (s.feat_left[0, hidden_l] == 0).all() and (s.feat_left[0, ~hidden_l] != 0).any()
    assert (s.feat_right[0, hidden_r] == 0).all()
    # the disparity moves with the right view through the correlation although half of each view is hidden
    right.requires_grad_(True)
    s = m.forward_masked(left, right, keep_left=ml.ids_keep)
    s.disparity[:, 0].sum().backward()
    assert right.grad.abs().sum() > 0
    assert m.corr.stem[0].weight.grad.abs().sum() > 0 and m.corr.to_tokens.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="hook_mode='decoder'"):
        tiny_net().forward_masked(left, right, keep_left=ml.ids_keep)


def test_supervised_module_freezes_the_pretext_parts(tiny_net):
    """StereoMatching trains neither mask_token nor prediction_head (DDP would wait for their gradients); the
    masked methods train them; the state dict keeps them either way (checkpoints load both ways)."""
    from vitlab.stereo import MaDisStereo, StereoMatching, UniTTStereo

    sup = StereoMatching(tiny_net())
    assert not sup.net.mask_token.requires_grad
    assert not any(p.requires_grad for p in sup.net.prediction_head.parameters())
    assert "net.mask_token" in sup.state_dict() and "net.prediction_head.weight" in sup.state_dict()
    for cls in (UniTTStereo, MaDisStereo):
        mod = cls(tiny_net(hook_mode="decoder", corr_disparities=16))
        assert mod.net.mask_token.requires_grad and mod.net.prediction_head.weight.requires_grad


@pytest.mark.parametrize("d", [0, 6, 14])
def test_stride_2_correlation_matches_at_twice_the_resolution(d):
    """``stride=2``: the same layers (same parameter names), candidates every 2 px; arg-max = d / 2 at init."""
    from vitlab.stereo.correlation import EpipolarCorrelation

    torch.manual_seed(0)
    corr = EpipolarCorrelation(32, dim=16, token_dim=32, patch_size=16, stride=2)
    assert corr.num_candidates == 16
    assert set(corr.state_dict()) == set(EpipolarCorrelation(32, dim=16, token_dim=32).state_dict())
    left, right = _shifted_pair(d)
    with torch.no_grad():
        best = corr.cost_volume(left, right).argmax(1)[0]  # (32, 64)
        assert best.shape == (32, 64) and (best[:, 16:] == d // 2).float().mean() > 0.9
        coarse, tokens = corr(left, right)
    assert coarse.shape == (1, 1, 64, 128) and tokens.shape == (1, 4 * 8, 32)
    with pytest.raises(ValueError, match="corr_stride"):
        EpipolarCorrelation(32, stride=8)


def test_forward_parts_exposes_the_coarse_disparity_under_the_output(tiny_net):
    """``forward_parts``: the same disparity as ``forward``; ``coarse`` is the correlation's soft argmin."""
    torch.manual_seed(0)
    m = tiny_net(corr_disparities=16).eval()
    left, right = _shifted_pair(8, 64, 64)
    with torch.no_grad():
        parts = m.forward_parts(left, right)
        assert torch.allclose(parts.disparity, m(left, right))
        assert torch.allclose(parts.coarse, m.corr(left, right)[0]) and parts.recon_left is None
        assert tiny_net().eval().forward_parts(left, right).coarse is None


def test_madis_pseudo_weight_ramps_up(tiny_net):
    """``pseudo_rampup_steps``: Mean Teacher's exp(-5 (1 - t)^2) ramp to ``pseudo_weight``; 0 = constant."""
    import math

    from vitlab.stereo import MaDisStereo

    net = tiny_net(hook_mode="decoder")
    assert MaDisStereo(net, pseudo_weight=0.5).pseudo_weight_at(0) == 0.5
    mod = MaDisStereo(net, pseudo_weight=0.5, pseudo_rampup_steps=100)
    assert mod.pseudo_weight_at(0) == pytest.approx(0.5 * math.exp(-5))
    assert mod.pseudo_weight_at(50) == pytest.approx(0.5 * math.exp(-1.25))
    assert mod.pseudo_weight_at(100) == mod.pseudo_weight_at(1000) == 0.5
    with pytest.raises(ValueError, match="pseudo_rampup_steps"):
        MaDisStereo(net, pseudo_rampup_steps=-1)

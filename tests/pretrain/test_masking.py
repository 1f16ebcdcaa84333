"""Masking invariants: MAE random masking, SimMIM block masks, SBAM salience + AMR, SG-MIM complement."""

from __future__ import annotations

import math

import pytest
import torch

from vitlab.pretrain import BlockRandomMask, ComplementaryMask, RandomPatchMask, SalienceMask, salience_scores


def _check_consistent(m, L):
    B = m.mask.shape[0]
    ar = torch.arange(L).expand(B, L)
    # ids_restore inverts ids_shuffle
    assert torch.equal(torch.gather(m.ids_shuffle, 1, m.ids_restore), ar)
    assert torch.equal(torch.gather(m.ids_restore, 1, m.ids_shuffle), ar)
    # mask sums equal L - len_keep, and the kept ids are exactly the visible patches
    assert torch.equal(m.mask.sum(1).long(), L - m.len_keep)
    for b in range(B):
        kept = m.ids_shuffle[b, : m.len_keep[b]]
        assert (m.mask[b, kept] == 0).all()
        assert m.mask[b].sum() == L - kept.numel()


@pytest.mark.parametrize("ratio", [0.75, 0.5, 0.0])
def test_random_patch_mask(ratio):
    torch.manual_seed(0)
    m = RandomPatchMask(ratio)(6, (14, 14), "cpu", 16)
    L = 196
    assert (m.len_keep == int(L * (1 - ratio))).all()  # 49 kept at 0.75 (MAE)
    _check_consistent(m, L)
    assert m.uniform and m.ids_keep.shape == (6, int(L * (1 - ratio)))
    # per-sample: different images get different masks
    if ratio > 0:
        assert not torch.equal(m.mask[0], m.mask[1])


def test_block_mask_covers_ratio_and_is_blocky():
    torch.manual_seed(0)
    gen = BlockRandomMask(mask_patch_size=32, mask_ratio=0.6)
    m = gen(8, (14, 14), "cpu", patch_size=16)  # 224 px ViT/16: 7x7 cells of 2x2 patches
    cells = 49
    count = math.ceil(cells * 0.6)
    assert (m.mask.sum(1) == count * 4).all()
    assert torch.allclose(m.ratio, torch.full((8,), count / cells))
    grid = m.mask.reshape(8, 7, 2, 7, 2)
    # every 2x2 cell is all-masked or all-visible
    assert (grid.amin((2, 4)) == grid.amax((2, 4))).all()
    _check_consistent(m, 196)
    px = m.pixel_mask(16)
    assert px.shape == (8, 1, 224, 224) and px.sum() == m.mask.sum() * 256


def test_block_mask_bad_sizes():
    with pytest.raises(ValueError, match="multiple of the model patch size"):
        BlockRandomMask(24)(2, (14, 14), "cpu", patch_size=16)
    with pytest.raises(ValueError, match="not divisible"):
        BlockRandomMask(32)(2, (7, 7), "cpu", patch_size=16)


def test_salience_hand_computed():
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    a = torch.softmax(x[0] @ x[0].T, dim=-1)
    s = a.sum(0)
    ref = (s - s.min()) / (s.max() - s.min() + 1e-6)
    assert torch.allclose(salience_scores(x)[0], ref)


def test_sbam_zero_noise_masks_top_salience():
    torch.manual_seed(0)
    tokens = torch.randn(4, 64, 16)
    gen = SalienceMask(mask_ratio=0.5, adaptive=False, noise_amp=0.0)
    m = gen(4, (8, 8), "cpu", 8, tokens=tokens)
    sal = salience_scores(tokens)
    n_mask = 64 - int(64 * 0.5)
    top = sal.topk(n_mask, dim=1).indices
    for b in range(4):
        assert set(top[b].tolist()) == set(m.mask[b].nonzero().flatten().tolist())
    _check_consistent(m, 64)


@pytest.mark.parametrize("per_batch", [True, False])
def test_amr_ratio_range(per_batch):
    torch.manual_seed(0)
    r, v, L = 0.75, 0.1, 64
    gen = SalienceMask(mask_ratio=r, variation=v, delta=0.5, per_batch_ratio=per_batch)
    ratios = []
    for scale in (0.05, 1.0, 5.0):  # different salience spreads -> different salient counts
        tokens = torch.randn(6, L, 8) * scale
        m = gen(6, (8, 8), "cpu", 8, tokens=tokens)
        assert ((m.ratio >= r - v - 1e-6) & (m.ratio <= r + v + 1e-6)).all()
        y = (salience_scores(tokens) > 0.5).float().sum(1) / L
        expect = r - v + 2 * v * (y.mean().expand(6) if per_batch else y)
        assert torch.allclose(m.ratio, expect)
        assert torch.equal(m.len_keep, (L * (1 - m.ratio)).long())
        _check_consistent(m, L)
        ratios.append(m.ratio)
        if per_batch:  # one ratio per batch; ids_keep keeps its static, host-known width (no sync)
            assert (m.len_keep == m.len_keep[0]).all()
        assert m.ids_keep.shape == (6, int(L * (1 - (r - v)))) and (m.len_keep <= m.keep_max).all()
    assert not all(torch.allclose(ratios[0], q) for q in ratios[1:])


def test_salience_start_epoch_uses_random_masking():
    gen = SalienceMask(mask_ratio=0.75, start_epoch=3)
    m = gen(2, (8, 8), "cpu", 8, tokens=None, epoch=0)  # no tokens needed before start_epoch
    assert (m.len_keep == 16).all()
    with pytest.raises(ValueError, match="needs the patch tokens"):
        gen(2, (8, 8), "cpu", 8, tokens=None, epoch=3)


def test_complementary_mask():
    m = torch.tensor([[1.0, 0.0, 1.0]])
    assert torch.equal(ComplementaryMask.keep(m), m)
    assert torch.equal(ComplementaryMask.visible(m) + m, torch.ones_like(m))

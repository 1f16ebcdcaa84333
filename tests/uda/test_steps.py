"""Each step of a DACS/DAFormer/MIC iteration against hand-computed values on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vitlab.uda import transforms as T
from vitlab.uda.data import rcs_probabilities
from vitlab.uda.model import MeanTeacher, daformer_param_groups, poly_warmup


def test_ema_first_step_copies_then_alpha_schedule():
    student = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = MeanTeacher(student, alpha=0.999)
    with torch.no_grad():
        ema.teacher[0].weight.fill_(5.0)  # anything: step 0 must overwrite it
        ema.teacher[1].running_mean.fill_(7.0)
    assert ema.step(student, 0) == 0.0
    torch.testing.assert_close(ema.teacher[0].weight, student[0].weight, rtol=0, atol=0)
    assert torch.all(ema.teacher[1].running_mean == 7.0)  # buffers are not averaged (parameters only)
    w_t = ema.teacher[0].weight.clone()
    with torch.no_grad():
        student[0].weight.add_(1.0)
    assert ema.step(student, 1) == pytest.approx(0.5)  # alpha_1 = min(1 - 1/2, 0.999)
    torch.testing.assert_close(ema.teacher[0].weight, 0.5 * w_t + 0.5 * student[0].weight)
    assert ema.step(student, 1) is None  # once per optimizer step
    assert ema.current_decay(3) == pytest.approx(0.75)
    assert ema.current_decay(5000) == pytest.approx(0.999)
    assert all(not p.requires_grad for p in ema.teacher.parameters())


def test_teacher_mode_bn_train_dropout_off():
    student = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Dropout(0.5))
    ema = MeanTeacher(student, bn_train=True).train()
    assert ema.teacher[1].training and not ema.teacher[2].training
    ema.eval()
    assert not ema.teacher[1].training
    ema2 = MeanTeacher(student, bn_train=False).train()
    assert not ema2.teacher[1].training


def test_quality_weight_is_one_scalar_for_the_batch():
    logits = torch.zeros(2, 2, 2, 2)
    logits[:, 1] = 3.0  # p = sigmoid(3) = 0.9526 < 0.968
    logits[0, 1, 0, 0] = 5.0  # p = sigmoid(5) = 0.9933 >= 0.968
    logits[1, 0, 1, 1] = 6.0
    logits[1, 1, 1, 1] = 0.0  # class 0 with p = 0.9975
    logits[1, 1, 0, 1] = 4.0  # 0.9820
    label, prob, weight = T.pseudo_label(logits, 0.968)
    assert label[1, 1, 1] == 0 and label[0, 0, 0] == 1
    torch.testing.assert_close(prob[0, 0, 0], torch.sigmoid(torch.tensor(5.0)))
    torch.testing.assert_close(weight, torch.full((2, 2, 2), 3 / 8))


def test_crop_pseudo_weight_rows():
    w = T.crop_pseudo_weight(torch.ones(1, 10, 3), top=2, bottom=3)
    assert w[0, :, 0].tolist() == [0, 0, 1, 1, 1, 1, 1, 0, 0, 0]


def _labels_all_classes() -> torch.Tensor:
    # each image holds classes 0, 1, 2 and 255 with 1, 2, 4, 8 pixels (the mask size identifies the classes)
    row = torch.tensor([0, 1, 1, 2, 2, 2, 2] + [255] * 8)
    return torch.stack([row, row.flip(0)]).view(2, 3, 5)


def test_classmix_picks_half_of_the_batch_classes_including_255():
    labels = _labels_all_classes()
    gen = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(60):
        m = T.class_mix_masks(labels, num_classes=3, faithful=True, generator=gen)
        assert m.shape == (2, 1, 3, 5) and set(m.unique().tolist()) <= {0.0, 1.0}
        for i in range(2):
            size = int(m[i].sum())
            assert bin(size).count("1") == 2  # n = 4 classes (with 255) -> ceil(4/2) = 2 chosen
            seen.add(size)
            chosen = {int(c) for c in labels[i][m[i, 0] > 0].unique()}
            torch.testing.assert_close(m[i, 0], torch.isin(labels[i], torch.tensor(list(chosen))).float())
    assert 8 + 1 in seen  # 255 can be chosen in faithful mode


def test_classmix_per_image_mode_excludes_255():
    labels = _labels_all_classes()
    gen = torch.Generator().manual_seed(1)
    for _ in range(40):
        m = T.class_mix_masks(labels, num_classes=3, faithful=False, generator=gen)
        for i in range(2):
            size = int(m[i].sum())
            assert size < 8 and bin(size).count("1") == 2  # ceil(3/2) = 2 of {0, 1, 2}


def test_classmix_faithful_can_leave_an_image_empty():
    # image 0 holds {0, 1}, image 1 holds {2, 255}: the batch-wide draw may pick only classes of image 1
    labels = torch.tensor([[[0, 1]], [[2, 255]]])
    gen = torch.Generator().manual_seed(0)
    faithful = [T.class_mix_masks(labels, 3, True, gen)[0].sum().item() for _ in range(300)]
    per_image = [T.class_mix_masks(labels, 3, False, gen)[0].sum().item() for _ in range(300)]
    assert 0.0 in faithful  # P = 1/6
    assert min(per_image) == 1.0  # one of its own two classes, always


def test_mix_images_labels_weights():
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    xs, xt = torch.full((1, 3, 2, 2), 2.0), torch.full((1, 3, 2, 2), -1.0)
    ys, pl = torch.tensor([[[4, 5], [6, 255]]]), torch.tensor([[[1, 2], [3, 0]]])
    pw = torch.full((1, 2, 2), 0.25)
    assert T.mix(mask, xs, xt)[0, 0].tolist() == [[2.0, -1.0], [-1.0, 2.0]]
    assert T.mix(mask, ys, pl).tolist() == [[[4, 2], [3, 255]]]
    assert T.mix(mask, ys, pl).dtype == torch.int64
    assert T.mix(mask, torch.ones_like(pw), pw).tolist() == [[[1.0, 0.25], [0.25, 1.0]]]


def test_ce_mean_counts_ignored_pixels():
    logits = torch.zeros(1, 2, 2, 2)  # CE = ln 2 on every labelled pixel
    target = torch.tensor([[[0, 1], [1, 255]]])
    assert T.ce_loss(logits, target).item() == pytest.approx(3 * math.log(2) / 4)
    w = torch.tensor([[[1.0, 0.5], [0.0, 1.0]]])
    assert T.ce_loss(logits, target, w).item() == pytest.approx(1.5 * math.log(2) / 4)


def test_fd_mask_from_downscaled_labels():
    labels = torch.tensor([[[1, 1, 1, 1],
                            [1, 1, 1, 2],
                            [2, 2, 255, 255],
                            [2, 3, 255, 13]]])
    down = T.downscale_label_ratio(labels, 2, min_ratio=0.75, num_classes=19)
    # windows: all 1 -> 1; three 1 + one 2 -> 1 (ratio 0.75); 2,2,2,3 -> 2 (0.75); 255 x3 + 13 -> 255
    assert down.tolist() == [[[1, 1], [2, 255]]]
    down = T.downscale_label_ratio(torch.tensor([[[1, 2], [3, 3]]]), 2, 0.75, 19)
    assert down.tolist() == [[[255]]]  # majority 0.5 < 0.75
    feat, ref = torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2)
    feat[0, :, 1, 0] = torch.tensor([3.0, 4.0])  # distance 5 in the only thing cell
    feat[0, :, 0, 0] = 100.0  # a stuff cell: not counted
    mask = (T.downscale_label_ratio(labels, 2, 0.75, 19)[..., None] == torch.tensor([2])).any(-1)
    assert T.masked_feature_distance(feat, ref, mask).item() == pytest.approx(5.0)
    assert T.masked_feature_distance(feat, ref, torch.zeros_like(mask)).item() == 0.0


def test_mic_mask_grid_and_ratio():
    gen = torch.Generator().manual_seed(0)
    m = T.mic_mask((64, 3, 128, 192), block_size=64, ratio=0.7, generator=gen)
    assert m.shape == (64, 1, 128, 192)
    blocks = m.view(64, 1, 2, 64, 3, 64)
    assert torch.equal(blocks.amax((3, 5)), blocks.amin((3, 5)))  # constant on each 64x64 patch
    assert m.mean().item() == pytest.approx(0.3, abs=0.05)  # 70 % of the patches masked
    assert T.mic_mask((1, 3, 96, 96), 64, 0.7, generator=gen).shape == (1, 1, 96, 96)  # grid round(1.5)=2


def test_poly_warmup_lr():
    f = poly_warmup(40000, 1500, 1e-6, power=1.0)
    assert f(0) == pytest.approx(1e-6)
    assert f(750) == pytest.approx((1 - 750 / 40000) * (1 - 0.5 * (1 - 1e-6)))
    assert f(1500) == pytest.approx(1 - 1500 / 40000)
    assert f(20000) == pytest.approx(0.5)
    assert f(40000) == 0.0


def test_param_groups_head_x10_no_decay_on_norms():
    model = nn.ModuleDict({"backbone": nn.ModuleDict({"lin": nn.Linear(2, 2), "norm1": nn.LayerNorm(2)}),
                           "head": nn.Linear(2, 2)})
    groups = {(round(g["lr"] * 1e5), g["weight_decay"]): sorted(g["names"])
              for g in daformer_param_groups(model, 6e-5, 0.01)}
    assert groups[(6, 0.01)] == ["backbone.lin.bias", "backbone.lin.weight"]
    assert groups[(6, 0.0)] == ["backbone.norm1.bias", "backbone.norm1.weight"]
    assert groups[(60, 0.01)] == ["head.bias", "head.weight"]


def test_rcs_probabilities():
    stats = [{"file": "a", "0": 80, "1": 5}, {"file": "b", "0": 10, "1": 5}]  # f = (0.9, 0.1)
    classes, p = rcs_probabilities(stats, temperature=1.0)
    e0, e1 = math.exp(0.1), math.exp(0.9)
    assert classes == [0, 1]
    assert p.tolist() == pytest.approx([e0 / (e0 + e1), e1 / (e0 + e1)])
    _, p = rcs_probabilities(stats, temperature=0.01)
    assert p[1] == pytest.approx(1.0) and p[0] == pytest.approx(math.exp(-80), rel=1e-3)


def test_strong_transform_draws():
    class Draws:
        def __init__(self, values):
            self.values = list(values)

        def uniform(self, a, b):
            return self.values.pop(0)

    x = torch.randn(1, 3, 20, 20)
    torch.testing.assert_close(T.strong_transform(x, rng=Draws([0.1, 0.3])), x)  # neither jitter nor blur
    y = T.strong_transform(x, rng=Draws([0.1, 0.9]))  # blur only, kernel 1 -> odd(ceil 2)=1
    assert T.blur_kernel_size(512) == 51 and T.blur_kernel_size(20) == 1 and T.blur_kernel_size(30) == 3
    torch.testing.assert_close(y, x)  # a 1x1 kernel leaves the image unchanged
    z = T.strong_transform(x, rng=Draws([0.9, 0.1]))  # colour jitter only
    assert not torch.allclose(z, x)

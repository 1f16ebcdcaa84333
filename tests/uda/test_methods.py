"""DACS / MIC / source-only / CLDA modules: optimizer wiring, EMA cadence, exact resume, CLDA mechanics."""

from __future__ import annotations

import copy

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from vitlab.core import MiT
from vitlab.core.data import SyntheticScenesDataModule
from vitlab.uda import CLDA, DACS, SourceOnly, kd_loss, layer_saliency_rate
from vitlab.uda.clda import saliency_layers

ST = dict(num_classes=7, lr=1e-3, warmup_steps=2, alpha=0.99, pl_crop_top=0, pl_crop_bottom=0,
          head_kwargs={"embed_dim": 16, "dropout": 0.0}, mic_block_size=8)


def tiny(width: int = 8) -> MiT:
    return MiT("b0", embed_dims=(width, 2 * width, 4 * width, 8 * width), depths=(1, 1, 1, 1),
               num_heads=(1, 2, 4, 8), drop_path_rate=0.0)


def datamodule(seed: int = 0, train_samples: int = 16) -> SyntheticScenesDataModule:
    return SyntheticScenesDataModule(modalities=["image", "semantic"], size=32, batch_size=4, train_samples=train_samples,
                                     val_samples=4, seed=seed, domain="source", target_domain="target")


def trainer(tmp_path, steps: int, **kw) -> pl.Trainer:
    kw.setdefault("enable_checkpointing", False)
    return pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=0, check_val_every_n_epoch=10_000,
                      default_root_dir=tmp_path, **kw)


def test_teacher_and_fd_encoder_are_outside_the_optimizer(tmp_path):
    model = DACS(tiny(), fd_lambda=0.005, fd_classes=[2, 3, 4, 5, 6], mic=True, **ST)
    t = trainer(tmp_path, 3)
    t.fit(model, datamodule())
    opt = model.optimizers().optimizer
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert in_opt == {id(p) for p in model.model.parameters()}
    assert all(not p.requires_grad for p in [*model.teacher.parameters(), *model.imnet.parameters()])
    assert int(model.teacher.num_updates) == 3 and model.global_step == 3  # one EMA update per optimizer step
    heads = [g for g in opt.param_groups if any(p is model.model.head.classifier.weight for p in g["params"])]
    assert heads[0]["lr_scale"] == 10.0
    # the FD reference stays the initial encoder, the teacher follows the student
    assert not torch.equal(model.imnet.encoder.stages[0].patch_embed.proj.weight,
                           model.model.backbone.stages[0].patch_embed.proj.weight)


def test_dacs_resumes_exactly(tmp_path):
    # 8 scenes / batch 4: the step-2 checkpoint is written by on_train_epoch_end, a restore Lightning counts one
    # epoch ahead (the samplers correct for it; before, the resumed run replayed a batch and drifted)
    from lightning.pytorch.callbacks import ModelCheckpoint

    full = DACS(tiny(), fd_lambda=0.0, mic=True, **ST)
    init = copy.deepcopy(full.state_dict())
    ckpts = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_epochs=1, save_top_k=-1, save_on_train_epoch_end=True)
    trainer(tmp_path / "a", 4, enable_checkpointing=True, callbacks=[ckpts]).fit(full, datamodule(train_samples=8))
    found = sorted(p.name for p in (tmp_path / "ckpt").glob("*.ckpt"))
    assert any("step=2" in n for n in found), found
    ckpt = tmp_path / "ckpt" / next(n for n in found if "step=2" in n)
    resumed = DACS(tiny(), fd_lambda=0.0, mic=True, **ST)
    resumed.load_state_dict(init)
    trainer(tmp_path / "c", 4).fit(resumed, datamodule(train_samples=8), ckpt_path=ckpt)
    a, b = full.state_dict(), resumed.state_dict()
    assert any(k.startswith("teacher.teacher.") for k in a)  # checkpoints hold teacher and student
    assert int(b["teacher.num_updates"]) == 4
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


def test_source_only_learns(tmp_path):
    model = SourceOnly(tiny(16), num_classes=7, lr=2e-3, warmup_steps=2, head_kwargs={"embed_dim": 16})
    t = trainer(tmp_path, 12)
    t.fit(model, datamodule())
    assert not hasattr(model, "teacher")
    assert float(t.callback_metrics["train/loss_src"]) < 1.6  # ln 7 = 1.95 at chance


def test_kd_loss_values():
    s = torch.zeros(1, 2, 1, 1)
    t = torch.tensor([0.0, torch.log(torch.tensor(3.0))]).view(1, 2, 1, 1)  # p_T = (0.25, 0.75)
    expected = 0.25 * torch.log(torch.tensor(0.25 / 0.5)) + 0.75 * torch.log(torch.tensor(0.75 / 0.5))
    torch.testing.assert_close(kd_loss(s, t), expected)
    torch.testing.assert_close(kd_loss(t, t), torch.tensor(0.0))


def test_saliency_and_lsr_on_a_toy_model():
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        net[1].weight.copy_(torch.tensor([[0.5, -1.0]]))
    x = torch.tensor([[1.0, 1.0]])
    loss = net(x).sum()  # dL/dW1 = w2^T x = [[0.5, 0.5], [-1, -1]]; dL/dW2 = h = [3, 7]
    module = CLDA.__new__(CLDA)  # only the saliency helpers, no Lightning state
    nn.Module.__init__(module)
    module.saliency = "taylor"
    taylor = module._scores_now(net, ["0.weight", "1.weight"], loss)
    torch.testing.assert_close(taylor[0], torch.tensor([[0.5, 1.0], [3.0, 4.0]]))
    torch.testing.assert_close(taylor[1], torch.tensor([[1.5, 7.0]]))
    module.saliency = "grad"
    grad = module._scores_now(net, ["0.weight", "1.weight"], net(x).sum())
    torch.testing.assert_close(grad[0], torch.tensor([[0.5, 0.5], [1.0, 1.0]]))
    # scores 0.5, 1, 3, 4 | 1.5, 7: the median of the 6 (3rd smallest, lower) is 1.5
    lsr = layer_saliency_rate(taylor, 0.5)
    torch.testing.assert_close(lsr, torch.tensor([0.5, 1.0]))  # layer 0: 3, 4 >= 1.5; layer 1: both


def _clda(**kw) -> CLDA:
    args = dict(student_backbone=tiny(4), student_head_kwargs={"embed_dim": 8, "dropout": 0.0},
                fd_lambda=0.0, recompute_every=1, saliency_batches=1, phases="joint", **ST)
    args.update(kw)
    return CLDA(tiny(8), **args)


class _TeacherStepProbe(pl.Callback):
    """Snapshots the teacher's parameters and non-salient layers around the second step (the first teacher phase)."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == 1:
            self.ns = module.nonsalient_teacher_layers()
            self.before = {n: p.detach().clone() for n, p in module.model.named_parameters()}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step == 2:
            self.changed = {n for n, p in module.model.named_parameters() if not torch.equal(p, self.before[n])}


def test_clda_teacher_phase_changes_only_nonsalient_layers(tmp_path):
    model = _clda(salient_teacher_layers="frozen", ns_frac=0.25)
    probe = _TeacherStepProbe()
    trainer(tmp_path, 2, callbacks=[probe]).fit(model, datamodule())  # step 0: saliency, then LSR; step 1: teacher phase
    assert len(probe.ns) == round(0.25 * len(model.t_layers)) and torch.isfinite(model.t_lsr).all()
    assert set(probe.ns) <= set(saliency_layers(model.model))
    assert probe.changed and probe.changed <= set(probe.ns)


def test_clda_student_kd_uses_the_updated_teacher(tmp_path):
    model = _clda(student_pl_source="teacher", phases="joint", collaborate=False, warmup_steps=0, lr=1e-2)
    dm = datamodule()
    dm.setup("fit")
    batch, _, _ = next(iter(dm.train_dataloader()))  # a CombinedLoader yields (batch, batch_idx, dataloader_idx)
    batch = dm.on_after_batch_transfer(batch, 0)
    student_before = copy.deepcopy(model.student)
    teacher_before = copy.deepcopy(model.model)
    t = trainer(tmp_path, 1)
    t.fit(model, dm)
    xt = batch["target"]["image"]

    def target_logits(net):
        net.train()
        for m in net.modules():
            if isinstance(m, nn.Dropout2d):
                m.eval()
        with torch.no_grad():
            return net(xt)

    z_s = target_logits(student_before)
    logged = t.callback_metrics["train/student/loss_kd"]
    torch.testing.assert_close(logged, kd_loss(z_s, target_logits(model.model)), rtol=1e-4, atol=1e-6)
    assert abs(float(logged) - float(kd_loss(z_s, target_logits(teacher_before)))) > 1e-6


@pytest.mark.slow
def test_clda_weight_copy_blends_compatible_layers():
    model = _clda(student_backbone=tiny(8), student_head_kwargs={"embed_dim": 16, "dropout": 0.0},
                  t_update="weight_copy", ns_frac=1.0, copy_beta=0.0)
    model.ns_mask.fill_(True)
    model._ns_cache = None
    assert model.copy_weights() > 0
    s = dict(model.student.named_parameters())
    for n, p in model.model.named_parameters():
        if n in model.nonsalient_teacher_layers() and n in s and s[n].shape == p.shape:
            torch.testing.assert_close(p, s[n])


def test_clda_student_feature_distance_uses_its_own_imagenet_copy(tmp_path):
    # teacher width 8, student width 4: the student's FD reference must be the student's frozen copy (before
    # the first update the two are equal, so its FD is 0), never the teacher's wider encoder
    model = _clda(fd_lambda=0.005, fd_scale_min_ratio=0.0, fd_classes=list(range(7)))
    t = trainer(tmp_path, 1)
    t.fit(model, datamodule())
    assert float(t.callback_metrics["train/student/loss_fd"]) == 0.0
    assert model.student_imnet is not None and model.imnet is not None


def test_clda_joint_default_does_both_updates_and_feature_loss(tmp_path):
    """Default ``phases="joint"``: in one step the teacher gets reverse KD (+ the optional stage-feature loss)
    on its non-salient layers and the student is distilled from it; the projections train."""
    import inspect

    assert inspect.signature(CLDA).parameters["phases"].default == "joint"
    model = _clda(salient_teacher_layers="frozen", ns_frac=0.25, feat_loss=1.0)
    proj_before = copy.deepcopy(model.feat_proj.state_dict())
    probe = _TeacherStepProbe()
    t = trainer(tmp_path, 2, callbacks=[probe])
    t.fit(model, datamodule())  # step 1 is a collaboration step
    m = t.callback_metrics
    assert float(m["train/clda/teacher_phase"]) == 1.0
    assert float(m["train/teacher/loss_reverse_kd"]) > 0 and float(m["train/student/loss_kd"]) > 0
    assert float(m["train/teacher/loss_feat"]) > 0
    assert probe.changed and probe.changed <= set(probe.ns)
    assert any(not torch.equal(v, model.feat_proj.state_dict()[k]) for k, v in proj_before.items())
    with pytest.raises(ValueError, match="feat_loss must be >= 0"):
        _clda(feat_loss=-1.0)

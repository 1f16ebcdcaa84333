import pytest
import torch
from torch import nn

from vitlab.core.ema import EMATeacher


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_teacher_is_frozen_copy():
    student = net()
    ema = EMATeacher(student, decay=0.9)
    assert all(not p.requires_grad for p in ema.parameters())
    assert not ema.teacher.training
    for t, s in zip(ema.teacher.parameters(), student.parameters()):
        assert torch.equal(t, s) and t.data_ptr() != s.data_ptr()


def test_update_matches_formula_and_buffers_copied():
    student = net()
    ema = EMATeacher(student, decay=0.9)
    before = [p.clone() for p in ema.teacher.parameters()]
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    student.train()(torch.randn(8, 3))  # moves BN running stats
    assert ema.update(student) == pytest.approx(0.9)
    for b, t, s in zip(before, ema.teacher.parameters(), student.parameters()):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * s)
    torch.testing.assert_close(ema.teacher[1].running_mean, student[1].running_mean)
    assert int(ema.num_updates) == 1


def test_once_per_optimizer_step():
    student = net()
    ema = EMATeacher(student, decay=0.5)
    assert ema.maybe_update(student, global_step=0) is None  # no optimizer step yet
    assert ema.maybe_update(student, global_step=1) is not None
    for _ in range(3):  # further micro-batches of the same optimizer step
        assert ema.maybe_update(student, global_step=1) is None
    assert int(ema.num_updates) == 1


def test_schedules():
    student = net()
    mt = EMATeacher(student, decay=0.99, schedule="mean_teacher")
    assert mt.current_decay(0) == 0.0 and mt.current_decay(1) == pytest.approx(0.5)
    assert mt.current_decay(10_000) == pytest.approx(0.99)
    cos = EMATeacher(student, decay=0.99, schedule="cosine", final_decay=1.0, total_steps=100)
    assert cos.current_decay(0) == pytest.approx(0.99)
    assert cos.current_decay(50) == pytest.approx(0.995)
    assert cos.current_decay(100) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="total_steps"):
        EMATeacher(student, schedule="cosine")


def test_state_dict_round_trip_and_eval_mode_kept():
    student = net()
    ema = EMATeacher(student, decay=0.5)
    ema.update(student)
    holder = nn.ModuleDict({"student": student, "ema": ema})
    holder.train()
    assert not ema.teacher.training, "a LightningModule.train() must not switch the teacher to train mode"
    sd = holder.state_dict()
    assert "ema.num_updates" in sd and "ema.teacher.0.weight" in sd
    fresh = nn.ModuleDict({"student": net(), "ema": EMATeacher(net())})
    fresh.load_state_dict(sd)
    assert int(fresh["ema"].num_updates) == 1


@pytest.mark.parametrize("extra_eval_module", [False, True])
def test_fit_start_warns_only_about_modules_other_than_the_teacher(extra_eval_module, tmp_path):
    """Lightning's "modules in eval mode" warning is hidden for the teacher's modules, and only for them."""
    import warnings

    from lightning.pytorch import LightningModule, Trainer

    class Module(LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
            self.teacher = EMATeacher(self.net)
            self.frozen = nn.Linear(4, 4).eval() if extra_eval_module else None

        def train(self, mode: bool = True):
            super().train(mode)
            if self.frozen is not None:
                self.frozen.eval()
            return self

        def training_step(self, batch, batch_idx):
            return self.net(batch).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.net.parameters(), lr=0.1)

    trainer = Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        # the module (and the teacher's filter) is built inside the recording context
        trainer.fit(Module(), train_dataloaders=torch.utils.data.DataLoader(torch.randn(4, 4), batch_size=2))
    warned = [str(w.message) for w in caught if "in eval mode at the start of training" in str(w.message)]
    assert bool(warned) == extra_eval_module, warned

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

"""One EMA teacher for the whole library (mean teacher, MaDis-Stereo teacher, CLDA, DAFormer).

Pitfalls this class exists to avoid (see the Lightning spec):

* the teacher is frozen with ``requires_grad_(False)`` at construction, so DDP never waits for its
  gradients and no optimizer ever sees it;
* it is updated once per *optimizer* step, not once per micro-batch under gradient accumulation
  (:meth:`maybe_update` compares the trainer's ``global_step`` with the last step it applied);
* the update is one fused ``torch._foreach_lerp_`` over all floating tensors;
* every DDP rank holds the same student after the gradient all-reduce, so every rank applies the
  same update and teachers stay identical without any collective;
* it is a submodule of the LightningModule, so its weights and its step counter are in checkpoints
  and a resumed run continues with the same teacher.
"""

from __future__ import annotations

import copy
import math
import warnings

import torch
from torch import nn

DECAY_SCHEDULES = ("constant", "cosine", "mean_teacher")
BUFFER_POLICIES = ("copy", "ema", "keep")


class EMATeacher(nn.Module):
    """Exponential moving average of a student network.

    ``teacher = decay * teacher + (1 - decay) * student`` after each optimizer step.

    Args:
        student: the network to follow; it is deep-copied (the copy is frozen and put in eval mode).
        decay: the EMA decay (momentum) ``tau``.
        schedule: ``"constant"``: ``decay`` always. ``"cosine"`` (BYOL/DINO): from ``decay`` to
            ``final_decay`` over ``total_steps`` with a half cosine. ``"mean_teacher"`` (Tarvainen &
            Valpola; DACS/DAFormer): ``min(1 - 1 / (step + 1), decay)``, so early teachers follow fast.
        final_decay: end value of the cosine schedule.
        total_steps: length of the cosine schedule in optimizer steps (required for ``"cosine"``).
        buffers: ``"copy"`` copies the student's buffers (BN statistics) after each update; ``"ema"``
            averages floating buffers like parameters; ``"keep"`` leaves the teacher's buffers alone.
        train_mode: keep the teacher in eval mode (default) so dropout/drop-path are off.
    """

    def __init__(
        self,
        student: nn.Module,
        decay: float = 0.999,
        schedule: str = "constant",
        final_decay: float = 1.0,
        total_steps: int | None = None,
        buffers: str = "copy",
        train_mode: bool = False,
    ) -> None:
        super().__init__()
        if schedule not in DECAY_SCHEDULES:
            raise ValueError(f"EMATeacher: schedule must be one of {DECAY_SCHEDULES}, got {schedule!r}")
        if buffers not in BUFFER_POLICIES:
            raise ValueError(f"EMATeacher: buffers must be one of {BUFFER_POLICIES}, got {buffers!r}")
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMATeacher: decay must be in [0, 1], got {decay}")
        if schedule == "cosine" and not total_steps:
            raise ValueError("EMATeacher: schedule='cosine' needs total_steps")
        self.decay = decay
        self.schedule = schedule
        self.final_decay = final_decay
        self.total_steps = total_steps
        self.buffer_policy = buffers
        self.train_mode = train_mode
        self.teacher = copy.deepcopy(student).requires_grad_(False)
        self.teacher.train(train_mode)
        if not train_mode:
            # Lightning warns at fit start about modules in eval mode; the teacher's are so by design. Only the
            # exact count is hidden, so any other module left in eval mode still changes the number and warns.
            n = sum(1 for _ in self.teacher.modules())
            warnings.filterwarnings("ignore", message=rf"Found {n} module\(s\) in eval mode at the start of training")
        # Optimizer steps applied so far; a buffer so it is checkpointed and restored on resume. The
        # host keeps its own copy so schedules and the once-per-step guard never read the device.
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self._host_updates = 0

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        value = state_dict.get(prefix + "num_updates")
        if isinstance(value, torch.Tensor):
            self._host_updates = int(value)  # at load time, not in a training step
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def steps_applied(self) -> int:
        """Number of EMA updates applied so far (host-side mirror of the ``num_updates`` buffer)."""
        return self._host_updates

    def train(self, mode: bool = True) -> EMATeacher:  # the LightningModule's .train() must not flip it
        super().train(mode)
        self.teacher.train(self.train_mode)
        return self

    def forward(self, *args, **kwargs):
        with torch.no_grad():
            return self.teacher(*args, **kwargs)

    def current_decay(self, step: int | None = None) -> float:
        """The decay applied at optimizer step ``step`` (default: the next update)."""
        k = self._host_updates if step is None else step
        if self.schedule == "constant":
            return self.decay
        if self.schedule == "mean_teacher":
            return min(1.0 - 1.0 / (k + 1), self.decay)
        progress = min(k / self.total_steps, 1.0)  # type: ignore[operator]
        return self.final_decay - (self.final_decay - self.decay) * 0.5 * (1.0 + math.cos(math.pi * progress))

    @torch.no_grad()
    def update(self, student: nn.Module) -> float:
        """Apply one EMA step from ``student``; returns the decay used."""
        decay = self.current_decay()
        t_params, s_params = [], []
        for (name, t), s in zip(self.teacher.named_parameters(), student.parameters(), strict=True):
            if t.shape != s.shape:
                raise ValueError(f"EMATeacher: parameter {name!r} has shape {tuple(s.shape)} in the student "
                                 f"but {tuple(t.shape)} in the teacher")
            if t.dtype.is_floating_point:
                t_params.append(t)
                s_params.append(s.detach().to(t.dtype))
        if t_params:
            torch._foreach_lerp_(t_params, s_params, 1.0 - decay)
        if self.buffer_policy != "keep":
            for t, s in zip(self.teacher.buffers(), student.buffers(), strict=True):
                if self.buffer_policy == "ema" and t.dtype.is_floating_point:
                    t.lerp_(s.to(t.dtype), 1.0 - decay)
                else:
                    t.copy_(s)
        self.num_updates += 1
        self._host_updates += 1
        return decay

    def maybe_update(self, student: nn.Module, global_step: int) -> float | None:
        """Update only if the trainer made an optimizer step since the last update.

        Call it from ``on_train_batch_end``: with gradient accumulation Lightning calls that hook for
        every micro-batch, but ``global_step`` only moves after an optimizer step.
        """
        if global_step <= self._host_updates:
            return None
        return self.update(student)

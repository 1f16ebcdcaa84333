"""CLDA: collaborative teacher-student UDA (Cho, Choi, Jo, Min, arXiv 2409.02699 / ICASSP 2026).

What is known from the paper (abstract and Fig. 1 captions only): a large teacher and a small student are
adapted together; domain shift leaves many teacher parameters *non-salient* (far fewer in the student);
CLDA updates the teacher's non-salient parameters using the student and, at the same time, uses the updated
teacher to improve the student. A per-layer "layer saliency rate" (LSR) is mentioned by third-party
summaries. **Everything below is a reconstruction**; every choice is a named switch with a documented default:

* Both networks run DACS/DAFormer self-training (:class:`~vitlab.uda.dacs.DACS` steps 1-8), each with its
  own EMA teacher. The teacher T is ``backbone`` (+ head), the student S is ``student_backbone``.
* **Saliency** (``saliency``): ``taylor`` ``|theta * dL/dtheta|`` (default), ``grad`` ``|dL/dtheta|`` or
  ``magnitude`` ``|theta|``, with L the pseudo-label CE on the target batch (``saliency_domain="target"``;
  ``"source"`` uses the source CE). Scores are averaged with an EMA (``saliency_momentum`` 0.9) over the
  last ``saliency_batches`` (10) iterations before each recomputation.
* **LSR** per layer (every Linear/Conv/Norm weight tensor): the fraction of its scores >= the global
  ``lsr_quantile`` (0.5) of all scores of that network. Non-salient teacher layers: the bottom ``ns_frac``
  (0.2) of layers by LSR, or those with LSR < ``lsr_thresh`` when it is set.
* **Schedule**: LSR is recomputed every ``recompute_every`` iterations (K = 1000). ``phases="joint"``
  (default) collaborates on every iteration after the first recomputation: the teacher is updated from the
  student *and* the student is distilled from the updated teacher in the same iteration, the closest reading
  of the abstract ("updates the teacher's non-salient parameters using the student model and at the same
  time utilizes the updated teacher model"). ``"alternate"`` (the third-party summary's "alternates")
  alternates blocks of ``phase_steps`` (= K by default) iterations: student phases (student KD, no teacher
  update) and teacher phases (teacher update, no student KD).
* **Teacher update from the student** (teacher phases), ``t_update``: ``reverse_kd`` (default) adds
  ``lambda_kd * tau^2 * KL(softmax(z_S / tau) || softmax(z_T / tau))`` on target images, with its
  gradient applied to the non-salient teacher layers only; ``weight_copy`` blends
  ``theta_T <- beta theta_T + (1 - beta) theta_S`` (``copy_beta`` 0.9) once at the start of each teacher
  phase (with ``joint``: once every ``phase_steps`` iterations), for non-salient layers whose student counterpart has the same shape (student block j of a stage
  maps to teacher block ``floor(j * D_T / D_S)``; other layers by identical name). Salient teacher layers
  (``salient_teacher_layers``) keep their self-training update (``normal_update``, default) or are frozen
  during teacher phases (``frozen``). ``feat_loss`` (> 0, default 0 = off) adds, with ``reverse_kd``,
  ``feat_loss * mean_k MSE(P_k(f_S^k), f_T^k)`` over the four encoder stages of the target image, with a
  trained 1x1 conv ``P_k`` from each student stage to the teacher's width (student features detached; the
  gradient reaches the non-salient teacher layers and ``P``).
* **Student update from the teacher**: its own self-training loss with pseudo-labels from
  ``student_pl_source`` (``teacher``: the teacher network as just updated, default; ``teacher_ema``; or
  ``own_ema``) plus ``lambda_kd * tau^2 * KL(softmax(z_T / tau) || softmax(z_S / tau))`` per target pixel,
  averaged over pixels (``tau_kd`` 1, ``lambda_kd`` 1). Each iteration first steps the teacher (so "the
  updated teacher" is this iteration's), then the student; one shared AdamW, one schedule.
* Logged on each recomputation: LSR per layer of both networks (W&B tables and bar charts, and scalar
  summaries ``clda/{teacher,student}_lsr_mean`` and ``clda/{teacher,student}_frac_layers_lsr_below_<r>``:
  the fraction of layers whose LSR is below ``report_lsr_below`` 0.25), and the set of non-salient teacher
  layers. Both networks are evaluated on the target (``val/mIoU`` student, ``val/teacher_mIoU`` teacher).
"""

from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitlab.core.ddp import all_reduce_mean_
from vitlab.uda import transforms as T
from vitlab.uda.dacs import DACS
from vitlab.uda.model import (
    FrozenEncoder,
    MeanTeacher,
    Segmentor,
    _feature_channels,
    daformer_param_groups,
    set_pseudo_label_mode,
)

__all__ = ["CLDA", "kd_loss", "layer_saliency_rate", "saliency_layers"]

SALIENCY = ("taylor", "grad", "magnitude")
T_UPDATES = ("reverse_kd", "weight_copy")
PHASES = ("alternate", "joint")
PL_SOURCES = ("teacher", "teacher_ema", "own_ema")


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, tau: float = 1.0) -> Tensor:
    """``tau^2 * KL(softmax(t / tau) || softmax(s / tau))`` summed over classes, mean over pixels; the
    teacher side is detached."""
    log_s = F.log_softmax(student_logits.float() / tau, dim=1)
    log_t = F.log_softmax(teacher_logits.detach().float() / tau, dim=1)
    return (log_t.exp() * (log_t - log_s)).sum(1).mean() * tau * tau


def saliency_layers(model: nn.Module) -> list[str]:
    """Names of the "layers" LSR is computed on: the weight of every Linear, Conv and Norm module."""
    norms = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)
    names = []
    for mname, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, *norms)) and getattr(m, "weight", None) is not None:
            names.append(f"{mname}.weight" if mname else "weight")
    return names


def layer_saliency_rate(scores: list[Tensor], quantile: float = 0.5) -> Tensor:
    """LSR_l = fraction of the scores of layer l that are >= the global ``quantile`` of all scores."""
    flat = torch.cat([s.flatten().float() for s in scores])
    k = max(1, min(flat.numel(), int(round(quantile * (flat.numel() - 1))) + 1))
    tau = flat.kthvalue(k).values
    return torch.stack([(s.float() >= tau).float().mean() for s in scores])


class _Scores(nn.Module):
    """EMA saliency scores of a list of parameters (buffers, so they are checkpointed)."""

    def __init__(self, params: list[Tensor]) -> None:
        super().__init__()
        for i, p in enumerate(params):
            self.register_buffer(f"s{i}", torch.zeros_like(p, dtype=torch.float32))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def values(self) -> list[Tensor]:
        return [getattr(self, f"s{i}") for i in range(len(self._buffers) - 1)]


class CLDA(DACS):
    """Collaborative teacher (``backbone``) / student (``student_backbone``) self-training. See the module
    docstring for every switch and which parts are reconstruction (all of CLDA's algorithm).

    Args:
        backbone: the teacher encoder (e.g. MiT-B5); its network is ``self.model``.
        student_backbone: the student encoder (e.g. MiT-B0; an assumption, the paper's pair is not known).
        student_head_kwargs: DAFormer head arguments of the student (``embed_dim`` 256 by default).
        saliency, saliency_domain, saliency_momentum, saliency_batches, lsr_quantile, ns_frac, lsr_thresh,
        t_update, salient_teacher_layers, copy_beta, tau_kd, lambda_kd, recompute_every, phases,
        phase_steps, student_pl_source, report_lsr_below, feat_loss: the switches of the module docstring.
        collaborate: False gives the plain-KD baseline: the same teacher and student, the student distilled
            from the teacher every iteration, no saliency and no teacher update from the student.
        **kwargs: DACS options shared by both networks (alpha, pseudo_threshold, mix, mic, fd_lambda, lr, ...).
    """

    def __init__(self, backbone: nn.Module, student_backbone: nn.Module,
                 student_head_kwargs: dict[str, Any] | None = None, saliency: str = "taylor",
                 saliency_domain: str = "target", saliency_momentum: float = 0.9, saliency_batches: int = 10,
                 lsr_quantile: float = 0.5, ns_frac: float = 0.2, lsr_thresh: float | None = None,
                 t_update: str = "reverse_kd", salient_teacher_layers: str = "normal_update",
                 copy_beta: float = 0.9, tau_kd: float = 1.0, lambda_kd: float = 1.0, recompute_every: int = 1000,
                 phases: str = "joint", phase_steps: int | None = None, student_pl_source: str = "teacher",
                 report_lsr_below: float = 0.25, collaborate: bool = True, feat_loss: float = 0.0,
                 **kwargs) -> None:
        for name, value, allowed in (("saliency", saliency, SALIENCY), ("t_update", t_update, T_UPDATES),
                                     ("phases", phases, PHASES), ("student_pl_source", student_pl_source, PL_SOURCES),
                                     ("saliency_domain", saliency_domain, ("target", "source")),
                                     ("salient_teacher_layers", salient_teacher_layers, ("normal_update", "frozen"))):
            if value not in allowed:
                raise ValueError(f"CLDA: {name} must be one of {allowed}, got {value!r}")
        object.__setattr__(self, "_building", True)
        super().__init__(backbone, **kwargs)
        self.save_hparams("backbone", "student_backbone")
        self.student = Segmentor(student_backbone, self.num_classes, "daformer", student_head_kwargs)
        self.student_teacher = MeanTeacher(self.student, alpha=self.alpha, bn_train=self.teacher.bn_train)
        self.student_imnet = FrozenEncoder(self.student.backbone) if self.fd_lambda > 0 else None
        self.saliency, self.saliency_domain = saliency, saliency_domain
        self.saliency_momentum, self.saliency_batches = saliency_momentum, saliency_batches
        self.lsr_quantile, self.ns_frac, self.lsr_thresh = lsr_quantile, ns_frac, lsr_thresh
        self.t_update, self.salient_teacher_layers, self.copy_beta = t_update, salient_teacher_layers, copy_beta
        self.tau_kd, self.lambda_kd = tau_kd, lambda_kd
        self.recompute_every = recompute_every
        self.phases, self.phase_steps = phases, phase_steps or recompute_every
        self.student_pl_source = student_pl_source
        self.report_lsr_below = report_lsr_below
        self.collaborate = collaborate
        if feat_loss < 0:
            raise ValueError(f"CLDA: feat_loss must be >= 0 (0 = off), got {feat_loss!r}")
        self.feat_loss = feat_loss
        self.feat_proj = None
        if feat_loss > 0:
            t_ch, s_ch = _feature_channels(self.model.backbone), _feature_channels(self.student.backbone)
            if len(t_ch) != len(s_ch):
                raise ValueError(f"CLDA: feat_loss needs as many teacher as student stages, got {t_ch} and {s_ch}")
            self.feat_proj = nn.ModuleList(nn.Conv2d(cs, ct, 1) for cs, ct in zip(s_ch, t_ch, strict=True))
        self.t_layers, self.s_layers = saliency_layers(self.model), saliency_layers(self.student)
        t_params, s_params = dict(self.model.named_parameters()), dict(self.student.named_parameters())
        self.t_scores = _Scores([t_params[n] for n in self.t_layers])
        self.s_scores = _Scores([s_params[n] for n in self.s_layers])
        self.register_buffer("ns_mask", torch.zeros(len(self.t_layers), dtype=torch.bool))
        self.register_buffer("t_lsr", torch.full((len(self.t_layers),), float("nan")))
        self.register_buffer("s_lsr", torch.full((len(self.s_layers),), float("nan")))
        self._building = False
        self._ns_cache: list[str] | None = None
        self._make_metrics()

    def _make_metrics(self) -> None:
        if not getattr(self, "_building", False):
            super()._make_metrics()

    def eval_models(self) -> dict[str, nn.Module]:
        models: dict[str, nn.Module] = {"": self.student, "teacher_": self.model}
        if self.eval_teacher:
            models["teacher_ema_"] = self.teacher.teacher
        return models

    def extra_param_groups(self) -> list[dict[str, Any]]:
        groups = daformer_param_groups(self.student, self.lr, self.weight_decay, self.head_lr_mult, "head.")
        for g in groups:
            g["names"] = [f"student.{n}" for n in g["names"]]
        if self.feat_proj is not None:  # trained with the teacher's update, at the head's lr
            groups.append({"params": list(self.feat_proj.parameters()),
                           "names": [f"feat_proj.{n}" for n, _ in self.feat_proj.named_parameters()],
                           "lr": self.lr * self.head_lr_mult, "weight_decay": self.weight_decay,
                           "lr_scale": self.head_lr_mult})
        return groups

    # -- saliency / LSR ---------------------------------------------------------------------------------
    def _scores_now(self, net: nn.Module, layers: list[str], loss: Tensor) -> list[Tensor]:
        params = dict(net.named_parameters())
        ps = [params[n] for n in layers]
        if self.saliency == "magnitude":
            return [p.detach().abs().float() for p in ps]
        grads = torch.autograd.grad(loss, ps, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(ps, grads, strict=True)]
        all_reduce_mean_(grads)  # the global batch's gradient: every DDP rank scores (and picks) the same layers
        if self.saliency == "grad":
            return [g.abs().float() for g in grads]
        return [(p.detach() * g).abs().float() for p, g in zip(ps, grads, strict=True)]

    def accumulate_saliency(self, net: nn.Module, layers: list[str], store: _Scores, loss: Tensor) -> None:
        """Fold this batch's saliency scores into the EMA (the first batch initialises it)."""
        m = self.saliency_momentum
        first = (store.count == 0).float()
        for buf, s in zip(store.values(), self._scores_now(net, layers, loss), strict=True):
            buf.mul_(m * (1 - first)).add_(s * (1 - m * (1 - first)))
        store.count += 1

    @torch.no_grad()
    def recompute_lsr(self) -> None:
        """LSR of both networks from the accumulated scores; the bottom layers of the teacher become non-salient."""
        t_lsr = layer_saliency_rate(self.t_scores.values(), self.lsr_quantile)
        s_lsr = layer_saliency_rate(self.s_scores.values(), self.lsr_quantile)
        self.t_lsr.copy_(t_lsr)
        self.s_lsr.copy_(s_lsr)
        if self.lsr_thresh is not None:
            ns = t_lsr < self.lsr_thresh
        else:
            k = max(1, int(round(self.ns_frac * len(t_lsr))))
            ns = torch.zeros_like(self.ns_mask)
            ns[t_lsr.argsort()[:k]] = True
        self.ns_mask.copy_(ns)
        self._ns_cache = None
        self.t_scores.count.zero_()
        self.s_scores.count.zero_()
        self._log_lsr()

    def nonsalient_teacher_layers(self) -> list[str]:
        """Names of the non-salient teacher layers (read from the ``ns_mask`` buffer once per recomputation)."""
        if self._ns_cache is None:
            self._ns_cache = [n for n, m in zip(self.t_layers, self.ns_mask.tolist(), strict=True) if m]
        return self._ns_cache

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._ns_cache = None

    def _log_lsr(self) -> None:
        r = self.report_lsr_below
        scalars = {"clda/teacher_lsr_mean": self.t_lsr.mean(), "clda/student_lsr_mean": self.s_lsr.mean(),
                   f"clda/teacher_frac_layers_lsr_below_{r}": (self.t_lsr < r).float().mean(),
                   f"clda/student_frac_layers_lsr_below_{r}": (self.s_lsr < r).float().mean(),
                   "clda/num_nonsalient_teacher_layers": self.ns_mask.sum().float()}
        if self._trainer is not None:
            self.log_dict(scalars)
        try:
            import wandb
            from lightning.pytorch.loggers import WandbLogger
        except ImportError:  # pragma: no cover
            return
        if self._trainer is None:
            return
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                ns = set(self.nonsalient_teacher_layers())
                t_rows = [[n, float(v), n in ns] for n, v in zip(self.t_layers, self.t_lsr.tolist(), strict=True)]
                s_rows = [[n, float(v)] for n, v in zip(self.s_layers, self.s_lsr.tolist(), strict=True)]
                t_tab = wandb.Table(data=t_rows, columns=["layer", "lsr", "non_salient"])
                s_tab = wandb.Table(data=s_rows, columns=["layer", "lsr"])
                logger.experiment.log({
                    "clda/teacher_lsr": t_tab, "clda/student_lsr": s_tab,
                    "clda/teacher_lsr_bar": wandb.plot.bar(t_tab, "layer", "lsr", title="teacher LSR per layer"),
                    "clda/student_lsr_bar": wandb.plot.bar(s_tab, "layer", "lsr", title="student LSR per layer"),
                    "trainer/global_step": self.global_step})

    # -- teacher update from the student --------------------------------------------------------------
    def teacher_phase(self, step: int) -> bool:
        if not self.collaborate or step < self.recompute_every:
            return False  # no LSR before the first recomputation
        return self.phases == "joint" or (step // self.phase_steps) % 2 == 1

    @torch.no_grad()
    def copy_weights(self) -> int:
        """weight_copy: blend student weights into shape-compatible non-salient teacher layers; returns count."""
        t_params, s_params = dict(self.model.named_parameters()), dict(self.student.named_parameters())
        t_depths = getattr(self.model.backbone, "depths", None)
        s_depths = getattr(self.student.backbone, "depths", None)
        done = 0
        for name in self.nonsalient_teacher_layers():
            src = name
            m = re.match(r"^backbone\.stages\.(\d+)\.blocks\.(\d+)\.(.*)$", name)
            if m and t_depths and s_depths:
                k, jt = int(m[1]), int(m[2])
                js = [j for j in range(s_depths[k]) if (j * t_depths[k]) // s_depths[k] == jt]
                if not js:
                    continue
                src = f"backbone.stages.{k}.blocks.{js[0]}.{m[3]}"
            s = s_params.get(src)
            if s is not None and s.shape == t_params[name].shape:
                t_params[name].lerp_(s, 1.0 - self.copy_beta)
                done += 1
        return done

    # -- one iteration ----------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        opt, sched = self.optimizers(), self.lr_schedulers()
        rng = self.seed_step()
        gen = self._generator(self.device)
        xs, ys, xt = self.split_batch(batch)
        step = self.global_step
        self.teacher.step(self.model, step)
        self.student_teacher.step(self.student, step)
        set_pseudo_label_mode(self.teacher.teacher, self.teacher.bn_train)
        set_pseudo_label_mode(self.student_teacher.teacher, self.student_teacher.bn_train)
        collab = self.teacher_phase(step)
        phase_start = collab and (step == self.recompute_every or step % self.phase_steps == 0)
        if collab and phase_start and self.t_update == "weight_copy":
            self.copy_weights()
        opt.zero_grad()

        # -- teacher network: self-training (+ reverse KD on its non-salient layers) ---------------------
        logs = self.source_losses(self.model, xs, ys, "teacher/", imnet=self.imnet)
        pl_t, pw_t, q_t = self.pseudo_labels(self.teacher.teacher, xt)
        logs.update(self.self_training_losses(self.model, xs, ys, xt, pl_t, pw_t, rng, gen, "teacher/"))
        ns_names = set(self.nonsalient_teacher_layers()) if collab else set()
        if collab and self.t_update == "reverse_kd" and ns_names:
            with torch.no_grad():
                f_s = self.student.extract(xt)
                z_s = self.student.decode(f_s, xt.shape[-2:])
            f_t = self.model.extract(xt)
            loss_rkd = self.lambda_kd * kd_loss(self.model.decode(f_t, xt.shape[-2:]), z_s, self.tau_kd)
            params = [p for n, p in self.model.named_parameters() if n in ns_names]
            if self.feat_proj is not None:
                loss_feat = self.feat_loss * torch.stack([F.mse_loss(proj(fs), ft.float()) for proj, fs, ft
                                                          in zip(self.feat_proj, f_s, f_t, strict=True)]).mean()
                logs["teacher/loss_feat"] = loss_feat.detach()
                params = params + list(self.feat_proj.parameters())
            logs["teacher/loss_reverse_kd"] = loss_rkd.detach()
            total = loss_rkd if self.feat_proj is None else loss_rkd + loss_feat
            for p, g in zip(params, torch.autograd.grad(total, params, allow_unused=True), strict=True):
                if g is not None:
                    p.grad = g if p.grad is None else p.grad + g
        if collab and self.salient_teacher_layers == "frozen":
            for n, p in self.model.named_parameters():
                if n not in ns_names:
                    p.grad = None
        self._teacher_saliency(xs, ys, xt, pl_t, pw_t, step)
        self.sync_gradients()
        opt.optimizer.step()  # the teacher's update (student grads are None, so it is untouched)
        for p in self.model.parameters():
            p.grad = None
        if self.feat_proj is not None:
            for p in self.feat_proj.parameters():
                p.grad = None

        # -- student network: self-training with pseudo-labels from the updated teacher + KD ------------
        s_logs = self.source_losses(self.student, xs, ys, "student/", imnet=self.student_imnet)
        with torch.no_grad():
            pl_net = {"teacher": self.model, "teacher_ema": self.teacher.teacher,
                      "own_ema": self.student_teacher.teacher}[self.student_pl_source]
            if self.student_pl_source == "teacher":
                was_training = self.model.training
                set_pseudo_label_mode(self.model, self.teacher.bn_train)
                z_t = self.model(xt)
                self.model.train(was_training)
            else:
                z_t = pl_net(xt)
            pl_s, _, q_s = T.pseudo_label(z_t, self.pseudo_threshold)
            pw_s = T.crop_pseudo_weight(q_s, *self.pl_crop)
        s_logs.update(self.self_training_losses(self.student, xs, ys, xt, pl_s, pw_s, rng, gen, "student/"))
        if self.lambda_kd > 0 and not (self.phases == "alternate" and collab):
            loss_kd = self.lambda_kd * kd_loss(self.student(xt), z_t, self.tau_kd)
            self.manual_backward(loss_kd)
            s_logs["student/loss_kd"] = loss_kd.detach()
        self._student_saliency(xs, ys, xt, pl_s, pw_s, step)
        self._optimizer_step(opt, sched)
        if self.collaborate and (step + 1) % self.recompute_every == 0:
            self.recompute_lsr()
        logs.update(s_logs)
        logs["teacher/pseudo_quality"] = q_t.mean()
        logs["student/pseudo_quality"] = q_s.mean()
        logs["clda/teacher_phase"] = self.log_value("clda/teacher_phase", float(collab))
        self.log_dict({f"train/{k}": v for k, v in logs.items()})

    def _saliency_due(self, step: int) -> bool:
        return self.collaborate and (step % self.recompute_every) >= self.recompute_every - self.saliency_batches

    def _saliency_loss(self, net: nn.Module, xs: Tensor, ys: Tensor, xt: Tensor, pl: Tensor, pw: Tensor) -> Tensor:
        if self.saliency_domain == "source":
            return T.ce_loss(net(xs), ys)
        return T.ce_loss(net(xt), pl, pw)

    def _teacher_saliency(self, xs, ys, xt, pl, pw, step: int) -> None:
        if self._saliency_due(step):
            loss = self._saliency_loss(self.model, xs, ys, xt, pl, pw) if self.saliency != "magnitude" else None
            self.accumulate_saliency(self.model, self.t_layers, self.t_scores, loss)

    def _student_saliency(self, xs, ys, xt, pl, pw, step: int) -> None:
        if self._saliency_due(step):
            loss = self._saliency_loss(self.student, xs, ys, xt, pl, pw) if self.saliency != "magnitude" else None
            self.accumulate_saliency(self.student, self.s_layers, self.s_scores, loss)

